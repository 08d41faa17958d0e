"""The benchmark harness: a grid of (model, defense, mode, attack, parameters, target) cells.

``run_grid(spec, run_dir)`` expands the grid, skips the cells whose records already exist
(resume), and runs the rest one by one. Each finished cell is written atomically to
``run_dir/cells/<cell_id>.json`` before the next starts, so an interrupted run loses at most the
cell it was in, and a re-run computes exactly the missing cells. Every cell is seeded from its own
configuration (attack randomness from the seed and the image index, defense draws from the seed
and the draw number), never from what ran before it, so a resumed run gives the same numbers as an
uninterrupted one.

Threat models, per cell:

* **who is attacked**: the query set (default), the gallery, or both (``target``);
* **knowledge**: white-box on the evaluated network; a transfer attack crafted on ``surrogate``;
  oblivious to a defense (crafted on the bare network, the defense applied when features are
  extracted) or adaptive (crafted through the defense, BPDA for its non-differentiable parts and
  EOT over ``eot`` draws for its random ones);
* **budget**: L-inf eps, step and iterations in /255 units, written on every row.

The clean gallery's features depend only on (model, defense, dataset, draw) and are computed once
per run directory and cached in ``run_dir/cache``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reidbench import __version__
from reidbench.data import ReIDDataset, load_dataset
from reidbench.data.images import load_images, to_float
from reidbench.defenses.adaptive import draw_seed
from reidbench.errors import ParameterError
from reidbench.eval.features import extract_features
from reidbench.eval.results import (
    CellArtifact,
    CellConfig,
    CellResult,
    artifact_path,
    atomic_write_text,
    read_records,
    write_record,
    write_tables,
)

log = logging.getLogger(__name__)

MODES = ("oblivious", "adaptive")
TARGETS = ("query", "gallery", "both")
BUDGET_KEYS = {"eps": "eps", "step": "step", "steps": "steps", "area": "area"}


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

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["data_root"] = str(self.data_root) if self.data_root is not None else None
        return d


@dataclass
class PlannedCell:
    config: CellConfig
    request: AttackRequest | None


# ---------------------------------------------------------------------------------------------
# Grid expansion
# ---------------------------------------------------------------------------------------------


def _attack_meta(name: str) -> Any:
    from reidbench.attacks import ATTACKS

    return ATTACKS.get(name)


def _queries_model(cls: type) -> bool:
    """Whether an attack uses the model (gradients or queries): then a defense has two modes."""
    return bool(getattr(cls, "queries_model", getattr(cls, "differentiable", False)))


def _defense_is_random(spec: str) -> bool:
    from reidbench.defenses import DEFENSES
    from reidbench.defenses.base import split_chain

    return any(DEFENSES.get(n).random for n in split_chain(spec))


def resolve_defense(name: str, card: Any) -> str:
    if name == "auto":
        return card.inference_defense or "none"
    return name


def plan_cells(spec: GridSpec, cards: dict[str, Any], models: dict[str, nn.Module] | None = None) -> list[PlannedCell]:
    """Every cell of the grid, in run order (model, defense, attack, mode, target, surrogate).

    With ``models``, every distinct attack is also built once on its model, so an out-of-range
    parameter is reported before any data is read.
    """
    from reidbench.attacks import attack_params, create_attack

    for m in spec.modes:
        if m not in MODES:
            raise ParameterError(f"unknown mode {m!r}; use oblivious and/or adaptive")
    for t in spec.targets:
        if t not in TARGETS:
            raise ParameterError(f"unknown target {t!r}; use query, gallery or both")
    cells: list[PlannedCell] = []
    seen: set[str] = set()
    for model in spec.models:
        card = cards[model]
        defenses = list(dict.fromkeys(resolve_defense(d, card) for d in spec.defenses))
        for defense in defenses:
            for req in spec.attacks:
                base = dict(model=model, dataset=spec.dataset, defense=defense, seed=spec.seed,
                            rerank=spec.rerank, distance=spec.distance or card.distance,
                            ap_variant=spec.ap_variant)  # fmt: skip
                if req.name == "none":
                    cfg = CellConfig(**base)  # type: ignore[arg-type]
                    plans = [PlannedCell(cfg, None)]
                else:
                    entry = _attack_meta(req.name)
                    params = attack_params(req.name, **req.params)
                    random_defense = defense != "none" and _defense_is_random(defense)
                    # scalar budgets go into their own columns; a range (feature-map area) stays in params only
                    budget = {k: v for k in BUDGET_KEYS if isinstance(v := params.get(k), (int, float)) and not isinstance(v, bool)}
                    modes = ["none"] if defense == "none" else (spec.modes if _queries_model(entry.cls) else ["oblivious"])
                    surrogates = [""]
                    if getattr(entry.cls, "differentiable", False):
                        surrogates += [s for s in spec.surrogates if s != model]
                    plans = []
                    for mode in modes:
                        for target in spec.targets:
                            for sur in surrogates:
                                if sur and mode == "adaptive":
                                    continue  # a transfer attacker does not see the defense
                                p = dict(params)
                                if mode == "adaptive" and random_defense and "eot" in p:
                                    p["eot"] = spec.eot  # EOT changes the numbers: part of the cell
                                cfg = CellConfig(**base, attack=req.name, mode=mode, target=target, surrogate=sur,  # type: ignore[arg-type]
                                                 params=json.dumps(p, sort_keys=True),
                                                 eps=_f(budget.get("eps")), step=_f(budget.get("step")),
                                                 steps=_i(budget.get("steps")), area=_f(budget.get("area")))  # fmt: skip
                                plans.append(PlannedCell(cfg, AttackRequest(req.name, p)))
                if models is not None and req.name != "none":
                    create_attack(req.name, models[model], **plans[0].request.params)  # type: ignore[union-attr]
                for p in plans:
                    if p.config.cell_id not in seen:
                        seen.add(p.config.cell_id)
                        cells.append(p)
    return cells


def _f(x: Any) -> float | None:
    return None if x is None else float(x)


def _i(x: Any) -> int | None:
    return None if x is None else int(x)


# ---------------------------------------------------------------------------------------------
# Runtime state: models, data, cached features
# ---------------------------------------------------------------------------------------------


@dataclass
class SplitData:
    query: torch.Tensor  # uint8 (N,3,H,W) at one model's input size
    gallery: torch.Tensor
    q_pids: torch.Tensor
    g_pids: torch.Tensor
    q_camids: torch.Tensor
    g_camids: torch.Tensor


class Runtime:
    """Models, images and gallery features, loaded lazily and reused across cells."""

    def __init__(self, spec: GridSpec, dataset: ReIDDataset, run_dir: Path, progress: bool = True) -> None:
        self.spec = spec
        self.progress = progress
        self.dataset = dataset
        self.run_dir = run_dir
        self.device = torch.device(spec.device)
        self._models: dict[str, nn.Module] = {}
        self._splits: dict[tuple[int, int], SplitData] = {}
        self._gallery: dict[str, torch.Tensor] = {}

    # models ------------------------------------------------------------------------------
    def model(self, name: str) -> nn.Module:
        if name not in self._models:
            from reidbench.models import create_model

            ckpt = self.spec.checkpoints.get(name, "default")
            m = create_model(name, checkpoint=ckpt, device=self.device, options=self.spec.model_options.get(name))
            self._models[name] = m
        return self._models[name]

    def bare(self, name: str) -> nn.Module:
        return self.model(name).bare()  # type: ignore[operator]

    def card(self, name: str) -> Any:
        return self.model(name).card

    # data --------------------------------------------------------------------------------
    def split(self, size: tuple[int, int]) -> SplitData:
        size = tuple(size)  # type: ignore[assignment]
        if size not in self._splits:
            q, g = self.dataset.query, self.dataset.gallery
            self._splits[size] = SplitData(
                query=load_images(q, size, desc="query"),
                gallery=load_images(g, size, desc="gallery"),
                q_pids=torch.tensor([s.pid for s in q]),
                g_pids=torch.tensor([s.pid for s in g]),
                q_camids=torch.tensor([s.camid for s in q]),
                g_camids=torch.tensor([s.camid for s in g]),
            )
        return self._splits[size]

    @property
    def batch_size(self) -> int:
        return self.spec.batch_size or (512 if self.device.type == "cuda" else 128)

    # defenses ----------------------------------------------------------------------------
    def defense(self, name: str, input_size: tuple[int, int], seed: int) -> nn.Module | None:
        if name == "none":
            return None
        from reidbench.defenses import create_defense

        return create_defense(name, input_size=tuple(input_size), seed=seed).to(self.device)

    # gallery features ---------------------------------------------------------------------
    def gallery_features(self, model: str, defense_name: str, draw_seed: int) -> torch.Tensor:
        card = self.card(model)
        key_src = json.dumps([model, card.sha256, card.checkpoint, defense_name, draw_seed, self.dataset.fingerprint,
                              list(card.input_size), self.spec.amp], sort_keys=True, default=str)  # fmt: skip
        key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
        if key in self._gallery:
            return self._gallery[key]
        path = self.run_dir / "cache" / f"gallery-{key}.pt"
        if path.is_file():
            feats = torch.load(path, map_location=self.device, weights_only=True)
        else:
            net = self.bare(model)
            split = self.split(card.input_size)
            d = self.defense(defense_name, card.input_size, draw_seed)
            feats = extract_features(net, split.gallery, batch_size=self.batch_size, defense=d, amp=self.spec.amp)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(feats.cpu(), tmp)
            tmp.replace(path)
        self._gallery[key] = feats
        return feats


# ---------------------------------------------------------------------------------------------
# Running one cell
# ---------------------------------------------------------------------------------------------


def _attack_batches(atk: Any, images: torch.Tensor, labels: torch.Tensor | None, batch: int, device: torch.device,
                    desc: str, progress: bool = True) -> torch.Tensor:
    from reidbench.progress import bar as tqdm

    out = torch.empty_like(images)
    with tqdm(total=len(images), desc=desc, unit="img", leave=False, position=1, disable=not progress) as bar:
        for s in range(0, len(images), batch):
            x = to_float(images[s : s + batch].to(device))
            y = None if labels is None else labels[s : s + batch].to(device)
            idx = torch.arange(s, s + len(x), device=device)
            adv = atk(x, y, index=idx)
            out[s : s + len(x)] = (adv.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu()
            bar.update(len(x))
    return out


def _prototypes(feats: torch.Tensor, pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    keep = pids > 0  # distractors (pid 0) are not an identity
    uniq = torch.unique(pids[keep])
    protos = torch.stack([feats[keep][pids[keep] == p].mean(0) for p in uniq]) if len(uniq) else feats[:0]
    return protos, uniq


def _threat_text(cfg: CellConfig, entry: Any, params: dict[str, Any], eot: int, random_defense: bool) -> str:
    if cfg.attack == "none":
        return "none (clean)"
    side = {"query": "query images", "gallery": "gallery images", "both": "query and gallery images"}[cfg.target]
    # the attack's own text says "white-box"; say on which network, and for transfer that the
    # evaluated network itself is never queried
    threat = entry.threat
    for lead in ("white-box on the embedding; ", "white-box and "):
        threat = threat.removeprefix(lead)
    if cfg.surrogate:
        know = f"transfer: crafted white-box on {cfg.surrogate}, evaluated on {cfg.model} (black-box: no queries or gradients of {cfg.model})"
    elif _queries_model(entry.cls):
        know = f"white-box on {cfg.model}" if getattr(entry.cls, "differentiable", False) else f"queries {cfg.model}"
    else:
        know = ""
    budget = ", ".join(f"{k}={params[k]}" for k in ("eps", "step", "steps", "momentum", "area") if k in params)
    parts = [f"{side} attacked", know, threat]
    if budget:
        parts.append(f"budget {budget} (eps/step in /255)")
    if cfg.defense != "none":
        if cfg.mode == "adaptive":
            how = "BPDA on non-differentiable parts" + (f", EOT over {eot} draws" if random_defense else "")
            parts.append(f"defense {cfg.defense}: adaptive ({how})")
        else:
            parts.append(f"defense {cfg.defense}: oblivious (crafted without it)")
    return "; ".join(p for p in parts if p)


def _ranking(q: torch.Tensor, g: torch.Tensor, metric: str, k: int) -> torch.Tensor:
    from reidbench.eval.distance import compute_distance

    d = compute_distance(q, g, metric=metric)
    return torch.topk(d, k=min(k, d.shape[1]), dim=1, largest=False).indices.cpu()


def evaluate_features(qf: torch.Tensor, gf: torch.Tensor, split: SplitData, cfg: CellConfig) -> dict[str, Any]:
    """Metrics (percent) for one pair of feature sets; re-ranked ones under ``rr_`` when asked."""
    from reidbench.eval.distance import compute_distance
    from reidbench.eval.metrics import evaluate_rank

    max_rank = min(50, len(gf))
    d = compute_distance(qf, gf, metric=cfg.distance)
    r = evaluate_rank(d, split.q_pids, split.g_pids, split.q_camids, split.g_camids, max_rank=max_rank, ap=cfg.ap_variant)
    out: dict[str, Any] = {
        "rank1": 100 * r.rank(1), "rank5": 100 * r.rank(min(5, max_rank)), "rank10": 100 * r.rank(min(10, max_rank)),
        "mAP": 100 * r.mAP, "mINP": 100 * r.mINP, "n_valid_query": int(r.num_valid),
    }  # fmt: skip
    if cfg.rerank:
        from reidbench.eval.rerank import re_ranking

        rr = re_ranking(d, compute_distance(qf, qf, metric=cfg.distance), compute_distance(gf, gf, metric=cfg.distance))
        r2 = evaluate_rank(rr, split.q_pids, split.g_pids, split.q_camids, split.g_camids, max_rank=max_rank, ap=cfg.ap_variant)
        out.update({"rr_rank1": 100 * r2.rank(1), "rr_mAP": 100 * r2.mAP, "rr_mINP": 100 * r2.mINP})
    return out


def run_cell(rt: Runtime, plan: PlannedCell) -> tuple[CellResult, CellArtifact | None]:
    """Run one cell: craft (if attacked), extract, evaluate over the defense's draws."""
    cfg = plan.config
    t0 = time.perf_counter()
    spec = rt.spec
    card = rt.card(cfg.model)
    net = rt.bare(cfg.model)
    split = rt.split(card.input_size)
    base_seed = spec.seed
    random_defense = cfg.defense != "none" and _defense_is_random(cfg.defense)
    draws = spec.draws if random_defense else 1
    family, threat = "clean", "none (clean)"
    extra: dict[str, Any] = {}
    runtime_warnings: list[str] = []
    q_imgs, g_imgs = split.query, split.gallery
    fmap_hook = None
    fmap_side = "none"
    heatmaps = None
    params: dict[str, Any] = {}
    if plan.request is not None:
        from reidbench.attacks import ATTACKS, AttackContext, create_attack

        entry = ATTACKS.get(plan.request.name)
        family = entry.family
        params = dict(plan.request.params)
        if cfg.surrogate:
            craft_net: nn.Module = rt.bare(cfg.surrogate)
            craft_size = rt.card(cfg.surrogate).input_size
            if tuple(craft_size) != tuple(card.input_size):
                raise ParameterError(f"surrogate {cfg.surrogate} takes {craft_size} images but {cfg.model} takes "
                                     f"{card.input_size}; transfer needs the same input size")  # fmt: skip
        elif cfg.mode == "adaptive":
            from reidbench.defenses.adaptive import Defended

            craft_def = rt.defense(cfg.defense, card.input_size, draw_seed(base_seed, -1))
            craft_net = Defended(net, craft_def, bpda=True).eval()  # type: ignore[arg-type]
        else:
            craft_net = net
        atk = create_attack(plan.request.name, craft_net, **params)
        threat = _threat_text(cfg, entry, params, spec.eot, random_defense)

        def context_for(side: str) -> Any:
            """Side information for attacking ``side``, limited to what the attack's threat model uses."""
            ctx = AttackContext(seed=base_seed)
            own_imgs = split.query if side == "query" else split.gallery
            if getattr(atk, "uses_labels", False):
                ctx.camids = (split.q_camids if side == "query" else split.g_camids).to(rt.device)
            if getattr(atk, "uses_occluder_bank", False):
                # NPO cuts its occluders from a seeded sample of the attacked set's clean images
                pick = torch.randperm(len(own_imgs), generator=torch.Generator().manual_seed(base_seed))[:64]
                ctx.occluder_bank = to_float(own_imgs[pick].to(rt.device))
            needs_guides = getattr(atk, "uses_guides", False)
            needs_protos = getattr(atk, "uses_prototypes", False)
            if needs_guides or needs_protos:
                other = split.gallery if side == "query" else split.query
                o_pids = split.g_pids if side == "query" else split.q_pids
                o_cams = split.g_camids if side == "query" else split.q_camids
                feats = extract_features(craft_net, other, batch_size=rt.batch_size)
                if needs_guides:
                    ctx.guide_feats, ctx.guide_pids, ctx.guide_camids = feats, o_pids.to(feats.device), o_cams.to(feats.device)
                if needs_protos:
                    g_feats = feats if side == "query" else extract_features(
                        craft_net, split.gallery, batch_size=rt.batch_size)
                    ctx.proto_feats, ctx.proto_pids = (t.to(g_feats.device) for t in _prototypes(g_feats, split.g_pids.to(g_feats.device)))
            return ctx

        if family == "feature-map":
            atk.set_context(AttackContext(seed=base_seed))
            fmap_hook = atk.hook
            fmap_side = cfg.target
        else:
            labels_q = split.q_pids if getattr(atk, "uses_labels", False) else None
            labels_g = split.g_pids if getattr(atk, "uses_labels", False) else None
            if cfg.target in ("query", "both"):
                atk.set_context(context_for("query"))
                q_imgs = _attack_batches(atk, split.query, labels_q, rt.batch_size, rt.device, f"{cfg.attack} query", rt.progress)
                heatmaps = getattr(atk, "last_heatmaps", None)
            if cfg.target in ("gallery", "both"):
                atk.set_context(context_for("gallery"))
                g_imgs = _attack_batches(atk, split.gallery, labels_g, rt.batch_size, rt.device, f"{cfg.attack} gallery", rt.progress)
        stats = getattr(atk, "grad_stats", None)
        if stats:
            extra.update({k: v for k, v in stats.items() if isinstance(v, (int, float))})
        if cfg.target in ("query", "both") and family not in ("feature-map",):
            diff = (q_imgs.float() - split.query.float()).abs().amax(dim=(1, 2, 3)) / 255.0
            extra["linf_max"] = round(float(diff.max()) * 255, 3)
            eps = params.get("eps")
            if eps is not None and family in ("metric", "classification", "noise") and float(diff.max()) * 255 > eps + 0.51:
                runtime_warnings.append(f"[budget] {cfg.label()}: max |x_adv - x| = {float(diff.max()) * 255:.2f}/255 exceeds eps {eps}/255")

    per_draw = []
    qf0 = gf0 = None
    for d in range(draws):
        seed_d = draw_seed(base_seed, d)
        defense = rt.defense(cfg.defense, card.input_size, seed_d)
        hook_q = fmap_hook if fmap_side in ("query", "both") else None
        hook_g = fmap_hook if fmap_side in ("gallery", "both") else None
        if g_imgs is split.gallery and hook_g is None:
            gf = rt.gallery_features(cfg.model, cfg.defense, seed_d)
        else:
            gf = extract_features(net, g_imgs, batch_size=rt.batch_size, defense=defense, fmap_hook=hook_g, amp=spec.amp)
        qf = extract_features(net, q_imgs, batch_size=rt.batch_size, defense=defense, fmap_hook=hook_q, amp=spec.amp)
        per_draw.append(evaluate_features(qf, gf, split, cfg))
        if d == 0:
            qf0, gf0 = qf, gf
    metrics = {k: float(np.mean([m[k] for m in per_draw])) for k in per_draw[0] if k != "n_valid_query"}
    if cfg.rerank:
        extra.update({k: metrics.pop(k) for k in list(metrics) if k.startswith("rr_")})
    worst = min(per_draw, key=lambda m: m["mAP"])
    artifact = None
    if plan.request is not None and family != "feature-map" and spec.samples > 0 and qf0 is not None:
        artifact = _artifact(rt, split, q_imgs, qf0, gf0, cfg, net, spec.samples, heatmaps)
    if runtime_warnings:
        extra["runtime_warnings"] = runtime_warnings
    result = CellResult(
        config=cfg, family=family, threat=threat,
        rank1=metrics["rank1"], rank5=metrics["rank5"], rank10=metrics["rank10"], mAP=metrics["mAP"], mINP=metrics["mINP"],
        n_query=len(split.query), n_gallery=len(split.gallery), n_valid_query=per_draw[0]["n_valid_query"],
        seconds=round(time.perf_counter() - t0, 2), fingerprint=rt.dataset.fingerprint, draws=draws,
        mAP_worst=worst["mAP"] if draws > 1 else None, rank1_worst=worst["rank1"] if draws > 1 else None,
        mAP_std=float(np.std([m["mAP"] for m in per_draw])) if draws > 1 else None,
        warnings=tuple(runtime_warnings), extra=extra,
    )  # fmt: skip
    if spec.save_adv and plan.request is not None and family != "feature-map":
        _save_pngs(Path(spec.save_adv), cfg, split.query, q_imgs, spec.save_adv_count)
    return result, artifact


