"""The rank kernels behind :func:`reidbench.eval.metrics.evaluate_rank`: for a block of query rows,
the 1-based ranks of every true match among the kept gallery items, in numpy (CPU, zero-copy
views) or in torch (any device). Both produce the same ranks, exactly; see the module docstring of
:mod:`reidbench.eval.metrics` for the method."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

# Candidates ranked at once, at up to ~100 bytes each (~100 MB); smaller arrays also avoid
# fresh page faults. A well-trained model on Market-1501 has ~0.5M candidates in all, a useless
# one tens of millions. Peak extra memory at Market-1501 scale stays well under 1 GB.
_CANDIDATE_BUDGET = 1_000_000
# Above this share of candidates in a block, the numpy kernel keys every item of a row instead of
# collecting the candidates (``_ranks_dense``): both sort, and collecting costs about one more
# sort's worth of passes over the candidates, which pays only when it leaves most items out.
_DENSE_SHARE = 0.5


def _index_bits(num_g: int) -> int:
    return max(1, (num_g - 1).bit_length())


#: Bytes of working memory per candidate: its flat index, row, gallery index, distance and key,
#: and the temporaries that build the key (an upper bound, for sizing a memory budget).
CANDIDATE_BYTES = 100


def _candidate_groups(per_row: Sequence[int], row_cap: int, budget: int) -> list[tuple[int, int]]:
    """Split rows into runs of at most ``budget`` candidates and ``row_cap`` rows (a row with
    more candidates than the budget is a run of its own)."""
    groups, start, acc = [], 0, 0
    for i, n in enumerate(per_row):
        if i > start and (acc + n > budget or i - start >= row_cap):
            groups.append((start, i))
            start, acc = i, 0
        acc += n
    groups.append((start, len(per_row)))
    return groups


# The same kernel twice, numpy (CPU) and torch (any device). Given a chunk of distance rows and
# each row's same-pid gallery items (``same_idx``, valid where ``same_ok``), it returns
# (rows, ranks): the row and the 1-based rank among kept items of every true match, sorted by row
# and then rank.
#
# Candidates are the items no farther than the row's farthest true match; nothing else can
# precede a match. They are put in (row, distance, gallery index) order, the order of a stable
# argsort per row. A match's rank is then its position within its row's candidates, less the junk
# (same pid, same camera) before it, plus one. For float32, (row, distance, index) is packed into
# one unique int64 key: the float's bits map to an order-preserving integer (adding 0.0 first
# folds -0.0 into +0.0, which compare equal), and a match is found in the sorted keys with
# searchsorted. float64 does not fit beside row and index, so it takes a stable lexicographic sort
# by (row, distance) instead; stability supplies the index, as candidates arrive in index order.


def ranks_numpy(
    d: np.ndarray,
    q_cam: np.ndarray,
    g_cam: np.ndarray,
    same_idx: np.ndarray,
    same_ok: np.ndarray,
    candidate_budget: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    c, num_g = d.shape
    budget = _CANDIDATE_BUDGET if candidate_budget is None else candidate_budget
    same_cam = g_cam[same_idx] == q_cam[:, None]
    is_match = same_ok & ~same_cam
    if not is_match.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    same_d = np.take_along_axis(d, same_idx, axis=1)
    far = np.where(is_match, same_d, -np.inf).max(axis=1)
    is_junk = same_ok & same_cam & (same_d <= far[:, None])
    mask = d <= far[:, None]
    gbits = _index_bits(num_g)
    packed = d.dtype == np.float32 and gbits <= 30
    row_cap = 1 << max(0, 31 - gbits) if packed else c
    num_candidates = np.count_nonzero(mask)
    if num_candidates > _DENSE_SHARE * mask.size:
        return _ranks_dense(d, same_idx, same_d, is_match, is_junk, budget)
    if num_candidates <= budget and c <= row_cap:
        groups, per_row = [(0, c)], None  # the common case: skip the per-row count
    else:
        per_row = np.count_nonzero(mask, axis=1)
        groups = _candidate_groups(per_row.tolist(), row_cap, budget)

    def key_of(r: np.ndarray, v: np.ndarray, g: np.ndarray) -> np.ndarray:
        return _packed_keys(r, v, g, gbits)

    rows_out, ranks_out = [], []
    for a, b in groups:
        flat = np.flatnonzero(mask[a:b])
        if per_row is None:
            r = flat // num_g
            counts = np.bincount(r, minlength=b - a)
        else:
            counts = per_row[a:b]
            r = np.repeat(np.arange(b - a), counts)
        g = flat - r * num_g
        v = d[a:b].reshape(-1)[flat]
        mr, ms = np.nonzero(is_match[a:b])
        jr, js = np.nonzero(is_junk[a:b])
        mg, jg = same_idx[a:b][mr, ms], same_idx[a:b][jr, js]
        if packed:
            key = key_of(r, v, g)
            key.sort()
            m_pos = np.searchsorted(key, key_of(mr, same_d[a:b][mr, ms], mg))
            j_pos = np.searchsorted(key, key_of(jr, same_d[a:b][jr, js], jg))
        else:
            where = np.empty(flat.size, np.int64)
            where[np.lexsort((v, r))] = np.arange(flat.size)
            m_pos = where[np.searchsorted(flat, mr * num_g + mg)]
            j_pos = where[np.searchsorted(flat, jr * num_g + jg)]
        row_start = np.cumsum(counts) - counts
        j_pos.sort()
        junk_before = np.searchsorted(j_pos, m_pos) - np.searchsorted(j_pos, row_start[mr])
        ranks = m_pos - row_start[mr] - junk_before + 1
        order = np.argsort(m_pos)
        rows_out.append(mr[order] + a)
        ranks_out.append(ranks[order])
    return np.concatenate(rows_out), np.concatenate(ranks_out)


def _packed_keys(r: np.ndarray, v: np.ndarray, g: np.ndarray, gbits: int) -> np.ndarray:
    """The unique int64 key of (row, float32 distance, gallery index), in that order."""
    bits = (v + np.float32(0.0)).view(np.int32).astype(np.int64)
    key = (bits ^ ((bits >> 31) & 0x7FFFFFFF)) + (1 << 31)
    key <<= gbits
    key |= g
    key |= r << (32 + gbits)
    return key


def _ranks_dense(
    d: np.ndarray,
    same_idx: np.ndarray,
    same_d: np.ndarray,
    is_match: np.ndarray,
    is_junk: np.ndarray,
    budget: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``ranks_numpy`` when most items are candidates (a useless model, random distances).

    Nothing is left out to collect, so each row is sorted whole, as plain values (a float sort,
    the fastest numpy has), and an item's position in the (distance, gallery index) order is
    the number of row values below its distance, from a binary search, plus the items of equal
    distance and lower index, counted directly (exact ties of a match or a junk item are rare
    with real distances; a block with more of them than rows takes each item's place in a
    stable sort of its row instead). Ranks follow from the positions of the matches and the
    junk as in the candidate path.
    """
    c, num_g = d.shape
    rows_out, ranks_out = [], []
    for a, b in _candidate_groups([num_g] * c, c, budget):
        block = d[a:b]
        mr, ms = np.nonzero(is_match[a:b])
        jr, js = np.nonzero(is_junk[a:b])
        r = np.concatenate([mr, jr])
        order = np.argsort(r, kind="stable")
        r = r[order]
        slot = np.concatenate([ms, js])[order]
        v, g = same_d[a:b][r, slot], same_idx[a:b][r, slot]
        srt = np.sort(block, axis=1)
        bounds = np.searchsorted(r, np.arange(b - a + 1))
        below = np.empty(r.size, np.int64)
        upto = np.empty(r.size, np.int64)
        for i in np.flatnonzero(np.diff(bounds)).tolist():
            lo, hi = bounds[i], bounds[i + 1]
            below[lo:hi] = np.searchsorted(srt[i], v[lo:hi], "left")
            upto[lo:hi] = np.searchsorted(srt[i], v[lo:hi], "right")
        del srt
        tied = np.flatnonzero(upto - below > 1)  # another item has exactly this distance
        if tied.size > b - a:  # scanning rows for them would cost more than sorting stably
            perm = np.argsort(block, axis=1, kind="stable")
            place = np.empty_like(perm)
            np.put_along_axis(place, perm, np.arange(num_g)[None, :], axis=1)
            below = place[r, g]
        else:
            for k in tied.tolist():
                below[k] += np.count_nonzero(block[r[k], : g[k]] == v[k])
        pos = r * num_g + below  # unique: the (distance, index) order within the block
        is_m = np.zeros(r.size, bool)
        is_m[np.argsort(order)[: mr.size]] = True
        m_pos, m_row = pos[is_m], r[is_m]
        j_pos = np.sort(pos[~is_m])
        junk_before = np.searchsorted(j_pos, m_pos) - np.searchsorted(j_pos, m_row * num_g)
        ranks = below[is_m] - junk_before + 1
        by_rank = np.argsort(m_pos)  # each row's matches by rank, as the candidate path lists them
        rows_out.append(m_row[by_rank] + a)
        ranks_out.append(ranks[by_rank])
    return np.concatenate(rows_out), np.concatenate(ranks_out)


