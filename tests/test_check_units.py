"""Unit tests of the ``reidbench.check`` submodules on hand-made values (the end-to-end CLI tests are in test_check.py)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from reidbench.check import GoldenError, ToleranceError
from reidbench.check import comparison as cmp
from reidbench.check import golden as gold
from reidbench.check import render as rnd
from reidbench.check import tolerances as tol
from reidbench.errors import DataError
from reidbench.eval.results import METRICS
from reidbench.reports import markup, tables
from tests.test_check import BASE, FP, MIFGSM, SMA, record

# ---------------------------------------------------------------------------------------------
# tolerances
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("0%", tol.Tolerance(rel=0.0)), ("1e1pp", tol.Tolerance(pp=10.0)), ("1 pp", tol.Tolerance(pp=1.0)),
    ("0.25pp,0%", tol.Tolerance(pp=0.25, rel=0.0)),
])  # fmt: skip
def test_parse_tolerance_accepts(text: str, expected: tol.Tolerance) -> None:
    assert tol.parse_tolerance(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("1PP", "needs a unit"), ("pp", "'' is not a number"), ("%", "'' is not a number"), ("infpp", "finite"),
    ("5%,5%", "gives % twice"), (",", "empty"), ("1pp,,2%", "empty"), ("1pp=2", "needs a unit"),
])  # fmt: skip
def test_parse_tolerance_rejects_edges(text: str, message: str) -> None:
    with pytest.raises(ToleranceError, match=message):
        tol.parse_tolerance(text)


def test_tolerance_bounds_and_text() -> None:
    assert tol.Tolerance().allowed(50.0) == 0.0 and str(tol.Tolerance()) == ""
    assert tol.Tolerance(rel=10.0).allowed(-20.0) == pytest.approx(2.0)  # relative to |golden|
    assert tol.Tolerance(pp=0.5, rel=1.0).allowed(0.0) == 0.5
    assert str(tol.Tolerance(pp=2.0, rel=5.0)) == "2pp,5%" and str(tol.Tolerance(rel=0.125)) == "0.125%"


@pytest.mark.parametrize(("selector", "expected"), [
    ("*", ("all", "", "*")), (" mAP ", ("all", "", "mAP")), ("cell:0123456789abcdef:*", ("cell", "0123456789abcdef", "*")),
    (" attack : mifgsm : rank5 ", ("attack", "mifgsm", "rank5")), ("attack:a:b:mINP", ("attack", "a:b", "mINP")),
])  # fmt: skip
def test_parse_selector(selector: str, expected: tuple[str, str, str]) -> None:
    assert tol.parse_selector(selector) == expected


@pytest.mark.parametrize(("selector", "message"), [("cell::mAP", "not one of"), ("attack:x:", "unknown metric ''"), ("MAP", "unknown metric 'MAP'")])
def test_parse_selector_rejects(selector: str, message: str) -> None:
    with pytest.raises(ToleranceError, match=message):
        tol.parse_selector(selector)


@pytest.mark.parametrize("text", ["mAP=1pp", "*=2pp,5%", "attack:mifgsm:rank1=0.5pp", "cell:0123456789abcdef:*=3%"])
def test_rule_round_trips_through_its_text(text: str) -> None:
    rule = tol.parse_rule(text, "golden")
    assert str(rule) == text and rule.describe() == f"{text} (golden)"
    assert tol.parse_rule(str(rule), "golden") == rule and rule.selector == text.partition("=")[0]


def test_rule_matching() -> None:
    cell_rule, attack_rule, star = tol.parse_rule("cell:c1:mAP=1pp"), tol.parse_rule("attack:sma:mAP=1pp"), tol.parse_rule("*=1pp")
    assert cell_rule.matches("c1", "sma", "mAP") and not cell_rule.matches("c2", "sma", "mAP") and not cell_rule.matches("c1", "sma", "rank1")
    assert attack_rule.matches("c2", "sma", "mAP") and not attack_rule.matches("c2", "mifgsm", "mAP")
    assert all(star.matches("any", "none", m) for m in METRICS)


def test_resolve_without_a_matching_rule_is_an_error() -> None:
    with pytest.raises(ToleranceError, match="no tolerance applies to mINP"):
        tol.resolve_tolerance([tol.parse_rule("mAP=1pp")], "c1", "none", "mINP")


def test_unmatched_reason_and_cli_rules() -> None:
    cells = {"c1": "sma", "c2": "mifgsm", "c3": "sma"}
    assert tol.unmatched_reason(tol.parse_rule("mAP=1pp"), {}) is None  # a bare metric matches any grid
    assert tol.unmatched_reason(tol.parse_rule("cell:c9:*=1pp"), cells) == "there is no cell c9"
    assert tol.unmatched_reason(tol.parse_rule("attack:pgd:*=1pp"), cells) == "no cell uses attack 'pgd' (attacks: mifgsm, sma)"
    rules = tol.cli_rules(["attack:sma:mAP=2pp", "cell:c2:*=1pp"], cells)
    assert [r.source for r in rules] == ["cli", "cli"] and rules[1].name == "c2"
    with pytest.raises(ToleranceError, match=r"--tol cell:c9:\*=1pp matches nothing in the golden file \(there is no cell c9\)"):
        tol.cli_rules(["mAP=1pp", "cell:c9:*=1pp"], cells)


# ---------------------------------------------------------------------------------------------
# judge
# ---------------------------------------------------------------------------------------------


def test_judge_relative_and_zero_golden() -> None:
    assert cmp.judge(50.0, 47.5, tol.Tolerance(rel=5.0)) == ("ok", 2.5)  # exactly 5 % of 50
    assert cmp.judge(50.0, 47.49, tol.Tolerance(rel=5.0))[0] == "REGRESSION"
    assert cmp.judge(0.0, 0.0, tol.Tolerance(rel=50.0)) == ("ok", 0.0)  # % of zero allows nothing...
    assert cmp.judge(0.0, 0.01, tol.Tolerance(rel=50.0))[0] == "improved"  # ...either way


def test_judge_float_slack_is_tiny() -> None:
    one = tol.Tolerance(pp=1.0)
    assert cmp.judge(10.0, 10.0 - 1.0 - 5e-10, one)[0] == "ok"  # within the 1e-9 slack
    assert cmp.judge(10.0, 10.0 - 1.000001, one)[0] == "REGRESSION"  # a millionth of a pp beyond is not
    assert cmp.judge(10.0, 11.000001, one)[0] == "improved"


def test_judge_nan_on_either_side() -> None:
    one = tol.Tolerance(pp=1.0)
    verdict, allowed = cmp.judge(math.nan, 40.0, one)  # a NaN (not None) golden counts as "measured NaN"
    assert verdict == "improved" and math.isnan(allowed)
    assert cmp.judge(None, math.nan, one)[0] == "ok" and math.isnan(cmp.judge(None, math.nan, one)[1])
    assert cmp.judge(40.0, math.nan, one) == ("REGRESSION", 1.0)
    assert cmp.judge(40.0, math.inf, one)[0] == "improved"


# ---------------------------------------------------------------------------------------------
# golden files
# ---------------------------------------------------------------------------------------------


def _doc(**cells: dict[str, Any]) -> dict[str, Any]:
    return {"format": gold.GOLDEN_FORMAT, "dataset": {"name": "syn", "fingerprint": FP},
            "cells": {cid: {"label": cid, "config": {"attack": "none"}, "metrics": m} for cid, m in cells.items()}}  # fmt: skip


def _write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_load_golden_minimal(tmp_path: Path) -> None:
    g = gold.load_golden(_write(tmp_path / "g.json", _doc(a={"mAP": 41, "rank1": None}, b={"mAP": 3.5, "rank1": 7})))
    assert g.cells["a"].metrics == {"mAP": 41.0, "rank1": None} and isinstance(g.cells["a"].metrics["mAP"], float)
    assert g.cells["b"].attack == "none" and g.tolerances == {} and g.provenance == {} and g.created == ""


@pytest.mark.parametrize(("value", "shown"), [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity")])
def test_load_golden_refuses_non_finite(tmp_path: Path, value: float, shown: str) -> None:
    path = _write(tmp_path / "g.json", _doc(a={"mAP": 41.0}, b={"mAP": value}))
    with pytest.raises(GoldenError) as exc:
        gold.load_golden(path)
    message = str(exc.value)
    assert f"golden file {path} is malformed: 'cells.b.metrics.mAP' is {shown}," in message
    assert "--update" in message and "\n" not in message


def test_load_golden_refuses_empty_and_uneven_metrics(tmp_path: Path) -> None:
    with pytest.raises(GoldenError, match=r"'cells\.b\.metrics' is empty"):
        gold.load_golden(_write(tmp_path / "g.json", _doc(a={"mAP": 41.0}, b={})))
    with pytest.raises(GoldenError, match=r"'cells\.b\.metrics' lacks rank1, mINP, which cell a lists"):
        gold.load_golden(_write(tmp_path / "g.json", _doc(a={"mINP": 1.0, "rank1": 2.0, "mAP": 3.0}, b={"mAP": 3.0})))
    with pytest.raises(GoldenError, match=r"'cells\.a\.metrics' lacks rank5, which cell b lists"):  # whichever side is short
        gold.load_golden(_write(tmp_path / "g.json", _doc(a={"mAP": 3.0}, b={"mAP": 3.0, "rank5": 2.0})))


def test_build_golden_records_nan_as_null_and_refuses_infinity() -> None:
    manifest = {"dataset": {"name": "syn", "fingerprint": FP}}
    doc = gold.build_golden([record(SMA, {**BASE[SMA], "mINP": math.nan})], manifest, "runs/a")
    assert doc["cells"][SMA.cell_id]["metrics"]["mINP"] is None and doc["cells"][SMA.cell_id]["metrics"]["mAP"] == 25.0
    assert "NaN" not in gold.golden_json(doc)
    with pytest.raises(DataError, match=rf"cell {MIFGSM.cell_id} \(.*\) of runs/a has rank5 = -inf"):
        gold.build_golden([record(SMA, BASE[SMA]), record(MIFGSM, {**BASE[MIFGSM], "rank5": -math.inf})], manifest, "runs/a")


def test_golden_json_is_strict_sorted_json() -> None:
    assert gold.golden_json({"b": 1, "a": {"d": None, "c": 2.5}}) == '{\n  "a": {\n    "c": 2.5,\n    "d": null\n  },\n  "b": 1\n}\n'
    with pytest.raises(GoldenError, match="not strict JSON"):
        gold.golden_json({"provenance": {"seed": math.nan}})


def test_run_fingerprint() -> None:
    assert gold.run_fingerprint({"dataset": {"fingerprint": FP}}, "r") == FP
    for manifest in ({}, {"dataset": "syn"}, {"dataset": {"fingerprint": ""}}):
        with pytest.raises(DataError, match="no dataset fingerprint"):
            gold.run_fingerprint(manifest, "r")


# ---------------------------------------------------------------------------------------------
# renderers, on a hand-made report
# ---------------------------------------------------------------------------------------------

RULE = tol.parse_rule("mAP=1pp", "default")
PCT = tol.parse_rule("attack:sma:*=1pp,10%", "golden")


def _report(*verdicts: cmp.MetricVerdict, extra: tuple[tuple[str, str], ...] = (), context: tuple[str, ...] = ()) -> cmp.CheckReport:
    cells = {v.cell_id: gold.GoldenCell(v.cell_id, v.label, {}, {v.metric: v.golden}) for v in verdicts}
    g = gold.Golden(path=Path("ci/golden.json"), fingerprint=FP, dataset={"name": "syn|mini"}, cells=cells, tolerances={},
                    provenance={}, created="2026-05-01T10:00:00Z", reidbench_version="9.9")  # fmt: skip
    return cmp.CheckReport(g, verdicts, (), extra, context)


def _v(cid: str, label: str, golden: float | None, now: float, rule: tol.ToleranceRule = RULE) -> cmp.MetricVerdict:
    verdict, allowed = cmp.judge(golden, now, rule.tolerance)
    return cmp.MetricVerdict(cid, label, "mAP", golden, now, rule, allowed, verdict)


BAD = _v("c1", "jad | cs\nadaptive", 41.3, 30.0)
UP = _v("c2", "sma", 25.0, 30.0, PCT)
SAME = _v("c3", "clean", 80.0, 80.0)
NAN = _v("c4", "was nan", None, 12.0)


def test_verdict_sentence_and_summary() -> None:
    assert BAD.sentence() == "mAP: golden 41.30, now 30.00, delta -11.30pp, tolerance 1.00pp [mAP=1pp (default)] -> REGRESSION"
    assert UP.tolerance_text == "2.50pp" and math.isnan(NAN.delta) and NAN.verdict == "improved"
    report = _report(BAD, UP, SAME, extra=(("c9", "new"),))
    assert not report.passed and report.n_cells == 3 and report.regressions == [BAD] and report.improvements == [UP]
    assert report.summary() == "FAIL: 3 cells, 3 metrics compared, 1 regression, 1 improvement; 1 run cell not in the golden file"
    assert _report(SAME).summary() == "OK: 1 cell, 1 metric compared, 0 regressions, 0 improvements"


def test_render_table_aligns_and_filters() -> None:
    report = _report(SAME, UP, NAN)
    assert rnd.render_table(_report(SAME)) == ["All 1 metric are within tolerance."]
    lines = rnd.render_table(report)
    assert len(lines) == 4 and not any("clean" in line for line in lines)  # only moved metrics
    assert len(rnd.render_table(report, show_all=True)) == 5
    header, rule, up, nan = lines
    assert set(rule.replace(" ", "")) == {"-"}
    end = header.index("golden") + len("golden")  # numbers are right-aligned under their header
    assert up[:end].endswith("25.00") and nan[:end].endswith("nan")
    assert re.split(r"\s{2,}", nan)[6] == "-" and re.split(r"\s{2,}", up)[6] == "2.50pp"  # no tolerance against a NaN golden value


def test_render_text() -> None:
    text = rnd.render_text(_report(BAD, UP, extra=(("c9", "new"),), context=("torch: golden 2.4.0, run 2.5.0",)))
    lines = text.splitlines()
    assert lines[0] == "golden: ci/golden.json (2 cells, dataset syn|mini a1b2c3d4e5f60718, recorded 2026-05-01T10:00:00Z)"
    assert lines[1] == "  differs: torch: golden 2.4.0, run 2.5.0"
    assert "Not checked: 1 run cell not in the golden file: c9 (new); add them with --update." in lines
    assert "Improvements beyond tolerance: refresh the golden file with --update to lock them in." in lines
    assert lines[-1].startswith("FAIL: 2 cells")


def test_render_junit() -> None:
    suite = ET.fromstring(rnd.render_junit(_report(BAD, UP, SAME, extra=(("c9", "new"),)))).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped"), suite.get("errors")) == ("4", "1", "1", "0")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"jad | cs\nadaptive [c1]", "sma [c2]", "clean [c3]", "new [c9]"}
    assert {c.get("classname") for c in cases.values()} == {"reidbench.check.syn|mini"}
    failure = cases["jad | cs\nadaptive [c1]"].find("failure")
    assert failure is not None and failure.get("message") == BAD.sentence() and failure.get("type") == "regression"
    assert cases["sma [c2]"].find("failure") is None and "-> improved" in (cases["sma [c2]"].findtext("system-out") or "")
    assert cases["new [c9]"].find("skipped") is not None


def test_render_junit_error_escapes() -> None:
    message = 'golden file "a&b<c>.json" is malformed'
    err = ET.fromstring(rnd.render_junit_error(message)).find("testsuite/testcase/error")
    assert err is not None and err.get("message") == message and err.text == message


def test_render_markdown_escapes_and_marks() -> None:
    md = rnd.render_markdown(_report(BAD, UP, SAME, extra=(("c9", "a|b"),), context=("x | y",)))
    assert md.startswith("### reidbench check: FAIL\n\n**FAIL: 3 cells")
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert len(rows) == 2  # the ok metric is not listed
    bad = rows[0]
    assert "jad \\| cs adaptive" in bad and "**REGRESSION**" in bad  # pipe escaped, newline folded: the row stays one row
    assert bad.replace("\\|", "").count("|") == 10  # 9 columns
    assert "| improved |" in rows[1] and "attack:sma:*=1pp,10% (golden)" in rows[1]
    assert "`reidbench check RUN --baseline golden.json --update`" in md
    assert "- `c9` a\\|b" in md and "- differs: x \\| y" in md and "- dataset syn\\|mini, fingerprint" in md
    assert "All 1 metric are within tolerance." in rnd.render_markdown(_report(SAME))
    assert rnd.render_markdown(_report(SAME)).startswith("### reidbench check: PASS")


def test_render_markdown_error() -> None:
    assert rnd.render_markdown_error("a|b\nc") == "### reidbench check: ERROR\n\na\\|b c\n"


# ---------------------------------------------------------------------------------------------
# markdown escaping and slugs: one home
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("a|b", "a\\|b"), ("x\r\ny\rz\nw", "x y z w"), ("plain *text*", "plain *text*"), ("", ""),
])  # fmt: skip
def test_md_escape(text: str, expected: str) -> None:
    assert markup.md_escape(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("ranked-baseline + RK", "ranked-baseline-rk"), ("  Market1501__v2 ", "market1501-v2"), ("sweep-eps", "sweep-eps"),
    ("ΔmAP (%)", "map"), ("--", ""),
])  # fmt: skip
def test_slug(text: str, expected: str) -> None:
    assert markup.slug(text) == expected


def test_one_escaper_and_one_slug() -> None:
    from reidbench.reports import table_model

    assert table_model.md_escape is markup.md_escape and table_model.slug is markup.slug and rnd.md_escape is markup.md_escape
    t = tables.Table(key="Pivot Table", title="a|b", columns=(tables.Column("model", label=True),), rows=(("x\ny",),))
    assert "**a\\|b**" in t.to_markdown() and "| x y |" in t.to_markdown()
    assert r"\label{tab:reidbench-pivot-table}" in t.to_latex()


def test_importing_check_does_not_load_the_report_stack() -> None:
    code = "import sys, reidbench.check, reidbench.cli.check_cmd; print(sorted(m for m in ('matplotlib', 'reportlab') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_package_keeps_the_old_public_names() -> None:
    import reidbench.check as check

    for name in check.__all__:
        assert getattr(check, name) is not None
    assert check.load_golden is gold.load_golden and check.DEFAULT_TOLERANCES is tol.DEFAULT_TOLERANCES
    assert dataclasses.is_dataclass(check.UpdateResult) and check.render_text is rnd.render_text


