"""Sanity checks over result rows: flags that say an evaluation is probably too weak to trust.

Modelled on AutoAttack's flags (Croce and Hein, ICML 2020: zero gradients, a black-box attack
beating the white-box ones, randomised models) and on Carlini et al.'s checklist ("On Evaluating
Adversarial Robustness", 2019: more budget must not help the defender, white-box must beat
black-box and random noise, adaptive attacks against every defense). They are pure functions of
:class:`~reidbench.eval.results.CellResult` rows: nothing is re-run.

``run_sanity_checks(records)`` returns :class:`SanityWarning` records (cell id, check, one-line
message); ``attach_warnings(records)`` puts their messages into each row's ``warnings``.

Checks (the name is the bracketed tag of the message):

``monotonicity``
    Within a sweep (rows equal in everything but eps, steps and step size), a row whose eps and
    steps are both >= another's, one of them strictly, must not have a higher mAP.
``attack>clean``
    An attacked row must not have a higher mAP than the clean row of the same model, defense
    and dataset.
``whitebox>transfer``, ``whitebox>noise``
    A white-box gradient attack (a family whose ``optimised`` trait is set, no ``surrogate``, mode
    ``none`` or ``adaptive``) must not do worse than the same attack with the same parameters
    transferred from a surrogate (any mode, same defense), nor than the ``noise`` attack with the
    same eps on the same model and defense. Oblivious rows are not white-box against the defended
    system, so they are not checked here.
``adaptive>oblivious``
    The adaptive row must not have a higher mAP than the oblivious row with the same attack and
    parameters (``eot``/``bpda`` ignored, as they only exist in adaptive mode).
``both>one-side``
    A row with both sides attacked (``target`` ``both``) must not have a higher mAP than the row
    with the same attack, parameters, model, defense and mode on the query or the gallery alone
    (the lower of the two when both exist). Perturbing both sides is meant to be the stronger
    threat; when it is not, matching perturbed queries against perturbed gallery images restored
    part of their similarity (both were moved alike, as SMA's push away from the clean embedding
    does), so the ``both`` row measures that, not a stronger attacker: read the one-side rows as
    the attack's strength.
``draws``
    A row on a random defense must be evaluated over several draws (``draws > 1``) and carry its
    worst case (``mAP_worst <= mAP``).
``eot``
    An adaptive gradient attack on a random defense must average over draws: ``extra["eot"]``
    (the EOT the harness actually crafted with), else ``eot`` in the params, must be > 1.
``gradient-masking``
    The attack's gradients must not vanish. Reads these keys of ``CellResult.extra``: the scalar
    part of the metric attacks' ``grad_stats`` (``reidbench.attacks.telemetry.GradStats.summary()``),
    which the harness copies into every row. The gradient is the raw input gradient of the attack
    loss (EOT-averaged, before normalisation, sign or momentum):

    * ``grad_zero_frac``: fraction of gradient entries exactly zero, over all images and steps;
    * ``grad_zero_image_frac``: fraction of per-image, per-step gradients that are zero
      everywhere (AutoAttack's ``check_zero_gradients``);
    * ``grad_mean_abs_min``: the smallest per-step mean |g|.

    Flags ``grad_zero_frac >= ZERO_FRAC`` (most entries zero), any all-zero image gradient, and a
    ``grad_mean_abs_min`` below ``COLLAPSE`` times that of the reference row (the oblivious row
    for an adaptive row, else the undefended row of the same attack). Rows without the keys (e.g.
    the torchattacks classification wrappers, which keep their gradients) are skipped.

A defense is random if ``extra["defense_random"]`` says so, else if any part of its name is a
registered random defense; rows on unknown defenses skip the ``draws`` and ``eot`` checks.

Tolerances (mAP is in percent, 0-100). Two rows differ "beyond the tolerance" when the gap exceeds
``max(tol, 100 / n, 2 * sqrt(std_a**2 + std_b**2))``:

* ``tol = TOL_MAP = 0.5`` points: slack for random starts and for the non-convex optimisation
  (more steps need not end at a better point for every query). AutoAttack's Square flag uses 0.2
  accuracy points over 10,000 images; mAP over Market's 3,368 queries is noisier than that.
* ``100 / n`` with ``n`` the smaller ``n_valid_query`` of the two: one query's AP changing by
  100 points, the resolution of the metric. This dominates on the small synthetic sets
  (32 queries: 3.1 points) and vanishes on Market-1501 (3368 queries: 0.03).
* ``2 * sqrt(...)`` with the rows' ``mAP_std`` over defense draws, where recorded: two standard
  deviations of the difference of two draws (conservative, since the rows hold means).

``ZERO_FRAC = 0.9``: masking by a non-differentiable defense gives 100 % zeros, while an honest
but sparse gradient does not reach 90 %: the median filter's true gradient, which routes each
output to the one input pixel that is the median, measured 57-65 % zeros on the test models.
``COLLAPSE = 1e-3``: attacking through each registered defense (with BPDA where needed) changed
the mean |g| on the test models by factors between about 1/12 (CS on a trained model, synthetic
images) and 150 (random inputs); a thousandfold drop is saturation or masking, not smoothing.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from reidbench.eval.results import CellConfig, CellResult

TOL_MAP = 0.5
ZERO_FRAC = 0.9
COLLAPSE = 1e-3

#: Attack parameters that only exist for an adaptive attack; ignored when pairing with oblivious.
ADAPTIVE_PARAMS = ("eot", "bpda")
#: The gradient statistics in ``CellResult.extra`` that ``gradient-masking`` reads.
GRADIENT_KEYS = ("grad_zero_frac", "grad_zero_image_frac", "grad_mean_abs_min")
#: The axes of a budget sweep (CellConfig fields and the same keys in ``params``).
BUDGET_FIELDS = ("eps", "steps", "step")

CHECKS = (
    "monotonicity",
    "attack>clean",
    "whitebox>transfer",
    "whitebox>noise",
    "adaptive>oblivious",
    "both>one-side",
    "draws",
    "eot",
    "gradient-masking",
)


@dataclass(frozen=True)
class SanityWarning:
    """One flag on one cell: ``message`` is the line a user reads (it starts with ``[check]``)."""

    cell_id: str
    check: str
    message: str

    def __str__(self) -> str:
        return self.message


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _params(cfg: CellConfig) -> dict[str, Any]:
    try:
        p = json.loads(cfg.params)
    except (TypeError, ValueError):
        return {}
    return p if isinstance(p, dict) else {}


def _key(cfg: CellConfig, drop: Iterable[str] = (), drop_params: Iterable[str] = ()) -> str:
    """The config as a hashable string, without ``drop`` fields and ``drop_params`` params."""
    d = asdict(cfg)
    for f in drop:
        d.pop(f, None)
    if "params" in d:
        skip = set(drop_params)
        d["params"] = {k: v for k, v in _params(cfg).items() if k not in skip}
    return json.dumps(d, sort_keys=True, default=str)


def _tol(a: CellResult, b: CellResult, tol: float) -> float:
    n = min(r.n_valid_query for r in (a, b))
    resolution = 100.0 / n if n > 0 else 0.0
    noise = 2.0 * math.sqrt(sum((r.mAP_std or 0.0) ** 2 for r in (a, b)))
    return max(tol, resolution, noise)


def _is_gradient(r: CellResult) -> bool:
    return r.kind.optimised


def _is_whitebox(r: CellResult) -> bool:
    return _is_gradient(r) and not r.config.surrogate and r.config.mode in ("none", "adaptive")


def _is_noise(r: CellResult) -> bool:
    return r.kind.random_control


def _budget(cfg: CellConfig) -> str:
    parts = []
    if cfg.eps is not None:
        parts.append(f"eps={cfg.eps:g}")
    if cfg.steps is not None:
        parts.append(f"steps={cfg.steps}")
    return " ".join(parts) or "this budget"


def defense_is_random(r: CellResult) -> bool | None:
    """Whether the row's defense is random: ``extra["defense_random"]``, else the registry."""
    if "defense_random" in r.extra:
        return bool(r.extra["defense_random"])
    if r.config.defense == "none":
        return False
    from reidbench.defenses import DEFENSES

    names = [n.strip() for n in r.config.defense.split("+")]
    if not all(n in DEFENSES for n in names):
        return None
    return any(DEFENSES.get(n).random for n in names)


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------


