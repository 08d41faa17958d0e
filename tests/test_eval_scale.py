"""Evaluation from features without the full distance matrix, and re-ranking's size limits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reidbench.eval.metrics as metrics
import reidbench.eval.rank_kernels as rank_kernels
import reidbench.eval.rerank as rerank
from reidbench.errors import ParameterError, ReidbenchError
from reidbench.eval.distance import compute_distance, distance_blocks
from reidbench.eval.metrics import (
    evaluate_features,
    evaluate_rank,
    evaluate_rank_features,
    memory_budget_bytes,
)
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
    evaluate_features(qf, gf, *labels)
    assert len(seen) == 2 and min(seen) >= 256
    # The same sizing rule at 82,161 gallery images, without building the problem.
    rows, candidates = metrics._budget_plan(
        metrics.DEFAULT_MEMORY_BUDGET, qf, 11_659, 82_161, "test"
    )
    assert 256 <= rows < 11_659 and rows % 256 == 0
    block = rows * 82_161 * (4 + metrics._DENSE_BYTES_PER_ELEMENT)
    assert block + candidates * rank_kernels.CANDIDATE_BYTES <= metrics.DEFAULT_MEMORY_BUDGET


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
    for budget in ("12MiB", None):
        _assert_identical(evaluate_features(qf, gf, *labels, metric=metric, memory_budget=budget), full)
    qt, gt, tied_labels = _problem(9, 500, 800, 16, True)
    qt, gt = qt.cuda(), gt.cuda()
    full = evaluate_rank(compute_distance(qt, gt, metric=metric), *tied_labels, ap="official")
    got = evaluate_rank_features(qt, gt, *tied_labels, metric=metric, ap="official", chunk=300)
    _assert_identical(got, full)


# ------------------------------------------------------------------------------------------
# evaluate_features: the public entry point, blocks sized from a memory budget.
# ------------------------------------------------------------------------------------------


def _spy_blocks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    real = metrics.distance_blocks

    def spy(qf, gf, metric, rows):
        seen.append(rows)
        return real(qf, gf, metric, rows)

    monkeypatch.setattr(metrics, "distance_blocks", spy)
    return seen


@pytest.mark.parametrize("tied", [False, True], ids=["random", "tied"])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("ap", ["market", "official"])
def test_evaluate_features_equals_full_matrix_at_any_budget(
    monkeypatch: pytest.MonkeyPatch, tied: bool, metric: str, ap: str
) -> None:
    qf, gf, labels = _problem(4, 700, 900, 16, tied)
    full = evaluate_rank(compute_distance(qf, gf, metric=metric), *labels, max_rank=20, ap=ap)
    seen = _spy_blocks(monkeypatch)
    # One block of 256 rows (with a small candidate share, so candidate groups split too),
    # two blocks, and everything at once.
    for budget in (256 * 900 * 9 * 4 // 3 + 400, "6MiB", "1GB", None):
        got = evaluate_features(qf, gf, *labels, metric=metric, max_rank=20, ap=ap, memory_budget=budget)
        _assert_identical(got, full)
    assert seen[0] == 256 and seen[1] == 512 and seen[2] >= 700


def test_evaluate_features_blocks_fit_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """The block and the candidates it plans stay within the budget, at MSMT17's gallery size."""
    q = torch.zeros(1, 4)
    for budget in (300 << 20, 512 << 20, 2 << 30):
        rows, candidates = metrics._budget_plan(budget, q, 11_659, 82_161, "t")
        assert rows % 256 == 0 and rows >= 256
        used = rows * 82_161 * (4 + metrics._DENSE_BYTES_PER_ELEMENT)
        assert used + candidates * rank_kernels.CANDIDATE_BYTES <= budget
    # A larger budget never gives smaller blocks.
    plans = [metrics._budget_plan(b << 20, q, 11_659, 82_161, "t")[0] for b in (300, 512, 1024, 4096)]
    assert plans == sorted(plans) and plans[-1] > plans[0]
    # The candidates ranked at once follow the budget too (a quarter, capped at ~100 MB).
    seen: list[int | None] = []
    real = metrics.ranks_numpy

    def spy(*args):
        seen.append(args[-1])
        return real(*args)

    monkeypatch.setattr(metrics, "ranks_numpy", spy)
    qf, gf, labels = _problem(6, 300, 400, 8, False)
    evaluate_features(qf, gf, *labels, memory_budget="4MiB")
    assert seen and all(c == (4 << 20) // 4 // rank_kernels.CANDIDATE_BYTES for c in seen)


def test_evaluate_features_refuses_a_budget_below_one_block() -> None:
    qf, gf, labels = _problem(1, 300, 500, 8, False)
    with pytest.raises(ParameterError) as info:
        evaluate_features(qf, gf, *labels, memory_budget="100KiB")
    message = str(info.value)
    assert "\n" not in message and "evaluate_features" in message and "500 gallery images" in message
    least = message.split("needs ")[1].split(";")[0]  # e.g. "1.5 MiB"
    evaluate_features(qf, gf, *labels, memory_budget=least)  # the minimum it names is enough
    # Fewer queries than a tile: the smallest block is all of them.
    few = evaluate_features(qf[:10], gf, *(labels[0][:10], labels[1], labels[2][:10], labels[3]),
                            memory_budget=10 * 500 * 9 * 4 // 3 + 400)  # fmt: skip
    assert few.num_valid > 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2GB", 2 * 10**9), ("512MiB", 512 << 20), ("1.5G", 3 << 29), ("1.5 GiB", 3 << 29),
     ("100", 100), ("100B", 100), ("64k", 64 << 10), ("3KB", 3000), (" 2 tb ", 2 * 10**12), (4096, 4096)],
)  # fmt: skip
def test_memory_budget_sizes(text, expected: int) -> None:
    assert memory_budget_bytes(text) == expected


