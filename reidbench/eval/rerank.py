"""k-reciprocal re-ranking.

Zhong, Zheng, Cao and Li, "Re-ranking Person Re-identification with k-reciprocal Encoding",
CVPR 2017, https://arxiv.org/abs/1701.08398. Reference code: zhunzhong07/person-re-ranking
(``evaluation/utils/re_ranking.m``, and ``python-version/re_ranking_ranklist.py`` by Luo Hao
and Houjing Huang, which torchreid ships as ``torchreid/utils/rerank.py``).

Three entry points compute the same thing:

* :func:`re_ranking_features` from query and gallery features: the N x N distances (N = Q + G)
  are computed a block of rows at a time, each block reduced at once to its rows' nearest
  neighbours and maxima and dropped. Nothing N x N is ever held; the result is the Q x G matrix.
  This is the one that scales: MSMT17 size (11,659 x 82,161) in 5-7 GB peak RSS.
* :func:`re_ranking_blocks`, the same from features, handing out the Q x G result a block of
  query rows at a time, for a caller whose memory budget does not hold all of it.
* :func:`re_ranking` from the three distance matrices (Q x G, Q x Q, G x G), torchreid's
  interface. Its inputs alone hold N^2 floats (35 GB at MSMT17 size); it is the dense reference
  the other two are tested against.

``re_ranking_features(qf, gf, metric)`` equals ``re_ranking(compute_distance(qf, gf, metric),
compute_distance(qf, qf, metric), compute_distance(gf, gf, metric))`` up to float32 rounding (see
*Agreement* below).

With N = Q + G images and ``d`` the distance over all of them:

1. ``d`` is divided by its maximum per row (the reference code divides each column of the
   symmetric block matrix by its maximum and transposes; the two agree for symmetric inputs,
   and ``re_ranking`` follows the reference exactly for non-symmetric ones, i.e. row ``i`` is
   built from column ``i`` of ``[[q_q, q_g], [q_g^T, g_g]]``).
2. ``N(p, k)`` = the ``k + 1`` nearest images of ``p``, ``p`` itself included.
   ``R(p, k) = {g in N(p, k) : p in N(g, k)}`` (Eq. 4).
3. ``R*(p, k)`` = ``R(p, k1)`` plus ``R(q, round(k1 / 2))`` for each ``q in R(p, k1)`` with
   ``|R(p, k1) & R(q, round(k1 / 2))| > 2/3 |R(q, round(k1 / 2))|`` (Eq. 6).
4. ``V[p, g] = exp(-d(p, g))`` over ``g in R*(p, k1)``, normalised to sum 1 per row (Eq. 7-8).
5. Local query expansion: ``V[p] <- mean of V[g] over the k2 nearest g of p`` (p included),
   skipped when ``k2 == 1`` (Eq. 11).
6. ``d_J(p, g) = 1 - sum(min(V[p], V[g])) / sum(max(V[p], V[g]))``, computed as
   ``1 - m / (2 - m)`` with ``m = sum(min)`` since the rows sum to 1 (Eq. 10).
7. ``d* = (1 - lambda) d_J + lambda d`` with the row-normalised ``d`` (Eq. 12).

How it is computed (the same code for the three entry points; only where the distances come
from differs). Step 1 and the ranking need each row's maximum and its ``max(k1 + 1, k2)`` nearest
images only: one pass over the rows of ``d`` in blocks keeps exactly that (a top-k per row, ties
in index order) and drops the block. Steps 2-3 work on those neighbour lists. ``V`` is stored
sparse (about ``k1`` non-zeros per row before query expansion, a few times that after); the
distance of each of its ``(p, g)`` entries is gathered from the matrices or, from features,
computed for that pair alone. Step 6 runs over an inverted index (for each column, the gallery
rows with a non-zero there): each non-zero of a query's row meets only the gallery rows sharing
its column, so only query-gallery pairs that share a column are touched, in blocks of at most
``_PAIR_BUDGET`` pairs. Step 7 takes the Q x G distances a tile of query rows at a time.

Conventions of the reference code kept here, and where this differs from it:

* **Squared distances.** The Python reference squares its inputs (``np.power(dist, 2)``) and
  expects plain Euclidean distances; the MATLAB reference works on squared Mahalanobis/Euclidean
  distances directly. This module does **not** square: it works on the squared Euclidean
  distances that :func:`reidbench.eval.distance.compute_distance` returns. So
  ``re_ranking(D) == python_reference(sqrt(D))`` (up to float32 rounding). torchreid passes its
  own squared ``euclidean`` distances to the squaring reference, which re-ranks ``d ** 4``; to
  reproduce torchreid's numbers, pass ``D ** 2``.
* ``round(k1 / 2)`` is numpy's/Python's round-half-to-even, as in the Python reference
  (``int(np.around(k1 / 2.)) + 1`` images). The MATLAB reference uses ``round((k1 + 1) / 2)``
  images, which agrees for even k1 only (k1 = 20 in the paper). The paper writes ``>=`` in Eq. 6;
  both references use ``>``, and so does this.
* Ties in the initial ranking are broken by image index (a stable sort). The reference uses
  numpy's default (unstable) argsort, so with exact ties in the distances the neighbour sets may
  differ from the reference's; without ties the two agree.
* Computation is in float32, as in the reference.

Agreement of the features path with ``re_ranking`` on ``compute_distance``'s matrices. Up to
N = 4,096 images (all N x N distances no bigger than one block of the first pass) the features
path computes those three matrices and runs ``re_ranking``: the result is the dense one, bit for
bit. Above, the first pass builds a query row from rows of ``compute_distance(q, q)`` and
``compute_distance(q, g)`` (via :func:`reidbench.eval.distance.distance_blocks`, bitwise equal),
and a gallery row from a column of ``compute_distance(q, g)`` (as ``re_ranking`` reads it) and a
row of ``compute_distance(g, g)``. ``re_ranking`` reads columns of the Q x Q and G x G matrices
instead of rows: the same wherever the product is symmetric bit for bit, as it is in most shapes
but not all (BLAS may round a 1-row tile differently), so at exact near-ties a neighbour can
differ. The ``V`` weights of step 4 come from the first pass where the pair is among the
``n_top`` nearest (the same float32 value), and from a per-pair dot product otherwise (~1e-7
relative from the matrix product's). Measured (``benchmarks/bench_rerank.py``): max abs
difference 3e-7 from ``re_ranking`` at N = 4,200 and at Market-1501 size, 4e-7 from the authors'
Python reference (where it breaks exact ties as a stable sort does); with integer-valued
features, where every product is exact, bitwise equal (tested).

Memory. ``re_ranking_features``, beyond the features: the Q x G float32 result; during the first
pass a block of rows of ``d`` (``_BLOCK_BYTES``, at least 256 rows) in two copies, and, for the
cosine metric, the normalised feature copies that ``distance_blocks`` makes (up to ~3 N x D);
the neighbour lists (N x 21 int64 and float32); one copy of the features while the ``V`` weights
are computed; the sparse ``V`` (~20 bytes per non-zero, ~22 non-zeros per image before query
expansion and ~36 after on bench_rerank's problem) and its inverted index; ``_PAIR_BUDGET``
pairs (~72 bytes each); a ``_BLOCK_BYTES`` block of shared mass. ``re_ranking_features``
holds its result from the first pass on, and keeps the query rows' Q x G distances there, so
that the Q x G products are made once; ``re_ranking_blocks`` holds one block of the result and
makes them twice. Measured at MSMT17 size (N = 93,820) with ``benchmarks/bench_rerank.py`` on one
thread: peak RSS of the whole process 5.05 GB (4.71 GiB) in 152 s at 512-d euclidean, 6.82 GB
(6.35 GiB) in 392 s at 2048-d cosine, of which 3.8 GB is the result. ``re_ranking`` holds
its N^2-float inputs instead of the features: :func:`check_rerank_fits` (called by ``re_ranking``
too, and meant to be called before the Q x Q and G x G distances are computed) refuses a size
whose inputs do not fit with one ``ReidbenchError`` line instead of letting the OS kill the
process; the features entry points refuse with one line only a size that does not fit even
sparse.

Threads. On CPU the work runs on one torch thread (the caller's count restored afterwards),
except the first pass for more than ``_SINGLE_THREAD_MAX_IMAGES`` images: its distance products
and top-k over millions of entries run on the caller's threads. With two threads on a shared
2-core machine each of the many mid-sized operations of the sparse steps waits at an OpenMP
barrier: at N = 4,200 on a loaded machine 10.9 s against 1.2 s on one thread; at N = 120,
0.04-0.4 s against 0.01 s. The sparse steps' float sums are sequential, so they do not depend
on the thread count; the products gave the same bits on 1 and 2 threads here (MKL), which BLAS
does not promise in general.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from reidbench.errors import ParameterError, ReidbenchError
from reidbench.eval.distance import (
    DEFAULT_CHUNK_SIZE,
    DISTANCE_METRICS,
    check_same_space,
    compute_distance,
    distance_blocks,
)

__all__ = [
    "check_rerank_fits",
    "re_ranking",
    "re_ranking_blocks",
    "re_ranking_features",
    "rerank_memory_bytes",
]

# Rows handled at once: the first pass of ``re_ranking`` (rows of N floats) and the sparse steps.
_ROW_CHUNK = 1024
# Query-gallery pairs expanded at once when computing the Jaccard distance (~72 bytes each).
_PAIR_BUDGET = 1 << 22
# Bytes of one block of distances: the first pass of the features path (rounded to whole tiles of
# 256 rows, at least one) and the shared-mass block of step 6 (at least one query row).
_BLOCK_BYTES = 64 << 20
# Feature values gathered at once for the per-pair distances of step 4 (two such arrays).
_GATHER_ELEMS = 1 << 22
# Sparse encoding per image, for the memory estimate of the features path: V before and after
# query expansion, the inverted index and the expansion's temporaries, ~20 bytes per non-zero.
# Measured on bench_rerank's problem (features with identity structure) at k1=20, k2=6: ~22
# non-zeros per image before expansion and ~36 after, ~2 KB per image in all. The estimate,
# 64 bytes x (k1 + 1) x k2 (8 KB at the paper's parameters), leaves ~4x that for data whose
# neighbourhoods overlap less.
_SPARSE_BYTES_PER_NEIGHBOUR = 64
# Up to this many images (N = Q + G) all the work runs on one thread; above, the first pass runs
# on the caller's threads (see "Threads" in the module docstring). Each call makes ~100 small
# torch operations; with 2 threads each one is an OpenMP parallel region whose barrier waits for
# the second core, which on a shared 2-core machine costs ~1-5 ms per region, ~0.2-0.5 s per call
# (N = 120: 0.01 s on 1 thread, 0.04-0.4 s on 2; N = 1,200: 0.26-0.37 s against 0.84-2.9 s).
# Thread count does not change the result (the float reductions here are sequential).
_SINGLE_THREAD_MAX_IMAGES = 2048


def _available_memory_bytes() -> int:
    """Memory this process may still use: MemAvailable, capped by a cgroup limit if there is one."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                limit = f.read().strip()
        except OSError:
            continue
        if limit.isdigit() and int(limit) < (1 << 60):
            available = min(available, int(limit)) if available is not None else int(limit)
    if available is None:
        return 1 << 62  # unknown (not Linux): do not refuse
    return available


