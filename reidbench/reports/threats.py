"""Threat models of a run, rendered from each attack's structured :class:`~reidbench.attack_types.Threat`.

Where the threat of an attack comes from, first found first: the manifest's
``attacks[NAME]["threat_model"]`` (the structured threat ``write_manifest`` records), the attack
registry (for runs made before the manifest carried it), else the family's traits and the texts
the cells recorded, with the evaluated model's name generalised. What a report says about an
attacker's knowledge and budget is read from the threat's ``access`` and ``budget``: an
occlusion-only or clean-only run never claims a white-box attacker or an L-inf budget.

Threat prose marks parameter names as code (```area```); everything this module returns is plain
text (:func:`plain`: ``'area'``), so no format shows a literal backtick.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from reidbench.attack_types import Access, Budget, Family, Threat
from reidbench.eval.results import CellResult

_CODE = re.compile(r"`+([^`]+?)`+")

SIDE_TEXT = {"query": "query", "gallery": "gallery", "both": "both (query and gallery)"}
BOTH_NOTE = ("'both': the query and the gallery images are both perturbed, each by the same attack. Matching perturbed "
             "queries against perturbed gallery images can restore their similarity (both moved alike), which is why an "
             "attack such as SMA can leave a higher mAP on both sides than on the query alone; the sanity check "
             "'both>one-side' flags where it does.")  # fmt: skip


def plain(text: str) -> str:
    """``text`` with its code marks as plain quotes: ```area``` -> ``'area'``."""
    return _CODE.sub(r"'\1'", text)


def code_spans(text: str, open_tag: str, close_tag: str) -> str:
    """Code marks as markup: ```area``` -> ``<open>area<close>`` (``text`` already escaped)."""
    return _CODE.sub(lambda m: f"{open_tag}{m.group(1)}{close_tag}", text)


def threat_from_json(d: Any) -> Threat | None:
    """A :class:`Threat` from the manifest's structured form (enum names or values); None if malformed."""
    if not isinstance(d, dict):
        return None
    try:
        access = _enum(Access, d.get("access"))
        budget = _enum(Budget, d.get("budget", "NONE"))
        return Threat(access, str(d.get("how") or ""), str(d.get("knows") or ""), budget, str(d.get("scope") or ""))
    except (KeyError, ValueError, TypeError):
        return None


def threat_to_json(t: Threat) -> dict[str, str]:
    """The structured form the manifest stores (enum names)."""
    return {"access": t.access.name, "how": t.how, "knows": t.knows, "budget": t.budget.name, "scope": t.scope}


def _enum(cls: Any, v: Any) -> Any:
    if isinstance(v, str) and v in cls.__members__:
        return cls[v]
    return cls(v)


def threat_of(name: str, manifest: dict[str, Any] | None = None) -> Threat | None:
    """The structured threat of attack ``name``: the manifest's, else the registry's, else None."""
    attacks = (manifest or {}).get("attacks")
    entry = attacks.get(name) if isinstance(attacks, dict) else None
    if isinstance(entry, dict) and (t := threat_from_json(entry.get("threat_model"))) is not None:
        return t
    try:
        from reidbench.attacks import attack_entry

        return attack_entry(name).threat
    except Exception:  # an attack this installation does not know (a plugin, a renamed attack)
        return None


# -------------------------------------------------------------------------------------------------
# Per attack
# -------------------------------------------------------------------------------------------------


def access_phrase(threat: Threat | None, family: Family) -> str:
    """What the attacker knows of the model, in a few words, from the threat's access."""
    if threat is not None:
        return {
            Access.WHITE_BOX: "white-box on the target model" + (" and the gallery identities" if family.gallery_aware else ""),
            Access.SCORES: "score queries of the target model (no gradients)",
            Access.NONE: "no knowledge of the model",
            Access.INTERNAL: "none: a test-time perturbation inside the model (not an input attack)",
        }[threat.access]
    if family.perturbs_feature_map:
        return "none: a test-time perturbation inside the model (not an input attack)"
    if family.optimised:
        return "white-box on the target model" + (" and the gallery identities" if family.gallery_aware else "")
    return "no knowledge of the model"


def knowledge(rs: Sequence[CellResult], threat: Threat | None, defenses: Any) -> str:
    """The "attacker knows" cell of one attack's rows: access, transfer, defense mode."""
    parts: list[str] = []

    def add(p: str) -> None:
        if p not in parts:
            parts.append(p)

    for r in rs:
        c = r.config
        add(f"transfer from {c.surrogate} (black-box on the target)" if c.surrogate else access_phrase(threat, r.kind))
    for r in rs:
        c = r.config
        if c.defense != "none" and c.mode == "oblivious":
            add(f"oblivious to {c.defense}")
        elif c.defense != "none" and c.mode == "adaptive":
            tricks = []
            for d in c.defense.split("+"):
                info = defenses.get(d) if isinstance(defenses, dict) else None
                if isinstance(info, dict) and info.get("random"):
                    tricks.append("EOT")
                if isinstance(info, dict) and info.get("differentiable", True) is False:
                    tricks.append("BPDA")
            add(f"adaptive through {c.defense}" + (f" ({'+'.join(sorted(set(tricks)))})" if tricks else ""))
    return "; ".join(parts)


def _values(rs: Iterable[CellResult], field: str) -> list[Any]:
    return sorted({v for r in rs if (v := getattr(r.config, field)) is not None})


