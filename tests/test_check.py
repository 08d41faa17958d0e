"""``reidbench check``: golden files, tolerances, verdicts, reports and exit codes, on hand-made runs."""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reidbench import __version__
from reidbench.check import (
    DEFAULT_TOLERANCES,
    GOLDEN_FORMAT,
    Tolerance,
    ToleranceError,
    default_rules,
    judge,
    parse_rule,
    parse_tolerance,
    resolve_tolerance,
)
from reidbench.cli import ReidbenchGroup, main
from reidbench.cli.check_cmd import check
from reidbench.eval.results import METRICS, CellConfig, CellResult, write_record

FP = "a1b2c3d4e5f60718"

CLEAN = CellConfig(model="baseline", dataset="synthetic-mini")
MIFGSM = CellConfig(model="baseline", dataset="synthetic-mini", attack="mifgsm", target="query",
                    params='{"eps": 5, "steps": 15}', eps=5.0, steps=15)  # fmt: skip
SMA = CellConfig(model="baseline", dataset="synthetic-mini", attack="sma", target="query", params='{"eps": 5}', eps=5.0)
EXTRA = CellConfig(model="baseline", dataset="synthetic-mini", attack="mifgsm", target="query",
                   params='{"eps": 8, "steps": 15}', eps=8.0, steps=15)  # fmt: skip

BASE = {
    CLEAN: {"rank1": 92.5, "rank5": 97.0, "rank10": 98.25, "mAP": 80.0, "mINP": 50.0},
    MIFGSM: {"rank1": 45.0, "rank5": 60.0, "rank10": 68.0, "mAP": 41.3, "mINP": 12.0},
    SMA: {"rank1": 30.0, "rank5": 44.0, "rank10": 52.0, "mAP": 25.0, "mINP": 5.0},
}


def record(cfg: CellConfig, metrics: dict[str, float], fingerprint: str = FP) -> CellResult:
    return CellResult(config=cfg, family="clean" if cfg.attack == "none" else "metric", threat="query, white-box, eps=5",
                      rank1=metrics["rank1"], rank5=metrics["rank5"], rank10=metrics["rank10"], mAP=metrics["mAP"],
                      mINP=metrics["mINP"], n_query=20, n_gallery=80, n_valid_query=20, seconds=0.1,
                      fingerprint=fingerprint)  # fmt: skip


def make_run(root: Path, cells: dict[CellConfig, dict[str, float]], fingerprint: str = FP, **manifest: Any) -> Path:
    """A run directory as `reidbench run` writes it: manifest.json and cells/<cell_id>.json."""
    root.mkdir(parents=True, exist_ok=True)
    doc = {
        "reidbench_version": __version__,
        "created": "2026-05-01T10:00:00Z",
        "versions": {"torch": "2.4.0", "torchvision": "0.19.0", "torchattacks": "3.5.1", "numpy": "1.26.4", "python": "3.11.7"},
        "device": "cpu",
        "seed": 0,
        "command": "reidbench run --attack mifgsm --attack sma",
        "config": {"models": ["baseline"], "attacks": ["mifgsm", "sma"]},
        "dataset": {"name": "synthetic-mini", "fingerprint": fingerprint, "root": "/data/synthetic-mini"},
        "models": {"baseline": {"checkpoint": "baseline.safetensors", "sha256": "ab" * 32, "card": {"backbone": "resnet50"}}},
    }
    doc.update(manifest)
    (root / "manifest.json").write_text(json.dumps(doc))
    for cfg, metrics in cells.items():
        write_record(root, record(cfg, metrics, fingerprint))
    return root


def changed(cfg: CellConfig, **metrics: float) -> dict[CellConfig, dict[str, float]]:
    """BASE with some metrics of one cell replaced."""
    out = {c: dict(m) for c, m in BASE.items()}
    out[cfg].update(metrics)
    return out


def edit(path: Path, fn: Callable[[dict[str, Any]], Any]) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc, indent=2))


