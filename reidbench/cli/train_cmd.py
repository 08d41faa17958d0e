"""``reidbench train``: train a registered model with its recipe."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from reidbench.cli.options import nonempty_path, parse_kv, resolve_device
from reidbench.cli.run_cmd import cpu_threads


@click.command("train")
@click.option("--model", "name", required=True, help="Registered model (see `reidbench list models`).")
@click.option("--dataset", default="synthetic-mini", show_default=True, help="Training dataset (see `reidbench list datasets`).")
@click.option("--data-root", type=click.Path(), default=None, envvar="REIDBENCH_DATA", callback=nonempty_path,
              help="Folder holding the dataset folders (default $REIDBENCH_DATA or ~/.cache/reidbench/data).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, callback=nonempty_path,
              help="Checkpoint to write (.safetensors; the card goes beside it as .json). Default checkpoints/MODEL-DATASET.safetensors.")
@click.option("--backbone", default=None, help="resnet_tiny (CPU default), resnet18 or resnet50 (GPU; input 256x128).")
@click.option("--imagenet-weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A local torchvision ResNet state dict to initialise the backbone (nothing is downloaded).")
@click.option("--epochs", type=click.IntRange(1, 10000), default=None, help="Epochs (the schedule is scaled to it).")
@click.option("--lr", type=float, default=None, help="Base learning rate.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--recipe-option", "recipe_opts", multiple=True, metavar="KEY=VALUE",
              help="Recipe option, e.g. branches=ED for an ETNDNet ablation, variant=hard1 for AOS.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--threads", default=None, metavar="N|auto",
              help="CPU threads for torch: a number, or auto (as for `reidbench run`). Default: torch's own, as "
                   "before (the checkpoint's card records the count; training's float sums may depend on it).")
def train(name: str, dataset: str, data_root: Path | None, out: Path | None, backbone: str | None,
          imagenet_weights: Path | None, epochs: int | None, lr: float | None, seed: int,
          recipe_opts: tuple[str, ...], device: str, threads: str | None = None) -> None:
    """Train registered model --model on --dataset with its recipe; write a checkpoint and its card."""
    import dataclasses

    from reidbench.models.registry import MODELS
    from reidbench.train.training import default_config, train_registered

    entry = MODELS.get(name)
    cfg = default_config(backbone or entry.card.backbone)
    if epochs is not None:
        cfg = cfg.scaled(epochs)
    if lr is not None:
        cfg = dataclasses.replace(cfg, lr=lr)
    cfg = dataclasses.replace(cfg, seed=seed)
    dev = resolve_device(device)
    with cpu_threads(threads) if threads is not None else contextlib.nullcontext():
        card, path = train_registered(name, dataset=dataset, data_root=data_root, out=out, backbone=backbone,
                                      config=cfg, recipe_options=parse_kv(recipe_opts), imagenet_weights=imagenet_weights,
                                      device=dev)  # fmt: skip
    click.echo(f"wrote {path} (sha256 {(card.sha256 or '')[:12]}...) and {path.with_suffix('.json')}")
    click.echo(f"evaluate it with: reidbench run --model {name} --checkpoint {path} --dataset {dataset}")
