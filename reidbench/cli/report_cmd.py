"""``reidbench report``: tables, plots and a PDF from a run directory (nothing is re-run)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default RUN_DIR/report.<format>).")
@click.option("--format", "fmt", type=click.Choice(["pdf", "html", "md"]), default=None,
              help="pdf (default), html (one self-contained file) or md (markdown; figures as PNG and tables as "
                   "CSV and LaTeX in <name>_files/). Default: from the suffix of --out, else pdf.")
@click.option("--minp", is_flag=True, help="Show mINP in the table cells too (R1/mAP/mINP).")
@click.option("--dpi", type=click.IntRange(50, 600), default=None, help="Resolution of the embedded figures (pdf 200, md/html 150).")
@click.option("--title", default=None, help="Title on the first page.")
def report(run_dir: Path, out: Path | None, fmt: str | None, minp: bool, dpi: int | None, title: str | None) -> None:  # fmt: skip
    """Render the run in RUN_DIR as a PDF (or html/markdown) report.

    \b
    The PDF has: the manifest (versions, seeds, dataset fingerprint, checkpoints, command), the
    threat models (rendered from each attack's structured threat), the tables (model x attack
    R1/mAP, drop from clean, oblivious vs adaptive, sweeps, the papers' numbers beside ours;
    with --rerank runs, '+ RK' rows hold the re-ranked metrics beside the plain ones), the
    figures (continued over as many pages as their cells need), and the sanity-check warnings.
    \b
    Examples:
      reidbench report runs/default
      reidbench report runs/default -o jad.md --minp
    """
    from reidbench.reports import write_report

    path = write_report(run_dir, out, fmt, metrics=("rank1", "mAP", "mINP") if minp else ("rank1", "mAP"), dpi=dpi, title=title)
    click.echo(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")
