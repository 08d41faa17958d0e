"""``reidbench list``: what is registered."""

from __future__ import annotations

from typing import Any

import click


def _table(rows: list[list[Any]], header: list[str]) -> str:
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
    """Registered attacks: family, threat model and default parameters (eps/step in /255).

    Besides these names, tk:NAME runs any torchattacks class (case-insensitive, e.g. tk:PGD,
    tk:pgd, tk:APGDT) on the gallery-identity classifier; `reidbench list attacks 'tk:*'` lists
    the classes.
    """
    import fnmatch

    from reidbench.attacks import ATTACKS
    from reidbench.attacks.classification import torchattacks_classes

    rows = []
    for name in ATTACKS.names(pattern):
        e = ATTACKS.get(name)
        rows.append([name, e.family, ", ".join(f"{k}={v}" for k, v in e.defaults.items()), e.threat])
    if pattern.lower().startswith("tk"):  # list the torchattacks classes themselves
        classes = torchattacks_classes()
        rows += [[f"tk:{n}", "classification", _tk_defaults(classes[n]), "gallery-aware (torchattacks)"]
                 for n in sorted(classes, key=str.lower) if fnmatch.fnmatch(f"tk:{n}".lower(), pattern.lower())]  # fmt: skip
    elif fnmatch.fnmatch("tk:NAME", pattern):
        rows.append(["tk:NAME", "classification", "the torchattacks class's own (eps, alpha in /255)",
                     "gallery-aware; any torchattacks class by name, case-insensitive"])  # fmt: skip
    if not rows:
        click.echo(f"no attack matches {pattern!r}; `reidbench list attacks` lists them all")
        return
    click.echo(_table(rows, ["name", "family", "defaults", "threat model"]))
    if any(r[0] == "tk:NAME" for r in rows):
        click.echo("\ntk:NAME runs any torchattacks class, e.g. `reidbench run --attack tk:PGD --eps 8 --step 2 --steps 10`; "
                   "`reidbench list attacks 'tk:*'` lists the classes")  # fmt: skip


def _tk_defaults(cls: type) -> str:
    """A torchattacks class's keyword defaults, eps and alpha in /255 as the CLI takes them."""
    import inspect

    out = []
    for p in inspect.signature(cls).parameters.values():
        if p.name == "model" or p.default is inspect.Parameter.empty:
            continue
        v = p.default
        if p.name in ("eps", "alpha") and isinstance(v, float):
            v = round(v * 255, 4)
            v = int(v) if float(v).is_integer() else v
        out.append(f"{p.name}={v}")
    return ", ".join(out)


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
