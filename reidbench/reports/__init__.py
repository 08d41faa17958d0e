"""Reports: tables, plots and a PDF rendered from a run directory's records (nothing is re-run).

The entry point is :func:`write_report`; ``reidbench report RUN_DIR`` calls it, and so does the
harness at the end of ``reidbench run``. The pieces are usable on their own:

* :mod:`reidbench.reports.tables` -- ``pivot_tables``, ``drop_tables``, ``defense_tables``,
  ``sweep_tables``, ``paper_tables`` -> :class:`Table` with ``to_markdown``/``to_latex``/``to_csv``;
* :mod:`reidbench.reports.plots` -- ``plot_*`` functions returning a matplotlib ``Figure`` or None;
* :mod:`reidbench.reports.style` -- the one figure style (print, grayscale and colour-blind safe).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reidbench.errors import ParameterError

FORMATS = ("pdf", "html", "md")
_SUFFIX = {".pdf": "pdf", ".html": "html", ".htm": "html", ".md": "md", ".markdown": "md"}


def infer_format(out: str | Path | None, fmt: str | None = None) -> str:
    """``fmt`` if given, else from the suffix of ``out``, else ``pdf``."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ParameterError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt
    return _SUFFIX.get(Path(out).suffix.lower(), "pdf") if out is not None else "pdf"


def write_report(run_dir: str | Path, out: str | Path | None = None, fmt: str | None = None, *,
                 metrics: Sequence[str] = ("rank1", "mAP"), dpi: int | None = None, title: str | None = None) -> Path:  # fmt: skip
    """Render the run at ``run_dir`` into ``out`` (default ``RUN_DIR/report.<fmt>``) and return its path.

    ``fmt``: ``pdf`` (default), ``html`` (one self-contained file) or ``md`` (markdown, with the
    figures as PNG and every table as CSV and LaTeX in ``<name>_files/`` next to it); when None,
    taken from the suffix of ``out``. ``metrics``: the values in each table cell (``("rank1",
    "mAP", "mINP")`` adds mINP). Raises :class:`~reidbench.errors.DataError` when ``run_dir`` is
    not a run or has no finished cells.
    """
    from reidbench.reports.document import build_report
    from reidbench.reports.run import load_run

    kind = infer_format(out, fmt)
    bad = [m for m in metrics if m not in ("rank1", "rank5", "rank10", "mAP", "mINP")]
    if bad:
        raise ParameterError(f"unknown metric(s) {', '.join(bad)}; use rank1, rank5, rank10, mAP, mINP")
    run = load_run(run_dir)
    path = Path(out) if out is not None else Path(run_dir) / f"report.{kind}"
    report = build_report(run, metrics=metrics, title=title)
    for t in report.tables:  # results-derived files beside the records
        if t.key == "reproduction":
            from reidbench.eval.results import atomic_write_text

            atomic_write_text(Path(run_dir) / "reproduction.md", t.to_markdown() + "\n")
            atomic_write_text(Path(run_dir) / "reproduction.csv", t.to_csv())
    if kind == "pdf":
        from reidbench.reports.pdf import write_pdf

        return write_pdf(report, path, dpi=dpi or 200)
    from reidbench.reports.markup import write_html, write_markdown

    if kind == "html":
        return write_html(report, path, dpi=dpi or 150)
    return write_markdown(report, path, dpi=dpi or 150)


__all__ = ["FORMATS", "infer_format", "write_report"]