def ranks_torch(
    d: torch.Tensor,
    q_cam: torch.Tensor,
    g_cam: torch.Tensor,
    same_idx: torch.Tensor,
    same_ok: torch.Tensor,
    candidate_budget: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    c, num_g = d.shape
    budget = _CANDIDATE_BUDGET if candidate_budget is None else candidate_budget
    device = d.device
    same_cam = g_cam[same_idx] == q_cam.unsqueeze(1)
    is_match = same_ok & ~same_cam
    if not bool(is_match.any()):
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return empty, empty
    same_d = d.gather(1, same_idx)
    far = torch.where(is_match, same_d, float("-inf")).amax(dim=1)
    is_junk = same_ok & same_cam & (same_d <= far.unsqueeze(1))
    mask = d <= far.unsqueeze(1)
    per_row = mask.sum(dim=1)
    gbits = _index_bits(num_g)
    packed = d.dtype == torch.float32 and gbits <= 30
    row_cap = 1 << max(0, 31 - gbits) if packed else c

    def key_of(r: torch.Tensor, v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        bits = (v + 0.0).view(torch.int32).to(torch.int64)
        key = (bits ^ ((bits >> 31) & 0x7FFFFFFF)) + (1 << 31)
        return (r << (32 + gbits)) | (key << gbits) | g

    rows_out, ranks_out = [], []
    for a, b in _candidate_groups(per_row.tolist(), row_cap, budget):
        counts = per_row[a:b]
        flat = torch.nonzero(mask[a:b].reshape(-1)).squeeze(1)
        r = torch.repeat_interleave(torch.arange(b - a, device=device), counts)
        g = flat - r * num_g
        v = d[a:b].reshape(-1)[flat]
        mr, ms = torch.nonzero(is_match[a:b], as_tuple=True)
        jr, js = torch.nonzero(is_junk[a:b], as_tuple=True)
        mg, jg = same_idx[a:b][mr, ms], same_idx[a:b][jr, js]
        if packed:
            key = torch.sort(key_of(r, v, g)).values
            m_pos = torch.searchsorted(key, key_of(mr, same_d[a:b][mr, ms], mg))
            j_pos = torch.searchsorted(key, key_of(jr, same_d[a:b][jr, js], jg))
        else:
            order = torch.argsort(v, stable=True)
            order = order[torch.argsort(r[order], stable=True)]
            where = torch.empty_like(order)
            where[order] = torch.arange(flat.numel(), device=device)
            m_pos = where[torch.searchsorted(flat, mr * num_g + mg)]
            j_pos = where[torch.searchsorted(flat, jr * num_g + jg)]
        row_start = torch.cumsum(counts, 0) - counts
        j_pos = torch.sort(j_pos).values
        junk_before = torch.searchsorted(j_pos, m_pos) - torch.searchsorted(j_pos, row_start[mr])
        ranks = m_pos - row_start[mr] - junk_before + 1
        order = torch.argsort(m_pos)
        rows_out.append(mr[order] + a)
        ranks_out.append(ranks[order])
    return torch.cat(rows_out), torch.cat(ranks_out)