def check_monotonicity(records: Sequence[CellResult], tol: float = TOL_MAP) -> list[SanityWarning]:
    groups: dict[str, list[CellResult]] = defaultdict(list)
    for r in records:
        c = r.config
        if c.attack != "none" and (c.eps is not None or c.steps is not None):
            groups[_key(c, BUDGET_FIELDS, BUDGET_FIELDS)].append(r)

    def le(a: float | None, b: float | None) -> bool | None:
        if a is None or b is None:
            return True if a is None and b is None else None
        return a <= b

    out = []
    for rows in groups.values():
        for b in rows:
            worst: tuple[float, CellResult] | None = None
            for a in rows:
                ce, cs = le(a.config.eps, b.config.eps), le(a.config.steps, b.config.steps)
                if not ce or not cs or (a.config.eps, a.config.steps) == (b.config.eps, b.config.steps):
                    continue
                gap = b.mAP - a.mAP
                if gap > _tol(a, b, tol) and (worst is None or gap > worst[0]):
                    worst = (gap, a)
            if worst is not None:
                a = worst[1]
                out.append(_warn(b, "monotonicity", (
                    f"mAP {b.mAP:.1f} at {_budget(b.config)} > {a.mAP:.1f} at {_budget(a.config)}; "
                    "a larger budget must not help the defender, so the attack is not converging "
                    "(try more steps, a random start or another step size)")))  # fmt: skip
    return out