@pytest.fixture()
def invoke() -> Callable[..., Result]:
    # The group class of `reidbench`, so ReidbenchError -> one "Error:" line and exit 2 as in real use.
    group = ReidbenchGroup("reidbench")
    group.add_command(check)

    def run(*args: str | Path) -> Result:
        return CliRunner().invoke(group, ["check", *map(str, args)])

    return run


@pytest.fixture()
def golden(tmp_path: Path, invoke: Callable[..., Result]) -> Path:
    """A golden file written by --update from the BASE run."""
    path = tmp_path / "golden.json"
    res = invoke(make_run(tmp_path / "base", BASE), "--baseline", path, "--update")
    assert res.exit_code == 0, res.output
    return path


def assert_error(res: Result, *fragments: str) -> None:
    """Exit 2 with a single `Error:` line naming the problem, and no traceback."""
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


# ---------------------------------------------------------------------------------------------
# Tolerance syntax and precedence (pure)
# ---------------------------------------------------------------------------------------------


def test_default_tolerances_cover_every_metric() -> None:
    rules = default_rules()
    assert {r.metric for r in rules} == set(METRICS) == set(DEFAULT_TOLERANCES)
    assert all(r.scope == "all" and r.source == "default" for r in rules)


@pytest.mark.parametrize(("text", "expected"), [
    ("1pp", Tolerance(pp=1.0)), ("2.5pp", Tolerance(pp=2.5)), ("5%", Tolerance(rel=5.0)),
    ("2pp,5%", Tolerance(pp=2.0, rel=5.0)), (" 5% , 2pp ", Tolerance(pp=2.0, rel=5.0)), ("0pp", Tolerance(pp=0.0)),
])  # fmt: skip
def test_parse_tolerance(text: str, expected: Tolerance) -> None:
    assert parse_tolerance(text) == expected
    assert parse_tolerance(str(expected)) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("2", "needs a unit"), ("", "empty"), ("2pp,", "empty"), ("xpp", "not a number"), ("-1pp", ">= 0"),
    ("nan%", "finite"), ("1pp,2pp", "twice"),
])  # fmt: skip
def test_parse_tolerance_rejects(text: str, message: str) -> None:
    with pytest.raises(ToleranceError, match=message):
        parse_tolerance(text)


@pytest.mark.parametrize(("text", "message"), [
    ("mAP", "no '='"), ("map=1pp", "unknown metric 'map'"), ("model:x:mAP=1pp", "not one of"), ("attack::mAP=1pp", "not one of"),
])  # fmt: skip
def test_parse_rule_rejects(text: str, message: str) -> None:
    with pytest.raises(ToleranceError, match=message):
        parse_rule(text)


def test_pp_and_relative_pass_within_either() -> None:
    both = parse_tolerance("1pp,10%")
    assert both.allowed(41.3) == pytest.approx(4.13)  # 10% of 41.3 is looser than 1pp
    assert both.allowed(5.0) == pytest.approx(1.0)  # 1pp is looser than 10% of 5
    assert parse_tolerance("10%").allowed(5.0) == pytest.approx(0.5)


def test_judge_edges() -> None:
    tol = Tolerance(pp=1.0)
    assert judge(41.3, 40.3, tol) == ("ok", 1.0)  # exactly at the tolerance
    assert judge(41.3, 40.29, tol)[0] == "REGRESSION"
    assert judge(45.0, 44.3, Tolerance(pp=0.7))[0] == "ok"  # 44.3 - 45.0 is -0.7000000000000028 in floats
    assert judge(41.3, 42.3, tol)[0] == "ok"
    assert judge(41.3, 42.31, tol)[0] == "improved"
    assert judge(41.3, 41.3, Tolerance(pp=0.0))[0] == "ok"
    assert judge(41.3, math.nan, tol)[0] == "REGRESSION"  # a number that vanished
    assert judge(None, math.nan, tol)[0] == "ok"  # NaN then, NaN now
    assert judge(None, 3.0, tol)[0] == "improved"