def rerank_memory_bytes(num_query: int, num_gallery: int) -> int:
    """Peak memory of :func:`re_ranking` (the matrix interface), inputs and output included.

    The three input distance matrices and the re-ranked output hold Q^2 + G^2 + 2 Q G = N^2
    float32 values; the work on top of them is a few row chunks of N floats, the sparse encoding
    (~100 entries of 20 bytes per image) and the pair budget. :func:`re_ranking_features` needs
    none of the N^2 part (see the module docstring).
    """
    n = num_query + num_gallery
    dense = 4 * n * n
    work = 3 * 4 * _ROW_CHUNK * n + 2000 * n + 64 * _PAIR_BUDGET
    return dense + work


def check_rerank_fits(num_query: int, num_gallery: int) -> int:
    """Refuse, with one line, a :func:`re_ranking` that would not fit in memory; return its estimate.

    Call it before computing the query-query and gallery-gallery distances: at MSMT17 size those
    alone take 35 GB, and the process would be killed by the OS before ``re_ranking`` could refuse.
    :func:`re_ranking_features` needs no such check: it never holds N x N distances.
    """
    need = rerank_memory_bytes(num_query, num_gallery)
    available = _available_memory_bytes()
    if need > available:
        n = num_query + num_gallery
        raise ReidbenchError(
            f"re-ranking {num_query:,} queries x {num_gallery:,} gallery ({n:,} images) needs "
            f"about {need / 1e9:.1f} GB (the {n:,} x {n:,} float32 distances), but only "
            f"{available / 1e9:.1f} GB is available; evaluate without --rerank, re-rank from the "
            "features (re_ranking_features), or use a machine with more memory"
        )
    return need


