"""``reidbench check``: fail CI when a run's robustness numbers drop below a golden file's."""

from __future__ import annotations

from pathlib import Path

import click

from reidbench.errors import ReidbenchError


@click.command("check")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--baseline", "-b", "golden", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The golden JSON file to compare with (written by --update).")
@click.option("--tol", "tols", multiple=True, metavar="[SCOPE:]METRIC=TOL",
              help="A tolerance rule, repeatable: mAP=1pp, rank1=2pp,5%, attack:mifgsm:mAP=2pp, cell:CELL_ID:*=3pp. "
                   "With pp and % both given, a drop within either passes. Overrides the golden file at the same scope.")
@click.option("--update", is_flag=True, help="Write or refresh the golden file from RUN_DIR (keeps its tolerances; records --tol).")
@click.option("--strict", is_flag=True, help="Run cells that the golden file lacks are an error, not a note.")
@click.option("--all", "show_all", is_flag=True, help="Show every compared metric, not only those that moved beyond tolerance.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write JUnit XML (one testcase per cell).")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write a markdown summary for a PR comment.")
@click.pass_context
def check(ctx: click.Context, run_dir: Path, golden: Path, tols: tuple[str, ...], update: bool, strict: bool,
          show_all: bool, junit: Path | None, markdown: Path | None) -> None:  # fmt: skip
    """Compare RUN_DIR's cells with a golden file; exit 1 if a metric dropped beyond its tolerance.

    \b
    Every cell of the golden file must be in the run (same cell id). Only drops regress; rises
    beyond the tolerance are shown as "improved" so the golden file can be refreshed on purpose.
    Tolerances: --tol, then the golden file's "tolerances", then the built-in defaults; a cell:
    rule beats an attack: rule beats a bare metric. The rule column says which one applied.

    \b
    Exit status: 0 all within tolerance, 1 a regression, 2 a usage or data problem.

    \b
    Examples:
      reidbench check runs/main --baseline golden.json --update      record the golden numbers
      reidbench check runs/pr --baseline golden.json --junit check.xml
      reidbench check runs/pr -b golden.json --tol mAP=0.5pp --tol attack:mifgsm:mAP=2pp,5%
    """
    from reidbench import check as chk
    from reidbench.eval.results import atomic_write_text

    if update:
        if junit or markdown or strict:
            raise click.UsageError("--junit, --markdown and --strict apply to a check, not to --update")
        result = chk.update_golden(run_dir, golden, tols)
        click.echo(result.render(show_all))
        return

    try:
        report = chk.check_run(run_dir, golden, tols, strict=strict)
    except ReidbenchError as exc:  # CI should show why the check could not run, not an empty report
        if junit:
            atomic_write_text(junit, chk.render_junit_error(str(exc)))
        if markdown:
            atomic_write_text(markdown, chk.render_markdown_error(str(exc)))
        raise
    click.echo(chk.render_text(report, show_all))
    if junit:
        atomic_write_text(junit, chk.render_junit(report))
    if markdown:
        atomic_write_text(markdown, chk.render_markdown(report, show_all))
    ctx.exit(0 if report.passed else 1)