def test_precedence_scope_then_source_then_metric() -> None:
    cid = "0123456789abcdef"
    golden = [parse_rule(t, "golden") for t in ("mAP=1pp", "*=4pp", "attack:mifgsm:mAP=3pp", f"cell:{cid}:mAP=5pp")]
    rules = [*default_rules(), *golden]

    def tol(cell: str, attack: str, metric: str, extra: tuple[str, ...] = ()) -> str:
        return str(resolve_tolerance([*rules, *(parse_rule(t) for t in extra)], cell, attack, metric))

    assert tol("other", "sma", "mAP") == "mAP=1pp"  # named metric beats * (same scope and source)
    assert tol("other", "sma", "rank1") == "*=4pp"  # the golden file beats the defaults
    assert tol("other", "mifgsm", "mAP") == "attack:mifgsm:mAP=3pp"  # attack beats all cells
    assert tol(cid, "mifgsm", "mAP") == f"cell:{cid}:mAP=5pp"  # cell beats attack
    assert tol("other", "sma", "mAP", ("mAP=0.5pp",)) == "mAP=0.5pp"  # --tol beats the golden file...
    assert tol("other", "mifgsm", "mAP", ("mAP=0.5pp",)) == "attack:mifgsm:mAP=3pp"  # ...but not a more specific scope
    assert tol("other", "mifgsm", "mAP", ("attack:mifgsm:*=9pp",)) == "attack:mifgsm:*=9pp"  # source before metric


# ---------------------------------------------------------------------------------------------
# The check, end to end through the CLI
# ---------------------------------------------------------------------------------------------


def test_same_numbers_pass(tmp_path: Path, golden: Path, invoke: Callable[..., Result]) -> None:
    res = invoke(make_run(tmp_path / "pr", BASE), "--baseline", golden)
    assert res.exit_code == 0, res.output
    assert "All 15 metrics are within tolerance." in res.output
    assert res.output.strip().endswith("OK: 3 cells, 15 metrics compared, 0 regressions, 0 improvements")