def _as_matrix(x: torch.Tensor | np.ndarray, name: str, shape: tuple[int, int]) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() != 2 or tuple(t.shape) != shape:
        raise ParameterError(
            f"re_ranking: {name} has shape {tuple(t.shape)} but must be {shape[0]} x {shape[1]} "
            "(q_g_dist is Q x G, q_q_dist Q x Q, g_g_dist G x G)"
        )
    return t.detach()


def _check_parameters(fn: str, k1: object, k2: object, lambda_value: object) -> None:
    for name, value in (("k1", k1), ("k2", k2)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ParameterError(f"{fn}: {name} must be a positive int, got {value!r}")
    try:
        lam = float(lambda_value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        lam = float("nan")
    if not 0.0 <= lam <= 1.0:
        raise ParameterError(f"{fn}: lambda_value must be in [0, 1], got {lambda_value!r}")


def re_ranking(
    q_g_dist: torch.Tensor | np.ndarray,
    q_q_dist: torch.Tensor | np.ndarray,
    g_g_dist: torch.Tensor | np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> torch.Tensor:
    """Re-ranked query-gallery distance (Zhong et al., CVPR 2017); see the module docstring.

    The matrix interface (torchreid's): its inputs hold N^2 floats, N = Q + G. From features,
    :func:`re_ranking_features` gives the same result without them.

    Args:
        q_g_dist: (Q, G) query-gallery distances, **squared** Euclidean as returned by
            ``compute_distance`` (not squared again here).
        q_q_dist: (Q, Q) query-query distances, same kind.
        g_g_dist: (G, G) gallery-gallery distances, same kind.
        k1: neighbourhood size of the k-reciprocal sets (paper: 20).
        k2: neighbourhood size of the local query expansion; 1 turns it off (paper: 6).
        lambda_value: weight of the original distance against the Jaccard distance (paper: 0.3).

    Returns:
        (Q, G) float32 tensor on ``q_g_dist``'s device; smaller is more similar.
    """
    qg = q_g_dist if isinstance(q_g_dist, torch.Tensor) else torch.as_tensor(np.asarray(q_g_dist))
    if qg.dim() != 2 or 0 in qg.shape:
        raise ParameterError(
            f"re_ranking: q_g_dist must be a non-empty 2-D (Q, G) matrix, got {tuple(qg.shape)}"
        )
    num_q, num_g = qg.shape
    qq = _as_matrix(q_q_dist, "q_q_dist", (num_q, num_q))
    gg = _as_matrix(g_g_dist, "g_g_dist", (num_g, num_g))
    device = qg.device
    if qq.device != device or gg.device != device:
        raise ParameterError(
            f"re_ranking: q_g_dist is on {device}, q_q_dist on {qq.device}, g_g_dist on {gg.device}; "
            "put them on one device"
        )
    _check_parameters("re_ranking", k1, k2, lambda_value)
    # The inputs exist already, so only what comes on top of them must fit: output and work.
    need = rerank_memory_bytes(num_q, num_g) - 4 * (num_q * num_q + num_g * num_g + num_q * num_g)
    available = _available_memory_bytes()
    if need > available:
        check_rerank_fits(num_q, num_g)  # the full estimate names the size and the alternative
        raise ReidbenchError(
            f"re-ranking {num_q:,} queries x {num_g:,} gallery needs about {need / 1e9:.1f} GB "
            f"more, but only {available / 1e9:.1f} GB is available; evaluate without --rerank, "
            "or use a machine with more memory"
        )
    with torch.no_grad(), _one_thread(device.type == "cpu"):
        return _re_ranking(
            qg.detach().to(torch.float32),
            qq.to(torch.float32),
            gg.to(torch.float32),
            int(k1),
            int(k2),
            float(lambda_value),
        )


def re_ranking_features(
    qf: torch.Tensor | np.ndarray,
    gf: torch.Tensor | np.ndarray,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    *,
    memory_budget: int | None = None,
) -> torch.Tensor:
    """Re-ranked query-gallery distance from features, without any N x N matrix.

    Equal, up to float32 rounding, to ``re_ranking(compute_distance(qf, gf, metric),
    compute_distance(qf, qf, metric), compute_distance(gf, gf, metric), k1, k2, lambda_value)``;
    see the module docstring for how and for the memory it takes.

    Args:
        qf: (Q, D) query features; gf: (G, D) gallery features, on the same device.
        metric: the distance re-ranked, as ``compute_distance``: ``"euclidean"`` (squared
            Euclidean, the paper's) or ``"cosine"`` (1 - cosine).
        k1, k2, lambda_value: as for :func:`re_ranking` (paper: 20, 6, 0.3).
        memory_budget: bytes this call may use beyond the features, the (Q, G) float32 result
            included; ``None``: the memory available now (MemAvailable, or the cgroup limit). A
            size that does not fit is refused with one line before any work; for a budget below
            the size of the result, use :func:`re_ranking_blocks`.

    Returns:
        (Q, G) float32 tensor on the features' device; smaller is more similar.
    """
    fn = "re_ranking_features"
    q, g = _check_features(fn, qf, gf, metric, k1, k2, lambda_value)
    num_q, num_g = len(q), len(g)
    _check_budget(fn, q, g, metric, int(k1), int(k2), memory_budget, None)
    with torch.no_grad(), _one_thread(q.device.type == "cpu"):
        if _dense_is_smaller(num_q + num_g):
            return _dense_from_features(q, g, metric, int(k1), int(k2), float(lambda_value))
        out = torch.empty(num_q, num_g, dtype=torch.float32, device=q.device)
        src = _FeatureSource(q, g, metric, hold=out)
        for _ in _re_ranking_core(
            src, int(k1), int(k2), float(lambda_value), lambda a, b: out[a:b]
        ):
            pass
        return out


def re_ranking_blocks(
    qf: torch.Tensor | np.ndarray,
    gf: torch.Tensor | np.ndarray,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    *,
    memory_budget: int | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """:func:`re_ranking_features` a block of query rows at a time.

    Yields ``(start, block)`` with ``block`` equal to rows ``start:start + len(block)`` of
    ``re_ranking_features(qf, gf, metric, k1, k2, lambda_value)``, which is never built: bitwise
    with the BLAS here (the Q x G products, not held, are made again by column blocks, which gave
    the same bits as the whole product in every shape tried; tested). Blocks are whole tiles of
    256 query rows (the last one excepted), as many as ``memory_budget`` leaves room for (bytes
    beyond the features; ``None``: the memory available now). The block is a view into one
    reused buffer: use it before asking for the next one. The neighbour search and the sparse
    encoding run before the first block comes, each block's Jaccard distances when it is asked
    for; a budget too small even for one tile is refused with one line when this function is
    called, before any work.
    """
    fn = "re_ranking_blocks"
    q, g = _check_features(fn, qf, gf, metric, k1, k2, lambda_value)
    num_q, num_g = len(q), len(g)
    rows = _check_budget(fn, q, g, metric, int(k1), int(k2), memory_budget, DEFAULT_CHUNK_SIZE)
    cpu = q.device.type == "cpu"

    def dense_blocks() -> Iterator[tuple[int, torch.Tensor]]:
        with torch.no_grad(), _one_thread(cpu):
            out = _dense_from_features(q, g, metric, int(k1), int(k2), float(lambda_value))
        for start in range(0, num_q, rows):
            yield start, out[start : start + rows]

    def blocks() -> Iterator[tuple[int, torch.Tensor]]:
        buf = torch.empty(min(rows, num_q), num_g, dtype=torch.float32, device=q.device)
        start = 0

        def target(a: int, b: int) -> torch.Tensor:
            return buf[a - start : b - start]

        core = _re_ranking_core(
            _FeatureSource(q, g, metric), int(k1), int(k2), float(lambda_value), target
        )
        while True:
            # One thread while computing, the caller's own while the caller uses the block.
            with torch.no_grad(), _one_thread(cpu):
                done = next(core, None)
            if done is None:
                return
            if done[1] - start == rows or done[1] == num_q:
                yield start, buf[: done[1] - start]
                start = done[1]

    return dense_blocks() if _dense_is_smaller(num_q + num_g) else blocks()


def _dense_is_smaller(n: int) -> bool:
    """Whether the features path takes the dense one: when all N x N distances take no more than
    one block of its first pass (N <= 4,096), holding them saves nothing, and the dense path's
    fewer operations are faster (measured at N = 120 and 1,200: 0.005 s against 0.010 s and
    0.063 s against 0.074 s). The result is then the dense one exactly."""
    return 4 * n * n <= _BLOCK_BYTES


def _dense_from_features(
    q: torch.Tensor, g: torch.Tensor, metric: str, k1: int, k2: int, lam: float
) -> torch.Tensor:
    def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return compute_distance(a, b, metric).to(torch.float32)  # type: ignore[arg-type]

    return _re_ranking(dist(q, g), dist(q, q), dist(g, g), k1, k2, lam)


def _check_features(
    fn: str,
    qf: torch.Tensor | np.ndarray,
    gf: torch.Tensor | np.ndarray,
    metric: str,
    k1: object,
    k2: object,
    lambda_value: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    q = torch.as_tensor(qf)
    g = torch.as_tensor(gf)
    for name, t in (("qf", q), ("gf", g)):
        if t.dim() != 2 or t.shape[0] == 0:
            raise ParameterError(
                f"{fn}: {name} must be a non-empty 2-D (N, D) matrix, got shape {tuple(t.shape)}"
            )
    check_same_space(q, g, fn)
    if metric not in DISTANCE_METRICS:
        raise ParameterError(
            f"{fn}: unknown metric {metric!r}; choose one of {', '.join(DISTANCE_METRICS)}"
        )
    _check_parameters(fn, k1, k2, lambda_value)
    if not q.is_floating_point():
        q = q.to(torch.float32)
    if not g.is_floating_point():
        g = g.to(torch.float32)
    return q.detach(), g.detach()


def _first_pass_rows(n: int) -> int:
    """Rows of the first pass's blocks for N images: whole 256-row tiles, ~_BLOCK_BYTES."""
    tile = DEFAULT_CHUNK_SIZE
    return max(tile, _BLOCK_BYTES // (4 * n) // tile * tile)


def _sparse_memory_bytes(
    num_q: int,
    num_g: int,
    dim: int,
    item: int,
    metric: str,
    k1: int,
    k2: int,
    out_rows: int | None,
) -> int:
    """Peak memory of the features path beyond the features.

    ``out_rows``: result rows held at once by ``re_ranking_blocks``; ``None``: the whole result,
    held from the first pass on (``re_ranking_features``).
    """
    n = num_q + num_g
    n_top = max(min(k1 + 1, n), min(k2, n))
    top = 12 * n * n_top  # indices and distances of the nearest
    rows = min(_first_pass_rows(n), max(num_q, num_g))
    first = rows * n * (4 + item)  # our float32 block and distance_blocks' buffers
    copies = n * dim * item if metric == "cosine" else 0  # distance_blocks' normalised features
    first += 3 * copies
    sparse = _SPARSE_BYTES_PER_NEIGHBOUR * n * min(k1 + 1, n) * (k2 if k2 > 1 else 1)
    middle = top + n * dim * item + sparse  # the V weights: one copy of the features
    pairs = 72 * min(_PAIR_BUDGET, num_q * num_g)
    shared_rows = min(num_q, _ROW_CHUNK, max(1, _BLOCK_BYTES // (4 * num_g)))
    shared = 2 * 4 * shared_rows * num_g  # the shared-mass block and its Jaccard copy
    last = sparse + pairs + shared
    if out_rows is None:
        held = 4 * num_q * num_g
        return max(first + top + held, middle + held, last + held)
    # A tile of the original distance recomputed, with its normalised features for cosine.
    last += 4 * out_rows * num_g + min(num_q, DEFAULT_CHUNK_SIZE) * num_g * (4 + item) + copies
    return max(first + top, middle, last)


def _check_budget(
    fn: str,
    q: torch.Tensor,
    g: torch.Tensor,
    metric: str,
    k1: int,
    k2: int,
    memory_budget: int | None,
    tile: int | None,
) -> int:
    """Refuse, with one line, a size that does not fit; return the result rows held at once.

    ``tile``: ``None`` for the whole result (``re_ranking_features``); else the unit of blocks
    (``re_ranking_blocks``), which get as many whole tiles as the budget leaves room for, at
    least one.
    """
    if memory_budget is not None and (
        isinstance(memory_budget, bool)
        or not isinstance(memory_budget, int | np.integer)
        or memory_budget < 1
    ):
        raise ParameterError(
            f"{fn}: memory_budget must be a positive number of bytes, got {memory_budget!r}"
        )
    num_q, num_g, dim = len(q), len(g), q.shape[1]
    item = torch.promote_types(q.dtype, g.dtype).itemsize
    budget = _available_memory_bytes() if memory_budget is None else int(memory_budget)
    given = "available" if memory_budget is None else "in the budget"
    rows = num_q if tile is None else min(num_q, tile)

    def need(r: int | None) -> int:
        return _sparse_memory_bytes(num_q, num_g, dim, item, metric, k1, k2, r)

    least = need(None if tile is None else rows)
    if least > budget:
        what = "the result" if tile is None else f"one block of {rows} query rows"
        hint = "; re-rank in blocks (re_ranking_blocks)" if tile is None else ""
        raise ReidbenchError(
            f"{fn}: re-ranking {num_q:,} queries x {num_g:,} gallery needs about "
            f"{least / 1e9:.1f} GB ({what} and the sparse work), but only "
            f"{budget / 1e9:.1f} GB is {given}{hint}; evaluate without --rerank, or give it "
            "more memory"
        )
    if tile is not None:
        spare = budget - need(0)
        rows = max(rows, min(num_q, spare // (4 * num_g) // tile * tile))
    return rows


_threads_lock = threading.Lock()
_threads_users = 0
_threads_saved = 0


@contextlib.contextmanager
def _one_thread(active: bool) -> Iterator[None]:
    """torch on one thread inside, the previous count restored by the last one out.

    The count is process-wide; the counter keeps concurrent calls (threads of the harness) from
    restoring each other's ``1``.
    """
    global _threads_users, _threads_saved
    if not active:
        yield
        return
    with _threads_lock:
        if _threads_users == 0:
            _threads_saved = torch.get_num_threads()
            if _threads_saved > 1:
                torch.set_num_threads(1)
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0 and torch.get_num_threads() != _threads_saved:
                torch.set_num_threads(_threads_saved)


@contextlib.contextmanager
def _product_threads(n: int) -> Iterator[None]:
    """Inside ``_one_thread``: the caller's thread count again, for more than
    ``_SINGLE_THREAD_MAX_IMAGES`` images.

    For the first pass only: distance products and top-k over blocks of millions of entries,
    which threads speed up on an idle machine. The sparse steps after it stay on one thread: they
    are many operations of ~10^5-10^7 entries (index_add_ is sequential anyway), which on a shared
    2-core machine each wait at the thread pool's barrier (measured at N = 4,200 with 2 threads
    on a loaded machine: 10.9 s against 1.2 s on one thread).
    """
    with _threads_lock:
        count = _threads_saved if _threads_users > 0 else 1
    if n <= _SINGLE_THREAD_MAX_IMAGES or count <= 1:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(1)


def _stable_order(x: torch.Tensor, vals: torch.Tensor, idx: torch.Tensor, k: int) -> torch.Tensor:
    """The k smallest entries per row of x, ordered by (value, index) like a stable sort.

    ``vals, idx``: ``torch.topk(x, min(k + 1, n), largest=False, sorted=True)``.
    """
    n = x.shape[1]
    idx = torch.sort(idx[:, :k], dim=1).values
    idx = idx.gather(1, torch.argsort(x.gather(1, idx), dim=1, stable=True))
    if k < n:
        # A tie across the k-th place: topk may have kept the wrong one of the tied entries.
        tied = torch.nonzero(vals[:, k] == vals[:, k - 1]).squeeze(1)
        if tied.numel():
            idx[tied] = torch.sort(x[tied], dim=1, stable=True).indices[:, :k]
    return idx


def _segments(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For runs of the given lengths: the run of each element and its offset inside the run."""
    run = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    start = torch.cumsum(counts, 0) - counts
    return run, torch.arange(run.numel(), device=counts.device) - start[run]


# ------------------------------------------------------------------------------------------------
# Where the distances come from. Row ``p`` of the working matrix holds d(p, e) for every image e
# (queries first, then gallery), not yet divided by the row maximum.
# ------------------------------------------------------------------------------------------------


class _MatrixSource:
    """The three distance matrices; row i is column i of ``[[qq, qg], [qg^T, gg]]``."""

    def __init__(self, qg: torch.Tensor, qq: torch.Tensor, gg: torch.Tensor):
        self.qg, self.qq, self.gg = qg, qq, gg
        self.num_q, self.num_g = qg.shape
        self.device = qg.device

    def rows(self, a: int, b: int) -> torch.Tensor:
        num_q, qg, qq, gg = self.num_q, self.qg, self.qq, self.gg
        parts = []
        if a < num_q:
            s = slice(a, min(b, num_q))
            parts.append(torch.cat([qq[:, s].t(), qg[s]], dim=1))
        if b > num_q:
            s = slice(max(a, num_q) - num_q, b - num_q)
            parts.append(torch.cat([qg[:, s].t(), gg[:, s].t()], dim=1))
        return torch.cat(parts, dim=0)

    def row_blocks(self) -> Iterator[tuple[int, torch.Tensor]]:
        n = self.num_q + self.num_g
        for a in range(0, n, _ROW_CHUNK):
            yield a, self.rows(a, min(a + _ROW_CHUNK, n))

    def pair_dist(self, i: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Working distance at (row i, column e), gathered from the three inputs."""
        num_q = self.num_q
        out = torch.empty(i.shape, dtype=torch.float32, device=self.device)
        iq, eq = i < num_q, e < num_q
        for sel, mat, r, c in (
            (iq & eq, self.qq, e, i),
            (iq & ~eq, self.qg, i, e - num_q),
            (~iq & eq, self.qg, e, i - num_q),
            (~iq & ~eq, self.gg, e - num_q, i - num_q),
        ):
            out[sel] = mat[r[sel], c[sel]]
        return out

    def release(self) -> None:
        pass

    def qg_tiles(self) -> Iterator[tuple[int, torch.Tensor]]:
        for a in range(0, self.num_q, _ROW_CHUNK):
            yield a, self.qg[a : a + _ROW_CHUNK]


class _FeatureSource:
    """Distances computed from the features, as ``compute_distance`` computes them.

    Row blocks are ``distance_blocks(x, q)`` and ``distance_blocks(x, g)`` side by side, for x
    the queries and then the gallery: rows of ``compute_distance``'s matrices, bit for bit.
    """

    def __init__(
        self, q: torch.Tensor, g: torch.Tensor, metric: str, hold: torch.Tensor | None = None
    ):
        self.q, self.g, self.metric, self.hold = q, g, metric, hold
        self.num_q, self.num_g = len(q), len(g)
        self.device = q.device
        self.dtype = torch.promote_types(q.dtype, g.dtype)
        self._all: torch.Tensor | None = None
        self._sq: torch.Tensor | None = None

    def row_blocks(self) -> Iterator[tuple[int, torch.Tensor]]:
        """Query rows, then gallery rows. A gallery row's query part is a column of
        ``compute_distance(q, g)``, as ``re_ranking`` reads ``q_g_dist``. With ``hold`` (the Q x G
        result) the query rows' gallery part is kept there and those columns are read back from
        it, so the Q x G products are made once; without, they are computed again."""
        num_q, n, metric = self.num_q, self.num_q + self.num_g, self.metric
        rows = _first_pass_rows(n)
        buf = torch.empty(
            min(rows, max(self.num_q, self.num_g)), n, dtype=torch.float32, device=self.device
        )
        to_q = distance_blocks(self.q, self.q, metric, rows)
        to_g = distance_blocks(self.q, self.g, metric, rows)
        for (start, bq), (_, bg) in zip(to_q, to_g, strict=True):
            w = buf[: len(bq)]
            w[:, :num_q].copy_(bq)
            w[:, num_q:].copy_(bg)
            if self.hold is not None:
                self.hold[start : start + len(bg)].copy_(bg)
            yield start, w
        del to_q, to_g
        for start, bg in distance_blocks(self.g, self.g, metric, rows):
            w = buf[: len(bg)]
            stop = start + len(bg)
            if self.hold is not None:
                w[:, :num_q].copy_(self.hold[:, start:stop].t())
            else:
                # The same columns of compute_distance(q, g), computed again: the products of a
                # column subset are bitwise those of the full matrix (the tiles are query rows).
                w[:, :num_q].copy_(compute_distance(self.q, self.g[start:stop], metric).t())  # type: ignore[arg-type]
            w[:, num_q:].copy_(bg)
            yield num_q + start, w

    def pair_dist(self, i: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """d(i, e), one pair at a time, with ``compute_distance``'s formula and float type.

        The features of all N images are gathered into one matrix (normalised for cosine, as
        ``compute_distance`` normalises them) on the first call; :meth:`release` frees it.
        """
        if self._all is None:
            x = torch.cat([self.q.to(self.dtype), self.g.to(self.dtype)])
            if self.metric == "cosine":
                x = F.normalize(x, dim=1)
            else:
                self._sq = x.pow(2).sum(dim=1)
            self._all = x
        x, sq = self._all, self._sq
        out = torch.empty(i.shape, dtype=torch.float32, device=self.device)
        step = max(1, _GATHER_ELEMS // max(1, x.shape[1]))
        for s in range(0, len(i), step):
            ii, ee = i[s : s + step], e[s : s + step]
            dot = x.index_select(0, ii).mul_(x.index_select(0, ee)).sum(dim=1)
            if sq is None:
                d = dot.neg_().add_(1.0)
            else:
                d = (sq[ii] + sq[ee]).sub_(dot, alpha=2.0).clamp_(min=0.0)
            out[s : s + step] = d
        return out

    def release(self) -> None:
        self._all = self._sq = None

    def qg_tiles(self) -> Iterator[tuple[int, torch.Tensor]]:
        """The Q x G distances a tile at a time: from ``hold`` (the result rows themselves, to be
        overwritten in place), or computed again."""
        if self.hold is None:
            return distance_blocks(self.q, self.g, self.metric, DEFAULT_CHUNK_SIZE)
        hold, tile = self.hold, DEFAULT_CHUNK_SIZE
        return ((a, hold[a : a + tile]) for a in range(0, self.num_q, tile))


def _re_ranking(
    qg: torch.Tensor, qq: torch.Tensor, gg: torch.Tensor, k1: int, k2: int, lam: float
) -> torch.Tensor:
    """``re_ranking`` on float32 matrices, without checks."""
    out = torch.empty(qg.shape, dtype=torch.float32, device=qg.device)
    for _ in _re_ranking_core(_MatrixSource(qg, qq, gg), k1, k2, lam, lambda a, b: out[a:b]):
        pass
    return out


def _re_ranking_core(
    src: _MatrixSource | _FeatureSource,
    k1: int,
    k2: int,
    lam: float,
    target: Callable[[int, int], torch.Tensor],
) -> Iterator[tuple[int, int]]:
    """The algorithm. Writes result rows a..b into ``target(a, b)``, then yields ``(a, b)``."""
    num_q, num_g = src.num_q, src.num_g
    n = num_q + num_g
    device = src.device
    # As the references do with numpy slices, neighbourhoods are capped at N images.
    n_k1 = min(k1 + 1, n)
    n_half = min(round(k1 / 2) + 1, n)
    n_k2 = min(k2, n)
    n_top = max(n_k1, n_k2)

    # 1. Row maxima and the initial ranking (only its first n_top places are ever used), with
    #    the row-normalised distances at those places.
    row_max = torch.empty(n, dtype=torch.float32, device=device)
    top = torch.empty(n, n_top, dtype=torch.int64, device=device)
    top_val = torch.empty(n, n_top, dtype=torch.float32, device=device)
    blocks = src.row_blocks()
    threads = _product_threads(n) if device.type == "cpu" else contextlib.nullcontext()
    with threads:
        for a, w in blocks:
            b = a + len(w)
            row_max[a:b] = w.amax(dim=1)  # propagates NaN
            if bool(torch.isnan(row_max[a:b]).any()):
                raise ParameterError("re_ranking: the distances contain NaN; check the features")
            if bool((row_max[a:b] <= 0).any()):
                raise ParameterError(
                    "re_ranking: a row of distances has no positive entry; it cannot be normalised"
                )
            w /= row_max[a:b].unsqueeze(1)
            vals, idx = torch.topk(w, min(n_top + 1, n), dim=1, largest=False, sorted=True)
            top[a:b] = _stable_order(w, vals, idx, n_top)
            top_val[a:b] = w.gather(1, top[a:b])
            del w
    del blocks

    # 2. k-reciprocal sets R(p, k1), and R(q, k1/2) for every q with its size.
    ar = torch.arange(n, device=device)
    near = top[:, :n_k1]
    half = top[:, :n_half]
    half_recip = (half[half] == ar[:, None, None]).any(dim=2)
    half_size = half_recip.sum(dim=1).to(torch.float64)

    # 3.-4. Expanded sets R*(p, k1) and the encoding V, as COO (row, col, value), sorted by row
    #       and then column.
    v_rows, v_cols, v_vals = [], [], []
    for a in range(0, n, _ROW_CHUNK):
        b = min(a + _ROW_CHUNK, n)
        p = ar[a:b]
        nb = near[a:b]
        recip = (near[nb] == p[:, None, None]).any(dim=2)
        members = half[nb]  # candidates' half-size neighbourhoods
        members_ok = half_recip[nb]
        in_set = torch.where(recip, nb, -1)
        shared = ((members.unsqueeze(-1) == in_set[:, None, None, :]).any(dim=-1) & members_ok).sum(
            dim=2
        )
        accept = recip & (shared.to(torch.float64) > (2.0 / 3.0) * half_size[nb])
        expansion = torch.cat(
            [
                torch.where(recip, nb, n),
                torch.where(accept.unsqueeze(2) & members_ok, members, n).flatten(1),
            ],
            dim=1,
        )
        expansion = torch.sort(expansion, dim=1).values
        keep = expansion < n
        keep[:, 1:] &= expansion[:, 1:] != expansion[:, :-1]
        r_idx, slot = torch.nonzero(keep, as_tuple=True)
        cols = expansion[r_idx, slot]
        rows = p[r_idx]
        # d(p, g) / max: from the first pass where g is among p's n_top nearest (the same float32
        # value), computed for the pair otherwise.
        hit = top[rows] == cols.unsqueeze(1)
        found = hit.any(dim=1)
        scaled = torch.where(hit, top_val[rows], 0.0).sum(dim=1)
        other = torch.nonzero(~found).squeeze(1)
        if other.numel():
            i, e = rows[other], cols[other]
            scaled[other] = src.pair_dist(i, e) / row_max[i]
        weight = torch.exp(-scaled)
        total = torch.zeros(b - a, dtype=torch.float32, device=device).index_add_(0, r_idx, weight)
        v_rows.append(rows)
        v_cols.append(cols)
        v_vals.append(weight / total[r_idx])
    src.release()
    del near, half, half_recip, half_size
    vr, vc, vv = torch.cat(v_rows), torch.cat(v_cols), torch.cat(v_vals)
    del v_rows, v_cols, v_vals

    # 5. Local query expansion: V[p] <- mean of the rows of p's n_k2 nearest (p included), a
    #    chunk of rows p at a time.
    if k2 != 1:
        row_len = torch.bincount(vr, minlength=n)
        row_start = torch.cumsum(row_len, 0) - row_len
        e_rows, e_cols, e_vals = [], [], []
        for a in range(0, n, _ROW_CHUNK):
            b = min(a + _ROW_CHUNK, n)
            src_rows = top[a:b, :n_k2].reshape(-1)
            owner, offset = _segments(row_len[src_rows])
            at = row_start[src_rows][owner] + offset
            owner = torch.div(owner, n_k2, rounding_mode="floor") + a  # the row p added to
            key, inverse = torch.unique(owner * n + vc[at], return_inverse=True)
            # index_add_ adds in order of appearance: neighbour by neighbour, as the reference's
            # mean.
            e_vals.append(
                torch.zeros(key.numel(), dtype=torch.float32, device=device).index_add_(
                    0, inverse, vv[at]
                )
                / n_k2
            )
            r = torch.div(key, n, rounding_mode="floor")
            e_rows.append(r)
            e_cols.append(key - r * n)
            del owner, offset, at, key, inverse
        del vr, vc, vv, row_len, row_start
        vr, vc, vv = torch.cat(e_rows), torch.cat(e_cols), torch.cat(e_vals)
        del e_rows, e_cols, e_vals
    del top, top_val

    # 6. Shared mass m[i, j] = sum_k min(V[i, k], V[Q + j, k]) for queries i and gallery j,
    #    through an inverted index (gallery rows by column), query rows in blocks of pairs.
    is_q = vr < num_q
    q_rows, q_cols, q_vals = vr[is_q], vc[is_q], vv[is_q]
    g_sel = torch.nonzero(~is_q).squeeze(1)
    by_col = g_sel[torch.argsort(vc[g_sel], stable=True)]
    g_of = vr[by_col] - num_q
    g_val = vv[by_col]
    col_len = torch.bincount(vc[g_sel], minlength=n)
    del vr, vc, vv, is_q, g_sel, by_col
    col_start = torch.cumsum(col_len, 0) - col_len
    entry_pairs = col_len[q_cols]
    pairs_per_query = torch.zeros(num_q, dtype=torch.int64, device=device).index_add_(
        0, q_rows, entry_pairs
    )
    q_entries = torch.bincount(q_rows, minlength=num_q)
    q_entry_start = (torch.cumsum(q_entries, 0) - q_entries).tolist() + [q_rows.numel()]
    budget_rows = torch.cumsum(pairs_per_query, 0).tolist()
    max_rows = min(_ROW_CHUNK, max(1, _BLOCK_BYTES // (4 * num_g)))

    # 7. Per tile of query rows: the row-normalised original distance times lambda, plus the
    #    Jaccard distance times (1 - lambda), the order of operations of ``jaccard * (1 - lam) +
    #    original * lam``, in float32.
    for a0, orig in src.qg_tiles():
        b0 = a0 + len(orig)
        out = target(a0, b0)
        torch.div(orig.to(torch.float32), row_max[a0:b0].unsqueeze(1), out=out)
        out.mul_(lam)
        a = a0
        while a < b0:
            # Largest block starting at a within the pair budget (at least one query).
            base = budget_rows[a - 1] if a else 0
            b = a + 1
            while b < b0 and budget_rows[b] - base <= _PAIR_BUDGET and b - a < max_rows:
                b += 1
            e0, e1 = q_entry_start[a], q_entry_start[b]
            owner, offset = _segments(entry_pairs[e0:e1])
            at = col_start[q_cols[e0:e1]][owner] + offset
            shared = torch.zeros((b - a) * num_g, dtype=torch.float32, device=device)
            # Pairs come entry by entry, columns ascending: the reference's order of summation.
            shared.index_add_(
                0,
                (q_rows[e0:e1][owner] - a) * num_g + g_of[at],
                torch.minimum(q_vals[e0:e1][owner], g_val[at]),
            )
            del owner, offset, at
            shared = shared.view(b - a, num_g)
            # 1 - m / (2 - m), in place: (-m) + 2 is 2 - m and (-x) + 1 is 1 - x exactly.
            shared.div_(shared.neg().add_(2.0)).neg_().add_(1.0)
            out[a - a0 : b - a0].add_(shared.mul_(1.0 - lam))
            del shared
            a = b
        yield a0, b0
