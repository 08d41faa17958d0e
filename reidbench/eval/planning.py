"""Planning: a grid of (model, defense, attack, parameters, mode, target, surrogate) to cells.

Pure functions of the grid and the models' cards: nothing here reads data or runs a model, so
the plan (and every cell id) is known, and validated, before the first image is loaded.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from reidbench.attacks import AttackEntry, attack_entry, attack_params, create_attack
from reidbench.defenses import DEFENSES
from reidbench.defenses.base import split_chain
from reidbench.errors import ParameterError
from reidbench.eval.results import CellConfig

MODES = ("oblivious", "adaptive")
TARGETS = ("query", "gallery", "both")
#: Scalar budgets that get their own columns (a range, such as a feature-map area, stays in params).
BUDGET_COLUMNS = ("eps", "step", "steps", "area")


@dataclass(frozen=True)
class AttackRequest:
    """One attack with fully specified parameters (CLI units: eps/step in /255)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        return json.dumps({"name": self.name, "params": self.params}, sort_keys=True)


@dataclass
class GridSpec:
    """What to run. ``defenses`` entries are ``auto`` (the model's built-in inference defense,
    e.g. JAD's circuitous scaling, or none), ``none``, or a defense chain such as ``jpeg+median``."""

    models: list[str]
    attacks: list[AttackRequest]
    dataset: str = "synthetic-mini"
    data_root: str | Path | None = None
    # more than one dataset: every cell on each (``dataset`` is then ignored); ``dataset_attacks``
    # replaces ``attacks`` on the datasets it names (the default benchmark's occluded twin)
    datasets: list[str] = field(default_factory=list)
    dataset_attacks: dict[str, list[AttackRequest]] = field(default_factory=dict)
    clean_only: list[str] = field(default_factory=list)  # models run on clean cells only (a paper's ablations)
    defenses: list[str] = field(default_factory=lambda: ["auto"])
    modes: list[str] = field(default_factory=lambda: list(MODES))
    targets: list[str] = field(default_factory=lambda: ["query"])
    surrogates: list[str] = field(default_factory=list)
    checkpoints: dict[str, str] = field(default_factory=dict)
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 0
    rerank: bool = False
    distance: str | None = None  # None: the model card's (cosine for every registered model)
    ap_variant: str = "market"
    eot: int = 20
    draws: int = 5
    batch_size: int | None = None
    device: str = "cpu"
    amp: bool = False
    samples: int = 6  # queries stored per cell for the report's pictures
    save_adv: str | None = None  # a folder for PNGs of adversarial samples
    save_adv_count: int = 16
    # Working memory of each evaluation (bytes or a size such as "2GB"; None: 512 MiB); it does
    # not change the numbers (reidbench.eval.evaluate_features).
    memory_budget: int | str | None = None

    def dataset_names(self) -> list[str]:
        return list(dict.fromkeys(self.datasets)) or [self.dataset]

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["data_root"] = str(self.data_root) if self.data_root is not None else None
        return d


@dataclass
class PlannedCell:
    config: CellConfig
    request: AttackRequest | None


def defense_is_random(spec: str) -> bool:
    return any(DEFENSES.get(n).random for n in split_chain(spec))


def resolve_defense(name: str, card: Any) -> str:
    if name == "auto":
        return card.inference_defense or "none"
    return name


def check_axes(spec: GridSpec) -> None:
    for m in spec.modes:
        if m not in MODES:
            raise ParameterError(f"unknown mode {m!r}; use oblivious and/or adaptive")
    for t in spec.targets:
        if t not in TARGETS:
            raise ParameterError(f"unknown target {t!r}; use query, gallery or both")


def budget_columns(params: dict[str, Any]) -> dict[str, float | int | None]:
    """The scalar budgets of a parameter set, typed for CellConfig's columns."""
    def scalar(k: str) -> Any:
        v = params.get(k)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    cols = {k: scalar(k) for k in BUDGET_COLUMNS}
    return {k: (None if v is None else int(v) if k == "steps" else float(v)) for k, v in cols.items()}


def attack_variants(entry: AttackEntry, defense: str, model: str, spec: GridSpec) -> list[tuple[str, str, str]]:
    """The (mode, target, surrogate) triples of one attack on one (model, defense).

    A defense has two modes only for attacks that use the model; transfer is for gradient
    attacks, and a transfer attacker does not see the defense (no adaptive transfer).
    """
    modes = ["none"] if defense == "none" else (spec.modes if entry.queries_model else ["oblivious"])
    surrogates = [""] + ([s for s in spec.surrogates if s != model] if entry.differentiable else [])
    return [(mode, target, sur) for mode in modes for target in spec.targets for sur in surrogates
            if not (sur and mode == "adaptive")]  # fmt: skip


def attack_cells(base: dict[str, Any], req: AttackRequest, defense: str, spec: GridSpec) -> list[PlannedCell]:
    """The cells of one attack request on one (model, defense)."""
    entry = attack_entry(req.name)
    params = attack_params(req.name, **req.params)
    random_defense = defense != "none" and defense_is_random(defense)
    plans = []
    for mode, target, sur in attack_variants(entry, defense, base["model"], spec):
        p = dict(params)
        if mode == "adaptive" and random_defense and "eot" in p:
            p["eot"] = spec.eot  # EOT changes the numbers: part of the cell
        cfg = CellConfig(**base, attack=entry.name, mode=mode, target=target, surrogate=sur,
                         params=json.dumps(p, sort_keys=True), **budget_columns(params))  # fmt: skip
        plans.append(PlannedCell(cfg, AttackRequest(entry.name, p)))
    return plans


def plan_cells(spec: GridSpec, cards: dict[str, Any], models: dict[str, nn.Module] | None = None) -> list[PlannedCell]:
    """Every cell of the grid, in run order (model, defense, attack, mode, target, surrogate).

    With ``models``, every distinct attack is also built once on its model, so an out-of-range
    parameter is reported before any data is read. A cell planned twice is kept once.
    """
    check_axes(spec)
    cells: list[PlannedCell] = []
    seen: set[str] = set()
    for dataset in spec.dataset_names():
        for model in spec.models:
            card = cards[model]
            for defense in dict.fromkeys(resolve_defense(d, card) for d in spec.defenses):
                base = dict(model=model, dataset=dataset, defense=defense, seed=spec.seed, rerank=spec.rerank,
                            distance=spec.distance or card.distance, ap_variant=spec.ap_variant)  # fmt: skip
                requests = spec.dataset_attacks.get(dataset, spec.attacks)
                for req in [r for r in requests if r.name == "none"] if model in spec.clean_only else requests:
                    if req.name == "none":
                        plans = [PlannedCell(CellConfig(**base), None)]
                    else:
                        plans = attack_cells(base, req, defense, spec)
                        if models is not None:
                            create_attack(req.name, models[model], **plans[0].request.params)  # type: ignore[union-attr]
                    for p in plans:
                        if p.config.cell_id not in seen:
                            seen.add(p.config.cell_id)
                            cells.append(p)
    return cells