def test_planted_regression_fails_and_is_named(tmp_path: Path, golden: Path, invoke: Callable[..., Result]) -> None:
    run = make_run(tmp_path / "pr", changed(MIFGSM, mAP=30.0))
    res = invoke(run, "--baseline", golden, "--junit", tmp_path / "out" / "check.xml", "--markdown", tmp_path / "check.md")
    assert res.exit_code == 1, res.output
    row = next(line for line in res.output.splitlines() if "REGRESSION" in line)
    for text in (MIFGSM.cell_id, MIFGSM.label(), "mAP", "41.30", "30.00", "-11.30", "1.00pp", "mAP=1pp (default)"):
        assert text in row, (text, row)
    assert "FAIL: 3 cells, 15 metrics compared, 1 regression, 0 improvements" in res.output
    assert sum("REGRESSION" in line for line in res.output.splitlines()) == 1  # unchanged metrics are not listed

    suite = ET.parse(tmp_path / "out" / "check.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert len(cases) == 3
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == 1 and MIFGSM.cell_id in failed[0].get("name", "") and MIFGSM.label() in failed[0].get("name", "")
    message = failed[0].find("failure").get("message", "")  # type: ignore[union-attr]
    for text in ("mAP", "golden 41.30", "now 30.00", "delta -11.30pp", "tolerance 1.00pp"):
        assert text in message, (text, message)

    md = (tmp_path / "check.md").read_text()
    assert "reidbench check: FAIL" in md and MIFGSM.label() in md and "**REGRESSION**" in md


@pytest.mark.parametrize(("cell", "now", "tol", "code"), [
    (MIFGSM, 40.3, (), 0), (MIFGSM, 40.29, (), 1),  # default mAP=1pp, golden 41.3
    (SMA, 23.9, ("--tol", "mAP=1.1pp"), 0), (SMA, 23.89, ("--tol", "mAP=1.1pp"), 1),  # 23.9 - 25.0 < -1.1 in floats
])  # fmt: skip
def test_exactly_at_tolerance_passes_just_beyond_fails(tmp_path: Path, golden: Path, invoke: Callable[..., Result],
                                                       cell: CellConfig, now: float, tol: tuple[str, ...], code: int) -> None:  # fmt: skip
    res = invoke(make_run(tmp_path / "pr", changed(cell, mAP=now)), "--baseline", golden, *tol)
    assert res.exit_code == code, res.output


@pytest.mark.parametrize(("tol", "now", "code"), [
    ("mAP=10%", 37.17, 0),  # 10% of 41.3 = 4.13pp
    ("mAP=10%", 37.16, 1),
    ("mAP=1pp,10%", 37.17, 0),  # within either: the relative bound is the looser here
    ("mAP=5pp,1%", 36.3, 0),  # ...and the absolute one here
    ("mAP=5pp,1%", 36.29, 1),
])  # fmt: skip
def test_cli_relative_and_absolute(tmp_path: Path, golden: Path, invoke: Callable[..., Result], tol: str, now: float, code: int) -> None:
    res = invoke(make_run(tmp_path / "pr", changed(MIFGSM, mAP=now)), "--baseline", golden, "--tol", tol)
    assert res.exit_code == code, res.output


def test_metric_attack_cell_precedence_between_golden_and_cli(tmp_path: Path, golden: Path, invoke: Callable[..., Result]) -> None:
    run = make_run(tmp_path / "pr", changed(MIFGSM, mAP=38.8))  # a drop of 2.5pp
    assert invoke(run, "--baseline", golden).exit_code == 1  # default mAP=1pp
    assert invoke(run, "--baseline", golden, "--tol", "mAP=3pp").exit_code == 0  # CLI beats the default
    assert invoke(run, "--baseline", golden, "--tol", "attack:mifgsm:mAP=3pp").exit_code == 0

    edit(golden, lambda d: d["tolerances"].update({"attack:mifgsm:mAP": "3pp", f"cell:{MIFGSM.cell_id}:mAP": "2pp"}))
    res = invoke(run, "--baseline", golden, "--tol", "attack:mifgsm:mAP=5pp")
    assert res.exit_code == 1, res.output  # the golden file's cell rule beats the CLI's attack rule
    assert f"cell:{MIFGSM.cell_id}:mAP=2pp (golden)" in res.output
    res = invoke(run, "--baseline", golden, "--tol", f"cell:{MIFGSM.cell_id}:mAP=2.5pp")
    assert res.exit_code == 0, res.output  # the CLI beats the golden file at the same scope
    edit(golden, lambda d: d["tolerances"].pop(f"cell:{MIFGSM.cell_id}:mAP"))
    assert invoke(run, "--baseline", golden).exit_code == 0  # now the golden attack rule (3pp) applies


def test_improvements_shown_but_not_failing(tmp_path: Path, golden: Path, invoke: Callable[..., Result]) -> None:
    res = invoke(make_run(tmp_path / "pr", changed(SMA, rank1=35.0, mINP=5.5)), "--baseline", golden)
    assert res.exit_code == 0, res.output
    rows = [line for line in res.output.splitlines() if "improved" in line]
    assert len(rows) == 1 and SMA.label() in rows[0] and "rank1" in rows[0] and "+5.00" in rows[0]
    assert "refresh the golden file with --update" in res.output
    assert "OK: 3 cells, 15 metrics compared, 0 regressions, 1 improvement" in res.output


def test_all_shows_every_metric(tmp_path: Path, golden: Path, invoke: Callable[..., Result]) -> None:
    res = invoke(make_run(tmp_path / "pr", changed(SMA, mINP=4.5)), "--baseline", golden, "--all")
    assert res.exit_code == 0, res.output
    assert sum(line.rstrip().endswith("(default)") for line in res.output.splitlines()) == 15
    assert any(SMA.label() in line and "-0.50" in line and " ok " in line for line in res.output.splitlines())


def test_golden_lists_only_some_metrics(tmp_path: Path, golden: Path, invoke: Callable[..., Result]) -> None:
    def keep_map(d: dict[str, Any]) -> None:
        for cell in d["cells"].values():
            cell["metrics"] = {"mAP": cell["metrics"]["mAP"]}

    edit(golden, keep_map)
    res = invoke(make_run(tmp_path / "pr", changed(MIFGSM, rank1=0.0)), "--baseline", golden)
    assert res.exit_code == 0, res.output  # rank1 is not in the golden file, so it is not compared
    assert "3 cells, 3 metrics compared" in res.output


def test_nan_metrics(tmp_path: Path, invoke: Callable[..., Result]) -> None:
    base = changed(SMA, mINP=math.nan)
    golden = tmp_path / "golden.json"
    assert invoke(make_run(tmp_path / "a", base), "-b", golden, "--update").exit_code == 0
    assert json.loads(golden.read_text())["cells"][SMA.cell_id]["metrics"]["mINP"] is None  # valid JSON: null, not NaN
    assert invoke(make_run(tmp_path / "b", base), "-b", golden).exit_code == 0
    res = invoke(make_run(tmp_path / "c", changed(MIFGSM, mINP=math.nan)), "-b", golden)
    assert res.exit_code == 1 and "nan" in res.output


# ---------------------------------------------------------------------------------------------
# Grid mismatches and data problems: exit 2, one line each
# ---------------------------------------------------------------------------------------------


def test_golden_cell_missing_from_run(tmp_path: Path, golden: Path, invoke: Callable[..., Result]) -> None:
    cells = {c: m for c, m in BASE.items() if c != SMA}
    res = invoke(make_run(tmp_path / "pr", cells), "--baseline", golden, "--junit", tmp_path / "check.xml")
    assert_error(res, f"cell {SMA.cell_id} ({SMA.label()}) is in the golden file but not in the run",
                 "re-run with the golden file's grid or refresh the golden file with --update")  # fmt: skip
    err = ET.parse(tmp_path / "check.xml").getroot().find("testsuite/testcase/error")  # CI still shows why
    assert err is not None and SMA.cell_id in err.get("message", "")


def test_extra_run_cells_reported_and_strict(tmp_path: Path, golden: Path, invoke: Callable[..., Result]) -> None:
    run = make_run(tmp_path / "pr", {**BASE, EXTRA: BASE[MIFGSM]})
    res = invoke(run, "--baseline", golden, "--junit", tmp_path / "check.xml")
    assert res.exit_code == 0, res.output
    assert f"Not checked: 1 run cell not in the golden file: {EXTRA.cell_id} ({EXTRA.label()})" in res.output
    assert "; 1 run cell not in the golden file" in res.output.splitlines()[-1]
    skipped = ET.parse(tmp_path / "check.xml").getroot().findall("testsuite/testcase/skipped")
    assert len(skipped) == 1
    assert_error(invoke(run, "--baseline", golden, "--strict"), f"cell {EXTRA.cell_id} ({EXTRA.label()}) is in the run but not in the golden file")


def test_fingerprint_mismatch(tmp_path: Path, golden: Path, invoke: Callable[..., Result]) -> None:
    res = invoke(make_run(tmp_path / "pr", BASE, fingerprint="ffffeeeeddddcccc"), "--baseline", golden)
    assert_error(res, f"fingerprint {FP}", "fingerprint ffffeeeeddddcccc", "not comparable")


def test_not_a_run_dir(tmp_path: Path, golden: Path, invoke: Callable[..., Result]) -> None:
    (tmp_path / "empty").mkdir()
    assert_error(invoke(tmp_path / "empty", "--baseline", golden), "has no manifest.json")
    assert_error(invoke(tmp_path / "nowhere", "--baseline", golden), "has no manifest.json")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "manifest.json").write_text("{}")
    assert_error(invoke(tmp_path / "half", "--baseline", golden), "no cells/ folder")


