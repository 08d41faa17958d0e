"""``reidbench data``: generate synthetic data, inspect a dataset folder."""

from __future__ import annotations

from pathlib import Path

import click

from reidbench.cli.options import nonempty_path


@click.group("data")
def data() -> None:
    """Generate the synthetic dataset or check a dataset folder."""


@data.command("synth")
@click.option("--preset", type=click.Choice(["tiny", "tiny-occluded", "mini", "mini-occluded", "mini-b", "mini-rich", "mini-large",
                                              "market", "occluded"]), default="mini", show_default=True,
              help="mini: the embedded default; mini-occluded: its occluded twin; mini-b: a second domain; "
                   "mini-rich/mini-large: the embedded-default experiments; market: Market-1501's counts; occluded: Occluded-Duke style.")
@click.option("--out", type=click.Path(file_okay=False), required=True, callback=nonempty_path, help="Folder to write the Market-1501 layout into.")
@click.option("--seed", type=int, default=None, help="Seed (default: the preset's). The same seed writes the same files.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out.")
def synth(preset: str, out: Path, seed: int | None, overwrite: bool) -> None:
    """Write a synthetic re-ID dataset in the Market-1501 layout."""
    import time

    from reidbench.data.layouts import read_market_layout
    from reidbench.data.synthetic import PRESETS, generate
    from reidbench.progress import bar as tqdm

    p = PRESETS[preset]
    total = p.train_images + p.query_images + p.gallery_images + p.distractors + p.junk + p.extra_train_images
    t0 = time.perf_counter()
    with tqdm(total=total, desc=f"synthetic {preset}", unit="img") as bar:
        generate(p, out, seed=seed, progress=bar.update, overwrite=overwrite)
    ds = read_market_layout(out, name=f"synthetic-{preset}")
    click.echo(ds.summary())
    click.echo(f"written in {time.perf_counter() - t0:.1f} s; fingerprint {ds.fingerprint}")


@data.command("info")
@click.argument("name")
@click.option("--data-root", type=click.Path(), default=None, envvar="REIDBENCH_DATA", callback=nonempty_path,
              help="Folder holding the dataset folders (default $REIDBENCH_DATA).")
def info(name: str, data_root: Path | None) -> None:
    """Read dataset NAME (see `reidbench list datasets`) and print its statistics."""
    from reidbench.data import load_dataset

    ds = load_dataset(name, data_root)
    click.echo(ds.summary())
    click.echo(f"fingerprint {ds.fingerprint}")
