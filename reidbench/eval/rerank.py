"""k-reciprocal re-ranking.

Zhong, Zheng, Cao and Li, "Re-ranking Person Re-identification with k-reciprocal Encoding",
CVPR 2017, https://arxiv.org/abs/1701.08398. Reference code: zhunzhong07/person-re-ranking
(``evaluation/utils/re_ranking.m``, and ``python-version/re_ranking_ranklist.py`` by Luo Hao
and Houjing Huang, which torchreid ships as ``torchreid/utils/rerank.py``).

With N = Q + G images and ``d`` the distance over all of them:

1. ``d`` is divided by its maximum per row (the reference code divides each column of the
   symmetric block matrix by its maximum and transposes; the two agree for symmetric inputs,
   and this code follows the reference exactly for non-symmetric ones, i.e. row ``i`` is built
   from column ``i`` of ``[[q_q, q_g], [q_g^T, g_g]]``).
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

Conventions of the reference code kept here, and where this differs from it:

* **Squared distances.** The Python reference squares its inputs (``np.power(dist, 2)``) and
  expects plain Euclidean distances; the MATLAB reference works on squared Mahalanobis/Euclidean
  distances directly. This function does **not** square: pass the squared Euclidean distances
  that :func:`reidbench.eval.distance.compute_distance` returns. So
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

Cost: with N = Q + G, one pass over the N x N distances (read from the three inputs in row
chunks, never concatenated), plus sparse work proportional to the non-zeros of V (about ``k1``
per row before query expansion, a few times that after) and to the query-gallery pairs that
share a non-zero column. Memory beyond the inputs and the Q x G float32 output: ``_ROW_CHUNK``
rows of N floats in a few copies, the sparse V, and at most ``_PAIR_BUDGET`` query-gallery pairs
at a time. On the Market-1501-sized problem of ``benchmarks/bench_eval.py`` (3,368 x 15,913,
N = 19,281; inputs 1.3 GB, output 0.2 GB) that is ~0.7 GB of peak extra memory and 15-40 s on a
2-core CPU. The reference builds dense N x N arrays instead (1.5 GB per float32 one at that size,
several alive at once) and loops over the N images in Python.

Limits: the inputs and the output alone hold N^2 float32 values (Q^2 + G^2 + 2 Q G), so MSMT17
(N = 93,820) needs ~35 GB before any work and is out of reach on a 24 GB machine with the method
as published. :func:`check_rerank_fits` (called by ``re_ranking`` too, and meant to be called
before the Q x Q and G x G distances are computed) refuses such a size with one
``ReidbenchError`` line instead of letting the OS kill the process. Inputs of at most
``_SINGLE_THREAD_MAX_IMAGES`` images run on one torch thread (restored afterwards): with two
threads on a shared 2-core machine the ~100 small operations each wait at an OpenMP barrier,
which cost 0.2-0.5 s per call; the result does not depend on the thread count.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import numpy as np
import torch

from reidbench.errors import ParameterError, ReidbenchError

__all__ = ["check_rerank_fits", "re_ranking", "rerank_memory_bytes"]

# Rows of the N x N distance handled at once in the first pass.
_ROW_CHUNK = 1024
# Query-gallery pairs expanded at once when computing the Jaccard distance (~64 bytes each).
_PAIR_BUDGET = 1 << 22
# Up to this many images (N = Q + G) the work runs on one thread. Each call makes ~100 small torch
# operations; with 2 threads each one is an OpenMP parallel region whose barrier waits for the
# second core, which on a shared 2-core machine costs ~1-5 ms per region, ~0.2-0.5 s per call
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
    """Peak memory of re-ranking Q queries against G gallery images, inputs and output included.

    The three input distance matrices and the re-ranked output hold Q^2 + G^2 + 2 Q G = N^2
    float32 values; the work on top of them is a few row chunks of N floats, the sparse encoding
    (~100 entries of 20 bytes per image) and the pair budget.
    """
    n = num_query + num_gallery
    dense = 4 * n * n
    work = 3 * 4 * _ROW_CHUNK * n + 2000 * n + 64 * _PAIR_BUDGET
    return dense + work


def check_rerank_fits(num_query: int, num_gallery: int) -> int:
    """Refuse, with one line, a re-ranking that would not fit in memory; return its estimate.

    Call it before computing the query-query and gallery-gallery distances: at MSMT17 size those
    alone take 35 GB, and the process would be killed by the OS before ``re_ranking`` could refuse.
    """
    need = rerank_memory_bytes(num_query, num_gallery)
    available = _available_memory_bytes()
    if need > available:
        n = num_query + num_gallery
        raise ReidbenchError(
            f"re-ranking {num_query:,} queries x {num_gallery:,} gallery ({n:,} images) needs "
            f"about {need / 1e9:.1f} GB (the {n:,} x {n:,} float32 distances), but only "
            f"{available / 1e9:.1f} GB is available; evaluate without --rerank, or use a machine "
            "with more memory"
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


def _stable_topk(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k smallest entries per row, ordered by (value, index) like a stable sort."""
    n = x.shape[1]
    vals, idx = torch.topk(x, min(k + 1, n), dim=1, largest=False, sorted=True)
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