def test_manifest_without_fingerprint(tmp_path: Path, golden: Path, invoke: Callable[..., Result]) -> None:
    res = invoke(make_run(tmp_path / "pr", BASE, dataset={"name": "synthetic-mini"}), "--baseline", golden)
    assert_error(res, "no dataset fingerprint", "dataset.fingerprint")


def test_missing_golden_file(tmp_path: Path, invoke: Callable[..., Result]) -> None:
    res = invoke(make_run(tmp_path / "pr", BASE), "--baseline", tmp_path / "nope.json")
    assert_error(res, "nope.json does not exist", "--update")


@pytest.mark.parametrize(("mutate", "fragments"), [
    (lambda p: p.write_text('{"format": "reidbench-golden/1",'), ["is not valid JSON"]),
    (lambda p: p.write_text("[1, 2]"), ["top level should be an object, not a list"]),
    (lambda p: edit(p, lambda d: d.pop("format")), ["missing key 'format'"]),
    (lambda p: edit(p, lambda d: d.pop("cells")), ["missing key 'cells'"]),
    (lambda p: edit(p, lambda d: d["dataset"].pop("fingerprint")), ["missing key 'dataset.fingerprint'"]),
    (lambda p: edit(p, lambda d: d["cells"][SMA.cell_id].pop("metrics")), [f"missing key 'cells.{SMA.cell_id}.metrics'"]),
    (lambda p: edit(p, lambda d: d["cells"][SMA.cell_id].pop("label")), [f"missing key 'cells.{SMA.cell_id}.label'"]),
    (lambda p: edit(p, lambda d: d.update(cells=[])), ["'cells' should be an object, not a list"]),
    (lambda p: edit(p, lambda d: d.update(cells={})), ["'cells' is empty"]),
    (lambda p: edit(p, lambda d: d["cells"][SMA.cell_id]["metrics"].update(mAP="25.0")),
     [f"'cells.{SMA.cell_id}.metrics.mAP' should be a number or null, not a string"]),
    (lambda p: edit(p, lambda d: d["cells"][SMA.cell_id]["metrics"].update(mAP=True)), ["should be a number or null, not a boolean"]),
    (lambda p: edit(p, lambda d: d["cells"][SMA.cell_id]["metrics"].update(map=25.0)), ["unknown metric 'map'"]),
    (lambda p: edit(p, lambda d: d["cells"][SMA.cell_id].update(config=None)), [f"'cells.{SMA.cell_id}.config' should be an object, not null"]),
    (lambda p: edit(p, lambda d: d.update(tolerances={"mAP": 1.0})), ["'tolerances.mAP' should be a string"]),
    (lambda p: edit(p, lambda d: d.update(tolerances={"mAP": "1"})), ["'tolerances.mAP' is not valid", "needs a unit"]),
    (lambda p: edit(p, lambda d: d.update(tolerances={"attack:mifsgm:mAP": "1pp"})), ["'tolerances.attack:mifsgm:mAP' matches nothing", "no cell uses attack 'mifsgm'"]),
    (lambda p: edit(p, lambda d: d.update(format="reidbench-golden/2")), ["has format 'reidbench-golden/2'", f"reads '{GOLDEN_FORMAT}'"]),
    (lambda p: edit(p, lambda d: d.update(format="pytest-baseline/1")), ["is it a reidbench golden file"]),
])  # fmt: skip
def test_malformed_golden_file(tmp_path: Path, golden: Path, invoke: Callable[..., Result],
                               mutate: Callable[[Path], None], fragments: list[str]) -> None:  # fmt: skip
    mutate(golden)
    res = invoke(make_run(tmp_path / "pr", BASE), "--baseline", golden)
    assert_error(res, str(golden), *fragments)


