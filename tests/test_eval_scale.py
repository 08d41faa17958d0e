"""Evaluation from features without the full distance matrix, and re-ranking's size limits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reidbench.eval.metrics as metrics
import reidbench.eval.rerank as rerank
from reidbench.errors import ParameterError, ReidbenchError
from reidbench.eval.distance import compute_distance, distance_blocks
from reidbench.eval.metrics import evaluate_rank, evaluate_rank_features
from reidbench.eval.rerank import re_ranking


def _problem(seed: int, num_q: int, num_g: int, dim: int, tied: bool):
    rng = np.random.default_rng(seed)
    num_ids = max(2, num_g // 6)
    centers = rng.standard_normal((num_ids, dim)).astype(np.float32)
    q_pids = rng.integers(0, num_ids, num_q)
    g_pids = rng.integers(0, num_ids, num_g)
    q_cams = rng.integers(0, 3, num_q)
    g_cams = rng.integers(0, 3, num_g)
    qf = centers[q_pids] + rng.standard_normal((num_q, dim)).astype(np.float32)
    gf = centers[g_pids] + rng.standard_normal((num_g, dim)).astype(np.float32)
    if tied:
        # Adversarial ties: few distinct feature vectors, copied across identities, queries equal
        # to gallery items, and features that are exact multiples of each other (cosine ties).
        distinct = rng.standard_normal((5, dim)).astype(np.float32)
        gf = distinct[rng.integers(0, 5, num_g)]
        gf[::7] *= 2.0
        qf = gf[rng.integers(0, num_g, num_q)].copy()
        qf[::5] = distinct[0]
    return torch.from_numpy(qf), torch.from_numpy(gf), (q_pids, g_pids, q_cams, g_cams)


def _assert_identical(a, b) -> None:
    assert np.array_equal(a.cmc, b.cmc)
    assert np.array_equal(a.valid, b.valid)
    assert a.num_valid == b.num_valid
    np.testing.assert_array_equal(a.ap, b.ap)  # NaN == NaN here
    np.testing.assert_array_equal(a.inp, b.inp)
    assert a.mAP == b.mAP and a.mINP == b.mINP
    assert a.ap_variant == b.ap_variant


@pytest.mark.parametrize("tied", [False, True], ids=["random", "tied"])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("ap", ["market", "official"])
@pytest.mark.parametrize("numpy_kernel", [True, False], ids=["numpy", "torch"])
def test_features_path_equals_full_matrix(
    monkeypatch: pytest.MonkeyPatch, tied: bool, metric: str, ap: str, numpy_kernel: bool
) -> None:
    monkeypatch.setattr(metrics, "_NUMPY_ON_CPU", numpy_kernel)
    qf, gf, labels = _problem(3, 601, 900, 16, tied)
    full = evaluate_rank(compute_distance(qf, gf, metric=metric), *labels, max_rank=20, ap=ap)
    for chunk in (None, 1, 100, 256, 257, 600, 5000):
        got = evaluate_rank_features(
            qf, gf, *labels, metric=metric, max_rank=20, ap=ap, chunk=chunk
        )
        _assert_identical(got, full)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_distance_blocks_are_bitwise_rows_of_the_full_matrix(metric: str) -> None:
    qf, gf, _ = _problem(5, 700, 300, 64, False)
    full = compute_distance(qf, gf, metric=metric)
    for rows in (1, 3, 256, 300, 513, 1000):
        seen = 0
        for start, block in distance_blocks(qf, gf, metric, rows):
            assert start == seen
            assert torch.equal(block, full[start : start + block.shape[0]])
            seen += block.shape[0]
        assert seen == 700


def test_features_path_float64_and_numpy_inputs() -> None:
    qf, gf, labels = _problem(7, 50, 120, 8, False)
    qn, gn = qf.double().numpy(), gf.double().numpy()
    full = evaluate_rank(compute_distance(qn, gn, metric="euclidean"), *labels)
    _assert_identical(evaluate_rank_features(qn, gn, *labels, metric="euclidean", chunk=7), full)


def test_features_path_validation() -> None:
    qf, gf, labels = _problem(1, 20, 30, 4, False)
    with pytest.raises(ParameterError, match="evaluate_rank_features: chunk must be"):
        evaluate_rank_features(qf, gf, *labels, chunk=0)
    with pytest.raises(ParameterError, match="unknown metric"):
        evaluate_rank_features(qf, gf, *labels, metric="manhattan")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="unknown ap"):
        evaluate_rank_features(qf, gf, *labels, ap="cuhk")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="dimension 4 but gf has 3"):
        evaluate_rank_features(qf, gf[:, :3], *labels)
    with pytest.raises(ParameterError, match="q_pids has shape"):
        evaluate_rank_features(qf, gf, labels[0][:5], *labels[1:])
    with pytest.raises(ParameterError, match="no features"):
        evaluate_rank_features(qf[:0], gf, labels[0][:0], labels[1], labels[2][:0], labels[3])
    bad = qf.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ParameterError, match="a distance block contains NaN"):
        evaluate_rank_features(bad, gf, *labels)


def test_default_block_is_bounded_at_msmt17_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default block holds a few hundred rows at MSMT17's gallery size, not all 11,659."""
    seen: list[int] = []
    real = metrics.distance_blocks

    def spy(qf, gf, metric, rows):
        seen.append(rows)
        return real(qf, gf, metric, rows)

    monkeypatch.setattr(metrics, "distance_blocks", spy)
    qf, gf, labels = _problem(2, 10, 20, 4, False)
    evaluate_rank_features(qf, gf, *labels)
    assert seen[-1] >= 256
    # The same sizing rule at 82,161 gallery images, without building the problem.
    per_row = (4 + metrics._DENSE_BYTES_PER_ELEMENT) * 82_161
    rows = max(256, metrics._FEATURE_BLOCK_BUDGET_BYTES // per_row // 256 * 256)
    assert rows * 82_161 * 4 < 400 << 20


# ------------------------------------------------------------------------------------------
# Re-ranking: refusal of sizes that do not fit, and the small-input thread setting.
# ------------------------------------------------------------------------------------------


def _rerank_inputs(num_q: int, num_g: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    qf, gf = torch.randn(num_q, 8, generator=g), torch.randn(num_g, 8, generator=g)
    return compute_distance(qf, gf), compute_distance(qf, qf), compute_distance(gf, gf)


def test_rerank_memory_estimate_at_msmt17_size() -> None:
    need = rerank.rerank_memory_bytes(11_659, 82_161)
    assert need >= 93_820**2 * 4  # the N x N float32 distances, 35 GB
    assert 35e9 < need < 40e9


def test_rerank_refuses_a_size_that_does_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    qg, qq, gg = _rerank_inputs(30, 50)
    monkeypatch.setattr(rerank, "_available_memory_bytes", lambda: 1000)
    with pytest.raises(ReidbenchError) as info:
        re_ranking(qg, qq, gg)
    message = str(info.value)
    assert "\n" not in message
    assert "30 queries x 50 gallery" in message and "without --rerank" in message
    with pytest.raises(ReidbenchError, match="GB"):
        rerank.check_rerank_fits(11_659, 82_161)
    # With enough memory the check passes and returns the estimate.
    monkeypatch.setattr(rerank, "_available_memory_bytes", lambda: 1 << 50)
    assert rerank.check_rerank_fits(11_659, 82_161) == rerank.rerank_memory_bytes(11_659, 82_161)
    assert re_ranking(qg, qq, gg).shape == (30, 50)


def test_rerank_msmt17_size_is_refused_on_this_machine_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rerank, "_available_memory_bytes", lambda: 24 << 30)
    with pytest.raises(ReidbenchError, match="93,820 images"):
        rerank.check_rerank_fits(11_659, 82_161)
    rerank.check_rerank_fits(3_368, 15_913)  # Market-1501 fits


def test_small_rerank_runs_single_threaded_and_restores_threads() -> None:
    qg, qq, gg = _rerank_inputs(20, 60, seed=4)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        small = re_ranking(qg, qq, gg)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        assert torch.equal(rerank._re_ranking(qg, qq, gg, 20, 6, 0.3), small)
        torch.set_num_threads(2)
        assert torch.equal(rerank._re_ranking(qg, qq, gg, 20, 6, 0.3), small)
    finally:
        torch.set_num_threads(before)


def test_concurrent_small_reranks_restore_the_thread_count() -> None:
    import threading

    qg, qq, gg = _rerank_inputs(10, 40, seed=6)
    expected = re_ranking(qg, qq, gg)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        results: list[bool] = []

        def work() -> None:
            for _ in range(5):
                results.append(torch.equal(re_ranking(qg, qq, gg), expected))

        workers = [threading.Thread(target=work) for _ in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert results == [True] * 20
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_features_path_equals_full_matrix_on_cuda(metric: str) -> None:
    qf, gf, labels = _problem(9, 1100, 3000, 128, False)
    qf, gf = qf.cuda(), gf.cuda()
    full = evaluate_rank(compute_distance(qf, gf, metric=metric), *labels)
    for chunk in (None, 256, 700):
        _assert_identical(evaluate_rank_features(qf, gf, *labels, metric=metric, chunk=chunk), full)
    qt, gt, tied_labels = _problem(9, 500, 800, 16, True)
    qt, gt = qt.cuda(), gt.cuda()
    full = evaluate_rank(compute_distance(qt, gt, metric=metric), *tied_labels, ap="official")
    got = evaluate_rank_features(qt, gt, *tied_labels, metric=metric, ap="official", chunk=300)
    _assert_identical(got, full)