def budget_cell(rs: Sequence[CellResult], threat: Threat | None, family: Family, defaults: Any) -> str:
    """The "budget" cell of one attack's rows, named by the threat's budget kind."""
    eps, step, steps, area = (_values(rs, f) for f in ("eps", "step", "steps", "area"))
    kind = threat.budget if threat is not None else (Budget.LINF if family.linf_family else Budget.AREA if area else Budget.NONE)
    out = []
    if eps:
        out.append("eps " + ", ".join(f"{e:g}" for e in eps) + " /255" + (" (L-inf)" if kind is Budget.LINF else ""))
    elif kind is Budget.L2:
        out.append("L2, no eps")
    if step:
        out.append("step " + ", ".join(f"{s:g}" for s in step) + " /255")
    if steps:
        out.append(", ".join(map(str, steps)) + " iterations")
    ranges = sorted({_range_text(p) for r in rs if r.config.area is None and (p := _param(r, "area")) is not _MISSING} - {""})
    if area or ranges:
        out.append("area " + ", ".join([*(f"{a:g}" for a in area), *ranges]) + " (fraction of the image)")
    elif kind is Budget.AREA:
        out.append("area: the attack's default")
    if isinstance(defaults, dict) and "momentum" in defaults:
        out.append(f"momentum {defaults['momentum']}")
    return "; ".join(out) or "–"


_MISSING = object()


def _param(r: CellResult, key: str) -> Any:
    try:
        p = json.loads(r.config.params or "{}")
    except ValueError:
        return _MISSING
    return p.get(key, _MISSING) if isinstance(p, dict) else _MISSING


def _range_text(v: Any) -> str:
    """A non-scalar area parameter: ``[0.02, 0.4]`` -> ``0.02-0.4 (random)``; None -> the default."""
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        return f"{v[0]:g}–{v[1]:g} (drawn per image)"
    if v is None:
        return "the attack's default"
    return ""


_MODEL_CLAUSES = ("white-box on {m}", "queries {m}", "evaluated on {m}", "no queries or gradients of {m}")


def recorded_text(rs: Sequence[CellResult]) -> str:
    """Fallback when no structured threat is known: the union of the cells' recorded clauses,
    without the side, budget and defense clauses (they have their own columns) and with the
    evaluated model's name generalised, so cells that differ only in model share one text."""
    clauses: list[str] = []
    for r in rs:
        for c in (r.threat or "").split(";"):
            c = c.strip()
            if not c or c.startswith(("budget ", "defense ")) or c == "none (clean)" or c.endswith(" attacked"):
                continue
            for pat in _MODEL_CLAUSES:
                c = c.replace(pat.format(m=r.config.model), pat.format(m="the target model"))
            if c not in clauses:
                clauses.append(c)
    return "; ".join(clauses)


# -------------------------------------------------------------------------------------------------
# The run as a whole
# -------------------------------------------------------------------------------------------------


def _names(xs: Iterable[str]) -> str:
    return ", ".join(sorted(set(xs)))


def summary_lines(records: Sequence[CellResult], manifest: dict[str, Any] | None = None) -> list[str]:
    """Who is attacked, what the attackers know, the defense modes and the budgets of this run,
    each attack named under the kind of its access and budget."""
    attacked = [r for r in records if r.config.attack != "none"]
    if not attacked:
        return ["who is attacked: nobody; every cell of this run is clean (no attack, no attacker, no budget)"]
    sides = sorted({r.config.target for r in attacked}, key=lambda s: ("query", "gallery", "both").index(s) if s in SIDE_TEXT else 9)
    lines = ["who is attacked: " + "; ".join(f"{SIDE_TEXT.get(s, s)} ({_names(r.config.attack for r in attacked if r.config.target == s)})"
                                             for s in sides)]  # fmt: skip
    by_access: dict[str, list[str]] = {}
    by_budget: dict[str, list[str]] = {}
    for name in sorted({r.config.attack for r in attacked}):
        rs = [r for r in attacked if r.config.attack == name]
        t = threat_of(name, manifest)
        fam = rs[0].kind
        by_access.setdefault(access_phrase(t, fam), []).append(name)
        kind = t.budget if t is not None else (Budget.LINF if fam.linf_family else Budget.AREA if fam.occludes else Budget.NONE)
        text = {Budget.LINF: "L-inf eps and step in /255 units of [0,1] images",
                Budget.L2: "L2, no eps (not comparable with L-inf budgets)",
                Budget.AREA: "area, the occluded or perturbed fraction of the image",
                Budget.NONE: "none"}[kind]  # fmt: skip
        by_budget.setdefault(text, []).append(name)
    know = [f"{k} ({', '.join(v)})" for k, v in by_access.items()]
    transfer = sorted({r.config.surrogate for r in attacked if r.config.surrogate})
    if transfer:
        know.append("transfer: crafted on " + ", ".join(transfer) + ", evaluated on the target (black-box)")
    lines.append("what the attacker knows: " + "; ".join(know))
    modes = {r.config.mode for r in attacked if r.config.defense != "none"}
    if modes:
        eot = ((manifest or {}).get("config") or {}).get("eot") if isinstance((manifest or {}).get("config"), dict) else None
        how = []
        if "oblivious" in modes:
            how.append("oblivious (crafted on the bare model, the defense applied afterwards)")
        if "adaptive" in modes:
            how.append("adaptive (crafted through the defense: BPDA for non-differentiable parts, EOT"
                       + (f" over {eot} draws" if eot else "") + " for random ones)")  # fmt: skip
        lines.append("defenses: " + " and ".join(how))
    lines.append("budget: " + "; ".join(f"{k} ({', '.join(v)})" for k, v in by_budget.items())
                 + ("; iterations as listed per cell" if any(r.config.steps is not None for r in attacked) else ""))  # fmt: skip
    if "both" in sides:
        lines.append(BOTH_NOTE)
    return lines
