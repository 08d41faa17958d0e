"""The CI regression check: compare a run's cells with a golden file, with tolerances.

``reidbench check RUN --baseline golden.json`` reads the run's result records (never re-running
anything), matches every cell of the golden file to the run's cell of the same ``cell_id`` and
judges each metric the golden file lists. Robustness numbers are "higher is better", so only a
drop can regress: a drop beyond the tolerance is a REGRESSION, a rise beyond it is shown as
``improved`` (so the golden file can be refreshed on purpose), anything else is ``ok``.

The pieces, each importable on its own:

* :mod:`reidbench.check.tolerances` -- ``SELECTOR=TOLERANCE`` rules (``mAP=1pp``,
  ``attack:mifgsm:*=2pp,5%``), their precedence, and :data:`DEFAULT_TOLERANCES`;
* :mod:`reidbench.check.golden` -- the versioned golden file: :func:`load_golden` (which refuses a
  file that would guard nothing, such as a NaN golden value) and :func:`build_golden`;
* :mod:`reidbench.check.comparison` -- :func:`judge`, :func:`compare` and :func:`check_run` ->
  :class:`CheckReport`;
* :mod:`reidbench.check.render` -- the report as text, JUnit XML and markdown;
* :mod:`reidbench.check.update` -- :func:`update_golden` (``--update``).
"""

from __future__ import annotations

from reidbench.check.comparison import (
    CheckReport,
    MetricVerdict,
    Verdict,
    check_run,
    compare,
    judge,
    provenance_context,
)
from reidbench.check.golden import (
    GOLDEN_FORMAT,
    Golden,
    GoldenCell,
    GoldenError,
    build_golden,
    golden_json,
    load_golden,
    run_fingerprint,
)
from reidbench.check.render import (
    render_junit,
    render_junit_error,
    render_markdown,
    render_markdown_error,
    render_table,
    render_text,
)
from reidbench.check.tolerances import (
    DEFAULT_TOLERANCES,
    TOLERANCE_SYNTAX,
    Source,
    Tolerance,
    ToleranceError,
    ToleranceRule,
    cli_rules,
    default_rules,
    parse_rule,
    parse_selector,
    parse_tolerance,
    resolve_tolerance,
    unmatched_reason,
)
from reidbench.check.update import UpdateResult, update_golden

__all__ = [
    "DEFAULT_TOLERANCES",
    "GOLDEN_FORMAT",
    "TOLERANCE_SYNTAX",
    "CheckReport",
    "Golden",
    "GoldenCell",
    "GoldenError",
    "MetricVerdict",
    "Source",
    "Tolerance",
    "ToleranceError",
    "ToleranceRule",
    "UpdateResult",
    "Verdict",
    "build_golden",
    "check_run",
    "cli_rules",
    "compare",
    "default_rules",
    "golden_json",
    "judge",
    "load_golden",
    "parse_rule",
    "parse_selector",
    "parse_tolerance",
    "provenance_context",
    "render_junit",
    "render_junit_error",
    "render_markdown",
    "render_markdown_error",
    "render_table",
    "render_text",
    "resolve_tolerance",
    "run_fingerprint",
    "unmatched_reason",
    "update_golden",
]