def check_attack_vs_clean(records: Sequence[CellResult], tol: float = TOL_MAP) -> list[SanityWarning]:
    pair_fields = ("attack", "mode", "target", "surrogate", "params", "eps", "step", "steps", "area")
    clean = {_key(r.config, pair_fields): r for r in records if r.config.attack == "none"}
    out = []
    for r in records:
        c = clean.get(_key(r.config, pair_fields)) if r.config.attack != "none" else None
        if c is not None and r.mAP - c.mAP > _tol(r, c, tol):
            out.append(_warn(r, "attack>clean", (
                f"attacked mAP {r.mAP:.1f} > clean {c.mAP:.1f}; the attack improves retrieval, so it "
                "is probably attacking the wrong side or the wrong sign of its loss")))  # fmt: skip
    return out


def check_whitebox_vs_transfer(records: Sequence[CellResult], tol: float = TOL_MAP) -> list[SanityWarning]:
    # A transfer through a defense is crafted on the surrogate's bare model (mode oblivious); the
    # white-box attack on the defended model (adaptive) must still beat it, so mode is not matched.
    fields = ("surrogate", "mode")
    transfers: dict[str, list[CellResult]] = defaultdict(list)
    for r in records:
        if _is_gradient(r) and r.config.surrogate:
            transfers[_key(r.config, fields, ADAPTIVE_PARAMS)].append(r)
    out = []
    for r in records:
        if not _is_whitebox(r):
            continue
        cands = transfers.get(_key(r.config, fields, ADAPTIVE_PARAMS), [])
        if not cands:
            continue
        t = min(cands, key=lambda x: x.mAP)
        if r.mAP - t.mAP > _tol(r, t, tol):
            out.append(_warn(r, "whitebox>transfer", (
                f"white-box mAP {r.mAP:.1f} > {t.mAP:.1f} transferred from {t.config.surrogate}; a "
                "white-box attack should be at least as strong as a transfer from another model, so "
                "its gradients are probably uninformative (check gradient masking, steps, step size)")))  # fmt: skip
    return out