# A golden file that would hide a collapse of the broken number: before these were refused, all but
# the Infinity one passed ("OK ... 1 improvement", or the metric was silently not compared).
@pytest.mark.parametrize(("cell", "metric", "mutate", "fragments"), [
    (SMA, "mAP", lambda m: m.update(mAP=math.nan), [f"'cells.{SMA.cell_id}.metrics.mAP' is NaN", "finite"]),
    (SMA, "rank1", lambda m: m.update(rank1=-math.inf), [f"'cells.{SMA.cell_id}.metrics.rank1' is -Infinity"]),
    (MIFGSM, "mINP", lambda m: m.update(mINP=math.inf), [f"'cells.{MIFGSM.cell_id}.metrics.mINP' is Infinity"]),
    (SMA, "mAP", lambda m: m.clear(), [f"'cells.{SMA.cell_id}.metrics' is empty", "guard nothing"]),
    (SMA, "mINP", lambda m: m.pop("mINP"), [f"'cells.{SMA.cell_id}.metrics' lacks mINP, which cell", "same metrics"]),
])  # fmt: skip
def test_golden_file_that_would_guard_nothing(tmp_path: Path, golden: Path, cell: CellConfig, metric: str,
                                              mutate: Callable[[dict[str, Any]], Any], fragments: list[str]) -> None:  # fmt: skip
    edit(golden, lambda d: mutate(d["cells"][cell.cell_id]["metrics"]))
    run = make_run(tmp_path / "pr", changed(cell, **{metric: 0.0}))  # the collapse the broken number must not hide
    res = CliRunner().invoke(main, ["check", str(run), "--baseline", str(golden), "--junit", str(tmp_path / "check.xml")])
    assert_error(res, f"golden file {golden} is malformed", *fragments, f"`reidbench check RUN --baseline {golden} --update`")
    err = ET.parse(tmp_path / "check.xml").getroot().find("testsuite/testcase/error")
    assert err is not None and "is malformed" in err.get("message", "")


