"""Sanity checks over result rows: each fires on a bad case and stays quiet on a good one."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

from reidbench.attacks.telemetry import GradStats
from reidbench.defenses import Defended, create_defense
from reidbench.eval.results import CellConfig, CellResult
from reidbench.eval.sanity import (
    CHECKS,
    GRADIENT_KEYS,
    SanityWarning,
    attach_warnings,
    run_sanity_checks,
)

N_QUERY = 1000  # 100 / n = 0.1 < TOL_MAP, so the tolerance is 0.5 points


def row(mAP: float, *, attack: str = "sma", family: str | None = None, defense: str = "none",
        mode: str | None = None, eps: float | None = 5, steps: int | None = 15, surrogate: str = "",
        params: dict[str, Any] | None = None, draws: int = 1, mAP_worst: float | None = None,
        mAP_std: float | None = None, extra: dict[str, Any] | None = None, n_valid: int = N_QUERY,
        model: str = "baseline", target: str = "query") -> CellResult:  # fmt: skip
    if attack == "none":
        eps = steps = None
    p = {"eps": eps, "steps": steps, **(params or {})} if attack != "none" else {}
    if mode is None:
        mode = "none" if defense == "none" or attack == "none" else "adaptive"
    cfg = CellConfig(model=model, dataset="market1501", attack=attack, defense=defense, mode=mode,
                     target="none" if attack == "none" else target, surrogate=surrogate,
                     params=json.dumps(p, sort_keys=True), eps=eps, steps=steps)  # fmt: skip
    fam = family or {"none": "clean", "noise": "noise"}.get(attack, "metric")
    return CellResult(config=cfg, family=fam, threat="", rank1=mAP, rank5=mAP, rank10=mAP, mAP=mAP,
                      mINP=mAP, n_query=n_valid, n_gallery=5000, n_valid_query=n_valid, seconds=1.0,
                      fingerprint="f", draws=draws, mAP_worst=mAP_worst, mAP_std=mAP_std,
                      extra=extra or {})  # fmt: skip


def checks_of(records: list[CellResult]) -> list[tuple[str, str]]:
    return [(w.check, w.cell_id) for w in run_sanity_checks(records)]


# --- monotonicity ----------------------------------------------------------------------------------


def test_monotonicity_in_eps() -> None:
    good = [row(60), row(40, eps=2), row(30, eps=5), row(20, eps=8)]
    assert checks_of(good) == []
    within_tol = [row(30.0, eps=5), row(30.4, eps=8)]
    assert checks_of(within_tol) == []
    bad = [row(30, eps=5), row(35, eps=8)]
    ws = run_sanity_checks(bad)
    assert [(w.check, w.cell_id) for w in ws] == [("monotonicity", bad[1].cell_id)]
    assert "mAP 35.0 at eps=8 steps=15 > 30.0 at eps=5 steps=15" in ws[0].message
    assert ws[0].message.startswith("[monotonicity] baseline / sma eps=8: ")


def test_monotonicity_in_steps_and_sweeps_kept_apart() -> None:
    bad = [row(30, steps=10), row(33, steps=40)]
    assert checks_of(bad) == [("monotonicity", bad[1].cell_id)]
    # Different attacks, defenses, modes or other params are different sweeps.
    apart = [row(30, steps=10), row(33, steps=40, attack="fna"), row(33, steps=40, defense="cs"),
             row(33, steps=40, params={"momentum": 0.5})]  # fmt: skip
    assert checks_of(apart) == []
    # Incomparable budgets (more eps, fewer steps) are not compared; step size is not an axis.
    assert checks_of([row(30, eps=5, steps=40), row(35, eps=8, steps=10)]) == []
    assert checks_of([row(30, params={"step": 1}), row(35, params={"step": 0.5})]) == []


def test_tolerance_grows_on_small_query_sets_and_with_draw_noise() -> None:
    small = [row(30, eps=5, n_valid=32), row(32, eps=8, n_valid=32)]  # one query = 3.1 points
    assert checks_of(small) == []
    noisy = [row(30, eps=5, mAP_std=1.0), row(32, eps=8, mAP_std=1.0)]  # 2 * sqrt(2) = 2.8
    assert checks_of(noisy) == []


# --- attack vs clean, white-box vs transfer and noise -------------------------------------------------


def test_attack_must_not_beat_clean() -> None:
    assert checks_of([row(70, attack="none"), row(30)]) == []
    bad = [row(70, attack="none"), row(75)]
    assert checks_of(bad) == [("attack>clean", bad[1].cell_id)]
    # A clean row on another defense is not the reference.
    assert checks_of([row(70, attack="none", defense="cs"), row(75)]) == []


def test_whitebox_vs_transfer() -> None:
    good = [row(20), row(45, surrogate="resnet50")]
    assert checks_of(good) == []
    bad = [row(50), row(45, surrogate="resnet50"), row(60, surrogate="osnet")]
    ws = run_sanity_checks(bad)
    assert [(w.check, w.cell_id) for w in ws] == [("whitebox>transfer", bad[0].cell_id)]
    assert "white-box mAP 50.0 > 45.0 transferred from resnet50" in ws[0].message
    # Another eps is another budget.
    assert checks_of([row(50), row(45, eps=8, surrogate="resnet50")]) == []
    # Through a defense: the adaptive white-box attack must beat the (oblivious) transfer.
    adaptive = [row(50, defense="cs", params={"eot": 1}), row(45, defense="cs", mode="oblivious", surrogate="resnet50")]
    assert checks_of(adaptive) == [("whitebox>transfer", adaptive[0].cell_id)]
    assert checks_of([row(50, defense="cs", mode="oblivious"), adaptive[1]]) == []


def test_whitebox_vs_noise() -> None:
    good = [row(20), row(65, attack="noise")]
    assert checks_of(good) == []
    bad = [row(66), row(65, attack="noise"), row(20, eps=8)]
    assert checks_of(bad) == [("whitebox>noise", bad[0].cell_id)]
    # Same model and defense: noise on the undefended model says nothing about an adaptive attack on cs.
    assert checks_of([row(66, defense="cs", params={"eot": 1}), row(65, attack="noise")]) == []
    bad_defended = [row(66, defense="cs"), row(60, attack="noise", defense="cs", mode="oblivious")]
    assert checks_of(bad_defended) == [("whitebox>noise", bad_defended[0].cell_id)]
    # Oblivious rows are transfers to the defended system, not white-box attacks on it.
    assert checks_of([row(66, defense="cs", mode="oblivious"), row(60, attack="noise", defense="cs")]) == []


# --- adaptive vs oblivious ------------------------------------------------------------------------


def test_adaptive_must_beat_oblivious() -> None:
    good = [row(38.0, defense="cs", mode="oblivious"), row(12.0, defense="cs", mode="adaptive")]
    assert checks_of(good) == []
    bad = [row(38.0, defense="cs", mode="oblivious", model="jad"), row(41.2, defense="cs", mode="adaptive", model="jad")]
    ws = run_sanity_checks(bad)
    assert [(w.check, w.cell_id) for w in ws] == [("adaptive>oblivious", bad[1].cell_id)]
    assert ws[0].message == (
        "[adaptive>oblivious] jad / cs (adaptive) / sma eps=5: adaptive mAP 41.2 > oblivious 38.0; "
        "the adaptive attack is weaker than the oblivious one, so the adaptive evaluation is probably "
        "broken (try more EOT samples or steps, or BPDA for non-differentiable parts)"
    )
    # The EOT/BPDA parameters exist only in adaptive mode and do not prevent the pairing.
    bad_eot = [row(38.0, defense="jpeg", mode="oblivious"), row(45.0, defense="jpeg", params={"eot": 1, "bpda": True})]
    assert checks_of(bad_eot) == [("adaptive>oblivious", bad_eot[1].cell_id)]
    # Other parameters do.
    assert checks_of([row(38.0, defense="cs", mode="oblivious"), row(45.0, defense="cs", steps=5)]) == []


# --- random defenses: draws and EOT --------------------------------------------------------------------


def test_both_sides_must_not_beat_one_side() -> None:
    """SMA pushes every image away from its clean embedding; perturbing the gallery too can move
    both alike and restore their similarity, so 'both' leaves a higher mAP than the query alone."""
    query, gallery, both = row(20, target="query"), row(25, target="gallery"), row(35, target="both")
    ws = run_sanity_checks([query, gallery, both])
    assert [(w.check, w.cell_id) for w in ws] == [("both>one-side", both.cell_id)]
    # compared with the stronger side, and the message says which and why
    assert "mAP 35.0 with query and gallery both attacked > 20.0 with the query alone attacked" in ws[0].message
    assert "restored part of their similarity" in ws[0].message
    assert ws[0].message.startswith("[both>one-side] baseline / sma eps=5 [both]: ")
    # within the tolerance, or weaker than one side: quiet
    assert checks_of([row(20, target="query"), row(20.4, target="both")]) == []
    assert checks_of([row(30, target="query"), row(10, target="both")]) == []
    # only the same attack, parameters, model, defense and mode are compared
    apart = [row(20, target="query"), row(35, target="both", eps=8), row(35, target="both", attack="mifgsm"),
             row(35, target="both", model="jad"), row(35, target="both", defense="cs"),
             row(35, target="both", params={"momentum": 0.5})]  # fmt: skip
    assert [c for c, _ in checks_of(apart) if c == "both>one-side"] == []
    # the resolution of the metric on a small query set (one query = 3.1 points) is tolerated
    assert checks_of([row(20, target="query", n_valid=32), row(22, target="both", n_valid=32)]) == []
    # both sides on the gallery-only row alone
    g_only = [row(25, target="gallery"), row(35, target="both")]
    assert [(w.check, "gallery alone" in w.message) for w in run_sanity_checks(g_only)] == [("both>one-side", True)]


def test_random_defense_needs_several_draws_and_a_worst_case() -> None:
    ok = row(30, defense="resize-pad", params={"eot": 10}, draws=5, mAP_worst=27, mAP_std=1.5)
    one = row(30, defense="resize-pad", params={"eot": 10})
    no_worst = row(30, defense="cs+resize-pad", params={"eot": 10}, draws=5)
    inverted = row(30, defense="resize-pad", params={"eot": 10}, draws=5, mAP_worst=33, eps=8)
    clean_one = row(70, attack="none", defense="resize-pad")
    assert checks_of([ok]) == []
    assert checks_of([row(30, defense="cs"), row(30, defense="jpeg+median")]) == []  # deterministic
    got = checks_of([one, no_worst, inverted, clean_one])
    assert sorted(got) == sorted(("draws", r.cell_id) for r in (one, no_worst, inverted, clean_one))
    # The harness may say so itself (a defense this version does not know).
    assert checks_of([row(30, defense="future-thing", params={"eot": 10}, extra={"defense_random": True})])
    assert checks_of([row(30, defense="future-thing")]) == []


def test_adaptive_attack_on_random_defense_needs_eot() -> None:
    base = dict(defense="resize-pad", draws=5, mAP_worst=25)
    assert checks_of([row(30, params={"eot": 10}, **base)]) == []
    # The EOT the harness crafted with (extra) wins over the attack's default in params.
    assert checks_of([row(30, params={"eot": 1}, extra={"eot": 20}, **base)]) == []
    bad = [row(30, params={"eot": 1}, **base), row(30, eps=8, **base)]
    assert checks_of(bad) == [("eot", bad[0].cell_id), ("eot", bad[1].cell_id)]
    assert checks_of([row(30, mode="oblivious", **base), row(30, defense="cs")]) == []


# --- gradient masking ---------------------------------------------------------------------------------


def grads(zero_frac: float = 0.1, zero_images: float = 0.0, abs_mean: float = 1e-3) -> dict[str, float]:
    return {"grad_steps": 15, "grad_zero_frac": zero_frac, "grad_zero_image_frac": zero_images,
            "grad_mean_abs_min": abs_mean}  # fmt: skip


def test_gradient_masking_zero_entries() -> None:
    assert checks_of([row(30, defense="median", extra=grads(zero_frac=0.65))]) == []  # sparse, honest
    bad = row(80, defense="jpeg", params={"bpda": False}, extra=grads(zero_frac=1.0, zero_images=1.0, abs_mean=0.0))
    ws = run_sanity_checks([bad])
    assert [(w.check, w.cell_id) for w in ws] == [("gradient-masking", bad.cell_id)]
    assert "100% of gradient entries are exactly zero" in ws[0].message
    some = row(30, extra=grads(zero_images=0.02))
    assert checks_of([some]) == [("gradient-masking", some.cell_id)]
    assert checks_of([row(30)]) == []  # no statistics recorded: nothing to say


def test_gradient_masking_collapse_against_reference() -> None:
    obl = row(40, defense="cs", mode="oblivious", extra=grads(abs_mean=1e-3))
    fine = row(20, defense="cs", extra=grads(abs_mean=5e-3))
    assert checks_of([obl, fine]) == []
    collapsed = row(35, defense="cs", extra=grads(abs_mean=1e-8))
    ws = run_sanity_checks([obl, collapsed])
    assert [(w.check, w.cell_id) for w in ws] == [("gradient-masking", collapsed.cell_id)]
    assert "below the oblivious attack's" in ws[0].message
    # Without an oblivious row the undefended attack is the reference.
    undefended = row(20, extra=grads(abs_mean=1e-3))
    assert [c for c, _ in checks_of([undefended, collapsed])] == ["gradient-masking"]


def test_gradient_stats_from_a_real_attack_gradient_flag_missing_bpda() -> None:
    """End to end: the attacks' GradStats of a gradient through JPEG flag the row without BPDA only."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten()).eval()
    x = torch.rand(2, 3, 16, 8)
    rows = []
    for bpda in (False, True):
        stats = GradStats()
        for step in range(3):
            z = (x + 0.01 * step).clamp(0, 1).requires_grad_(True)
            (g,) = torch.autograd.grad(Defended(model, create_defense("jpeg"), bpda=bpda)(z).square().sum(), z)
            stats.add(step, g)
        # What the harness copies into the row: the scalar statistics.
        extra = {k: v for k, v in stats.summary().items() if isinstance(v, (int, float))}
        assert set(GRADIENT_KEYS) <= set(extra)
        rows.append(row(50 if not bpda else 20, defense="jpeg", params={"bpda": bpda}, extra=extra))
    assert rows[0].extra["grad_zero_frac"] == 1.0 and rows[1].extra["grad_zero_frac"] < 0.5
    assert checks_of(rows) == [("gradient-masking", rows[0].cell_id)]


