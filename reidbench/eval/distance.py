"""Query-gallery distance matrices.

``compute_distance`` returns what torchreid's ``compute_distance_matrix`` returns:

* ``"euclidean"``: the **squared** Euclidean distance ``||q||^2 + ||g||^2 - 2 q.g``, clamped at 0
  (torchreid calls it euclidean, too). :func:`reidbench.eval.rerank.re_ranking` expects this
  squared form and does not square it again; see its docstring.
* ``"cosine"``: ``1 - cos(q, g)``, in [0, 2].

The matrix is built in chunks of query rows, so the temporaries stay a chunk in size; the result
itself is a full Q x G tensor on the features' device, in their floating dtype.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from reidbench.errors import ParameterError

__all__ = ["DISTANCE_METRICS", "compute_distance"]

DISTANCE_METRICS = ("euclidean", "cosine")

# Rows per chunk: a 4096 x 16k float32 block of temporaries is ~256 MB.
DEFAULT_CHUNK_SIZE = 4096


def _as_features(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.dim() != 2:
        raise ParameterError(
            f"compute_distance: {name} must be 2-D (N, D), got shape {tuple(t.shape)}"
        )
    if not t.is_floating_point():
        t = t.to(torch.float32)
    return t


def compute_distance(
    qf: torch.Tensor | np.ndarray,
    gf: torch.Tensor | np.ndarray,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """Distance between every query and every gallery feature.

    Args:
        qf: query features, (Q, D).
        gf: gallery features, (G, D), on the same device as ``qf``.
        metric: ``"euclidean"`` (squared Euclidean, as torchreid) or ``"cosine"`` (1 - cosine).
        chunk_size: query rows per chunk.

    Returns:
        A (Q, G) tensor on the features' device. Features are not normalised for
        ``"euclidean"``; normalise them first if the model's protocol does.
    """
    if metric not in DISTANCE_METRICS:
        raise ParameterError(
            f"compute_distance: unknown metric {metric!r}; choose one of {', '.join(DISTANCE_METRICS)}"
        )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ParameterError(
            f"compute_distance: chunk_size must be a positive int, got {chunk_size!r}"
        )
    q = _as_features(qf, "qf")
    g = _as_features(gf, "gf")
    if q.shape[1] != g.shape[1]:
        raise ParameterError(
            f"compute_distance: qf has dimension {q.shape[1]} but gf has {g.shape[1]}; "
            "both must come from the same model"
        )
    if q.device != g.device:
        raise ParameterError(f"compute_distance: qf is on {q.device} but gf is on {g.device}")
    dtype = torch.promote_types(q.dtype, g.dtype)
    q, g = q.to(dtype), g.to(dtype)

    out = torch.empty(q.shape[0], g.shape[0], dtype=dtype, device=q.device)
    if metric == "cosine":
        q = F.normalize(q, dim=1)
        g = F.normalize(g, dim=1)
        gt = g.t()
        for start in range(0, q.shape[0], chunk_size):
            block = out[start : start + chunk_size]
            torch.mm(q[start : start + chunk_size], gt, out=block)
            block.neg_().add_(1.0)
        return out

    g_sq = g.pow(2).sum(dim=1)
    gt = g.t()
    for start in range(0, q.shape[0], chunk_size):
        qc = q[start : start + chunk_size]
        block = out[start : start + chunk_size]
        block.copy_(qc.pow(2).sum(dim=1, keepdim=True) + g_sq)
        block.addmm_(qc, gt, beta=1.0, alpha=-2.0)
        # Rounding can leave tiny negatives where q == g.
        block.clamp_(min=0.0)
    return out