def check_whitebox_vs_noise(records: Sequence[CellResult], tol: float = TOL_MAP) -> list[SanityWarning]:
    fields = ("model", "dataset", "defense", "target", "eps", "seed", "rerank", "distance", "ap_variant")

    def key(c: CellConfig) -> tuple[Any, ...]:
        return tuple(getattr(c, f) for f in fields)

    noise: dict[tuple[Any, ...], CellResult] = {}
    for r in records:
        if _is_noise(r) and r.config.eps is not None:
            k = key(r.config)
            if k not in noise or r.mAP < noise[k].mAP:
                noise[k] = r
    out = []
    for r in records:
        n = noise.get(key(r.config)) if _is_whitebox(r) and r.config.eps is not None else None
        if n is not None and r.mAP - n.mAP > _tol(r, n, tol):
            out.append(_warn(r, "whitebox>noise", (
                f"white-box mAP {r.mAP:.1f} > {n.mAP:.1f} under random noise of the same eps; a "
                "gradient attack weaker than noise is not following a useful gradient (check "
                "gradient masking, the loss's sign, steps and step size)")))  # fmt: skip
    return out


def _oblivious_index(records: Sequence[CellResult]) -> dict[str, CellResult]:
    return {_key(r.config, ("mode",), ADAPTIVE_PARAMS): r for r in records if r.config.mode == "oblivious"}


def check_adaptive_vs_oblivious(records: Sequence[CellResult], tol: float = TOL_MAP) -> list[SanityWarning]:
    oblivious = _oblivious_index(records)
    out = []
    for r in records:
        o = oblivious.get(_key(r.config, ("mode",), ADAPTIVE_PARAMS)) if r.config.mode == "adaptive" else None
        if o is not None and r.mAP - o.mAP > _tol(r, o, tol):
            out.append(_warn(r, "adaptive>oblivious", (
                f"adaptive mAP {r.mAP:.1f} > oblivious {o.mAP:.1f}; the adaptive attack is weaker than "
                "the oblivious one, so the adaptive evaluation is probably broken (try more EOT "
                "samples or steps, or BPDA for non-differentiable parts)")))  # fmt: skip
    return out


def check_both_vs_one_side(records: Sequence[CellResult], tol: float = TOL_MAP) -> list[SanityWarning]:
    one_side: dict[str, list[CellResult]] = defaultdict(list)
    for r in records:
        if r.config.attack != "none" and r.config.target in ("query", "gallery"):
            one_side[_key(r.config, ("target",))].append(r)
    out = []
    for r in records:
        if r.config.attack == "none" or r.config.target != "both":
            continue
        cands = one_side.get(_key(r.config, ("target",)), [])
        if not cands:
            continue
        o = min(cands, key=lambda x: x.mAP)
        if r.mAP - o.mAP > _tol(r, o, tol):
            out.append(_warn(r, "both>one-side", (
                f"mAP {r.mAP:.1f} with query and gallery both attacked > {o.mAP:.1f} with the {o.config.target} alone "
                "attacked; perturbing both sides should not help the defender: matching perturbed queries against "
                "perturbed gallery images restored part of their similarity (both moved alike), so this row "
                f"understates the attack: read the {o.config.target}-only row as its strength")))  # fmt: skip
    return out


def check_draws(records: Sequence[CellResult]) -> list[SanityWarning]:
    out = []
    for r in records:
        if not defense_is_random(r):
            continue
        if r.draws <= 1:
            out.append(_warn(r, "draws", (
                f"random defense {r.config.defense!r} evaluated with {r.draws} draw; one draw of a random "
                "defense is one sample, not its robustness: evaluate over several draws and report "
                "the mean and the worst case")))  # fmt: skip
        elif r.mAP_worst is None:
            out.append(_warn(r, "draws", (
                f"mean mAP {r.mAP:.1f} over {r.draws} draws of a random defense, but no worst case "
                "recorded; report mAP_worst next to the mean")))  # fmt: skip
        elif r.mAP_worst > r.mAP + 1e-6:
            out.append(_warn(r, "draws", (
                f"worst-case mAP {r.mAP_worst:.1f} > mean {r.mAP:.1f} over {r.draws} draws; the worst "
                "case must be the lowest mAP, so the row is inconsistent")))  # fmt: skip
    return out


