"""``reidbench list``: what is registered."""

from __future__ import annotations

import click


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*[str(c) for c in r]) for r in rows]
    return "\n".join(lines)


@click.group("list")
def list_() -> None:
    """List registered datasets, models, attacks or defenses."""


@list_.command("datasets")
@click.argument("pattern", default="*")
def list_datasets(pattern: str) -> None:
    """Datasets: real layouts (read from --data-root) and synthetic presets (generated on first use)."""
    from reidbench.data import DATASETS, default_data_root

    rows = []
    for name in DATASETS.names(pattern):
        e = DATASETS.get(name)
        rows.append([name, "synthetic" if e.synthetic else "layout", e.folder, e.description])
    click.echo(_table(rows, ["name", "kind", "folder under the data root", "description"]))
    click.echo(f"\ndata root: {default_data_root()} (set REIDBENCH_DATA or pass --data-root)")


@list_.command("models")
@click.argument("pattern", default="*")
@click.option("--method", default=None, help="Only models of this method.")
def list_models_cmd(pattern: str, method: str | None) -> None:
    """Registered models with their backbone, input size, training set and checkpoint."""
    from reidbench.models import list_models
    from reidbench.models.registry import shipped_checkpoint

    rows = []
    for c in list_models(pattern, method=method):
        ckpt = shipped_checkpoint(c.name)
        rows.append([c.name, c.method, c.backbone, f"{c.input_size[0]}x{c.input_size[1]}", c.train_dataset,
                     f"yes ({ckpt.stat().st_size / 1e6:.1f} MB)" if ckpt else "no (reidbench train)"])  # fmt: skip
    click.echo(_table(rows, ["name", "method", "backbone", "input", "trained on", "checkpoint"]))


@list_.command("attacks")
@click.argument("pattern", default="*")
def list_attacks(pattern: str) -> None:
    """Registered attacks: family, threat model and default parameters (eps/step in /255)."""
    from reidbench.attacks import ATTACKS

    rows = []
    for name in ATTACKS.names(pattern):
        e = ATTACKS.get(name)
        rows.append([name, e.family, ", ".join(f"{k}={v}" for k, v in e.defaults.items()), e.threat])
    click.echo(_table(rows, ["name", "family", "defaults", "threat model"]))


@list_.command("defenses")
@click.argument("pattern", default="*")
def list_defenses(pattern: str) -> None:
    """Registered input-transformation defenses: random?, differentiable?, adaptive attack."""
    from reidbench.defenses import DEFENSES

    rows = []
    for name in DEFENSES.names(pattern):
        e = DEFENSES.get(name)
        rows.append([name, "yes" if e.random else "no", "yes" if e.differentiable else "no (BPDA)",
                     ", ".join(f"{k}={v}" for k, v in e.defaults.items()), e.description])  # fmt: skip
    click.echo(_table(rows, ["name", "random", "differentiable", "defaults", "description"]))