def re_ranking(
    q_g_dist: torch.Tensor | np.ndarray,
    q_q_dist: torch.Tensor | np.ndarray,
    g_g_dist: torch.Tensor | np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> torch.Tensor:
    """Re-ranked query-gallery distance (Zhong et al., CVPR 2017); see the module docstring.

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
    for name, value in (("k1", k1), ("k2", k2)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ParameterError(f"re_ranking: {name} must be a positive int, got {value!r}")
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise ParameterError(f"re_ranking: lambda_value must be in [0, 1], got {lambda_value!r}")
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
    single = device.type == "cpu" and num_q + num_g <= _SINGLE_THREAD_MAX_IMAGES
    with torch.no_grad(), _one_thread(single):
        return _re_ranking(
            qg.detach().to(torch.float32),
            qq.to(torch.float32),
            gg.to(torch.float32),
            int(k1),
            int(k2),
            float(lambda_value),
        )


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


def _re_ranking(
    qg: torch.Tensor, qq: torch.Tensor, gg: torch.Tensor, k1: int, k2: int, lam: float
) -> torch.Tensor:
    num_q, num_g = qg.shape
    n = num_q + num_g
    device = qg.device
    # As the references do with numpy slices, neighbourhoods are capped at N images.
    n_k1 = min(k1 + 1, n)
    n_half = min(round(k1 / 2) + 1, n)
    n_k2 = min(k2, n)
    n_top = max(n_k1, n_k2)

    def rows(a: int, b: int) -> torch.Tensor:
        """Rows a..b of the working matrix: row i is column i of [[qq, qg], [qg^T, gg]]."""
        parts = []
        if a < num_q:
            s = slice(a, min(b, num_q))
            parts.append(torch.cat([qq[:, s].t(), qg[s]], dim=1))
        if b > num_q:
            s = slice(max(a, num_q) - num_q, b - num_q)
            parts.append(torch.cat([qg[:, s].t(), gg[:, s].t()], dim=1))
        return torch.cat(parts, dim=0)

    # 1. Row maxima and the initial ranking (only its first n_top places are ever used).
    row_max = torch.empty(n, dtype=torch.float32, device=device)
    top = torch.empty(n, n_top, dtype=torch.int64, device=device)
    for a in range(0, n, _ROW_CHUNK):
        b = min(a + _ROW_CHUNK, n)
        w = rows(a, b)
        row_max[a:b] = w.amax(dim=1)  # propagates NaN
        if bool(torch.isnan(row_max[a:b]).any()):
            raise ParameterError("re_ranking: the distances contain NaN; check the features")
        if bool((row_max[a:b] <= 0).any()):
            raise ParameterError(
                "re_ranking: a row of distances has no positive entry; it cannot be normalised"
            )
        w /= row_max[a:b].unsqueeze(1)
        top[a:b] = _stable_topk(w, n_top)

    def dist(i: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Row-normalised working distance at (i, e), gathered from the three inputs."""
        out = torch.empty(i.shape, dtype=torch.float32, device=device)
        iq, eq = i < num_q, e < num_q
        for sel, mat, r, c in (
            (iq & eq, qq, e, i),
            (iq & ~eq, qg, i, e - num_q),
            (~iq & eq, qg, e, i - num_q),
            (~iq & ~eq, gg, e - num_q, i - num_q),
        ):
            out[sel] = mat[r[sel], c[sel]]
        return out / row_max[i]

    # 2. k-reciprocal sets R(p, k1), and R(q, k1/2) for every q with its size.
    ar = torch.arange(n, device=device)
    near = top[:, :n_k1]
    half = top[:, :n_half]
    half_recip = (half[half] == ar[:, None, None]).any(dim=2)
    half_size = half_recip.sum(dim=1).to(torch.float64)

    # 3.-4. Expanded sets R*(p, k1) and the encoding V, as COO (row, col, value).
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
        weight = torch.exp(-dist(p[r_idx], cols))
        total = torch.zeros(b - a, dtype=torch.float32, device=device).index_add_(0, r_idx, weight)
        v_rows.append(p[r_idx])
        v_cols.append(cols)
        v_vals.append(weight / total[r_idx])
    vr, vc, vv = torch.cat(v_rows), torch.cat(v_cols), torch.cat(v_vals)

    # 5. Local query expansion: V[p] <- mean of the rows of p's n_k2 nearest (p included).
    if k2 != 1:
        row_len = torch.bincount(vr, minlength=n)
        row_start = torch.cumsum(row_len, 0) - row_len
        src = top[:, :n_k2].reshape(-1)
        owner, offset = _segments(row_len[src])
        at = row_start[src][owner] + offset
        owner = torch.div(owner, n_k2, rounding_mode="floor")  # the row p the entry is added to
        key, inverse = torch.unique(owner * n + vc[at], return_inverse=True)
        # index_add_ adds in order of appearance: neighbour by neighbour, as the reference's mean.
        vv = (
            torch.zeros(key.numel(), dtype=torch.float32, device=device).index_add_(
                0, inverse, vv[at]
            )
            / n_k2
        )
        vr = torch.div(key, n, rounding_mode="floor")
        vc = key - vr * n

    # 6. Shared mass m[i, j] = sum_k min(V[i, k], V[Q + j, k]) for queries i and gallery j,
    #    through an inverted index (gallery rows by column), query rows in blocks of pairs.
    is_q = vr < num_q
    q_rows, q_cols, q_vals = vr[is_q], vc[is_q], vv[is_q]
    g_sel = torch.nonzero(~is_q).squeeze(1)
    by_col = g_sel[torch.argsort(vc[g_sel], stable=True)]
    g_of = vr[by_col] - num_q
    g_val = vv[by_col]
    col_len = torch.bincount(vc[g_sel], minlength=n)
    col_start = torch.cumsum(col_len, 0) - col_len
    entry_pairs = col_len[q_cols]
    pairs_per_query = torch.zeros(num_q, dtype=torch.int64, device=device).index_add_(
        0, q_rows, entry_pairs
    )
    q_entries = torch.bincount(q_rows, minlength=num_q)
    q_entry_start = (torch.cumsum(q_entries, 0) - q_entries).tolist() + [q_rows.numel()]

    out = torch.empty(num_q, num_g, dtype=torch.float32, device=device)
    a = 0
    budget_rows = torch.cumsum(pairs_per_query, 0).tolist()
    while a < num_q:
        # Largest block starting at a within the pair budget (at least one query).
        base = budget_rows[a - 1] if a else 0
        b = a + 1
        while b < num_q and budget_rows[b] - base <= _PAIR_BUDGET and b - a < _ROW_CHUNK:
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
        shared = shared.view(b - a, num_g)
        jaccard = 1.0 - shared / (2.0 - shared)
        original = qg[a:b] / row_max[a:b].unsqueeze(1)
        # 7. Blend with the row-normalised original distance.
        out[a:b] = jaccard * (1.0 - lam) + original * lam
        a = b
    return out
