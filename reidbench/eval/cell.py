"""Running one cell: craft network, perturb, extract, evaluate over the defense's draws.

Threat models, per cell:

* **who is attacked**: the query set (default), the gallery, or both (``target``);
* **knowledge**: white-box on the evaluated network; a transfer attack crafted on ``surrogate``;
  oblivious to a defense (crafted on the bare network, the defense applied when features are
  extracted) or adaptive (crafted through the defense, BPDA for its non-differentiable parts and
  EOT over ``eot`` draws for its random ones);
* **budget**: L-inf eps, step and iterations in /255 units, written on every row.

The attack is handed only what its flags ask for (:func:`attack_context`): labels only to
label-using attacks, the other set's features only to guide-using ones, and so on.

Under ``torchrun`` every rank runs every cell: each attacks its shard of whole batches of the
attacked set (:func:`attack_images`) and the perturbed images are gathered, so every rank holds
the same tensors a single process would; rank 0 alone writes (:mod:`reidbench.eval.harness`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from reidbench.attack_types import Access, Family
from reidbench.attacks import AttackContext, AttackEntry, attack_entry, create_attack
from reidbench.data.images import to_float
from reidbench.defenses.adaptive import Defended
from reidbench.errors import ParameterError
from reidbench.eval.artifacts import make_artifact, save_pngs
from reidbench.eval.distributed import gather_rows, shard
from reidbench.eval.metrics import evaluate_features as rank_features
from reidbench.eval.planning import PlannedCell, defense_is_random
from reidbench.eval.results import CellArtifact, CellConfig, CellResult
from reidbench.eval.runtime import Runtime, SplitData
from reidbench.progress import bar as tqdm
from reidbench.seeding import draw_seed

SIDES = {"query": "query images", "gallery": "gallery images", "both": "query and gallery images"}
BUDGET_KEYS = ("eps", "step", "steps", "momentum", "area")
#: Occluder bank size: NPO and NTP take their occluders from this many clean images of the attacked set.
OCCLUDER_BANK = 64


@dataclass
class Perturbed:
    """What an attack produced for one cell: the images to extract, or a feature-map hook."""

    query: torch.Tensor
    gallery: torch.Tensor
    fmap_hook: Any = None
    fmap_side: str = "none"
    heatmaps: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Threat text
# ---------------------------------------------------------------------------------------------


def cell_threat(cfg: CellConfig, entry: AttackEntry, params: dict[str, Any], eot: int, random_defense: bool) -> str:
    """The cell's threat model in words: who is attacked, on which network, what the attacker
    is given, the budget and the defense mode. Rendered from the attack's :class:`Threat`."""
    if cfg.attack == "none":
        return "none (clean)"
    if cfg.surrogate:
        know = (f"transfer: crafted white-box on {cfg.surrogate}, evaluated on {cfg.model} "
                f"(black-box: no queries or gradients of {cfg.model})")  # fmt: skip
    elif entry.queries_model:
        know = f"white-box on {cfg.model}" if entry.differentiable else f"queries {cfg.model}"
    else:
        know = ""
    # a white-box attack's access is the knowledge clause above, named with the network
    own = entry.threat.rest_text() if entry.threat.access is Access.WHITE_BOX else entry.threat.render()
    parts = [f"{SIDES[cfg.target]} attacked", know, own]
    budget = ", ".join(f"{k}={params[k]}" for k in BUDGET_KEYS if params.get(k) is not None)
    if budget:
        parts.append(f"budget {budget} (eps/step in /255)")
    if cfg.defense != "none":
        if cfg.mode == "adaptive":
            how = "BPDA on non-differentiable parts" + (f", EOT over {eot} draws" if random_defense else "")
            parts.append(f"defense {cfg.defense}: adaptive ({how})")
        else:
            parts.append(f"defense {cfg.defense}: oblivious (crafted without it)")
    return "; ".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------------
# Crafting
# ---------------------------------------------------------------------------------------------


