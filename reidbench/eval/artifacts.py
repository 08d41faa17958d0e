"""What a cell keeps for the report's pictures: a few queries with their clean and attacked
top-10 (ranked lists in the style of JAD Fig. 1), and optional PNGs of adversarial samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidbench.eval.distance import compute_distance
from reidbench.eval.results import CellArtifact, CellConfig
from reidbench.eval.runtime import Runtime, SplitData
from reidbench.seeding import draw_seed


def ranking(q: torch.Tensor, g: torch.Tensor, metric: str, k: int) -> torch.Tensor:
    """Indices of the ``k`` nearest gallery items of each query."""
    d = compute_distance(q, g, metric=metric)
    return torch.topk(d, k=min(k, d.shape[1]), dim=1, largest=False).indices.cpu()


def make_artifact(rt: Runtime, split: SplitData, q_adv: torch.Tensor, qf: torch.Tensor, gf: torch.Tensor,
                  cfg: CellConfig, n: int, heatmaps: Any) -> CellArtifact:
    """``n`` seeded queries with their clean and attacked top-10, for the report's pictures."""
    seed0 = draw_seed(rt.spec.seed, 0)
    clean_gf = rt.gallery_features(cfg.model, cfg.defense, seed0)
    size = rt.card(cfg.model).input_size
    clean_qf = rt.cached_features(("clean-query", cfg.model, cfg.defense, seed0), lambda: rt.features(
        rt.bare(cfg.model), split.query, defense=rt.defense(cfg.defense, size, seed0)))
    gen = torch.Generator().manual_seed(rt.spec.seed)
    idx = torch.randperm(len(split.query), generator=gen)[:n].sort().values
    top_clean = ranking(clean_qf[idx], clean_gf, cfg.distance, 10)
    top_adv = ranking(qf[idx], gf, cfg.distance, 10)
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


def save_pngs(folder: str | Path, cfg: CellConfig, clean: torch.Tensor, adv: torch.Tensor, n: int) -> None:
    """The first ``n`` clean/adversarial pairs as PNGs in ``folder/<cell slug>/``."""
    from PIL import Image

    sub = Path(folder) / cfg.slug()
    sub.mkdir(parents=True, exist_ok=True)
    for i in range(min(n, len(adv))):
        Image.fromarray(clean[i].permute(1, 2, 0).numpy()).save(sub / f"{i:04d}_clean.png")
        Image.fromarray(adv[i].permute(1, 2, 0).numpy()).save(sub / f"{i:04d}_adv.png")
