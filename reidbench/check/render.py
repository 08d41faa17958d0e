"""A :class:`CheckReport` as terminal text, JUnit XML (for CI test views) and markdown (for a PR comment)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from reidbench.check._format import num, plural, signed
from reidbench.check.comparison import CheckReport, MetricVerdict
from reidbench.check.golden import dataset_name
from reidbench.reports.markup import md_escape

_HEADER = ["cell", "label", "metric", "golden", "now", "delta", "tolerance", "verdict", "rule"]
_NUMERIC = (3, 4, 5, 6)  # right-aligned columns of _HEADER


def _rows(report: CheckReport, show_all: bool) -> list[list[str]]:
    shown = report.verdicts if show_all else [v for v in report.verdicts if v.verdict != "ok"]
    return [[v.cell_id, v.label, v.metric, num(v.golden), num(v.now), signed(v.delta),
             "-" if math.isnan(v.allowed) else v.tolerance_text, v.verdict, v.rule.describe()] for v in shown]  # fmt: skip


def _all_within(report: CheckReport) -> str:
    return f"All {plural(len(report.verdicts), 'metric')} are within tolerance."


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------


def render_table(report: CheckReport, show_all: bool = False) -> list[str]:
    """The table of moved metrics (regressions and improvements; every metric with ``show_all``)."""
    rows = _rows(report, show_all)
    if not rows:
        return [_all_within(report)]
    widths = [max(len(r[i]) for r in [_HEADER, *rows]) for i in range(len(_HEADER))]

    def fmt(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in _NUMERIC else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    return [fmt(_HEADER), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def render_text(report: CheckReport, show_all: bool = False) -> str:
    """The terminal output: where the golden numbers come from, the table and a summary."""
    g = report.golden
    lines = [f"golden: {g.path} ({plural(len(g.cells), 'cell')}, dataset {dataset_name(g.dataset)} {g.fingerprint}, "
             f"recorded {g.created or '?'})"]  # fmt: skip
    lines += [f"  differs: {c}" for c in report.context]
    lines += ["", *render_table(report, show_all), ""]
    if report.extra:
        names = ", ".join(f"{cid} ({label})" for cid, label in report.extra[:5])
        lines.append(f"Not checked: {plural(len(report.extra), 'run cell')} not in the golden file: {names}"
                     f"{', ...' if len(report.extra) > 5 else ''}; add them with --update.")  # fmt: skip
    if report.improvements:
        lines.append("Improvements beyond tolerance: refresh the golden file with --update to lock them in.")
    lines.append(report.summary())
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# JUnit XML
# ---------------------------------------------------------------------------------------------


def render_junit(report: CheckReport) -> str:
    """JUnit XML: one testcase per golden cell, a failure naming each regressed metric."""
    suite = ET.Element("testsuite", name="reidbench check", tests=str(report.n_cells + len(report.extra)),
                       failures=str(len({v.cell_id for v in report.regressions})), errors="0",
                       skipped=str(len(report.extra)))  # fmt: skip
    by_cell: dict[str, list[MetricVerdict]] = {}
    for v in report.verdicts:
        by_cell.setdefault(v.cell_id, []).append(v)
    classname = f"reidbench.check.{dataset_name(report.golden.dataset)}"
    for cid, vs in by_cell.items():
        case = ET.SubElement(suite, "testcase", classname=classname, name=f"{vs[0].label} [{cid}]")
        bad = [v for v in vs if v.verdict == "REGRESSION"]
        if bad:
            failure = ET.SubElement(case, "failure", type="regression", message="; ".join(v.sentence() for v in bad))
            failure.text = "\n".join(v.sentence() for v in bad)
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join(v.sentence() for v in vs)
    for cid, label in report.extra:
        case = ET.SubElement(suite, "testcase", classname=classname, name=f"{label} [{cid}]")
        ET.SubElement(case, "skipped", message="in the run but not in the golden file; add it with --update")
    return _xml(suite)


def render_junit_error(message: str) -> str:
    """JUnit XML for a check that could not run (exit 2), so CI shows why rather than nothing."""
    suite = ET.Element("testsuite", name="reidbench check", tests="1", failures="0", errors="1", skipped="0")
    case = ET.SubElement(suite, "testcase", classname="reidbench.check", name="check")
    err = ET.SubElement(case, "error", type="usage", message=message)
    err.text = message
    return _xml(suite)


def _xml(suite: ET.Element) -> str:
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


def render_markdown(report: CheckReport, show_all: bool = False) -> str:
    """A summary for a pull-request comment."""
    g = report.golden
    head = "FAIL" if not report.passed else "PASS"
    lines = [f"### reidbench check: {head}", "", f"**{report.summary()}**", ""]
    lines += _markdown_table(report, show_all)
    if report.improvements:
        lines += ["Improvements beyond tolerance: refresh the golden file with `reidbench check RUN --baseline "
                  f"{g.path.name} --update` to lock them in.", ""]  # fmt: skip
    if report.extra:
        lines.append(f"Not checked ({plural(len(report.extra), 'run cell')} not in the golden file):")
        lines += [f"- `{cid}` {md_escape(label)}" for cid, label in report.extra] + [""]
    lines += ["<details><summary>golden file and run</summary>", "",
              f"- golden file `{g.path.name}`, recorded {g.created or '?'} with reidbench {g.reidbench_version or '?'}",
              f"- dataset {md_escape(dataset_name(g.dataset))}, fingerprint `{g.fingerprint}`"]  # fmt: skip
    lines += [f"- differs: {md_escape(c)}" for c in report.context]
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def _markdown_table(report: CheckReport, show_all: bool) -> list[str]:
    """The moved (or, with ``show_all``, every) metric as a markdown table, then a blank line."""
    rows = _rows(report, show_all)
    if not rows:
        return [_all_within(report), ""]
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + "|".join("---:" if i in _NUMERIC else "---" for i in range(len(_HEADER))) + "|"]
    for r in rows:
        verdict = f"**{r[7]}**" if r[7] == "REGRESSION" else r[7]
        cells = [f"`{r[0]}`", md_escape(r[1]), r[2], r[3], r[4], r[5], r[6], verdict, md_escape(r[8])]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def render_markdown_error(message: str) -> str:
    return f"### reidbench check: ERROR\n\n{md_escape(message)}\n"
