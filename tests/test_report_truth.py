"""The report says what the run measured: re-ranked numbers where re-ranking was on, threat models
that match the attacks run, every cell in its figures, and an explanation of 'both'.

Three tiny grids are run through the harness (synthetic-tiny, the tiny trained baseline of
conftest); the rest are hand-made records, as in test_reports.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest

from reidbench.eval.harness import AttackRequest, GridSpec, run_grid
from reidbench.eval.results import (
    CellArtifact,
    CellResult,
    artifact_path,
    read_records,
    write_record,
)
from reidbench.reports import cells as C
from reidbench.reports import pictures, write_report
from reidbench.reports import plots as P
from reidbench.reports import tables as T
from reidbench.reports.document import build_report
from reidbench.reports.run import load_run
from tests.test_reports import _cell, _parse_md, make_artifact, make_manifest


def _pdf_text(pdf: Path) -> str:
    from pypdf import PdfReader

    return " ".join(" ".join(p.extract_text().split()) for p in PdfReader(str(pdf)).pages)


def _grid(ckpt: Path, root: Path, out: Path, attacks: list[AttackRequest], **kw: object) -> list[CellResult]:
    spec = GridSpec(models=["baseline"], attacks=attacks, dataset="synthetic-tiny", data_root=root,
                    checkpoints={"baseline": str(ckpt)}, batch_size=16, samples=2, **kw)  # type: ignore[arg-type]  # fmt: skip
    return run_grid(spec, out, progress=False)


# -------------------------------------------------------------------------------------------------
# 1. --rerank: the re-ranked numbers are in the tables and the PDF, beside the plain ones
# -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rerank_run(tiny_ckpt: Path, tiny_dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("rr") / "run"
    _grid(tiny_ckpt, tiny_dataset.root.parent, out, [AttackRequest("none"), AttackRequest("sma", {"steps": 2})], rerank=True)
    return out


def test_rerank_run_reports_reranked_numbers_beside_plain(rerank_run: Path, tmp_path: Path) -> None:
    records = read_records(rerank_run)
    assert records and all(r.config.rerank for r in records)
    clean = next(r for r in records if r.config.attack == "none")
    sma = next(r for r in records if r.config.attack == "sma")
    # the test means something only if re-ranking changed the numbers
    assert any(f"{r.extra['rr_mAP']:.1f}" != f"{r.mAP:.1f}" for r in records)

    (t,) = T.pivot_tables(records)
    header, body = _parse_md(t.to_markdown())
    cells = {(row[0], h): v for row in body for h, v in zip(header, row, strict=True)}
    for r, col in ((clean, "clean"), (sma, "sma")):
        assert cells[("baseline", col)] == f"{r.rank1:.1f}/{r.mAP:.1f}", "the plain row holds the plain metrics"
        assert cells[("baseline + RK", col)] == f"{r.extra['rr_rank1']:.1f}/{r.extra['rr_mAP']:.1f}", "the RK row holds the re-ranked ones"
        assert t.cell("baseline + RK", col) == pytest.approx((r.extra["rr_rank1"], r.extra["rr_mAP"]))
    assert [row[0] for row in body] == ["baseline", "baseline + RK"]
    assert any("'+ RK' hold the re-ranked metrics" in n for n in t.notes)
    # the drop table compares re-ranked with re-ranked
    (d,) = T.drop_tables(records)
    assert d.cell("baseline + RK", "sma")[0] == pytest.approx(sma.extra["rr_mAP"] - clean.extra["rr_mAP"], abs=1e-5)  # type: ignore[index]

    pdf = write_report(rerank_run, tmp_path / "r.pdf", dpi=50)
    text = _pdf_text(pdf)
    for r in (clean, sma):
        assert f"{r.extra['rr_rank1']:.1f}/{r.extra['rr_mAP']:.1f}" in text
        assert f"{r.rank1:.1f}/{r.mAP:.1f}" in text
    assert "baseline + RK" in text and "re-ranked metrics" in text
    md = write_report(rerank_run, tmp_path / "r.md", dpi=40).read_text()
    assert f"| baseline + RK | {clean.extra['rr_rank1']:.1f}/{clean.extra['rr_mAP']:.1f} |" in md
    assert f"| baseline | {clean.rank1:.1f}/{clean.mAP:.1f} |" in md
    assert "re-ranking" in md and f"{sma.extra['rr_rank1']:.1f}/{sma.extra['rr_mAP']:.1f}" in md


def test_rerank_row_never_shows_plain_numbers_when_nothing_was_reranked() -> None:
    """A cell run with re-ranking whose record lacks the re-ranked metrics is shown plain, and said so."""
    r = _cell("baseline", rerank=True, rank1=60.0, mAP=50.0)
    (t,) = T.pivot_tables([r])
    assert [row[0] for row in t.rows] == ["baseline"]
    assert any("carry no re-ranked metrics" in n for n in t.notes)


# -------------------------------------------------------------------------------------------------
# 2. Threat models from the structured threats
# -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_run(tiny_ckpt: Path, tiny_dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("clean") / "run"
    _grid(tiny_ckpt, tiny_dataset.root.parent, out, [AttackRequest("none")])
    return out


@pytest.fixture(scope="module")
def occlusion_run(tiny_ckpt: Path, tiny_dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("occl") / "run"
    _grid(tiny_ckpt, tiny_dataset.root.parent, out, [AttackRequest("none"), AttackRequest("erasing", {"area": 0.3})])
    return out


def _report_texts(run: Path, tmp_path: Path) -> tuple[str, str, str]:
    pdf = _pdf_text(write_report(run, tmp_path / "r.pdf", dpi=40))
    md = write_report(run, tmp_path / "r.md", dpi=30).read_text()
    html = write_report(run, tmp_path / "r.html", dpi=30).read_text()
    return pdf, md, html


def test_clean_only_run_claims_no_attacker_and_no_budget(clean_run: Path, tmp_path: Path) -> None:
    manifest = json.loads((clean_run / "manifest.json").read_text())
    lines = " ".join(manifest["threat_models"])
    assert "nobody" in lines
    for claim in ("L-inf", "white-box", "eps"):
        assert claim not in lines, claim
    for text in _report_texts(clean_run, tmp_path):
        assert "L-inf" not in text and "white-box" not in text
        assert "no attacker" in text


def test_occlusion_only_run_states_the_area_budget(occlusion_run: Path, tmp_path: Path) -> None:
    manifest = json.loads((occlusion_run / "manifest.json").read_text())
    lines = " ".join(manifest["threat_models"])
    assert "area, the occluded or perturbed fraction of the image (erasing)" in lines
    assert "no knowledge of the model (erasing)" in lines
    assert "L-inf" not in lines and "white-box" not in lines
    erasing = manifest["attacks"]["erasing"]
    assert erasing["threat_model"]["budget"] == "AREA" and erasing["threat_model"]["access"] == "NONE"
    assert "`" not in json.dumps(manifest["attacks"]) + lines, "no code marks in the manifest's prose"
    pdf, md, html = _report_texts(occlusion_run, tmp_path)
    for text in (pdf, md, html):
        assert "L-inf" not in text and "white-box" not in text
        assert "area 0.3 (fraction of the image)" in text
        assert "`" not in re.sub(r"```.*?```", "", text, flags=re.S), "no code marks (the markdown's command block aside)"
    run = load_run(occlusion_run)
    (threats,) = build_report(run).threat_tables
    row = dict(zip([c.name for c in threats.columns], threats.rows[0], strict=True))
    assert row["attack"] == "erasing" and row["attacker knows"] == "no knowledge of the model"
    assert "`" not in str(row["threat model"]) and "set by area" in str(row["threat model"])


def _threat_rows(records: list[CellResult], manifest: dict | None = None) -> dict[str, dict[str, str]]:
    from reidbench.reports.run import RunData

    (t,) = build_report(RunData(Path("x"), records, manifest or {})).threat_tables
    names = [c.name for c in t.columns]
    return {str(r[0]): dict(zip(names, map(str, r), strict=True)) for r in t.rows}


def test_noise_row_is_not_white_box_and_aos_window_names_no_model() -> None:
    recs = []
    for m in ("baseline", "jad", "etndnet"):
        recs.append(_cell(m, rank1=80.0, mAP=70.0))
        recs.append(_cell(m, "noise", family="noise", eps=5.0, rank1=78.0, mAP=68.0,
                          threat="query images attacked; no knowledge of the model (no gradients, no labels, no other images); "
                                 "L-inf budget eps; budget eps=5 (eps/step in /255)"))  # fmt: skip
        recs.append(_cell(m, "aos-window", family="occlusion", area=0.1, rank1=60.0, mAP=50.0,
                          threat=f"query images attacked; queries {m}; score-based queries of the embedding; occluded fraction `area`"))  # fmt: skip
        recs.append(_cell(m, "sma", eps=5.0, rank1=10.0, mAP=8.0))
    rows = _threat_rows(recs)
    assert "white-box" not in rows["noise"]["attacker knows"] and rows["noise"]["attacker knows"] == "no knowledge of the model"
    assert "eps 5 /255 (L-inf)" in rows["noise"]["budget"]
    assert rows["sma"]["attacker knows"] == "white-box on the target model"
    aos = rows["aos-window"]
    for m in ("baseline", "jad", "etndnet"):
        assert m not in " ".join(aos.values()), m
    assert aos["attacker knows"] == "score queries of the target model (no gradients)"
    assert "area 0.1" in aos["budget"] and "L-inf" not in aos["budget"]
    assert not any("`" in v for r in rows.values() for v in r.values())


def test_threat_falls_back_to_recorded_text_without_model_names() -> None:
    """An attack neither the manifest nor the registry knows: the recorded clauses, model names generalised."""
    recs = [_cell(m, "plugin-attack", family="occlusion", area=0.2, rank1=50.0, mAP=40.0,
                  threat=f"query images attacked; queries {m}; pastes a sticker over `area`; budget area=0.2 (eps/step in /255)")
            for m in ("baseline", "jad")]  # fmt: skip
    row = _threat_rows(recs)["plugin-attack"]
    assert row["threat model"] == "queries the target model; pastes a sticker over 'area'"
    assert row["attacker knows"] == "no knowledge of the model" and "L-inf" not in row["budget"]


# -------------------------------------------------------------------------------------------------
# 3. Figures show every cell they are about
# -------------------------------------------------------------------------------------------------

MODELS = ("baseline", "etndnet", "jad", "aos", "igoas")
ATTACKS = ("mifgsm", "sma", "lta", "fna", "noise")


def _picture_run(root: Path) -> tuple[Path, list[CellResult]]:
    """Five models, each with a clean cell, five L-inf attacks (mifgsm swept over eps), two
    occlusions with AOS heatmaps, and a defended jad with oblivious and adaptive rows."""
    rng = np.random.default_rng(1)
    recs: list[CellResult] = []
    arts: dict[str, CellArtifact] = {}
    for m in MODELS:
        recs.append(_cell(m, rank1=80.0, mAP=70.0))
        for a in ATTACKS:
            for e in (2.0, 5.0, 8.0) if a == "mifgsm" else (5.0,):
                r = _cell(m, a, family="noise" if a == "noise" else "metric", eps=e, steps=10, rank1=30.0 - e, mAP=20.0 - e)
                recs.append(r)
                arts[r.cell_id] = make_artifact(rng, "metric", eps=e, n=2)
        for a in ("aos-window", "erasing"):
            r = _cell(m, a, family="occlusion", area=0.2, rank1=50.0, mAP=40.0)
            recs.append(r)
            arts[r.cell_id] = make_artifact(rng, "occlusion", heat=True, n=2)
    recs.append(_cell("jad", defense="cs", rank1=79.0, mAP=69.0))
    for mode in ("oblivious", "adaptive"):
        for a in ("mifgsm", "sma"):
            r = _cell("jad", a, defense="cs", mode=mode, eps=5.0, steps=10, rank1=40.0, mAP=30.0)
            recs.append(r)
            arts[r.cell_id] = make_artifact(rng, "metric", n=2)
    for r in recs:
        write_record(root, r)
    for cid, a in arts.items():
        a.save(artifact_path(root, cid))
    (root / "manifest.json").write_text(json.dumps(make_manifest(("baseline", "etndnet", "jad", "aos"))))
    return root, recs


@pytest.fixture(scope="module")
def picture_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[CellResult]]:
    return _picture_run(tmp_path_factory.mktemp("pics"))


def _texts(fig: object) -> str:
    """Every text drawn in a figure (titles, labels, annotations, subfigure titles)."""
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    assert isinstance(fig, Figure)
    return "\n".join(t.get_text() for t in fig.findobj(Text))


def test_ranked_lists_show_every_headline_cell_and_name_what_they_leave_out(picture_run: tuple[Path, list[CellResult]]) -> None:
    root, recs = picture_run
    run = load_run(root)
    pages = P.ranked_list_pages(run.records, run.artifacts, run.manifest)
    heads = P.headline_ids(run.records, run.manifest)
    with_art = [r for r in run.records if r.cell_id in run.artifacts]
    shown = [r.cell_id for _, cells, _ in pages for r in cells]
    assert len(shown) == len(set(shown)), "no cell twice"
    assert set(shown) == {r.cell_id for r in with_art if r.cell_id in heads}, "every headline cell with a ranked list"
    # the headline SMA and the adaptive rows, which a cap of five rows used to drop
    assert any(r.config.attack == "sma" and r.config.model == "igoas" for r in with_art if r.cell_id in shown)
    assert {r.config.mode for r in with_art if r.cell_id in shown and r.config.defense == "cs"} == {"oblivious", "adaptive"}
    for row, cells, _ in pages:
        assert len(cells) <= P.RANKED_ROWS - 1
        fig = P.plot_ranked_lists(run.records, run.artifacts, run.manifest, row=row, cells=cells)
        text = _texts(fig)
        for r in cells:
            assert pictures._attack_text(r) in text
    # the caption of every ranked-list page names the sweep points it leaves out
    report = build_report(run)
    ranked = [f for f in report.figures if f.key.startswith("ranked-baseline")]
    assert ranked and all("Left out here: mifgsm eps=2, mifgsm eps=8" in f.caption for f in ranked)
    assert len([f for f in report.figures if f.key.startswith("ranked")]) == len(pages)


def test_occlusion_maps_and_perturbations_cover_every_cell(picture_run: tuple[Path, list[CellResult]]) -> None:
    root, _ = picture_run
    run = load_run(root)
    every = P.occlusion_heatmap_cells(run.records, run.artifacts, run.manifest)
    assert len(every) == 2 * len(MODELS)
    pages = P.occlusion_heatmap_pages(run.records, run.artifacts, run.manifest)
    assert sorted(r.cell_id for p in pages for r in p) == sorted(r.cell_id for r in every) and len(pages) > 1
    for p in pages:
        text = _texts(P.plot_occlusion_heatmaps(run.records, run.artifacts, run.manifest, cells=p))
        for r in p:
            assert C.cell_label(r) in text

    cells = P.perturbation_cells(run.records, run.artifacts, run.manifest)
    assert len(cells) == len(MODELS) * (len(ATTACKS) + 2) + 4  # every eps of the mifgsm sweep, both jad + cs modes
    ppages = P.perturbation_pages(run.records, run.artifacts, run.manifest)
    assert sorted(r.cell_id for p in ppages for r in p) == sorted(r.cell_id for r in cells)
    for p in ppages:
        fig = P.plot_perturbations(run.records, run.artifacts, run.manifest, cells=p)
        text = _texts(fig)
        for r in p:
            assert C.row_of(r).label() in text
            assert f"eps {r.config.eps:g}/255\nmax " in text
    report = build_report(run)
    assert len([f for f in report.figures if f.key.startswith("aos")]) == len(pages)
    assert len([f for f in report.figures if f.key.startswith("perturbation")]) == len(ppages)


def test_feature_map_bar_labels_do_not_collide() -> None:
    recs = []  # Rank-1 and mAP close together, as on the default run: side-by-side labels at one height
    for m in ("baseline", "etndnet", "jad", "aos", "igoas", "advtrain"):
        recs.append(_cell(m, rank1=55.7, mAP=50.2))
        for a, v in (("erasing", 37.1), ("npo", 25.7), ("aos-window", 17.4)):
            recs.append(_cell(m, a, family="occlusion", area=0.2, rank1=v, mAP=v - 1.5))
        for a, v in (("fmap-erase", 31.7), ("fmap-transform", 35.3), ("fmap-noise", 22.8)):
            recs.append(_cell(m, a, family="feature-map", rank1=v, mAP=v - 2.1))
    fig = P.plot_feature_map_bars(recs)
    assert fig is not None
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    n = 0
    for ax in fig.axes:
        boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_text()]
        n += len(boxes)
        for a, b in itertools.combinations(boxes, 2):
            assert not a.overlaps(b), "two bar labels overlap"
    assert n == 6 * 7 * 2, "every model's every bar carries its value"


def test_robustness_curves_do_not_reuse_colours() -> None:
    recs = []
    for i in range(12):
        m = f"model{i:02d}"
        recs.append(_cell(m, rank1=80.0, mAP=70.0))
        for e in (2.0, 5.0, 8.0):
            recs.append(_cell(m, "mifgsm", eps=e, steps=10, rank1=50.0 - e - i, mAP=40.0 - e - i))
    fig = P.plot_eps_curves(recs)
    assert fig is not None
    lines = [ln for ax in fig.axes for ln in ax.get_lines()]
    assert len(lines) == 12
    assert len({ln.get_color() for ln in lines}) == 12
    assert len({(ln.get_marker(), str(ln.get_linestyle())) for ln in lines}) == 12


def test_defended_clean_cell_is_labelled_clean() -> None:
    r = _cell("jad", defense="cs", rank1=79.0, mAP=69.0, warnings=("[draws] something about this cell",))
    assert C.cell_label(r) == "jad + cs (clean)"
    from reidbench.reports.run import RunData

    report = build_report(RunData(Path("x"), [r, _cell("jad", rank1=80.0, mAP=70.0)], {}))
    assert report.warnings == [("jad + cs (clean)", "[draws] something about this cell")]
    assert not re.search(r"\b(cs ?/ ?none|cs \(none\))", " ".join(c for c, _ in report.warnings))


# -------------------------------------------------------------------------------------------------
# 4. 'both': the sanity check reaches the report, which says what 'both' measured
# -------------------------------------------------------------------------------------------------


def test_both_sides_warning_and_explanation_in_report(tmp_path: Path) -> None:
    from reidbench.eval.sanity import attach_warnings

    recs = [_cell("baseline", rank1=80.0, mAP=70.0),
            _cell("baseline", "sma", eps=5.0, steps=10, rank1=10.0, mAP=8.0),
            _cell("baseline", "sma", eps=5.0, steps=10, target="both", rank1=60.0, mAP=45.0)]  # fmt: skip
    recs = attach_warnings(recs)
    assert [len(r.warnings) for r in recs] == [0, 0, 1] and recs[2].warnings[0].startswith("[both>one-side]")
    for r in recs:
        write_record(tmp_path, r)
    text = _pdf_text(write_report(tmp_path, tmp_path / "r.pdf", dpi=40))
    assert "both>one-side" in text
    assert "both (query and gallery)" in text
    assert "Matching perturbed queries against perturbed gallery images can restore their similarity" in text
    (t,) = T.pivot_tables(recs)
    assert "sma [both]" in [c.name for c in t.columns] and any("'both'" in n for n in t.notes)