def test_out_of_range_number_literals_are_not_finite(tmp_path: Path, golden: Path) -> None:
    text = golden.read_text()
    for literal in ("1e999", "1" + "0" * 400):  # json reads the first as inf; the second overflows a float
        golden.write_text(text.replace('"mAP": 25.0', f'"mAP": {literal}', 1))
        res = CliRunner().invoke(main, ["check", str(make_run(tmp_path / "pr", BASE)), "--baseline", str(golden)])
        assert_error(res, f"'cells.{SMA.cell_id}.metrics.mAP' is Infinity")


def test_update_refuses_to_overwrite_a_non_finite_golden_file(tmp_path: Path, golden: Path) -> None:
    edit(golden, lambda d: d["cells"][SMA.cell_id]["metrics"].update(mAP=math.nan))
    before = golden.read_text()
    res = CliRunner().invoke(main, ["check", str(make_run(tmp_path / "pr", BASE)), "--baseline", str(golden), "--update"])
    assert_error(res, f"'cells.{SMA.cell_id}.metrics.mAP' is NaN", "delete it and re-create it")
    assert golden.read_text() == before  # its tolerances are the user's to rescue


def test_update_never_writes_a_non_finite_number(tmp_path: Path) -> None:
    golden = tmp_path / "golden.json"
    res = CliRunner().invoke(main, ["check", str(make_run(tmp_path / "a", changed(SMA, mINP=math.nan))), "-b", str(golden), "--update"])
    assert res.exit_code == 0, res.output

    def no_constants(token: str) -> Any:
        raise AssertionError(f"golden file contains {token}")

    doc = json.loads(golden.read_text(), parse_constant=no_constants)  # strict JSON: NaN is written as null
    assert doc["cells"][SMA.cell_id]["metrics"]["mINP"] is None
    res = CliRunner().invoke(main, ["check", str(make_run(tmp_path / "b", changed(MIFGSM, mAP=math.inf))), "-b", str(golden), "--update"])
    assert_error(res, f"cell {MIFGSM.cell_id} ({MIFGSM.label()})", "mAP = inf")
    assert json.loads(golden.read_text(), parse_constant=no_constants) == doc  # the earlier file is left as it was


@pytest.mark.parametrize(("tol", "fragment"), [
    ("mAP=2", "needs a unit"), ("mAP", "no '='"), ("top1=1pp", "unknown metric 'top1'"),
    ("attack:mifsgm:mAP=1pp", "no cell uses attack 'mifsgm' (attacks: mifgsm, none, sma)"),
    ("cell:0000000000000000:mAP=1pp", "there is no cell 0000000000000000"),
])  # fmt: skip
def test_bad_cli_tolerance(tmp_path: Path, golden: Path, invoke: Callable[..., Result], tol: str, fragment: str) -> None:
    assert_error(invoke(make_run(tmp_path / "pr", BASE), "--baseline", golden, "--tol", tol), fragment)


# ---------------------------------------------------------------------------------------------
# --update
# ---------------------------------------------------------------------------------------------