def check_eot(records: Sequence[CellResult]) -> list[SanityWarning]:
    out = []
    for r in records:
        if r.config.mode != "adaptive" or not _is_gradient(r) or not defense_is_random(r):
            continue
        eot = r.extra.get("eot", _params(r.config).get("eot", 1))
        if not isinstance(eot, (int, float)) or eot < 2:
            out.append(_warn(r, "eot", (
                f"adaptive attack on random defense {r.config.defense!r} with eot={eot}; a single draw per "
                "step follows the defense's noise, not its expectation: set eot > 1 to average the "
                "gradient over draws (EOT)")))  # fmt: skip
    return out


def check_gradient_masking(records: Sequence[CellResult], *, zero_frac: float = ZERO_FRAC,
                           collapse: float = COLLAPSE) -> list[SanityWarning]:
    oblivious = _oblivious_index(records)
    undefended_fields = ("defense", "mode")
    undefended = {_key(r.config, undefended_fields, ADAPTIVE_PARAMS): r for r in records if r.config.defense == "none"}
    out = []
    for r in records:
        x = r.extra
        if not _is_gradient(r) or not any(k in x for k in GRADIENT_KEYS):
            continue
        reasons = []
        zf = x.get("grad_zero_frac")
        if zf is not None and zf >= zero_frac:
            reasons.append(f"{100 * zf:.0f}% of gradient entries are exactly zero")
        zi = x.get("grad_zero_image_frac")
        if zi is not None and zi > 0 and not reasons:
            reasons.append(f"{100 * zi:.1f}% of per-image gradients are zero everywhere")
        gm = x.get("grad_mean_abs_min")
        ref = None
        if r.config.mode == "adaptive":
            ref = oblivious.get(_key(r.config, ("mode",), ADAPTIVE_PARAMS))
        if ref is None and r.config.defense != "none":
            ref = undefended.get(_key(r.config, undefended_fields, ADAPTIVE_PARAMS))
        ref_gm = ref.extra.get("grad_mean_abs_min") if ref is not None else None
        if gm is not None and ref_gm and gm < collapse * ref_gm:
            what = "oblivious" if ref is not None and ref.config.mode == "oblivious" else "undefended"
            reasons.append(f"mean |gradient| fell to {gm:.2e}, {ref_gm / max(gm, 1e-300):.0e}x below the {what} attack's {ref_gm:.2e}")
        if reasons:
            out.append(_warn(r, "gradient-masking", (
                "; ".join(reasons) + "; the attack has no gradient to follow (gradient masking), so "
                "this mAP overstates robustness: use BPDA for non-differentiable defenses, EOT for "
                "random ones, or check for a saturating loss")))  # fmt: skip
    return out


def _warn(r: CellResult, check: str, detail: str) -> SanityWarning:
    return SanityWarning(r.cell_id, check, f"[{check}] {r.config.label()}: {detail}")


def run_sanity_checks(records: Sequence[CellResult], *, tol: float = TOL_MAP, zero_frac: float = ZERO_FRAC,
                      collapse: float = COLLAPSE) -> list[SanityWarning]:
    """Every check over ``records``; warnings in the order of :data:`CHECKS`, then of the rows."""
    records = list({r.cell_id: r for r in records}.values())
    return [
        *check_monotonicity(records, tol),
        *check_attack_vs_clean(records, tol),
        *check_whitebox_vs_transfer(records, tol),
        *check_whitebox_vs_noise(records, tol),
        *check_adaptive_vs_oblivious(records, tol),
        *check_both_vs_one_side(records, tol),
        *check_draws(records),
        *check_eot(records),
        *check_gradient_masking(records, zero_frac=zero_frac, collapse=collapse),
    ]


def attach_warnings(records: Sequence[CellResult], warnings: Sequence[SanityWarning] | None = None) -> list[CellResult]:
    """The records with their warnings' messages added (``CellResult.with_warnings``; no duplicates).

    ``warnings`` defaults to ``run_sanity_checks(records)``.
    """
    if warnings is None:
        warnings = run_sanity_checks(records)
    by_cell: dict[str, list[str]] = defaultdict(list)
    for w in warnings:
        by_cell[w.cell_id].append(w.message)
    return [r.with_warnings(*by_cell[r.cell_id]) if r.cell_id in by_cell else r for r in records]
