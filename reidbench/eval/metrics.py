"""Ranking metrics for re-ID retrieval: CMC, mAP and mINP, exact and vectorised.

Protocol (Market-1501, single query), as in torchreid's ``eval_market1501``:

* For each query, gallery items with the same pid **and** the same camid are removed ("junk").
  The remaining gallery items are ranked by ascending distance; ties are broken by gallery index,
  so the ranking is that of a stable argsort of the query's row.
* True matches are the remaining items with the query's pid (so: same pid, other camera).
  A query with no true match is *invalid*.
* AP = mean over the true matches of the precision at each one:
  ``AP = (1/m) sum_k k / r_k`` for the k-th match at rank ``r_k`` (1-based, among kept items).
* INP = ``m / r_m``: the number of true matches over the rank of the last one (Ye et al., "Deep
  Learning for Person Re-identification: A Survey and Outlook", TPAMI 2021).
* ``cmc[k]`` = fraction of queries whose first true match is within the top ``k + 1``.

Pids are compared as given: distractors (pid 0) are ordinary non-matching gallery items, and junk
boxes (pid -1) are expected to have been dropped when the layout was read (the official MATLAB
code treats gallery pid -1 as junk; here a -1 is just another pid).

Two AP variants, chosen with ``ap=``:

``"market"`` (default; torchreid, fast-reid, the AGW code)
    AP as above. Invalid queries are left out of every average (``num_valid`` is the denominator),
    their per-query ``ap``/``inp`` are NaN. If no query is valid, ``ParameterError``.

``"official"`` (the Market-1501 release, ``evaluation/utils/compute_AP.m`` and ``evaluation.m``)
    ``compute_AP.m`` walks the ranked list, skips junk, and for every kept position ``j``
    (1-based) accumulates the trapezoid ``ap += (recall - old_recall) * (old_precision +
    precision) / 2`` with ``precision = hits / j``, ``recall = hits / ngood`` and
    ``old_precision`` starting at ``1.0``. Only positions with a hit change recall, so per query
    ``AP = (1/m) sum_k ( p_{k-1} + k / r_k ) / 2`` where ``p_{k-1} = (k - 1) / (r_k - 1)`` is the
    precision one kept position before the k-th hit, and ``1`` when ``r_k = 1``.
    ``evaluation.m`` then sets ``ap(isnan(ap)) = 0`` (a query without a good image gets 0/0) and
    divides the summed AP and CMC by the number of *all* queries. So, compared with ``"market"``:
    (1) trapezoidal AP instead of the mean of precisions; since ``p_{k-1} <= k / r_k`` it is
    never larger, and the two agree only when the matches fill the top ``m`` ranks (a single
    match at rank 2 gives 0.5 against 0.25); (2) invalid queries count as
    AP 0 and as a miss at every CMC rank, and stay in the denominator. The ranking, the junk rule
    and the CMC numerator are the same.
    mINP is not part of the official code; under this variant INP keeps its definition and, like
    AP, an invalid query counts as INP 0 in an average over all queries.

Implementation: AP, INP and CMC only need the ranks of the true matches among the kept gallery
items, and only items no farther than a query's farthest true match can precede one. For a chunk
of queries, one scan of the distance rows (``d <= farthest match``) collects those candidates;
one sort puts them in (query, distance, gallery index) order, and a match's rank is its position
among its query's candidates less the junk before it. The cost is one pass over the Q x G matrix
plus a sort of the candidates: about 1% of them for a well-trained model on Market-1501, all of
them for a useless one. This is top-k selection with each query's own k, the least any exact AP
needs (CMC alone would need only ``max_rank``, but every result carries AP and INP). When most of
a chunk's items are candidates (random distances, the attacked cells with mAP near 0) there is
nothing to leave out: the numpy kernel then sorts each row's plain values (a float sort, about
twice as fast as collecting and sorting the candidates' keys, measured at Market-1501 size) and
finds each match's position by binary search, with exact ties counted by gallery index. No
Q x G index matrix is built; memory is bounded by ``chunk_size`` rows of a bool mask plus
``_CANDIDATE_BUDGET`` candidates (or sorted values) at a time.

On CPU the kernel runs in numpy on zero-copy views (torch's CPU kernels for these ragged integer
operations are several times slower); elsewhere it runs in torch on the distances' device. Both
produce the same ranks, exactly, and the tests run both.

:func:`evaluate_features` (what the harness calls) and :func:`evaluate_rank_features` start from
the features instead: they compute the distances a block of query rows at a time and rank each
block before computing the next, so the Q x G matrix (3.8 GB at MSMT17's 11,659 x 82,161) is
never built; the blocks are sized from a memory budget (``memory_budget``, ``reidbench run
--memory-budget``) or a row count (``chunk``). Their results are identical to
``evaluate_rank(compute_distance(qf, gf, metric), ...)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from reidbench.errors import ParameterError
from reidbench.eval.distance import (
    DEFAULT_CHUNK_SIZE,
    check_pair,
    distance_blocks,
)
from reidbench.eval.rank_kernels import CANDIDATE_BYTES, ranks_numpy, ranks_torch
from reidbench.eval.rerank import re_ranking_blocks

__all__ = [
    "AP_VARIANTS",
    "DEFAULT_MEMORY_BUDGET",
    "RankResult",
    "evaluate_features",
    "evaluate_rank",
    "evaluate_rank_features",
    "memory_budget_bytes",
]

AP_VARIANTS = ("market", "official")

# Rows of the distance matrix scanned at once: a bool mask per element (plus a float copy for
# half or integer inputs), so ~256 MB covers all 3,368 x 15,913 of Market-1501 in one chunk.
_DENSE_BUDGET_BYTES = 256 << 20
_DENSE_BYTES_PER_ELEMENT = 5
#: Working memory of :func:`evaluate_features` when no ``memory_budget`` is given: 512 MiB, of
#: which up to a quarter (at most ~100 MB) holds ranking candidates and the rest a block of
#: distances and its mask (~640 rows at MSMT17's 82,161 gallery images, all 3,368 queries of
#: Market-1501 in one block).
DEFAULT_MEMORY_BUDGET = 512 << 20
# Candidates ranked at once are capped at the kernels' default, whatever the budget.
_MAX_CANDIDATES = 1_000_000
# Run the kernel in numpy for CPU inputs; tests turn it off to check the torch kernel on CPU.
_NUMPY_ON_CPU = True


@dataclass(frozen=True, eq=False)
class RankResult:
    """The outcome of :func:`evaluate_rank`. Fractions are in [0, 1]; arrays are read-only.

    Attributes:
        cmc: ``max_rank`` values; ``cmc[k]`` is the fraction of queries matched within the top
            ``k + 1``.
        mAP: mean average precision.
        mINP: mean inverse negative penalty.
        ap: per-query AP; NaN for a query left out of the averages (``"market"``), 0 for a query
            without a true match under ``"official"``.
        inp: per-query INP, likewise.
        valid: whether each query has at least one true match in the gallery.
        num_valid: number of valid queries.
        ap_variant: ``"market"`` or ``"official"`` (see the module docstring).
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    ap: np.ndarray
    inp: np.ndarray
    valid: np.ndarray
    num_valid: int
    ap_variant: str

    def rank(self, k: int) -> float:
        """Rank-k accuracy, ``cmc[k - 1]``."""
        if (
            isinstance(k, bool)
            or not isinstance(k, int | np.integer)
            or not 1 <= k <= len(self.cmc)
        ):
            raise ParameterError(f"rank: k must be an int in [1, {len(self.cmc)}], got {k!r}")
        return float(self.cmc[k - 1])