def test_update_records_provenance(golden: Path) -> None:
    text = golden.read_text()
    doc = json.loads(text)
    assert text == json.dumps(doc, indent=2, sort_keys=True) + "\n"  # diff-friendly
    assert doc["format"] == GOLDEN_FORMAT and doc["reidbench_version"] == __version__
    assert doc["created"].endswith("Z") and doc["tolerances"] == {}
    assert doc["dataset"] == {"name": "synthetic-mini", "fingerprint": FP, "root": "/data/synthetic-mini"}
    run = doc["provenance"]["run"]
    assert run["versions"]["torch"] == "2.4.0" and run["seed"] == 0 and run["device"] == "cpu"
    assert run["command"].startswith("reidbench run")
    assert doc["provenance"]["models"] == {"baseline": {"checkpoint": "baseline.safetensors", "sha256": "ab" * 32}}
    cell = doc["cells"][MIFGSM.cell_id]
    assert cell["label"] == MIFGSM.label() == "baseline / mifgsm eps=5"
    assert cell["config"] == dataclasses.asdict(MIFGSM) and cell["metrics"] == BASE[MIFGSM]
    assert set(doc["cells"]) == {c.cell_id for c in BASE}


def test_update_refresh_keeps_tolerances(tmp_path: Path, golden: Path, invoke: Callable[..., Result]) -> None:
    edit(golden, lambda d: d["tolerances"].update({"attack:mifgsm:mAP": "2pp,5%", "attack:sma:*": "3pp"}))
    cells = {c: m for c, m in changed(MIFGSM, mAP=50.0).items() if c != SMA}  # mifgsm improved, sma left the grid
    res = invoke(make_run(tmp_path / "new", cells), "--baseline", golden, "--update", "--tol", "rank1=1pp")
    assert res.exit_code == 0, res.output
    assert "kept tolerances: attack:mifgsm:mAP=2pp,5%" in res.output
    assert "dropped tolerance attack:sma:*=3pp (no cell uses attack 'sma'" in res.output
    assert "set tolerance rank1=1pp" in res.output
    assert any("improved" in line and MIFGSM.label() in line for line in res.output.splitlines())
    assert f"wrote {golden}: 2 cells (0 new, 1 removed)" in res.output

    doc = json.loads(golden.read_text())
    assert doc["tolerances"] == {"attack:mifgsm:mAP": "2pp,5%", "rank1": "1pp"}
    assert doc["cells"][MIFGSM.cell_id]["metrics"]["mAP"] == 50.0 and SMA.cell_id not in doc["cells"]
    res = invoke(make_run(tmp_path / "pr", changed(MIFGSM, mAP=47.6)), "--baseline", golden)
    assert res.exit_code == 0, res.output  # 5% of 50 = 2.5pp > 2pp: the kept rule applies


def test_update_then_check_passes_and_notes_provenance_changes(tmp_path: Path, golden: Path, invoke: Callable[..., Result]) -> None:
    run = make_run(tmp_path / "pr", BASE, versions={"torch": "2.5.0"}, device="cuda")
    res = invoke(run, "--baseline", golden)
    assert res.exit_code == 0, res.output
    assert "differs: torch: golden 2.4.0, run 2.5.0" in res.output and "differs: device: golden cpu, run cuda" in res.output


def test_update_rejects_check_only_options(tmp_path: Path, invoke: Callable[..., Result]) -> None:
    res = invoke(make_run(tmp_path / "pr", BASE), "-b", tmp_path / "g.json", "--update", "--junit", tmp_path / "x.xml")
    assert res.exit_code == 2 and "--update" in res.output
    assert not (tmp_path / "g.json").exists()


def test_update_refuses_malformed_existing_golden(tmp_path: Path, golden: Path, invoke: Callable[..., Result]) -> None:
    golden.write_text("{not json")
    assert_error(invoke(make_run(tmp_path / "pr", BASE), "-b", golden, "--update"), "is not valid JSON")
    assert golden.read_text() == "{not json"  # left alone: its tolerances would be lost