def _artifact(rt: Runtime, split: SplitData, q_adv: torch.Tensor, qf: torch.Tensor, gf: torch.Tensor, cfg: CellConfig,
              net: nn.Module, n: int, heatmaps: Any) -> CellArtifact:
    """A few queries with their clean and attacked top-10, for the report's pictures."""
    seed0 = draw_seed(rt.spec.seed, 0)
    clean_gf = rt.gallery_features(cfg.model, cfg.defense, seed0)
    clean_qf = extract_features(net, split.query, batch_size=rt.batch_size,
                                defense=rt.defense(cfg.defense, rt.card(cfg.model).input_size, seed0))  # fmt: skip
    gen = torch.Generator().manual_seed(rt.spec.seed)
    idx = torch.randperm(len(split.query), generator=gen)[:n].sort().values
    top_clean = _ranking(clean_qf[idx], clean_gf, cfg.distance, 10)
    top_adv = _ranking(qf[idx], gf, cfg.distance, 10)
    union = torch.unique(torch.cat([top_clean.flatten(), top_adv.flatten()]))
    remap = {int(g): i for i, g in enumerate(union.tolist())}
    q_p = split.q_pids[idx]
    g_p = split.g_pids[union]

    def local(top: torch.Tensor) -> np.ndarray:
        return np.array([[remap[int(g)] for g in row] for row in top.tolist()], dtype=np.int64)

    lc, la = local(top_clean), local(top_adv)
    hm = None
    if heatmaps is not None and len(heatmaps) == len(split.query):
        hm = np.asarray(torch.as_tensor(heatmaps)[idx].float().cpu())
    return CellArtifact(
        query_index=idx.numpy(), query_pids=q_p.numpy(), clean=split.query[idx].numpy(), attacked=q_adv[idx].numpy(),
        gallery_thumbs=split.gallery[union].numpy(), clean_topk=lc, attacked_topk=la,
        clean_match=(g_p[torch.as_tensor(lc)] == q_p.view(-1, 1)).numpy(),
        attacked_match=(g_p[torch.as_tensor(la)] == q_p.view(-1, 1)).numpy(), heatmaps=hm,
    )  # fmt: skip