# --- API --------------------------------------------------------------------------------------------


def test_attach_warnings_and_records() -> None:
    bad = [row(30, eps=5), row(35, eps=8), row(70, attack="none")]
    ws = run_sanity_checks(bad)
    assert all(isinstance(w, SanityWarning) and w.check in CHECKS and str(w) == w.message for w in ws)
    assert all("\n" not in w.message for w in ws)
    out = attach_warnings(bad)
    assert [len(r.warnings) for r in out] == [0, 1, 0]
    assert out[1].warnings[0] == ws[0].message
    assert attach_warnings(out)[1].warnings == out[1].warnings  # idempotent
    # A round trip through the stored form keeps them.
    assert CellResult.from_dict(out[1].to_dict()).warnings == out[1].warnings


@pytest.mark.parametrize("check", CHECKS)
def test_every_check_is_exercised(check: str) -> None:
    """Each named check fires on at least one of this file's bad cases (guards against dead checks)."""
    bad_cases = [
        [row(30, eps=5), row(35, eps=8)],
        [row(70, attack="none"), row(75)],
        [row(50), row(45, surrogate="resnet50")],
        [row(66), row(65, attack="noise")],
        [row(38, defense="cs", mode="oblivious"), row(45, defense="cs")],
        [row(20, target="query"), row(35, target="both")],
        [row(30, defense="resize-pad", params={"eot": 1})],
        [row(30, extra=grads(zero_frac=1.0))],
    ]
    fired = {w.check for case in bad_cases for w in run_sanity_checks(case)}
    assert check in fired