def craft_network(rt: Runtime, cfg: CellConfig) -> nn.Module:
    """The network the attack is crafted on: a surrogate, the defended model (adaptive), or the bare one."""
    card = rt.card(cfg.model)
    if cfg.surrogate:
        size = rt.card(cfg.surrogate).input_size
        if tuple(size) != tuple(card.input_size):
            raise ParameterError(f"surrogate {cfg.surrogate} takes {size} images but {cfg.model} takes "
                                 f"{card.input_size}; transfer needs the same input size")  # fmt: skip
        return rt.bare(cfg.surrogate)
    net = rt.bare(cfg.model)
    if cfg.mode == "adaptive":
        d = rt.defense(cfg.defense, card.input_size, draw_seed(cfg.seed, -1))
        return Defended(net, d, bpda=True).eval()  # type: ignore[arg-type]
    return net


def prototypes(feats: torch.Tensor, pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean feature of each identity (distractors, pid 0, are not an identity)."""
    keep = pids > 0
    uniq = torch.unique(pids[keep])
    protos = torch.stack([feats[keep][pids[keep] == p].mean(0) for p in uniq]) if len(uniq) else feats[:0]
    return protos, uniq


def craft_key(cfg: CellConfig) -> tuple[Any, ...] | None:
    """What the crafting network's clean features depend on, or None when they depend on more
    (an adaptive attack through a random defense: its draws continue from cell to cell)."""
    if cfg.surrogate:
        return ("bare", cfg.surrogate)
    if cfg.mode == "adaptive":
        if defense_is_random(cfg.defense):
            return None
        return ("defended", cfg.model, cfg.defense)
    return ("bare", cfg.model)


def crafted_key(cfg: CellConfig) -> tuple[Any, ...] | None:
    """What a cell's crafted images depend on: the crafting network (:func:`craft_key`), the
    attack and its parameters, the seed and the attacked side(s). Two cells with the same key
    craft identical images (a defended model's oblivious cell and its undefended cell both craft
    on the bare network), so the second reuses the first's (:meth:`Runtime.crafted`)."""
    key = craft_key(cfg)
    return None if key is None else (key, cfg.attack, cfg.params, cfg.seed, cfg.target)


def attack_context(rt: Runtime, entry: AttackEntry, split: SplitData, side: str, craft_net: nn.Module,
                   seed: int, key: tuple[Any, ...] | None = None) -> AttackContext:
    """Side information for attacking ``side``, limited to what the attack's threat model uses.

    The other set's clean features (guides, prototypes) are computed once per crafting network
    and reused by every cell (``key``, see :func:`craft_key`)."""
    ctx = AttackContext(seed=seed)
    own_imgs, own_pids, own_cams = split.side(side)
    if entry.uses_labels:
        ctx.camids = own_cams.to(rt.device)
    if entry.uses_occluder_bank:
        pick = torch.randperm(len(own_imgs), generator=torch.Generator().manual_seed(seed))[:OCCLUDER_BANK]
        ctx.occluder_bank = to_float(own_imgs[pick].to(rt.device))
        if entry.uses_labels:  # the donors' identities, only to an occlusion that is given identities (NTP)
            ctx.occluder_pids = own_pids[pick].to(rt.device)
    if entry.uses_guides or entry.uses_prototypes:
        other, o_pids, o_cams = split.other(side)
        other_side = "gallery" if side == "query" else "query"
        feats = rt.cached_features(key and (*key, other_side), lambda: rt.features(craft_net, other))
        if entry.uses_guides:
            ctx.guide_feats, ctx.guide_pids, ctx.guide_camids = feats, o_pids.to(feats.device), o_cams.to(feats.device)
        if entry.uses_prototypes:
            g_feats = feats if side == "query" else rt.cached_features(
                key and (*key, "gallery"), lambda: rt.features(craft_net, split.gallery))
            ctx.proto_feats, ctx.proto_pids = (t.to(g_feats.device) for t in prototypes(g_feats, split.g_pids.to(g_feats.device)))
    return ctx


def attack_images(atk: Any, images: torch.Tensor, labels: torch.Tensor | None, rt: Runtime, desc: str,
                  rows: tuple[int, int] | None = None, before_batch: Callable[[], None] | None = None,
                  can_retry: bool = True) -> torch.Tensor:
    """Attack ``images`` (uint8) batch by batch with their global indices; uint8 out.

    With ``rows=(lo, hi)`` (whole batches) only those images are attacked and returned;
    ``before_batch()`` is called before each batch. The batches stay on the device and come
    back to the host in one copy at the end (no host synchronisation per batch). When the device
    runs out of memory, the batch is redone in halves (:meth:`Runtime.fit_batch`; not when
    ``can_retry`` is False: an attack through a random defense, whose draws a retry would change).
    """
    lo, hi = rows if rows is not None else (0, len(images))
    parts = []
    with tqdm(total=hi - lo, desc=desc, unit="img", leave=False, position=1, disable=not rt.progress) as bar:
        s = lo
        while s < hi:
            e = min(s + rt.batch_size, hi)
            if before_batch is not None:
                before_batch()
            stats = copy.deepcopy(getattr(atk, "_grad_stats", None))  # put back if this batch must be redone
            x = to_float(images[s:e].to(rt.device, non_blocking=True))
            y = None if labels is None else labels[s:e].to(rt.device)
            idx = torch.arange(s, e, device=rt.device)
            try:
                adv = atk(x, y, index=idx)
            except torch.cuda.OutOfMemoryError as exc:  # redo this batch, and the rest, in smaller ones
                del x, y, idx
                rt.fit_batch(e - s, f"crafting {desc}", exc, can_retry=can_retry)  # refused under torchrun
                if stats is not None:
                    atk._grad_stats = stats
                if isinstance(getattr(atk, "chunk", None), int):  # AOS scores its windows in chunks too
                    atk.chunk = max(1, min(atk.chunk, rt.batch_size))
                continue
            parts.append((adv.detach().clamp(0, 1) * 255.0).round().to(torch.uint8))
            bar.update(e - s)
            s = e
    if not parts:
        return images[lo:lo].clone()
    return torch.cat(parts).cpu()


def _sequential_crafting(cfg: CellConfig) -> bool:
    """Crafting through a random defense (adaptive): its generator runs on across batches, so
    a shard could not start where one process would be; such attacks are not sharded."""
    return cfg.mode == "adaptive" and not cfg.surrogate and cfg.defense != "none" and defense_is_random(cfg.defense)


def attack_sharded(atk: Any, images: torch.Tensor, labels: torch.Tensor | None, rt: Runtime,
                   desc: str) -> tuple[torch.Tensor, Any]:
    """Under torchrun: attack this rank's shard of whole batches, gather every rank's images
    (and heatmaps), and merge the gradient telemetry batch by batch in global order, so all of it
    equals one process's. Returns the perturbed images and the heatmaps (or None)."""
    from reidbench.attacks.telemetry import GradStats

    d, n, b = rt.dist, len(images), rt.batch_size
    lo, hi = shard(n, b, d.rank, d.world_size)
    per_batch: list[Any] = []
    track = isinstance(getattr(atk, "_grad_stats", None), GradStats) and hasattr(atk, "reset_grad_stats")

    def fresh_stats() -> None:  # one GradStats per batch, merged in global batch order below
        atk.reset_grad_stats()
        per_batch.append(atk._grad_stats)

    mine = attack_images(atk, images, labels, rt, desc, rows=(lo, hi), before_batch=fresh_stats if track else None)
    adv = gather_rows(d, mine, n, b, device=torch.device("cpu"))
    if track:
        merged = GradStats()
        settled = [st.settle() for st in per_batch]  # plain numbers travel between ranks, not device tensors
        for stats in (st for rank_stats in d.all_gather_object(settled) for st in rank_stats):
            _merge_grad_stats(merged, stats)
        atk._grad_stats = merged
    heat = getattr(atk, "last_heatmaps", None)
    if any(d.all_gather_object(heat is not None)):
        heat = gather_rows(d, torch.as_tensor(heat).cpu() if heat is not None else torch.empty(0), n, b)
    return adv, heat


def _merge_grad_stats(into: Any, one: Any) -> None:
    """Add one batch's GradStats to ``into`` exactly as GradStats.add accumulates them in one process."""
    for step in range(len(one.zero)):
        while len(into.zero) <= step:
            for acc in (into.zero, into.zero_images, into.abs_sum, into.entries, into.images):
                acc.append(0)
        into.zero[step] += one.zero[step]
        into.zero_images[step] += one.zero_images[step]
        into.abs_sum[step] += one.abs_sum[step]
        into.entries[step] += one.entries[step]
        into.images[step] += one.images[step]
    into.no_objective += one.no_objective


def perturb(rt: Runtime, cfg: CellConfig, entry: AttackEntry, atk: Any, split: SplitData,
            craft_net: nn.Module) -> Perturbed:
    """Apply the cell's attack to its target side(s), with budget telemetry; images an earlier
    cell crafted identically (:func:`crafted_key`) are reused, not crafted again."""
    out = Perturbed(split.query, split.gallery)
    if entry.family.perturbs_feature_map:
        atk.set_context(AttackContext(seed=cfg.seed))
        out.fmap_hook, out.fmap_side = atk.hook, cfg.target
        return out

    def craft() -> dict[str, Any]:
        """The attacked sides' images, the query heatmaps and the attack's telemetry."""
        got: dict[str, Any] = {"query": None, "gallery": None, "heatmaps": None, "extra": {}}
        spent, attacked = 0.0, 0
        for side in ("query", "gallery"):
            if cfg.target not in (side, "both"):
                continue
            atk.set_context(attack_context(rt, entry, split, side, craft_net, cfg.seed, craft_key(cfg)))
            images, pids, _ = split.side(side)
            t0 = time.perf_counter()
            labels, desc = pids if entry.uses_labels else None, f"{cfg.attack} {side}"
            if rt.dist.active and not _sequential_crafting(cfg):
                adv, heat = attack_sharded(atk, images, labels, rt, desc)
            else:  # one process, or every rank crafts the whole set (identical, see _sequential_crafting)
                adv = attack_images(atk, images, labels, rt, desc, can_retry=not _sequential_crafting(cfg))
                heat = getattr(atk, "last_heatmaps", None)
            spent, attacked = spent + time.perf_counter() - t0, attacked + len(images)
            got[side] = adv
            if side == "query":
                got["heatmaps"] = heat
        if attacked and spent > 0:  # the attack's own cost, for the report's images-per-second table
            got["extra"]["attack_images_per_s"] = round(attacked / spent, 2)
        stats = getattr(atk, "grad_stats", None)
        if stats:
            got["extra"].update({k: v for k, v in stats.items() if isinstance(v, (int, float))})
        return got

    got, _ = rt.crafted(crafted_key(cfg), craft)
    out.query = split.query if got["query"] is None else got["query"]
    out.gallery = split.gallery if got["gallery"] is None else got["gallery"]
    out.heatmaps = got["heatmaps"]
    out.extra.update(got["extra"])
    if cfg.target in ("query", "both"):
        linf = float(((out.query.float() - split.query.float()).abs().amax(dim=(1, 2, 3)) / 255.0).max()) * 255
        out.extra["linf_max"] = round(linf, 3)
        eps = atk.cli_params.get("eps")
        if entry.eps_bounded and eps is not None and linf > eps + 0.51:
            out.warnings.append(f"[budget] {cfg.label()}: max |x_adv - x| = {linf:.2f}/255 exceeds eps {eps}/255")
    return out


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def evaluate_features(qf: torch.Tensor, gf: torch.Tensor, split: SplitData, cfg: CellConfig,
                      memory_budget: int | str | None = None) -> dict[str, Any]:
    """Metrics (percent) for one pair of feature sets; re-ranked ones under ``rr_`` when asked.
    ``memory_budget`` bounds the evaluation's working memory (:func:`reidbench.eval.evaluate_features`)."""
    max_rank = min(50, len(gf))
    ids = (split.q_pids, split.g_pids, split.q_camids, split.g_camids)
    opts: dict[str, Any] = dict(metric=cfg.distance, max_rank=max_rank, ap=cfg.ap_variant, memory_budget=memory_budget)
    # query blocks within the budget: the Q x G matrix is never held whole (MSMT17: 3.8 GB), same numbers
    r = rank_features(qf, gf, *ids, **opts)
    out: dict[str, Any] = {
        "rank1": 100 * r.rank(1), "rank5": 100 * r.rank(min(5, max_rank)), "rank10": 100 * r.rank(min(10, max_rank)),
        "mAP": 100 * r.mAP, "mINP": 100 * r.mINP, "n_valid_query": int(r.num_valid),
    }  # fmt: skip
    if cfg.rerank:
        r2 = rank_features(qf, gf, *ids, rerank=True, **opts)  # refused in one line where it does not fit
        out.update({"rr_rank1": 100 * r2.rank(1), "rr_mAP": 100 * r2.mAP, "rr_mINP": 100 * r2.mINP})
    return out


def evaluate_draws(rt: Runtime, cfg: CellConfig, split: SplitData, pert: Perturbed,
                   draws: int) -> tuple[list[dict[str, Any]], torch.Tensor, torch.Tensor]:
    """Extract and evaluate once per defense draw; also return draw 0's query and gallery features."""
    net = rt.bare(cfg.model)
    size = rt.card(cfg.model).input_size
    hook_q = pert.fmap_hook if pert.fmap_side in ("query", "both") else None
    hook_g = pert.fmap_hook if pert.fmap_side in ("gallery", "both") else None
    per_draw, first = [], None
    for d in range(draws):
        seed_d = draw_seed(cfg.seed, d)
        defense = rt.defense(cfg.defense, size, seed_d)
        if pert.gallery is split.gallery and hook_g is None:
            gf = rt.gallery_features(cfg.model, cfg.defense, seed_d)
        else:
            gf = rt.features(net, pert.gallery, defense=defense, fmap_hook=hook_g, amp=rt.spec.amp)
        qf = rt.features(net, pert.query, defense=defense, fmap_hook=hook_q, amp=rt.spec.amp)
        per_draw.append(evaluate_features(qf, gf, split, cfg, rt.spec.memory_budget))
        first = first or (qf, gf)
    assert first is not None
    return per_draw, first[0], first[1]


def summarise(cfg: CellConfig, per_draw: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    """Mean metrics over draws (re-ranked ones moved to ``extra``), worst case and spread."""
    metrics = {k: float(np.mean([m[k] for m in per_draw])) for k in per_draw[0] if k != "n_valid_query"}
    if cfg.rerank:
        extra.update({k: metrics.pop(k) for k in list(metrics) if k.startswith("rr_")})
    worst = min(per_draw, key=lambda m: m["mAP"])
    many = len(per_draw) > 1
    return dict(rank1=metrics["rank1"], rank5=metrics["rank5"], rank10=metrics["rank10"], mAP=metrics["mAP"],
                mINP=metrics["mINP"], n_valid_query=per_draw[0]["n_valid_query"], draws=len(per_draw),
                mAP_worst=worst["mAP"] if many else None, rank1_worst=worst["rank1"] if many else None,
                mAP_std=float(np.std([m["mAP"] for m in per_draw])) if many else None)  # fmt: skip


def run_cell(rt: Runtime, plan: PlannedCell) -> tuple[CellResult, CellArtifact | None]:
    """Run one cell: craft (if attacked), extract, evaluate over the defense's draws."""
    cfg, spec = plan.config, rt.spec
    t0 = time.perf_counter()
    split = rt.split(rt.card(cfg.model).input_size)
    random_defense = cfg.defense != "none" and defense_is_random(cfg.defense)
    family, threat = Family.CLEAN, "none (clean)"
    pert = Perturbed(split.query, split.gallery)
    if plan.request is not None:
        entry = attack_entry(plan.request.name)
        family = entry.family
        craft_net = craft_network(rt, cfg)
        atk = create_attack(plan.request.name, craft_net, **plan.request.params)
        threat = cell_threat(cfg, entry, dict(plan.request.params), spec.eot, random_defense)
        pert = perturb(rt, cfg, entry, atk, split, craft_net)
    per_draw, qf0, gf0 = evaluate_draws(rt, cfg, split, pert, spec.draws if random_defense else 1)
    extra = dict(pert.extra)
    numbers = summarise(cfg, per_draw, extra)
    shows_images = plan.request is not None and family.perturbs_pixels
    artifact = None
    if shows_images and spec.samples > 0:
        artifact = make_artifact(rt, split, pert.query, qf0, gf0, cfg, spec.samples, pert.heatmaps)
    if pert.warnings:
        extra["runtime_warnings"] = pert.warnings
    if rt.dist.active:
        extra["ranks"] = rt.dist.ranks
    if rt.batch_was_fitted:  # the device ran out of memory at the default batch size
        extra["batch_size"] = rt.batch_size
    result = CellResult(config=cfg, family=family.value, threat=threat, n_query=len(split.query),
                        n_gallery=len(split.gallery), seconds=round(time.perf_counter() - t0, 2),
                        fingerprint=rt.dataset.fingerprint, warnings=tuple(pert.warnings), extra=extra,  # type: ignore[union-attr]
                        **numbers)  # fmt: skip
    if spec.save_adv and shows_images and rt.dist.is_main:
        save_pngs(spec.save_adv, cfg, split.query, pert.query, spec.save_adv_count)
    return result, artifact