def _save_pngs(folder: Path, cfg: CellConfig, clean: torch.Tensor, adv: torch.Tensor, n: int) -> None:
    from PIL import Image

    sub = folder / cfg.label().replace(" / ", "__").replace(" ", "_").replace("=", "").replace("[", "").replace("]", "")
    sub.mkdir(parents=True, exist_ok=True)
    for i in range(min(n, len(adv))):
        Image.fromarray(clean[i].permute(1, 2, 0).numpy()).save(sub / f"{i:04d}_clean.png")
        Image.fromarray(adv[i].permute(1, 2, 0).numpy()).save(sub / f"{i:04d}_adv.png")


# ---------------------------------------------------------------------------------------------
# The grid
# ---------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    import torchattacks
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "torchattacks": torchattacks.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "platform": platform.platform()}  # fmt: skip


def write_manifest(run_dir: Path, spec: GridSpec, rt: Runtime, command: str, cells: list[PlannedCell]) -> dict[str, Any]:
    from reidbench.attacks import ATTACKS

    models: dict[str, Any] = {}
    for name in dict.fromkeys([*spec.models, *spec.surrogates]):
        card = rt.card(name)
        models[name] = {"checkpoint": card.checkpoint, "sha256": card.sha256,
                        "card": json.loads(card.to_json()), "options": getattr(rt.model(name), "options", {})}  # fmt: skip
    defenses: dict[str, Any] = {}
    for name in sorted({c.config.defense for c in cells} - {"none"}):
        d = rt.defense(name, rt.card(cells[0].config.model).input_size, 0)
        defenses[name] = {"random": bool(getattr(d, "random", False)), "differentiable": bool(getattr(d, "differentiable", True)),
                          "description": (type(d).__doc__ or "").strip().splitlines()[0] if type(d).__doc__ else ""}  # fmt: skip
    attacks = {}
    for name in sorted({c.config.attack for c in cells} - {"none"}):
        e = ATTACKS.get(name)
        attacks[name] = {"family": e.family, "threat": e.threat, "defaults": e.defaults}
    manifest = {
        "reidbench_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "device": str(rt.device) + (f" ({torch.cuda.get_device_name(rt.device)})" if rt.device.type == "cuda" else ""),
        "threads": torch.get_num_threads(),
        "seed": spec.seed,
        "command": command,
        "config": spec.to_json(),
        "dataset": {"name": rt.dataset.name, "fingerprint": rt.dataset.fingerprint, "root": str(rt.dataset.root),
                    "n_query": len(rt.dataset.query), "n_gallery": len(rt.dataset.gallery), "n_train": len(rt.dataset.train)},
        "models": models,
        "defenses": defenses,
        "attacks": attacks,
        "threat_models": [
            "who is attacked: " + ", ".join(sorted({c.config.target for c in cells} - {"none"}) or ["nobody (clean only)"]),
            "knowledge: white-box on the evaluated model" + ("; transfer from " + ", ".join(spec.surrogates) if spec.surrogates else "")
            + ("; oblivious and adaptive to defenses (BPDA for non-differentiable parts, EOT over "
               f"{spec.eot} draws for random ones)" if any(c.config.mode == "adaptive" for c in cells) else ""),
            "budget: L-inf eps and step in /255 units, iterations as listed per cell",
        ],
        "cells_planned": len(cells),
    }  # fmt: skip
    old = run_dir / "manifest.json"
    if old.is_file():
        try:
            prev = json.loads(old.read_text())
            manifest["created"] = prev.get("created", manifest["created"])
            manifest["invocations"] = prev.get("invocations", []) + [{"command": command, "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}]
        except json.JSONDecodeError:
            pass
    manifest.setdefault("invocations", [{"command": command, "at": manifest["created"]}])
    atomic_write_text(old, json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return manifest


def run_grid(spec: GridSpec, run_dir: str | Path, *, command: str = "", fresh: bool = False,
             progress: bool = True) -> list[CellResult]:
    """Run every missing cell of ``spec`` in ``run_dir``; return the records of the grid's cells."""
    import shutil

    from reidbench.progress import bar as tqdm

    run_dir = Path(run_dir)
    torch.manual_seed(spec.seed)
    rt = Runtime(spec, None, run_dir, progress=progress)  # type: ignore[arg-type]
    for name in dict.fromkeys([*spec.models, *spec.surrogates]):
        rt.model(name)  # fail early on an unknown model or a bad checkpoint
    cards = {n: rt.card(n) for n in spec.models}
    cells = plan_cells(spec, cards, {n: rt.bare(n) for n in spec.models})  # validates before any data is read
    rt.dataset = load_dataset(spec.dataset, spec.data_root)
    if fresh and run_dir.exists():
        for sub in ("cells", "artifacts", "cache"):
            shutil.rmtree(run_dir / sub, ignore_errors=True)
        for f in ("results.csv", "results.jsonl", "manifest.json", "sanity.json", "report.pdf"):
            (run_dir / f).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(run_dir, spec, rt, command, cells)
    done = {r.cell_id: r for r in _existing(run_dir)}
    todo = [c for c in cells if c.config.cell_id not in done]
    if done:
        log.info("resuming: %d of %d cells already done", len(cells) - len(todo), len(cells))
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="cells", unit="cell", disable=not progress, position=0)
    try:
        for plan in todo:
            bar.set_postfix_str(plan.config.label()[:60], refresh=True)
            result, artifact = run_cell(rt, plan)
            if artifact is not None:
                artifact.save(artifact_path(run_dir, result.cell_id))
            write_record(run_dir, result)
            done[result.cell_id] = result
            write_tables(run_dir, _grid_records(cells, done))
            bar.update(1)
    finally:
        bar.close()
    records = finalize(run_dir, cells)
    return records


def _existing(run_dir: Path) -> Iterator[CellResult]:
    if (run_dir / "cells").is_dir():
        yield from read_records(run_dir)


def _grid_records(cells: list[PlannedCell], done: dict[str, CellResult]) -> list[CellResult]:
    return [done[c.config.cell_id] for c in cells if c.config.cell_id in done]


def finalize(run_dir: Path, cells: list[PlannedCell] | None = None) -> list[CellResult]:
    """Attach the sanity checks' warnings to every record of the run and rewrite the tables.

    Warnings are recomputed from all records each time, so they never go stale when a run grows.
    """
    records = read_records(run_dir)
    try:
        from reidbench.eval.sanity import run_sanity_checks
    except ImportError:  # pragma: no cover - the sanity module ships with reidbench
        run_sanity_checks = None
    by_cell: dict[str, list[str]] = {}
    if run_sanity_checks is not None:
        for w in run_sanity_checks(records):
            by_cell.setdefault(w.cell_id, []).append(w.message)
    updated = []
    for r in records:
        base = tuple(r.extra.get("runtime_warnings", ()))
        new = dataclasses.replace(r, warnings=base + tuple(by_cell.get(r.cell_id, ())))
        if new.warnings != r.warnings:
            write_record(run_dir, new)
        updated.append(new)
    atomic_write_text(run_dir / "sanity.json", json.dumps(by_cell, indent=1, sort_keys=True))
    if cells is not None:
        # the grid's cells first, in grid order; cells of earlier invocations of the same run dir after them
        by_id = {r.cell_id: r for r in updated}
        grid = [by_id[c.config.cell_id] for c in cells if c.config.cell_id in by_id]
        in_grid = {r.cell_id for r in grid}
        write_tables(run_dir, grid + [r for r in updated if r.cell_id not in in_grid])
        return grid
    write_tables(run_dir, updated)
    return updated