@pytest.mark.parametrize("bad", ["", "abc", "2XB", "iB", "-1GB", "0", 0, -5, 1.5, True, None, "1e9"])
def test_memory_budget_bad_values_are_one_line(bad) -> None:
    with pytest.raises(ParameterError) as info:
        memory_budget_bytes(bad, "--memory-budget")
    assert str(info.value).startswith("--memory-budget must be") and "\n" not in str(info.value)
    qf, gf, labels = _problem(1, 5, 9, 4, False)
    if bad is not None:
        with pytest.raises(ParameterError, match="evaluate_features: memory_budget must be"):
            evaluate_features(qf, gf, *labels, memory_budget=bad)


def test_evaluate_features_validation_is_one_line() -> None:
    qf, gf, labels = _problem(1, 20, 30, 4, False)
    cases = [
        (dict(metric="manhattan"), "evaluate_features: unknown metric"),
        (dict(ap="cuhk"), "evaluate_features: unknown ap"),
        (dict(max_rank=0), "evaluate_features: max_rank"),
        (dict(rerank="yes"), "evaluate_features: rerank must be True or False"),
    ]
    for kw, message in cases:
        with pytest.raises(ParameterError, match=message):
            evaluate_features(qf, gf, *labels, **kw)
    with pytest.raises(ParameterError, match="evaluate_features: qf has dimension 4 but gf has 3"):
        evaluate_features(qf, gf[:, :3], *labels)
    with pytest.raises(ParameterError, match="evaluate_features: q_pids has shape"):
        evaluate_features(qf, gf, labels[0][:5], *labels[1:])
    with pytest.raises(ParameterError, match="evaluate_features: no features"):
        evaluate_features(qf[:0], gf, labels[0][:0], labels[1], labels[2][:0], labels[3])
    with pytest.raises(ParameterError, match="evaluate_features: gf must be 2-D"):
        evaluate_features(qf, gf[0], *labels)
    bad = qf.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ParameterError, match="evaluate_features: a distance block contains NaN"):
        evaluate_features(bad, gf, *labels)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_evaluate_features_rerank_is_the_dense_path(metric: str) -> None:
    qf, gf, labels = _problem(8, 40, 120, 8, False)
    d = compute_distance(qf, gf, metric=metric)
    expected = evaluate_rank(
        re_ranking(d, compute_distance(qf, qf, metric=metric), compute_distance(gf, gf, metric=metric)),
        *labels, max_rank=10, ap="official",
    )  # fmt: skip
    got = evaluate_features(qf, gf, *labels, metric=metric, max_rank=10, ap="official", rerank=True,
                            memory_budget="1MiB")  # fmt: skip
    _assert_identical(got, expected)
    plain = evaluate_features(qf, gf, *labels, metric=metric, max_rank=10, ap="official")
    assert plain.mAP != got.mAP  # re-ranking changed the ranking: it really ran


def test_evaluate_features_refuses_a_rerank_that_does_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    qf, gf, labels = _problem(2, 30, 50, 4, False)
    monkeypatch.setattr(rerank, "_available_memory_bytes", lambda: 1000)

    def never(*args, **kwargs):
        raise AssertionError("no distance may be computed before the refusal")

    for name in ("compute_distance", "distance_blocks"):  # what the re-ranking computes its distances with
        if hasattr(rerank, name):
            monkeypatch.setattr(rerank, name, never)
    with pytest.raises(ReidbenchError) as info:
        evaluate_features(qf, gf, *labels, rerank=True)
    assert "\n" not in str(info.value) and "without --rerank" in str(info.value)
    evaluate_features(qf, gf, *labels, memory_budget="1MiB")  # without re-ranking it runs


def test_evaluate_features_is_exported() -> None:
    import reidbench.eval as ev

    assert ev.evaluate_features is evaluate_features and "evaluate_features" in ev.__all__