def _as_labels(
    x: object, name: str, n: int, expected: str, fn: str = "evaluate_rank", what: str = "distmat"
) -> np.ndarray:
    """Labels as a CPU int64 array: they are small, and the per-pid tables are built on CPU."""
    try:
        a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    except (TypeError, ValueError, RuntimeError):
        raise ParameterError(f"{fn}: {name} must be an integer array") from None
    if a.ndim != 1 or a.shape[0] != n:
        raise ParameterError(
            f"{fn}: {name} has shape {tuple(a.shape)} but {what} needs one per {expected} ({n})"
        )
    if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
        raise ParameterError(f"{fn}: {name} must hold integers, got {a.dtype}")
    return a.astype(np.int64, copy=False)


def _is_int(x: object) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _auto_chunk(num_gallery: int) -> int:
    return max(1, _DENSE_BUDGET_BYTES // (_DENSE_BYTES_PER_ELEMENT * max(num_gallery, 1)))



def _query_stats(
    rows: np.ndarray, ranks: np.ndarray, num_rows: int, trapezoid: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-query (AP, INP, first-match rank): NaN, NaN, 0 for a query without a match.

    ``rows`` is sorted and ``ranks`` ascends within each row.
    """
    m = np.bincount(rows, minlength=num_rows)
    start = np.cumsum(m) - m
    k = (np.arange(rows.size) - start[rows] + 1).astype(np.float64)
    r = ranks.astype(np.float64)
    prec = k / r
    if trapezoid:
        prev = np.where(r > 1, (k - 1) / np.maximum(r - 1, 1), 1.0)
        prec = (prev + prec) / 2
    has = m > 0
    ap = np.full(num_rows, np.nan)
    inp = np.full(num_rows, np.nan)
    first = np.zeros(num_rows, np.int64)
    ap[has] = np.bincount(rows, weights=prec, minlength=num_rows)[has] / m[has]
    inp[has] = m[has] / r[start[has] + m[has] - 1]
    first[has] = ranks[start[has]]
    return ap, inp, first


def evaluate_rank(
    distmat: torch.Tensor | np.ndarray,
    q_pids: torch.Tensor | np.ndarray,
    g_pids: torch.Tensor | np.ndarray,
    q_camids: torch.Tensor | np.ndarray,
    g_camids: torch.Tensor | np.ndarray,
    max_rank: int = 50,
    *,
    ap: Literal["market", "official"] = "market",
    chunk_size: int | None = None,
) -> RankResult:
    """CMC, mAP and mINP of a query x gallery distance matrix (smaller = more similar).

    Same argument order and meaning as torchreid's ``evaluate_rank``; the protocol and the two AP
    variants are described in the module docstring.

    Args:
        distmat: (Q, G) distances, numpy or torch on any device; the work runs on its device.
        q_pids, g_pids: identity labels, (Q,) and (G,), integers.
        q_camids, g_camids: camera labels, (Q,) and (G,), integers.
        max_rank: length of the returned CMC curve. It may exceed G: the curve then stays flat.
        ap: ``"market"`` (mean of precisions, invalid queries left out) or ``"official"``
            (Market-1501's trapezoidal AP, invalid queries count as 0).
        chunk_size: query rows scanned at once. ``None`` picks it from G so the scan's mask
            stays near 256 MB (all 3,368 queries of Market-1501 in one chunk). Measured peak
            extra memory at Market-1501 scale: ~0.15 GB for float32 distances, even when every
            gallery item is a candidate (random distances); half precision adds a float32 copy.

    Returns:
        A :class:`RankResult`.
    """
    _check_options("evaluate_rank", ap, max_rank, "chunk_size", chunk_size)
    dist = distmat if isinstance(distmat, torch.Tensor) else torch.as_tensor(np.asarray(distmat))
    if dist.dim() != 2:
        raise ParameterError(
            f"evaluate_rank: distmat must be 2-D (Q, G), got shape {tuple(dist.shape)}"
        )
    num_q, num_g = dist.shape
    if num_q == 0 or num_g == 0:
        raise ParameterError(f"evaluate_rank: distmat is empty ({num_q} x {num_g})")
    chunk = int(chunk_size) if chunk_size is not None else _auto_chunk(num_g)
    labels = _labels(q_pids, g_pids, q_camids, g_camids, num_q, num_g, "evaluate_rank", "distmat")
    blocks = ((start, dist[start : start + chunk]) for start in range(0, num_q, chunk))
    return _evaluate(
        blocks, num_q, num_g, dist.device, labels, max_rank, ap, "evaluate_rank", "distmat"
    )


def evaluate_rank_features(
    qf: torch.Tensor | np.ndarray,
    gf: torch.Tensor | np.ndarray,
    q_pids: torch.Tensor | np.ndarray,
    g_pids: torch.Tensor | np.ndarray,
    q_camids: torch.Tensor | np.ndarray,
    g_camids: torch.Tensor | np.ndarray,
    *,
    metric: Literal["euclidean", "cosine"] = "cosine",
    max_rank: int = 50,
    ap: Literal["market", "official"] = "market",
    chunk: int | None = None,
) -> RankResult:
    """``evaluate_rank(compute_distance(qf, gf, metric), ...)`` without the Q x G matrix.

    The distances are computed a block of query rows at a time
    (:func:`reidbench.eval.distance.distance_blocks`) and each block is ranked before the next is
    computed. The result is identical to the full-matrix path: the same distances bit for bit
    (the product is tiled the same way) and the same ranks, so equal CMC, AP and INP.

    Args:
        qf, gf: query (Q, D) and gallery (G, D) features, on one device; the work runs there.
        q_pids, g_pids, q_camids, g_camids: labels as for :func:`evaluate_rank`.
        metric: ``"cosine"`` (1 - cosine) or ``"euclidean"`` (squared), as ``compute_distance``.
        max_rank, ap: as for :func:`evaluate_rank`.
        chunk: query rows per block, rounded up to a multiple of 256 (whole product tiles, see
            ``distance_blocks``). ``None`` sizes the blocks from :data:`DEFAULT_MEMORY_BUDGET`
            as :func:`evaluate_features` does (a multiple of 256 rows, at least 256). Peak memory
            beyond the features (and their normalised copies for ``"cosine"``) is then about
            that budget at any gallery size, instead of Q x G x 4 bytes (3.8 GB for MSMT17).
            :func:`evaluate_features` is the same with a memory budget instead of a row count.

    Returns:
        A :class:`RankResult`.
    """
    fn = "evaluate_rank_features"
    _check_options(fn, ap, max_rank, "chunk", chunk)
    q, g = check_pair(*_feature_pair(qf, gf, fn), metric, fn)
    candidates = None
    if chunk is None:
        chunk, candidates = _budget_plan(DEFAULT_MEMORY_BUDGET, q, len(q), len(g), fn, strict=False)
    labels = _labels(q_pids, g_pids, q_camids, g_camids, len(q), len(g), fn, "the features")
    blocks = distance_blocks(q, g, metric, int(chunk))
    return _evaluate(
        blocks, len(q), len(g), q.device, labels, max_rank, ap, fn, "a distance block", candidates
    )


def evaluate_features(
    qf: torch.Tensor | np.ndarray,
    gf: torch.Tensor | np.ndarray,
    q_pids: torch.Tensor | np.ndarray,
    g_pids: torch.Tensor | np.ndarray,
    q_camids: torch.Tensor | np.ndarray,
    g_camids: torch.Tensor | np.ndarray,
    *,
    metric: Literal["euclidean", "cosine"] = "cosine",
    max_rank: int = 50,
    ap: Literal["market", "official"] = "market",
    rerank: bool = False,
    memory_budget: int | str | None = None,
) -> RankResult:
    """CMC, mAP and mINP of query features against gallery features, within a memory budget.

    The distances are computed and ranked a block of query rows at a time, sized so that the
    block, its mask and the ranking's candidates stay within ``memory_budget``; the Q x G matrix
    is never built. The numbers are identical to
    ``evaluate_rank(compute_distance(qf, gf, metric), ...)`` whatever the budget: the distances
    are the same bit for bit and each query's ranks depend on its own row only.

    Args:
        qf, gf: query (Q, D) and gallery (G, D) features, numpy or torch, on one device; the
            work runs there.
        q_pids, g_pids, q_camids, g_camids: labels as for :func:`evaluate_rank`.
        metric: ``"cosine"`` (1 - cosine) or ``"euclidean"`` (squared), as ``compute_distance``.
        max_rank, ap: as for :func:`evaluate_rank`.
        rerank: rank the k-reciprocal re-ranked distances instead
            (:func:`reidbench.eval.rerank.re_ranking`, k1=20, k2=6, lambda=0.3). That method
            holds dense N x N distances (N = Q + G) whatever the budget: a size that does not fit
            in the available memory is refused with one line (``check_rerank_fits``) before any
            of them is computed; the budget then sizes only the ranking of the result.
        memory_budget: bytes (an int) or a size such as ``"2GB"``, ``"512MiB"`` or ``"1.5G"``
            (KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB and K, M, G, T powers of 1024).
            ``None``: :data:`DEFAULT_MEMORY_BUDGET` (512 MiB). It bounds the working memory
            beyond the inputs (and, for ``"cosine"``, their normalised copies): one block of
            distances with its mask, and the candidates ranked at once. A budget too small for
            one block of 256 query rows (the unit the distances are computed in) is refused with
            one line naming the minimum for this gallery size.

    Returns:
        A :class:`RankResult`, as :func:`evaluate_rank` returns.
    """
    fn = "evaluate_features"
    _check_options(fn, ap, max_rank, "chunk", None)
    if not isinstance(rerank, bool | np.bool_):
        raise ParameterError(f"{fn}: rerank must be True or False, not {rerank!r}")
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget_bytes(memory_budget, f"{fn}: memory_budget")
    q, g = check_pair(*_feature_pair(qf, gf, fn), metric, fn)
    num_q, num_g = len(q), len(g)
    labels = _labels(q_pids, g_pids, q_camids, g_camids, num_q, num_g, fn, "the features")
    if not rerank:
        rows, candidates = _budget_plan(budget, q, num_q, num_g, fn)
        blocks = distance_blocks(q, g, metric, rows)
        return _evaluate(
            blocks, num_q, num_g, q.device, labels, max_rank, ap, fn, "a distance block", candidates
        )
    # Sparse k-reciprocal re-ranking from the features, a block of query rows at a time: no N x N
    # matrix is held (MSMT17 size: about 1.5 GB for the neighbour graph, refused in one line where
    # even that does not fit). The budget sizes the ranking's candidates; the graph sizes itself.
    blocks = re_ranking_blocks(q, g, metric)
    return _evaluate(
        blocks, num_q, num_g, q.device, labels, max_rank, ap, fn, "the re-ranked distances",
        max(1, _candidate_share(budget) // CANDIDATE_BYTES),
    )  # fmt: skip


_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?)(b?)\s*", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def memory_budget_bytes(value: Any, who: str = "memory_budget") -> int:
    """A memory budget in bytes, from an int or a size such as ``"2GB"``, ``"512MiB"``, ``"1.5G"``.

    KB, MB, GB and TB are powers of 1000; KiB, MiB, GiB, TiB and the bare K, M, G, T (as in
    ``ulimit`` or docker) are powers of 1024; a plain number is bytes.
    """
    example = "a number of bytes or a size such as 2GB, 512MiB or 1.5G"
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        number = int(value)
    elif isinstance(value, str) and (m := _SIZE.fullmatch(value)) and (m[2] or not m[3]):
        digits, prefix, binary, byte = m.groups()
        base = 1000 if byte and not binary else 1024  # KB: 1000; KiB, Ki and K: 1024
        number = int(float(digits) * base ** _POWERS[prefix.lower()])
    else:
        raise ParameterError(f"{who} must be {example}, not {value!r}")
    if number < 1:
        raise ParameterError(f"{who} must be positive, not {value!r}")
    return number


def _candidate_share(budget: int) -> int:
    """Bytes of the budget for ranking candidates: a quarter of it, at most _MAX_CANDIDATES."""
    return min(_MAX_CANDIDATES, budget // 4 // CANDIDATE_BYTES) * CANDIDATE_BYTES


def _budget_plan(
    budget: int, q: torch.Tensor, num_q: int, num_g: int, fn: str, strict: bool = True
) -> tuple[int, int]:
    """(query rows per distance block, candidates ranked at once) within ``budget`` bytes.

    A block holds its distances (the features' float type, at least 4 bytes) and the ranking's
    mask and float copy (``_DENSE_BYTES_PER_ELEMENT``) for each of its G columns; blocks are
    whole tiles of ``DEFAULT_CHUNK_SIZE`` rows (see ``distance_blocks``). A budget too small for
    the smallest block is refused (``strict``) or exceeded by that block.
    """
    item = max(q.element_size(), 4) if q.is_floating_point() else 4
    per_row = (item + _DENSE_BYTES_PER_ELEMENT) * max(num_g, 1)
    share = _candidate_share(budget)
    tile = DEFAULT_CHUNK_SIZE
    least = min(tile, num_q)  # the smallest block: one tile, or every query if fewer
    if strict and budget - share < least * per_row:
        base = least * per_row
        # The least budget whose block share holds ``base``: the candidates take a quarter, capped.
        need = min(base * 4 // 3 + 4 * CANDIDATE_BYTES, base + _MAX_CANDIDATES * CANDIDATE_BYTES)
        raise ParameterError(
            f"{fn}: a memory budget of {_size_text(budget)} is too small for {num_g:,} gallery "
            f"images: one block of {least} query rows needs {_size_text(need)}; give at least that"
        )
    return max(tile, (budget - share) // per_row // tile * tile), max(1, share // CANDIDATE_BYTES)


def _size_text(n: int) -> str:
    """``n`` bytes in the largest binary unit it reaches, one decimal, rounded up."""
    for unit, power in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << power:
            return f"{-(-n * 10 // (1 << power)) / 10:g} {unit}"
    return f"{n} bytes"


def _feature_pair(qf: Any, gf: Any, fn: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Query and gallery features as tensors, refusing empty sets (the rest is checked by the
    distance code)."""
    q = torch.as_tensor(qf)
    g = torch.as_tensor(gf)
    num_q = q.shape[0] if q.dim() == 2 else 0
    num_g = g.shape[0] if g.dim() == 2 else 0
    if q.dim() == 2 and g.dim() == 2 and (num_q == 0 or num_g == 0):
        raise ParameterError(f"{fn}: no features ({num_q} queries, {num_g} gallery images)")
    if q.dim() != 2 or g.dim() != 2:
        name, t = ("qf", q) if q.dim() != 2 else ("gf", g)
        raise ParameterError(f"{fn}: {name} must be 2-D (N, D), got shape {tuple(t.shape)}")
    return q, g


def _check_options(fn: str, ap: str, max_rank: Any, chunk_name: str, chunk: Any) -> None:
    """The options both entry points share; ``chunk_name`` is the chunk argument's name in ``fn``."""
    if ap not in AP_VARIANTS:
        raise ParameterError(f"{fn}: unknown ap {ap!r}; choose one of {', '.join(AP_VARIANTS)}")
    if not _is_int(max_rank) or max_rank < 1:
        raise ParameterError(f"{fn}: max_rank must be a positive int, got {max_rank!r}")
    if chunk is not None and (not _is_int(chunk) or chunk < 1):
        raise ParameterError(f"{fn}: {chunk_name} must be a positive int or None, got {chunk!r}")


def _labels(
    q_pids: object, g_pids: object, q_camids: object, g_camids: object,
    num_q: int, num_g: int, fn: str, what: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    return (
        _as_labels(q_pids, "q_pids", num_q, "query row", fn, what),
        _as_labels(g_pids, "g_pids", num_g, "gallery column", fn, what),
        _as_labels(q_camids, "q_camids", num_q, "query row", fn, what),
        _as_labels(g_camids, "g_camids", num_g, "gallery column", fn, what),
    )


def _evaluate(
    blocks: Iterator[tuple[int, torch.Tensor]],
    num_q: int,
    num_g: int,
    device: torch.device,
    labels: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    max_rank: int,
    ap: str,
    fn: str,
    what: str,
    candidate_budget: int | None = None,
) -> RankResult:
    """Rank the distance rows that ``blocks`` yields as ``(first row, rows)``, in row order.

    Each query's ranks depend on its own row only, so the split into blocks does not change them.
    """
    qp, gp, qc, gc = labels
    use_numpy = _NUMPY_ON_CPU and device.type == "cpu"
    # Each query's same-pid gallery items (matches and junk), from the gallery grouped by pid:
    # same_idx[i, :count[i]], in gallery order.
    g_by_pid = np.argsort(gp, kind="stable")
    gp_sorted = gp[g_by_pid]
    lo = np.searchsorted(gp_sorted, qp, side="left")
    count = np.searchsorted(gp_sorted, qp, side="right") - lo
    slot = np.arange(count.max())
    same_ok = slot < count[:, None]
    same_idx = g_by_pid[np.minimum(lo[:, None] + slot, num_g - 1)]
    if not use_numpy:
        qc_t, gc_t, idx_t, ok_t = (
            torch.from_numpy(a).to(device) for a in (qc, gc, same_idx, same_ok)
        )

    with torch.no_grad():
        rows_out, ranks_out = [], []
        for start, block in blocks:
            stop = start + block.shape[0]
            if block.dtype in (torch.float32, torch.float64):
                work_dtype = block.dtype
            elif block.dtype in (torch.float16, torch.bfloat16):
                work_dtype = torch.float32  # exact
            else:
                work_dtype = torch.float64
            d = block.detach().to(work_dtype).contiguous()
            # max propagates NaN and is the cheapest full pass there is.
            if use_numpy:
                dn = d.numpy()
                if np.isnan(dn.max()):
                    raise ParameterError(f"{fn}: {what} contains NaN; check the features")
                rows, ranks = ranks_numpy(
                    dn, qc[start:stop], gc, same_idx[start:stop], same_ok[start:stop],
                    candidate_budget,
                )
            else:
                if bool(torch.isnan(d.max())):
                    raise ParameterError(f"{fn}: {what} contains NaN; check the features")
                rows_t, ranks_t = ranks_torch(
                    d, qc_t[start:stop], gc_t, idx_t[start:stop], ok_t[start:stop],
                    candidate_budget,
                )
                rows, ranks = rows_t.cpu().numpy(), ranks_t.cpu().numpy()
            del d
            rows_out.append(rows + start)
            ranks_out.append(ranks)
    ap_q, inp_q, first = _query_stats(
        np.concatenate(rows_out), np.concatenate(ranks_out), num_q, ap == "official"
    )
    valid = first > 0
    num_valid = int(valid.sum())

    if ap == "official":
        ap_q = np.where(valid, ap_q, 0.0)
        inp_q = np.where(valid, inp_q, 0.0)
        denom = num_q
    else:
        if num_valid == 0:
            raise ParameterError(
                f"{fn}: no query has a true match in the gallery (same pid, other camera); "
                "check the pids and camids"
            )
        denom = num_valid
    hits = np.bincount(np.minimum(first[valid], max_rank + 1), minlength=max_rank + 2)
    cmc = np.cumsum(hits[1 : max_rank + 1]) / denom
    m_ap = float(np.nansum(ap_q) / denom)
    m_inp = float(np.nansum(inp_q) / denom)
    for arr in (cmc, ap_q, inp_q, valid):
        arr.flags.writeable = False
    return RankResult(
        cmc=cmc,
        mAP=m_ap,
        mINP=m_inp,
        ap=ap_q,
        inp=inp_q,
        valid=valid,
        num_valid=num_valid,
        ap_variant=ap,
    )
