"""Reports: tables equal the records, exports are well-formed, the PDF holds the numbers, the CLI.

The run directory is built by hand (records, manifest, artifacts): reports are pure functions of
those files, so no model is trained or attacked here.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from reidbench.eval.results import CellArtifact, CellConfig, CellResult, artifact_path, write_record
from reidbench.reports import tables as T
from reidbench.reports.document import build_report
from reidbench.reports.run import load_run

DATASET = "synthetic-mini"
FINGERPRINT = "fp-3f9a0c1d2e4b5a69"
SHA_BASELINE = "a" * 32 + "0123456789abcdef" * 2


# -------------------------------------------------------------------------------------------------
# A fake run directory
# -------------------------------------------------------------------------------------------------


def _cell(model: str, attack: str = "none", *, family: str | None = None, defense: str = "none", mode: str = "none",
          target: str | None = None, eps: float | None = None, area: float | None = None, steps: int | None = None,
          surrogate: str = "", rerank: bool = False, mAP: float, rank1: float, warnings: tuple[str, ...] = (),
          draws: int = 1, mAP_worst: float | None = None, threat: str = "", ap_variant: str = "market",
          rr: tuple[float, float] | None = None) -> CellResult:  # fmt: skip
    """A hand-made record. ``rr``: the re-ranked (Rank-1, mAP) a ``--rerank`` cell records in ``extra``."""
    params = {k: v for k, v in (("eps", eps), ("area", area), ("steps", steps)) if v is not None}
    cfg = CellConfig(model=model, dataset=DATASET, attack=attack, defense=defense, mode=mode,
                     target=target or ("none" if attack == "none" else "query"), surrogate=surrogate,
                     params=json.dumps(params, sort_keys=True), eps=eps, step=1.0 if eps is not None else None,
                     steps=steps, area=area, rerank=rerank, ap_variant=ap_variant)  # fmt: skip
    fam = family or ("clean" if attack == "none" else "metric")
    if not threat:
        threat = "none" if attack == "none" else f"{cfg.target} attacked; white-box; L-inf eps={eps}/255" if eps else f"{cfg.target} occluded"
    return CellResult(config=cfg, family=fam, threat=threat, rank1=rank1, rank5=min(100.0, rank1 + 9.37), rank10=min(100.0, rank1 + 14.21),
                      mAP=mAP, mINP=mAP * 0.61, n_query=96, n_gallery=480, n_valid_query=96, seconds=1.5, fingerprint=FINGERPRINT,
                      draws=draws, mAP_worst=mAP_worst, warnings=warnings,
                      extra={"rr_rank1": rr[0], "rr_mAP": rr[1], "rr_mINP": rr[1] * 0.7} if rr else {})  # fmt: skip


CLEAN = {"baseline": (88.43, 72.14), "etndnet": (90.17, 75.36), "jad": (87.91, 70.29), "aos": (88.95, 73.02), "igoas": (89.2, 72.9)}
STRENGTH = {"mifgsm": 1.0, "sma": 0.8, "lta": 0.9, "fna": 0.7}
ROBUST = {"baseline": 1.0, "etndnet": 0.85, "jad": 0.45, "aos": 0.9, "igoas": 0.9}


def make_records(models: tuple[str, ...] = ("baseline", "etndnet", "jad"), *, realistic: bool = False) -> list[CellResult]:
    out = []
    sweep = (1.0, 2.0, 5.0, 8.0, 16.0) if realistic else (2.0, 5.0, 8.0)
    attacks = ("mifgsm", "sma", "lta", "fna") if realistic else ("mifgsm", "sma")
    for m in models:
        r1, mp = CLEAN[m]
        out.append(_cell(m, rank1=r1, mAP=mp))
        for a in attacks:
            for e in sweep if a in ("mifgsm", "sma") else (5.0,):
                f = float(np.exp(-STRENGTH[a] * ROBUST[m] * e / 2.2))
                w: tuple[str, ...] = ()
                if m == "etndnet" and a == "sma" and e == sweep[-1]:
                    f *= 1.4
                    w = (f"mAP rose from eps={sweep[-2]:g} to eps={e:g}: robust accuracy must not rise with a larger budget",)
                out.append(_cell(m, a, eps=e, steps=15, rank1=r1 * (0.15 + 0.85 * f), mAP=mp * (0.1 + 0.9 * f), warnings=w))
        for area in (0.1, 0.2, 0.3, 0.4) if realistic else (0.1, 0.2, 0.3):
            f = 1.0 - (1.3 if m == "baseline" else 0.8) * area
            out.append(_cell(m, "random-erase", family="occlusion", area=area, rank1=r1 * f, mAP=mp * f * 0.97))
        out.append(_cell(m, "aos-window", family="occlusion", area=0.1, rank1=r1 * 0.8, mAP=mp * 0.74,
                         threat="query occluded at the worst sliding-window position (knows the model)"))  # fmt: skip
        for a, f in (("fmap-erase", 0.53), ("fmap-transform", 0.81), ("fmap-noise", 0.63)):
            g = f if m == "baseline" else (1 + f) / 2
            out.append(_cell(m, a, family="feature-map", rank1=r1 * (g + 0.04), mAP=mp * g,
                             threat="feature map of the query perturbed at test time (erasing/transforming/noising a region)"))  # fmt: skip
    # the baseline again with re-ranking (a second invocation with --rerank): the plain metrics of
    # the same cells, and the re-ranked ones in extra, as the harness records them
    r1, mp = CLEAN["baseline"]
    out.append(_cell("baseline", rerank=True, rank1=r1, mAP=mp, rr=(90.21, 84.72)))
    plain = next(r for r in out if r.config.model == "baseline" and r.config.attack == "mifgsm" and r.config.eps == 5.0)
    out.append(_cell("baseline", "mifgsm", eps=5.0, steps=15, rerank=True, rank1=plain.rank1, mAP=plain.mAP, rr=(13.24, 13.01)))
    # a defended model: oblivious vs adaptive
    out.append(_cell("jad", defense="cs", rank1=88.72, mAP=70.31))
    out.append(_cell("jad", "mifgsm", defense="cs", mode="oblivious", eps=5.0, steps=15, rank1=61.33, mAP=56.84,
                     warnings=("adaptive attack is 38.2 pp stronger than the oblivious one: the defense mostly masks gradients",)))  # fmt: skip
    out.append(_cell("jad", "mifgsm", defense="cs", mode="adaptive", eps=5.0, steps=15, rank1=22.05, mAP=18.66))
    if realistic:
        out.append(_cell("jad", "sma", defense="cs", mode="oblivious", eps=5.0, steps=15, rank1=85.61, mAP=80.32))
        out.append(_cell("jad", "sma", defense="cs", mode="adaptive", eps=5.0, steps=15, rank1=41.5, mAP=33.9))
        out.append(_cell("baseline", defense="rrp", rank1=86.1, mAP=69.4))
        out.append(_cell("baseline", "mifgsm", defense="rrp", mode="oblivious", eps=5.0, steps=15, rank1=52.3, mAP=41.0))
        out.append(_cell("baseline", "mifgsm", defense="rrp", mode="adaptive", eps=5.0, steps=15, rank1=12.7, mAP=9.8,
                         draws=10, mAP_worst=6.1))  # fmt: skip
        out.append(_cell("baseline", "mifgsm", surrogate="etndnet", eps=5.0, steps=15, rank1=55.2, mAP=39.7,
                         threat="query attacked; transfer from etndnet (black-box on the target); L-inf eps=5/255"))  # fmt: skip
        out.append(_cell("baseline", "mifgsm", target="gallery", eps=5.0, steps=15, rank1=21.4, mAP=14.9,
                         threat="gallery attacked (Bai et al.); white-box; L-inf eps=5/255"))  # fmt: skip
    return out


def _person(rng: np.random.Generator, pid: int, h: int, w: int) -> np.ndarray:
    """A blocky pedestrian: head, shirt and trousers in the identity's colours, on a noisy street."""
    pal = np.random.default_rng(pid)
    img = np.empty((h, w, 3), dtype=np.float32)
    img[:] = rng.uniform(90, 170, 3)
    img += rng.normal(0, 10, (h, w, 1))
    cx, bw = w // 2 + int(rng.integers(-w // 10, w // 10 + 1)), w // 3
    shirt, trousers = pal.uniform(20, 235, 3), pal.uniform(20, 235, 3)
    img[h // 12 : h // 5, cx - bw // 3 : cx + bw // 3] = (224, 180, 150)
    img[h // 5 : h // 2 + h // 12, cx - bw // 2 : cx + bw // 2] = shirt
    img[h // 2 + h // 12 : h - h // 12, cx - bw // 2 : cx - 1] = trousers
    img[h // 2 + h // 12 : h - h // 12, cx + 1 : cx + bw // 2] = trousers
    return np.clip(img, 0, 255).astype(np.uint8).transpose(2, 0, 1)


def make_artifact(rng: np.random.Generator, kind: str, *, n: int = 3, hw: tuple[int, int] = (64, 32), k: int = 10,
                  eps: float = 5.0, heat: bool = False) -> CellArtifact:  # fmt: skip
    h, w = hw
    qids = np.array([3, 11, 17, 25][:n])
    clean = np.stack([_person(rng, int(p), h, w) for p in qids])
    thumbs: list[np.ndarray] = []
    cl_topk: list[list[int]] = []
    at_topk: list[list[int]] = []
    cl_match: list[list[bool]] = []
    at_match: list[list[bool]] = []
    for i, p in enumerate(qids):
        ranked_clean = [p if j in (0, 1, 3, 6) else 40 + i * k + j for j in range(k)]
        ranked_att = [p if j == 7 else 80 + i * k + j for j in range(k)]
        for ranked, topk, match in ((ranked_clean, cl_topk, cl_match), (ranked_att, at_topk, at_match)):
            row = []
            for pid in ranked:
                row.append(len(thumbs))
                thumbs.append(_person(rng, int(pid), h, w))
            topk.append(row)
            match.append([pid == p for pid in ranked])
    if kind == "metric":
        attacked = np.clip(clean.astype(np.int16) + rng.choice([-1, 1], clean.shape) * int(eps), 0, 255).astype(np.uint8)
    elif kind == "occlusion":
        attacked = clean.copy()
        attacked[:, :, h // 4 : h // 2, : w // 2] = 127
    else:
        attacked = clean.copy()
    heatmaps = None
    if heat:
        yy, xx = np.mgrid[0:16, 0:8]
        heatmaps = np.stack([np.exp(-((yy - 5 - i) ** 2 / 8 + (xx - 4) ** 2 / 6)) * (0.6 + 0.2 * i) for i in range(n)]).astype(np.float32)
    return CellArtifact(query_index=qids * 2, query_pids=qids, clean=clean, attacked=attacked, gallery_thumbs=np.stack(thumbs),
                        clean_topk=np.array(cl_topk), attacked_topk=np.array(at_topk), clean_match=np.array(cl_match),
                        attacked_match=np.array(at_match), heatmaps=heatmaps)  # fmt: skip


def make_manifest(models: tuple[str, ...]) -> dict:
    cards = {
        "baseline": {"method": "baseline", "paper": "Bag of Tricks (BNNeck)", "deviations": ["trained from scratch: no ImageNet weights here"],
                     "paper_results": [{"dataset": "Market-1501", "attack": "none", "rank1": 90.2, "mAP": 84.7, "model": "Baseline+RK",
                                        "source": "JAD Table 4", "note": "with re-ranking"},
                                       {"dataset": "Market-1501", "attack": "M-IFGSM", "rank1": 13.2, "mAP": 13.0, "model": "Baseline+RK",
                                        "source": "JAD Table 4", "note": ""}]},
        "jad": {"method": "JAD", "paper": "Gong et al., Person Re-identification Method Based on Color Attack and Joint Defence (LTA/JAD), CVPR-W 2022", "inference_defense": "cs",
                "deviations": ["circuitous scaling ends at the model's input size (paper) rather than 110x50 (code)"],
                "paper_results": [{"dataset": "Market-1501", "attack": "none", "rank1": 88.7, "mAP": 70.3, "model": "JAD", "source": "Table 3",
                                   "note": ""},
                                  {"dataset": "Market-1501", "attack": "M-IFGSM", "rank1": 47.1, "mAP": 27.8, "model": "JAD",
                                   "source": "Table 4", "note": "oblivious attacker"}]},
        "etndnet": {"method": "ETNDNet", "paper": "Dong et al., Erasing, Transforming, and Noising Defense Network for Occluded Person Re-ID, IEEE TCSVT 2023",
                    "paper_results": [{"dataset": "Occluded-Duke", "attack": "none", "rank1": 63.6, "mAP": 54.7, "model": "ETNDNet",
                                       "source": "Table II", "note": ""}]},
    }  # fmt: skip
    return {
        "reidbench_version": "0.1.0", "created": "2025-01-31T10:22:05+00:00",
        "versions": {"torch": "2.4.1", "torchvision": "0.19.1", "torchattacks": "3.5.1", "numpy": "1.26.4", "python": "3.11.9"},
        "device": "cpu", "threads": 2, "seed": 0,
        "command": "reidbench run --dataset synthetic-mini --model baseline --model etndnet --model jad --attack mifgsm "
                   "--attack sma --eps 2,5,8 --occlusion random-erase --area 0.1,0.2,0.3 --defense cs --adaptive --out runs/demo",
        "config": {"eps": [2, 5, 8]},
        "dataset": {"name": DATASET, "fingerprint": FINGERPRINT, "n_query": 96, "n_gallery": 480, "n_train": 1200},
        "models": {m: {"checkpoint": f"weights/{m}.safetensors" if m != "aos" else None,
                       "sha256": SHA_BASELINE if m == "baseline" else (f"{m}-" + "5e" * 20 if m != "aos" else None),
                       "card": cards.get(m, {"method": m, "paper": "", "paper_results": []})} for m in models},
        "defenses": {"cs": {"random": False, "differentiable": False, "description": "JAD circuitous scaling 256x128 -> 110x50 -> 220x100 -> 110x50 -> 256x128"},
                     "rrp": {"random": True, "differentiable": True, "description": "random resize and pad"}},
        "attacks": {"mifgsm": {"family": "metric", "threat": "query; white-box", "defaults": {"eps": 5, "step": 1, "steps": 15, "momentum": 1.0}},
                    "sma": {"family": "metric", "threat": "query; white-box", "defaults": {"eps": 5, "step": 1, "steps": 15}},
                    "random-erase": {"family": "occlusion", "threat": "query occluded", "defaults": {"area": 0.2}}},
        "threat_models": ["query attacked (default); white-box on the target model",
                          "defenses: oblivious (attack on the bare model) and adaptive (BPDA through cs)"],
    }  # fmt: skip


def make_run(root: Path, *, realistic: bool = False, artifacts: bool = True, manifest: bool = True) -> Path:
    models = ("baseline", "etndnet", "jad", "aos") if realistic else ("baseline", "etndnet", "jad")
    records = make_records(models, realistic=realistic)
    for r in records:
        write_record(root, r)
    if manifest:
        (root / "manifest.json").write_text(json.dumps(make_manifest(models), indent=1))
    if artifacts:
        rng = np.random.default_rng(0)
        hw = (128, 64) if realistic else (48, 24)
        for r in records:
            c = r.config
            kind = None
            if c.model == "baseline" and not c.rerank and c.defense == "none" and not c.surrogate and c.target == "query":
                if (c.attack in ("mifgsm", "sma", "lta") and c.eps == 5.0) or c.attack in ("fmap-erase", "aos-window"):
                    kind = "metric" if c.attack in ("mifgsm", "sma", "lta") else ("occlusion" if c.attack == "aos-window" else "fmap")
                elif c.attack == "random-erase" and c.area == 0.2:
                    kind = "occlusion"
            if c.model == "jad" and c.defense == "cs" and c.attack == "mifgsm":
                kind = "metric"
            if kind:
                art = make_artifact(rng, kind, hw=hw, heat=c.attack == "aos-window", n=4 if realistic else 3)
                art.save(artifact_path(root, r.cell_id))
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def records(run_dir: Path) -> list[CellResult]:
    return load_run(run_dir).records


def _find(records: list[CellResult], **kw: object) -> CellResult:
    hits = [r for r in records if all(getattr(r.config, k) == v for k, v in kw.items())]
    assert len(hits) == 1, kw
    return hits[0]


# -------------------------------------------------------------------------------------------------
# Tables
# -------------------------------------------------------------------------------------------------


def _parse_md(md: str) -> tuple[list[str], list[list[str]]]:
    rows = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            for line in md.splitlines() if line.startswith("|")]  # fmt: skip
    assert len(rows) >= 2 and all(set(c) <= set(":-") for c in rows[1]), "a markdown table has a header and a separator"
    assert all(len(r) == len(rows[0]) for r in rows), "every markdown row has as many cells as the header"
    return rows[0], rows[2:]


def _r1map(r: CellResult) -> str:
    return f"{r.rank1:.1f}/{r.mAP:.1f}"


def test_pivot_markdown_equals_records(records: list[CellResult]) -> None:
    (t,) = T.pivot_tables(records)
    header, body = _parse_md(t.to_markdown())
    cells = {(row[0], h): v for row in body for h, v in zip(header, row, strict=True)}
    base_clean = _find(records, model="baseline", attack="none", rerank=False, defense="none")
    assert cells[("baseline", "clean")] == _r1map(base_clean)
    # mifgsm's headline budget is the manifest-free default eps 5 (the most common value ties -> closest to 5)
    for m in ("baseline", "etndnet", "jad"):
        r = _find(records, model=m, attack="mifgsm", eps=5.0, defense="none", rerank=False)
        assert cells[(m, "mifgsm")] == _r1map(r)
        fe = _find(records, model=m, attack="fmap-noise")
        assert cells[(m, "fmap-noise")] == _r1map(fe)
    # the re-ranked row holds the re-ranked numbers of the --rerank cells, the plain row the plain ones
    rk = _find(records, model="baseline", attack="mifgsm", rerank=True)
    assert cells[("baseline + RK", "mifgsm")] == f"{rk.extra['rr_rank1']:.1f}/{rk.extra['rr_mAP']:.1f}" == "13.2/13.0"
    rk_clean = _find(records, model="baseline", attack="none", rerank=True)
    assert cells[("baseline + RK", "clean")] == "90.2/84.7"
    assert cells[("baseline", "clean")] == _r1map(rk_clean)  # the same cell, plain: equal to the run without --rerank
    assert [row[0] for row in body].index("baseline + RK") == [row[0] for row in body].index("baseline") + 1, "side by side"
    # the defended model's clean cell is shared by its oblivious and adaptive rows
    jclean = _find(records, model="jad", attack="none", defense="cs")
    for mode in ("oblivious", "adaptive"):
        r = _find(records, model="jad", attack="mifgsm", defense="cs", mode=mode)
        assert cells[(f"jad + cs ({mode})", "mifgsm")] == _r1map(r)
        assert cells[(f"jad + cs ({mode})", "clean")] == _r1map(jclean)
        assert cells[(f"jad + cs ({mode})", "sma")] == T.DASH
    assert "market" in t.to_markdown() and "Re-ranking" in t.to_markdown()


def test_pivot_minp_and_headline_from_manifest(records: list[CellResult], run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["attacks"]["mifgsm"]["defaults"]["eps"] = 8
    (t,) = T.pivot_tables(records, manifest, metrics=("rank1", "mAP", "mINP"))
    r = _find(records, model="etndnet", attack="mifgsm", eps=8.0)
    assert t.cell("etndnet", "mifgsm") == (r.rank1, r.mAP, r.mINP)
    assert t.columns[1].format(t.cell("etndnet", "mifgsm")) == f"{r.rank1:.1f}/{r.mAP:.1f}/{r.mINP:.1f}"
    assert "mifgsm: eps=8/255" in " ".join(t.notes)


def test_drop_csv_equals_records(records: list[CellResult]) -> None:
    (t,) = T.drop_tables(records)
    rows = list(csv.DictReader(io.StringIO(t.to_csv())))
    by_model = {row["Model"]: row for row in rows}
    for m in ("baseline", "etndnet", "jad"):
        clean = _find(records, model=m, attack="none", defense="none", rerank=False)
        for col, kw in (("sma", {"attack": "sma", "eps": 5.0}), ("random-erase", {"attack": "random-erase", "area": 0.2}),
                        ("fmap-erase", {"attack": "fmap-erase"})):  # fmt: skip
            r = _find(records, model=m, defense="none", rerank=False, **kw)
            assert float(by_model[m][f"{col} pp"]) == pytest.approx(r.mAP - clean.mAP, abs=1e-6)
            assert float(by_model[m][f"{col} %"]) == pytest.approx(100 * (r.mAP - clean.mAP) / clean.mAP, abs=1e-6)
        assert float(by_model[m]["clean mAP"]) == pytest.approx(clean.mAP)
    # the defended rows are measured against the defended clean cell
    jclean = _find(records, model="jad", attack="none", defense="cs")
    adv = _find(records, model="jad", attack="mifgsm", defense="cs", mode="adaptive")
    assert float(by_model["jad + cs (adaptive)"]["mifgsm pp"]) == pytest.approx(adv.mAP - jclean.mAP, abs=1e-6)
    md = t.to_markdown()
    _, body = _parse_md(md)
    assert any(c.endswith("%)") and c.startswith("-") for row in body for c in row[2:] if c != T.DASH)


def test_defense_table_pairs(records: list[CellResult], run_dir: Path) -> None:
    (t,) = T.defense_tables(records, json.loads((run_dir / "manifest.json").read_text()))
    ob = _find(records, model="jad", attack="mifgsm", mode="oblivious")
    ad = _find(records, model="jad", attack="mifgsm", mode="adaptive")
    header, body = _parse_md(t.to_markdown())
    (row,) = body
    got = dict(zip(header, row, strict=True))
    assert got["Model + defense"] == "jad + cs" and got["Attack"] == "mifgsm"
    assert got["oblivious"] == _r1map(ob) and got["adaptive"] == _r1map(ad)
    assert got["gap mAP (pp)"] == f"{ob.mAP - ad.mAP:+.1f}"
    assert "BPDA" in " ".join(t.notes)
    # the R1/mAP header spans clean/oblivious/adaptive only, not the gap
    assert r"& \multicolumn{3}{c}{Rank-1/mAP (\%)} &" in t.to_latex()


def test_sweep_and_paper_tables(records: list[CellResult], run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (eps,) = T.sweep_tables(records, manifest, param="eps")
    r = _find(records, model="etndnet", attack="sma", eps=8.0)
    row = next(x for x in eps.rows if x[:2] == ("etndnet", "sma"))
    assert row[[c.name for c in eps.columns].index("8/255")] == (r.rank1, r.mAP)
    (area,) = T.sweep_tables(records, manifest, param="area")
    assert [c.name for c in area.columns][3:] == ["0.1", "0.2", "0.3"]
    (paper,) = T.paper_tables(records, manifest)
    header, body = _parse_md(paper.to_markdown())
    got = {(b[0], b[3]): dict(zip(header, b, strict=True)) for b in body}
    jad = got[("jad", "M-IFGSM")]
    assert jad["paper R1/mAP"] == "47.1/27.8" == "{:.1f}/{:.1f}".format(*(lambda p: (p["rank1"], p["mAP"]))(
        manifest["models"]["jad"]["card"]["paper_results"][1]))  # fmt: skip
    ours = _find(records, model="jad", attack="mifgsm", defense="cs", mode="oblivious")
    assert jad[f"ours R1/mAP ({DATASET})"] == _r1map(ours) and jad["Paper's dataset"] == "Market-1501"
    # the paper's "Baseline+RK" row is compared with our re-ranked numbers, not the plain ones
    rk = _find(records, model="baseline", attack="none", rerank=True)
    assert got[("baseline", "none")][f"ours R1/mAP ({DATASET})"] == f"{rk.extra['rr_rank1']:.1f}/{rk.extra['rr_mAP']:.1f}"
    assert got[("baseline", "none")]["Our cell"] == "baseline + RK: clean"
    assert "synthetic" in paper.caption and "paper" in paper.caption


def test_latex_is_well_formed(records: list[CellResult]) -> None:
    for t in T.all_tables(records):
        tex = t.to_latex()
        assert tex.count(r"\begin{") == tex.count(r"\end{") == 2
        for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
            assert tex.count(rule) == 1
        body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
        assert len(body) == len(t.rows)
        for line in body:
            assert line.endswith(r"\\")
            assert len(re.findall(r"(?<!\\)&", line)) == len(t.columns) - 1
        assert not re.search(r"(?<!\\)[%_#]", tex.replace(r"\%", "").replace(r"\_", "").replace(r"\#", ""))
        assert "–" not in tex


def test_latex_escapes_names() -> None:
    r = _cell("my_model", "odd&name%", eps=5.0, rank1=10.0, mAP=5.0)
    tex = T.pivot_tables([_cell("my_model", rank1=50.0, mAP=40.0), r])[0].to_latex()
    assert r"my\_model" in tex and r"odd\&name\%" in tex


def test_tables_are_split_by_dataset_and_ap_variant() -> None:
    rs = [_cell("baseline", rank1=88.0, mAP=70.0), _cell("baseline", rank1=87.0, mAP=66.0, ap_variant="official")]
    ts = T.pivot_tables(rs)
    assert len(ts) == 2 and {t.scope.ap_variant for t in ts if t.scope} == {"market", "official"}
    assert any("trapezoidal" in " ".join(t.notes) for t in ts)


# -------------------------------------------------------------------------------------------------
# Plots
# -------------------------------------------------------------------------------------------------


def test_plots_return_figures_or_none(run_dir: Path) -> None:
    from matplotlib.figure import Figure

    from reidbench.reports import plots as P

    run = load_run(run_dir)
    recs, man, arts = run.records, run.manifest, run.artifacts
    figs = {
        "eps": P.plot_eps_curves(recs, man),
        "area": P.plot_area_curves(recs, man),
        "heat": P.plot_drop_heatmap(recs, man),
        "fmap": P.plot_feature_map_bars(recs, man),
        "aos": P.plot_occlusion_heatmaps(recs, arts, man),
        "ranked": P.plot_ranked_lists(recs, arts, man),
        "pert": P.plot_perturbations(recs, arts, man),
    }
    assert all(isinstance(f, Figure) for f in figs.values()), [k for k, f in figs.items() if f is None]
    eps_fig = figs["eps"]
    assert eps_fig is not None
    (eps_ax, sma_ax) = [a for a in eps_fig.axes if a.get_title()]
    assert eps_ax.get_title() == "mifgsm" and sma_ax.get_title() == "sma"
    # one line per model (+ RK rows have no sweep); the first point is the clean mAP at eps 0
    clean = _find(recs, model="baseline", attack="none", rerank=False, defense="none")
    line = eps_ax.get_lines()[0]
    xs, ys = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    assert xs[0] == 0 and ys[0] == pytest.approx(clean.mAP)
    styles = {(tuple(map(str, (ln.get_marker(), ln.get_linestyle())))) for ln in eps_ax.get_lines()}
    assert len(styles) == len(eps_ax.get_lines()), "series differ by marker and line style, not colour alone"
    clean_only = [r for r in recs if r.config.attack == "none"]
    assert P.plot_eps_curves(clean_only) is None and P.plot_feature_map_bars(clean_only) is None
    assert P.plot_ranked_lists(recs, {}) is None and P.plot_occlusion_heatmaps(recs, {}) is None


# -------------------------------------------------------------------------------------------------
# PDF, markdown, HTML and the command
# -------------------------------------------------------------------------------------------------

def _poppler() -> bool:
    """pdftotext/pdfinfo when installed; otherwise pypdf (a test dependency), so these tests never skip."""
    return bool(shutil.which("pdftotext") and shutil.which("pdfinfo")) and not os.environ.get("REIDBENCH_TESTS_PYPDF")


def _pdftext(pdf: Path, page: int | None = None) -> str:
    if _poppler():
        args = ["pdftotext", "-layout"] + (["-f", str(page), "-l", str(page)] if page else []) + [str(pdf), "-"]
        return subprocess.run(args, check=True, capture_output=True, text=True).stdout
    from pypdf import PdfReader

    pages = PdfReader(str(pdf)).pages
    return "\n".join(p.extract_text(extraction_mode="layout") for p in (pages if page is None else [pages[page - 1]]))


def _pages(pdf: Path) -> int:
    if _poppler():
        info = subprocess.run(["pdfinfo", str(pdf)], check=True, capture_output=True, text=True).stdout
        return int(re.search(r"Pages:\s+(\d+)", info).group(1))  # type: ignore[union-attr]
    from pypdf import PdfReader

    return len(PdfReader(str(pdf)).pages)


@pytest.fixture(scope="module")
def pdf(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from reidbench.reports import write_report

    return write_report(run_dir, tmp_path_factory.mktemp("out") / "report.pdf", dpi=70)


def test_pdf_holds_numbers_warnings_and_fingerprint(pdf: Path, records: list[CellResult]) -> None:
    text = _pdftext(pdf)
    assert FINGERPRINT in text and SHA_BASELINE in text
    assert "reidbench run --dataset synthetic-mini" in text
    for r in records:
        for w in r.warnings:
            assert w[:60] in " ".join(text.split()), w
    for m in ("baseline", "etndnet", "jad"):
        assert _r1map(_find(records, model=m, attack="sma", eps=5.0)) in text
        assert _r1map(_find(records, model=m, attack="none", defense="none", rerank=False)) in text
    assert "Threat models" in text and "BPDA" in text and "L-inf" in text


def test_pdf_pages(pdf: Path, run_dir: Path) -> None:
    n = _pages(pdf)
    texts = [_pdftext(pdf, p) for p in range(1, n + 1)]
    figures = [f for f in build_report(load_run(run_dir)).figures]
    # this run has every kind of figure: eps curves, area curves, heatmap, Fig. 6a bars, AOS maps,
    # ranked lists for the baseline and for jad + cs, and the perturbations
    assert [f.key.split("-")[0] for f in figures] == ["eps", "area", "heatmap", "fmap", "aos", "ranked", "ranked", "perturbation"]
    heads = [(i, int(m.group(1))) for i, t in enumerate(texts) for m in re.finditer(r"^\s*Figure (\d+)\.", t, flags=re.M)]
    assert [num for _, num in heads] == list(range(1, len(figures) + 1)), "every figure once, in order"
    for (page, num), f in zip(heads, figures, strict=True):
        assert f.title[:40] in " ".join(texts[page].split()), (num, f.title)
    pages = [p for p, _ in heads]
    assert pages == sorted(pages) and pages[-1] - pages[0] < len(figures) - 1, "figures that fit share a page (no half-empty pages)"
    assert "Sanity checks" in texts[-1] and pages[-1] >= n - 2
    assert all(len(t.split()) > 20 for t in texts), "no page holds only its footer"
    assert "Threat models" in texts[1] and any("Results" in t for t in texts[1:4])


def test_pdf_without_data_skips_pages_and_says_no_warnings(tmp_path: Path) -> None:
    from reidbench.reports import write_report

    for r in (_cell("baseline", rank1=88.43, mAP=72.14), _cell("baseline", "sma", eps=5.0, rank1=15.7, mAP=11.1)):
        write_record(tmp_path, r)
    out = write_report(tmp_path, None, dpi=60)
    assert out == tmp_path / "report.pdf"
    text = _pdftext(out)
    assert "No sanity-check warnings" in text and "no manifest.json" in text
    assert len(re.findall(r"^\s*Figure \d+\.", text, flags=re.M)) == 1  # only the heatmap has data
    assert "15.7/11.1" in text


def test_markdown(run_dir: Path, tmp_path: Path, records: list[CellResult]) -> None:
    from reidbench.reports import write_report
    from reidbench.reports.markup import files_dir

    md = write_report(run_dir, tmp_path / "rep.md", dpi=40)
    text = md.read_text()
    files = files_dir(md)
    pngs = sorted(files.glob("*.png"))
    assert len(pngs) == 8 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    for p in pngs:
        assert f"]({files.name}/{p.name})" in text
    assert _r1map(_find(records, model="jad", attack="mifgsm", mode="adaptive")) in text
    csvs, texs = sorted(files.glob("*.csv")), sorted(files.glob("*.tex"))
    assert len(csvs) == len(texs) == 7  # reproduction, pivot, drop, defense, eps sweep, area sweep, papers
    assert FINGERPRINT in text and "Sanity checks" in text


def _small_run(root: Path) -> Path:
    for r in (_cell("baseline", rank1=88.43, mAP=72.14), _cell("baseline", "sma", eps=5.0, rank1=15.7, mAP=11.1,
                                                                warnings=("a warning | with a pipe",))):  # fmt: skip
        write_record(root, r)
    return root


def test_manifest_keys_are_optional(tmp_path: Path) -> None:
    from reidbench.reports import write_report

    run = _small_run(tmp_path / "run")
    hostile: dict[str, object] = {"models": {"baseline": None, "jad": {"card": None, "sha256": 3}}, "dataset": "oops", "versions": None,
               "defenses": [], "attacks": {"sma": None}, "threat_models": None, "command": None}  # fmt: skip
    (run / "manifest.json").write_text(json.dumps(hostile))
    text = write_report(run, tmp_path / "r.md", dpi=30).read_text()
    assert "15.7/11.1" in text and FINGERPRINT in text  # the fingerprint falls back to the records'


def test_html_is_self_contained(tmp_path: Path) -> None:
    from reidbench.reports import write_report

    html = write_report(_small_run(tmp_path / "run"), tmp_path / "rep.html", dpi=40).read_text()
    assert html.count("data:image/png;base64,") == 1 and "88.4/72.1" in html and "a warning | with a pipe" in html
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")


def _cli() -> click.Group:
    """The report command under the real group, so errors take the project's one-line path."""
    from reidbench.cli import ReidbenchGroup
    from reidbench.cli.report_cmd import report

    group = ReidbenchGroup(name="reidbench")
    group.add_command(report)
    return group


def test_cli_writes_report(tmp_path: Path) -> None:
    out = tmp_path / "r.md"
    res = CliRunner().invoke(_cli(), ["report", str(_small_run(tmp_path / "run")), "-o", str(out), "--dpi", "50", "--minp"])
    assert res.exit_code == 0, res.output
    assert out.is_file() and f"wrote {out}" in res.output
    assert "Rank-1/mAP/mINP (%)" in out.read_text()


@pytest.mark.parametrize("make", ["empty", "no_cells", "missing"])
def test_cli_refuses_non_runs(tmp_path: Path, make: str) -> None:
    target = tmp_path / "x"
    if make != "missing":
        target.mkdir()
    if make == "empty":
        (target / "cells").mkdir()
    res = CliRunner().invoke(_cli(), ["report", str(target), "-o", str(tmp_path / "r.pdf")])
    assert res.exit_code != 0
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert not (tmp_path / "r.pdf").exists()


def test_photographic_figures_are_embedded_as_jpeg_line_art_stays_png() -> None:
    """Ranked-list pages made the default report 24 MB as PNG; pictures go in as JPEG (3.9 MB)."""
    import io

    import numpy as np
    from PIL import Image as PILImage

    from reidbench.reports.pdf import PHOTO_BYTES, compact_figure

    def png(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        PILImage.fromarray(arr).save(buf, "PNG")
        return buf.getvalue()

    noisy = png(np.random.default_rng(0).integers(0, 256, (900, 700, 4), dtype=np.uint8))
    flat = np.full((900, 700, 4), 255, np.uint8)
    flat[100:110, :, :3] = 0  # a line
    line_art = png(flat)
    assert len(noisy) > PHOTO_BYTES >= len(line_art)
    out = compact_figure(noisy)
    assert out[:3] == b"\xff\xd8\xff" and len(out) < len(noisy) / 2
    with PILImage.open(io.BytesIO(out)) as im:
        assert im.size == (700, 900) and im.mode == "RGB"
    assert compact_figure(line_art) == line_art


def test_ranked_list_rows_name_the_attack_mode(records: list[CellResult]) -> None:
    """A defended model's ranked lists show oblivious and adaptive rows; the label must say which."""
    from reidbench.reports import pictures as P

    ob = _find(records, model="jad", attack="mifgsm", defense="cs", mode="oblivious")
    ad = _find(records, model="jad", attack="mifgsm", defense="cs", mode="adaptive")
    assert ", oblivious — R1" in P._attack_text(ob) and ", adaptive — R1" in P._attack_text(ad)
    bare = next(r for r in records if r.config.model == "baseline" and r.config.defense == "none" and r.config.attack == "mifgsm")
    assert "oblivious" not in P._attack_text(bare) and "adaptive" not in P._attack_text(bare)
