"""evaluate_rank and compute_distance: hand-computed cases, a per-query reference, validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import reidbench.eval.metrics as metrics
import reidbench.eval.rank_kernels as rank_kernels
from reidbench.errors import ParameterError
from reidbench.eval.distance import compute_distance
from reidbench.eval.metrics import RankResult, evaluate_rank

# ---------------------------------------------------------------------------------------------
# A 3-query x 5-gallery case worked out by hand.
#
#   gallery   g0      g1      g2      g3      g4
#   pid        1       1       1       2       3
#   camid      0       1       2       0       1
#
# q0 (pid 1, cam 0): distances 0.1 0.5 0.3 0.2 0.9. g0 is the same pid on the same camera and is
#    removed. Kept ranking g3 g2 g1 g4: true matches at ranks 2 and 3.
#    AP = (1/2 + 2/3) / 2 = 7/12, INP = 2/3. Trapezoid (official): the hit at rank 2 follows a
#    precision of 0/1, the hit at rank 3 one of 1/2: ((0 + 1/2)/2 + (1/2 + 2/3)/2) / 2 = 5/12.
# q1 (pid 2, cam 1): distances 0.4 0.4 0.6 0.4 0.05. Nothing removed. g0, g1, g3 tie at 0.4 and
#    keep gallery order, so the ranking is g4 g0 g1 g3 g2 and the only match, g3, is at rank 4
#    (rank 2 if ties were broken the other way). AP = 1/4, INP = 1/4, trapezoid (0 + 1/4)/2 = 1/8.
# q2 (pid 3, cam 1): its only same-pid image, g4, is on its own camera and is removed: no valid
#    match. "market" leaves it out; "official" counts it as AP 0 and a miss.
#
# market:   mAP = (7/12 + 1/4) / 2 = 5/12, mINP = (2/3 + 1/4) / 2 = 11/24,
#           first matches at ranks 2 and 4 of 2 valid queries: CMC = 0, 1/2, 1/2, 1, 1.
# official: mAP = (5/12 + 1/8 + 0) / 3 = 13/72, mINP = (2/3 + 1/4 + 0) / 3 = 11/36,
#           CMC = 0, 1/3, 1/3, 2/3, 2/3.
# ---------------------------------------------------------------------------------------------
HAND_DIST = np.array(
    [
        [0.1, 0.5, 0.3, 0.2, 0.9],
        [0.4, 0.4, 0.6, 0.4, 0.05],
        [0.3, 0.2, 0.1, 0.4, 0.05],
    ],
    dtype=np.float32,
)
HAND_Q_PIDS = np.array([1, 2, 3])
HAND_Q_CAMS = np.array([0, 1, 1])
HAND_G_PIDS = np.array([1, 1, 1, 2, 3])
HAND_G_CAMS = np.array([0, 1, 2, 0, 1])


def _hand(ap: str, **kw) -> RankResult:
    return evaluate_rank(
        HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, 5, ap=ap, **kw
    )


@pytest.mark.parametrize("numpy_kernel", [True, False])
def test_hand_case_market(monkeypatch: pytest.MonkeyPatch, numpy_kernel: bool) -> None:
    monkeypatch.setattr(metrics, "_NUMPY_ON_CPU", numpy_kernel)
    r = _hand("market")
    np.testing.assert_allclose(r.cmc, [0.0, 0.5, 0.5, 1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(r.ap, [7 / 12, 1 / 4, np.nan], atol=1e-12)
    np.testing.assert_allclose(r.inp, [2 / 3, 1 / 4, np.nan], atol=1e-12)
    assert r.mAP == pytest.approx(5 / 12, abs=1e-12)
    assert r.mINP == pytest.approx(11 / 24, abs=1e-12)
    assert r.valid.tolist() == [True, True, False]
    assert r.num_valid == 2
    assert r.ap_variant == "market"
    assert r.rank(1) == 0.0
    assert r.rank(4) == 1.0


@pytest.mark.parametrize("numpy_kernel", [True, False])
def test_hand_case_official(monkeypatch: pytest.MonkeyPatch, numpy_kernel: bool) -> None:
    monkeypatch.setattr(metrics, "_NUMPY_ON_CPU", numpy_kernel)
    r = _hand("official")
    np.testing.assert_allclose(r.cmc, [0.0, 1 / 3, 1 / 3, 2 / 3, 2 / 3], atol=1e-12)
    np.testing.assert_allclose(r.ap, [5 / 12, 1 / 8, 0.0], atol=1e-12)
    np.testing.assert_allclose(r.inp, [2 / 3, 1 / 4, 0.0], atol=1e-12)
    assert r.mAP == pytest.approx(13 / 72, abs=1e-12)
    assert r.mINP == pytest.approx(11 / 36, abs=1e-12)
    assert r.valid.tolist() == [True, True, False]
    assert r.num_valid == 2


def test_hand_case_chunk_of_one_and_torch_input() -> None:
    r = evaluate_rank(
        torch.from_numpy(HAND_DIST).double(),
        torch.from_numpy(HAND_Q_PIDS),
        torch.from_numpy(HAND_G_PIDS),
        torch.from_numpy(HAND_Q_CAMS),
        torch.from_numpy(HAND_G_CAMS),
        5,
        chunk_size=1,
    )
    assert r.mAP == pytest.approx(5 / 12, abs=1e-12)
    np.testing.assert_allclose(r.cmc, [0.0, 0.5, 0.5, 1.0, 1.0], atol=1e-12)


# ---------------------------------------------------------------------------------------------
# A plain per-query reference: stable argsort, remove same-pid-same-camera, cumsum.
# ---------------------------------------------------------------------------------------------
def reference_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank, ap):
    dist = np.asarray(dist, dtype=np.float64)
    cmcs, aps, inps, valid = [], [], [], []
    for i in range(dist.shape[0]):
        order = np.argsort(dist[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        hits = (g_pids[order][keep] == q_pids[i]).astype(np.float64)
        if not hits.any():
            valid.append(False)
            cmcs.append(np.zeros(max_rank))
            aps.append(0.0)
            inps.append(0.0)
            continue
        valid.append(True)
        found = np.cumsum(hits)
        cmc = np.minimum(found, 1.0)
        cmc = np.concatenate([cmc, np.full(max(0, max_rank - cmc.size), cmc[-1])])[:max_rank]
        cmcs.append(cmc)
        at = np.flatnonzero(hits)  # 0-based positions of the hits in the kept list
        precision = found[at] / (at + 1)
        if ap == "official":
            before = np.where(at > 0, found[np.maximum(at - 1, 0)] / np.maximum(at, 1), 1.0)
            aps.append(np.mean((before + precision) / 2))
        else:
            aps.append(np.mean(precision))
        inps.append(hits.sum() / (at[-1] + 1))
    valid = np.array(valid)
    if ap == "official":
        return np.mean(cmcs, axis=0), float(np.mean(aps)), float(np.mean(inps)), valid
    if not valid.any():
        return None, None, None, valid
    return (
        np.mean(np.array(cmcs)[valid], axis=0),
        float(np.mean(np.array(aps)[valid])),
        float(np.mean(np.array(inps)[valid])),
        valid,
    )


def _random_problem(rng: np.random.Generator, kind: int):
    num_q, num_g = int(rng.integers(1, 30)), int(rng.integers(1, 70))
    num_ids, num_cams = int(rng.integers(1, 8)), int(rng.integers(1, 5))
    q_pids = rng.integers(0, num_ids, num_q)
    g_pids = rng.integers(0, num_ids, num_g)
    q_cams = rng.integers(0, num_cams, num_q)
    g_cams = rng.integers(0, num_cams, num_g)
    if kind == 0:  # many exact ties
        dist = rng.integers(0, 4, (num_q, num_g)).astype(np.float32)
    elif kind == 1:  # continuous, float64
        dist = rng.random((num_q, num_g))
    elif kind == 2:  # negative values, +-0.0 and infinities, float32
        dist = rng.choice(
            np.array([-np.inf, -1.5, -0.0, 0.0, 0.25, np.inf], np.float32), (num_q, num_g)
        )
    elif kind == 3:  # integers
        dist = rng.integers(-3, 4, (num_q, num_g))
    else:  # ties in float64
        dist = rng.integers(0, 3, (num_q, num_g)) / 2.0
    return dist, q_pids, g_pids, q_cams, g_cams


def _check_against_reference(dist, q_pids, g_pids, q_cams, g_cams, max_rank, ap, result_of) -> bool:
    cmc, m_ap, m_inp, valid = reference_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank, ap)
    if ap == "market" and not valid.any():
        with pytest.raises(ParameterError, match="no query has a true match"):
            result_of()
        return False
    r = result_of()
    assert r.cmc.shape == (max_rank,)
    np.testing.assert_allclose(r.cmc, cmc, atol=1e-6)
    assert abs(r.mAP - m_ap) <= 1e-6
    assert abs(r.mINP - m_inp) <= 1e-6
    assert r.valid.tolist() == valid.tolist()
    assert r.num_valid == int(valid.sum())
    return True


@pytest.mark.parametrize("numpy_kernel", [True, False])
@pytest.mark.parametrize("ap", ["market", "official"])
def test_matches_per_query_reference(
    monkeypatch: pytest.MonkeyPatch, numpy_kernel: bool, ap: str
) -> None:
    monkeypatch.setattr(metrics, "_NUMPY_ON_CPU", numpy_kernel)
    rng = np.random.default_rng(20240 + numpy_kernel)
    checked = 0
    for trial in range(150):
        dist, q_pids, g_pids, q_cams, g_cams = _random_problem(rng, trial % 5)
        max_rank = int(rng.integers(1, 80))  # sometimes more than the gallery
        chunk = int(rng.integers(1, 8))
        as_torch = trial % 2 == 1

        def result_of(dist=dist, q_pids=q_pids, g_pids=g_pids, q_cams=q_cams, g_cams=g_cams,
                      max_rank=max_rank, chunk=chunk, as_torch=as_torch):  # fmt: skip
            conv = torch.as_tensor if as_torch else np.asarray
            return evaluate_rank(
                conv(dist), conv(q_pids), conv(g_pids), conv(q_cams), conv(g_cams), max_rank,
                ap=ap, chunk_size=chunk,
            )  # fmt: skip

        checked += _check_against_reference(
            dist, q_pids, g_pids, q_cams, g_cams, max_rank, ap, result_of
        )
    assert checked >= 100  # most random problems have a valid query


@pytest.mark.parametrize("numpy_kernel", [True, False])
def test_candidate_budget_splits_rows(monkeypatch: pytest.MonkeyPatch, numpy_kernel: bool) -> None:
    """Tiny budgets force one query row per candidate group; the answers must not change."""
    monkeypatch.setattr(metrics, "_NUMPY_ON_CPU", numpy_kernel)
    monkeypatch.setattr(rank_kernels, "_CANDIDATE_BUDGET", 5)
    rng = np.random.default_rng(7)
    for trial in range(40):
        dist, q_pids, g_pids, q_cams, g_cams = _random_problem(rng, trial % 5)
        for ap in ("market", "official"):
            _check_against_reference(
                dist, q_pids, g_pids, q_cams, g_cams, 10, ap,
                lambda d=dist, a=q_pids, b=g_pids, c=q_cams, e=g_cams, ap=ap: evaluate_rank(
                    d, a, b, c, e, 10, ap=ap, chunk_size=3
                ),
            )  # fmt: skip


def test_half_precision_and_non_contiguous_inputs() -> None:
    rng = np.random.default_rng(3)
    dist = rng.integers(0, 5, (12, 40)).astype(np.float32)
    q_pids, g_pids = rng.integers(0, 4, 12), rng.integers(0, 4, 40)
    q_cams, g_cams = rng.integers(0, 2, 12), rng.integers(0, 2, 40)
    expected = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, 10)
    half = evaluate_rank(torch.from_numpy(dist).half(), q_pids, g_pids, q_cams, g_cams, 10)
    strided = evaluate_rank(torch.from_numpy(dist.T.copy()).T, q_pids, g_pids, q_cams, g_cams, 10)
    for r in (half, strided):
        assert r.mAP == expected.mAP
        np.testing.assert_array_equal(r.cmc, expected.cmc)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    rng = np.random.default_rng(5)
    dist = torch.from_numpy(rng.integers(0, 6, (64, 300)).astype(np.float32))
    labels = [
        torch.from_numpy(rng.integers(0, k, n)) for k, n in ((9, 64), (9, 300), (3, 64), (3, 300))
    ]
    cpu = evaluate_rank(dist, *labels, ap="official")
    gpu = evaluate_rank(dist.cuda(), *[t.cuda() for t in labels], ap="official", chunk_size=16)
    assert gpu.mAP == pytest.approx(cpu.mAP, abs=1e-12)
    np.testing.assert_allclose(gpu.cmc, cpu.cmc, atol=1e-12)


def test_market_scale_default_chunk_is_one_pass() -> None:
    assert metrics._auto_chunk(15913) >= 3368


# ---------------------------------------------------------------------------------------------
# Validation and the result record.
# ---------------------------------------------------------------------------------------------
def _args_with(**override):
    args = {
        "distmat": np.zeros((3, 5)),
        "q_pids": np.zeros(3, int),
        "g_pids": np.zeros(5, int),
        "q_camids": np.zeros(3, int),
        "g_camids": np.zeros(5, int),
    }
    return tuple({**args, **override}.values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (_args_with(q_pids=np.zeros(4, int)), "q_pids"),
        (_args_with(g_pids=np.zeros(6, int)), "g_pids"),
        (_args_with(q_camids=np.zeros(2, int)), "q_camids"),
        (_args_with(g_camids=np.zeros((5, 1), int)), "g_camids"),
        (_args_with(distmat=np.zeros(5)), "2-D"),
        (_args_with(q_pids=np.zeros(3)), "integers"),
        (_args_with(g_pids=np.array(["a", "b", "c", "d", "e"])), "integers"),
    ],
)
def test_shape_mismatch_is_one_clear_line(args, message: str) -> None:
    with pytest.raises(ParameterError, match=message) as info:
        evaluate_rank(*args)
    assert "\n" not in str(info.value)


def test_bad_parameters() -> None:
    args = (HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS)
    with pytest.raises(ParameterError, match="unknown ap"):
        evaluate_rank(*args, ap="trapezoid")
    with pytest.raises(ParameterError, match="max_rank"):
        evaluate_rank(*args, 0)
    with pytest.raises(ParameterError, match="chunk_size"):
        evaluate_rank(*args, chunk_size=0)
    with pytest.raises(ParameterError, match="empty"):
        evaluate_rank(
            np.zeros((0, 5)), np.zeros(0, int), HAND_G_PIDS, np.zeros(0, int), HAND_G_CAMS
        )
    bad = HAND_DIST.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ParameterError, match="NaN"):
        evaluate_rank(bad, *args[1:])


def test_no_valid_query() -> None:
    dist = np.array([[0.2, 0.1]])
    args = (dist, np.array([1]), np.array([1, 2]), np.array([0]), np.array([0, 1]))
    with pytest.raises(ParameterError, match="no query has a true match"):
        evaluate_rank(*args)
    r = evaluate_rank(*args, 3, ap="official")
    assert r.mAP == 0.0 and r.mINP == 0.0 and r.num_valid == 0
    np.testing.assert_array_equal(r.cmc, [0.0, 0.0, 0.0])


def test_result_is_frozen_and_read_only() -> None:
    r = _hand("market")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.mAP = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        r.cmc[0] = 1.0
    with pytest.raises(ParameterError, match="rank"):
        r.rank(0)
    with pytest.raises(ParameterError, match="rank"):
        r.rank(6)


# ---------------------------------------------------------------------------------------------
# compute_distance
# ---------------------------------------------------------------------------------------------
def test_euclidean_is_squared_and_chunking_does_not_matter() -> None:
    gen = torch.Generator().manual_seed(0)
    q, g = torch.randn(7, 5, generator=gen), torch.randn(11, 5, generator=gen)
    brute = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    for chunk in (1, 3, 100):
        d = compute_distance(q, g, "euclidean", chunk_size=chunk)
        assert d.shape == (7, 11) and d.dtype == torch.float32
        torch.testing.assert_close(d, brute, atol=1e-5, rtol=1e-5)
    assert compute_distance(q, q).diagonal().abs().max() < 1e-5
    assert compute_distance(q, q).min() >= 0


def test_cosine_distance_and_numpy_input() -> None:
    rng = np.random.default_rng(1)
    q, g = rng.standard_normal((4, 6)), rng.standard_normal((9, 6))
    d = compute_distance(q, g, "cosine", chunk_size=2)
    expected = (
        1
        - (q / np.linalg.norm(q, axis=1, keepdims=True))
        @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T
    )
    assert d.dtype == torch.float64
    np.testing.assert_allclose(d.numpy(), expected, atol=1e-12)


def test_distance_validation() -> None:
    q, g = torch.zeros(2, 3), torch.zeros(4, 3)
    with pytest.raises(ParameterError, match="unknown metric"):
        compute_distance(q, g, "manhattan")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="dimension"):
        compute_distance(q, torch.zeros(4, 5))
    with pytest.raises(ParameterError, match="2-D"):
        compute_distance(torch.zeros(3), g)
    with pytest.raises(ParameterError, match="chunk_size"):
        compute_distance(q, g, chunk_size=0)


@pytest.mark.parametrize("share", [0.0, 2.0], ids=["always-dense", "never-dense"])
def test_dense_and_candidate_paths_match_the_reference(
    monkeypatch: pytest.MonkeyPatch, share: float
) -> None:
    """The numpy kernel keys whole rows when most items are candidates (random distances) and
    collects the candidates otherwise; forced either way, every rank is the protocol's."""
    monkeypatch.setattr(rank_kernels, "_DENSE_SHARE", share)
    rng = np.random.default_rng(11)
    for trial in range(60):
        dist, q_pids, g_pids, q_cams, g_cams = _random_problem(rng, trial % 5)
        for ap in ("market", "official"):
            _check_against_reference(
                dist, q_pids, g_pids, q_cams, g_cams, 10, ap,
                lambda d=dist, a=q_pids, b=g_pids, c=q_cams, e=g_cams, ap=ap: evaluate_rank(
                    d, a, b, c, e, 10, ap=ap, chunk_size=4
                ),
            )  # fmt: skip
    # Several row groups in the dense path: a budget of a few rows' items.
    checked = 0
    for _ in range(20):
        problem = _random_problem(rng, 0)  # float32 with ties: the packed kernels
        monkeypatch.setattr(rank_kernels, "_CANDIDATE_BUDGET", 25)
        checked += _check_against_reference(
            *problem, 10, "market", lambda p=problem: evaluate_rank(*p, 10)
        )
    assert checked >= 5
