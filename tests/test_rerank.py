"""k-reciprocal re-ranking against a naive implementation written from the paper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reidbench.eval.rerank as rerank
from reidbench.errors import ParameterError, ReidbenchError
from reidbench.eval.distance import compute_distance
from reidbench.eval.rerank import re_ranking, re_ranking_blocks, re_ranking_features


def _expand(reciprocal, p: int, k1: int) -> tuple[set[int], set[int]]:
    """R(p, k1) and R*(p, k1), Eq. 6: each c in R(p, k1) adds R(c, round(k1 / 2)) when more than
    2/3 of it lies in R(p, k1). ``reciprocal(p, k)`` is R(p, k)."""
    r_p = reciprocal(p, k1)
    grown = set(r_p)
    for c in r_p:
        r_c = reciprocal(c, round(k1 / 2))
        if len(r_c & r_p) > 2 / 3 * len(r_c):
            grown |= r_c
    return r_p, grown


def naive_re_ranking(qg, qq, gg, k1, k2, lam):
    """Zhong et al., CVPR 2017, Eqs. 4-12, one image at a time, dense V in float64.

    Conventions taken from the authors' code where the paper leaves them open: N(p, k) holds
    the k + 1 nearest images (p itself is its own nearest), ties broken by index; the distance
    is the input (already squared) with each row i, taken from column i of the block matrix,
    divided by its maximum in float32; R(q, k/2) uses round-half-even of k1 / 2; the expansion
    test is a strict ">" 2/3; query expansion averages the k2 nearest rows and is skipped for
    k2 = 1. The Jaccard distance is computed from sum(min) / sum(max) as in Eq. 10.
    """
    qg, qq, gg = (np.asarray(x, dtype=np.float32) for x in (qg, qq, gg))
    num_q, num_g = qg.shape
    n = num_q + num_g
    full = np.block([[qq, qg], [qg.T, gg]])
    dist = (full / full.max(axis=0)).T  # float32, as the distances the ranking is built on
    ranking = np.argsort(dist, axis=1, kind="stable")

    def nearest(p, k):
        return ranking[p, : k + 1]

    def reciprocal(p, k):
        return {int(g) for g in nearest(p, k) if p in nearest(g, k)}

    v = np.zeros((n, n))
    for p in range(n):
        cols = sorted(_expand(reciprocal, p, k1)[1])
        weight = np.exp(-dist[p, cols].astype(np.float64))
        v[p, cols] = weight / weight.sum()
    if k2 != 1:
        v = np.stack([v[ranking[p, :k2]].mean(axis=0) for p in range(n)])
    out = np.empty((num_q, num_g))
    for i in range(num_q):
        for j in range(num_g):
            a, b = v[i], v[num_q + j]
            jaccard = 1.0 - np.minimum(a, b).sum() / np.maximum(a, b).sum()
            out[i, j] = (1 - lam) * jaccard + lam * dist[i, num_q + j]
    return out


def _features_problem(rng: np.random.Generator, num_q: int, num_g: int, dim: int):
    ids = rng.integers(0, max(2, (num_q + num_g) // 4), num_q + num_g)
    centers = rng.standard_normal((ids.max() + 1, dim))
    feats = torch.from_numpy(
        (centers[ids] + 0.7 * rng.standard_normal((num_q + num_g, dim))).astype(np.float32)
    )
    q, g = feats[:num_q], feats[num_q:]
    return compute_distance(q, g), compute_distance(q, q), compute_distance(g, g)


def _tied_problem(rng: np.random.Generator, num_q: int, num_g: int):
    """Symmetric integer distances with many exact ties (and a zero diagonal)."""
    n = num_q + num_g
    full = rng.integers(1, 6, (n, n)).astype(np.float32)
    full = np.triu(full, 1) + np.triu(full, 1).T
    return full[:num_q, num_q:], full[:num_q, :num_q], full[num_q:, num_q:]


@pytest.mark.parametrize("seed", range(12))
def test_matches_naive_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_q, num_g = int(rng.integers(2, 9)), int(rng.integers(6, 30))
    k1 = int(rng.integers(1, 12))  # odd and even, sometimes more than N
    k2 = int(rng.integers(1, 5))
    lam = float(rng.choice([0.0, 0.3, rng.random()]))
    if seed % 3 == 2:
        qg, qq, gg = _tied_problem(rng, num_q, num_g)
    else:
        qg, qq, gg = _features_problem(rng, num_q, num_g, int(rng.integers(2, 10)))
    ours = re_ranking(qg, qq, gg, k1=k1, k2=k2, lambda_value=lam)
    assert ours.shape == (num_q, num_g) and ours.dtype == torch.float32
    np.testing.assert_allclose(
        ours.numpy(), naive_re_ranking(qg, qq, gg, k1, k2, lam), atol=1e-5, rtol=0
    )


def test_paper_parameters_and_small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """k1=20, k2=6 on a problem larger than k1, with every block boundary exercised."""
    rng = np.random.default_rng(100)
    qg, qq, gg = _features_problem(rng, 9, 31, 6)
    expected = naive_re_ranking(qg, qq, gg, 20, 6, 0.3)
    np.testing.assert_allclose(re_ranking(qg, qq, gg).numpy(), expected, atol=1e-5, rtol=0)
    monkeypatch.setattr(rerank, "_ROW_CHUNK", 4)
    monkeypatch.setattr(rerank, "_PAIR_BUDGET", 7)
    np.testing.assert_allclose(re_ranking(qg, qq, gg).numpy(), expected, atol=1e-5, rtol=0)


def test_non_symmetric_inputs_follow_the_column_convention() -> None:
    rng = np.random.default_rng(8)
    num_q, num_g = 5, 14
    qg = rng.random((num_q, num_g)).astype(np.float32)
    qq = rng.random((num_q, num_q)).astype(np.float32)
    gg = rng.random((num_g, num_g)).astype(np.float32)
    ours = re_ranking(qg, qq, gg, k1=6, k2=3, lambda_value=0.3).numpy()
    np.testing.assert_allclose(ours, naive_re_ranking(qg, qq, gg, 6, 3, 0.3), atol=1e-5, rtol=0)


def test_lambda_one_is_the_row_normalised_distance() -> None:
    rng = np.random.default_rng(1)
    qg, qq, gg = _features_problem(rng, 6, 20, 4)
    out = re_ranking(qg, qq, gg, k1=5, k2=2, lambda_value=1.0)
    # Row i is divided by the largest distance from query i to any image, queries included.
    row_max = torch.maximum(qq.amax(dim=0), qg.amax(dim=1))
    torch.testing.assert_close(out, qg / row_max[:, None], atol=1e-7, rtol=0)


def test_lambda_zero_is_a_jaccard_distance_and_scale_free() -> None:
    rng = np.random.default_rng(2)
    qg, qq, gg = _features_problem(rng, 6, 25, 5)
    out = re_ranking(qg, qq, gg, k1=6, k2=3, lambda_value=0.0)
    # float32: a row shared with itself sums to 1 give or take an ulp.
    assert out.min() >= -1e-6 and out.max() <= 1
    assert (out < 1).any()  # some neighbourhoods overlap
    # Row normalisation makes the result invariant to the scale of the distances.
    scaled = re_ranking(qg * 8, qq * 8, gg * 8, k1=6, k2=3, lambda_value=0.0)
    torch.testing.assert_close(scaled, out, atol=1e-6, rtol=0)


def test_numpy_and_float64_inputs() -> None:
    rng = np.random.default_rng(4)
    qg, qq, gg = _features_problem(rng, 4, 15, 3)
    base = re_ranking(qg, qq, gg, k1=4, k2=2)
    from_numpy = re_ranking(
        qg.double().numpy(), qq.double().numpy(), gg.double().numpy(), k1=4, k2=2
    )
    assert from_numpy.dtype == torch.float32
    torch.testing.assert_close(from_numpy, base, atol=1e-6, rtol=0)


def test_reranking_helps_on_identity_structure() -> None:
    """Not a proof of anything, but a wrong sign or a swapped index shows up here."""
    from reidbench.eval.metrics import evaluate_rank

    rng = np.random.default_rng(6)
    ids = np.repeat(np.arange(12), 6)
    cams = np.tile(np.arange(6), 12)
    centers = rng.standard_normal((12, 16))
    feats = torch.from_numpy(
        (centers[ids] + 0.9 * rng.standard_normal((72, 16))).astype(np.float32)
    )
    is_q = cams == 0
    q, g = feats[is_q], feats[~is_q]
    qg = compute_distance(q, g)
    before = evaluate_rank(qg, ids[is_q], ids[~is_q], cams[is_q], cams[~is_q])
    after = evaluate_rank(
        re_ranking(qg, compute_distance(q, q), compute_distance(g, g), k1=6, k2=3),
        ids[is_q], ids[~is_q], cams[is_q], cams[~is_q],
    )  # fmt: skip
    assert after.mAP > before.mAP


def test_validation() -> None:
    qg, qq, gg = torch.rand(3, 5), torch.rand(3, 3), torch.rand(5, 5)
    with pytest.raises(ParameterError, match="q_q_dist"):
        re_ranking(qg, torch.rand(4, 4), gg)
    with pytest.raises(ParameterError, match="g_g_dist"):
        re_ranking(qg, qq, torch.rand(5, 4))
    with pytest.raises(ParameterError, match="q_g_dist"):
        re_ranking(torch.rand(3), qq, gg)
    with pytest.raises(ParameterError, match="k1"):
        re_ranking(qg, qq, gg, k1=0)
    with pytest.raises(ParameterError, match="k2"):
        re_ranking(qg, qq, gg, k2=0)
    with pytest.raises(ParameterError, match="lambda_value"):
        re_ranking(qg, qq, gg, lambda_value=1.5)
    bad = qg.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ParameterError, match="NaN"):
        re_ranking(bad, qq, gg)
    with pytest.raises(ParameterError, match="normalised"):
        re_ranking(torch.zeros(3, 5), torch.zeros(3, 3), gg)


# ------------------------------------------------------------------------------------------------
# The features path (re_ranking_features / re_ranking_blocks) against the dense matrix interface.
# ------------------------------------------------------------------------------------------------


def _dense(q: torch.Tensor, g: torch.Tensor, metric: str, k1: int, k2: int, lam: float):
    mats = (
        compute_distance(q, g, metric),
        compute_distance(q, q, metric),
        compute_distance(g, g, metric),
    )
    return re_ranking(*mats, k1=k1, k2=k2, lambda_value=lam), mats


def _expanded_images(qg, qq, gg, k1: int) -> int:
    """Images p whose R*(p, k1) is larger than R(p, k1): the expansion of Eq. 6 took place."""
    full = np.block([[qq, qg], [qg.T, gg]]).astype(np.float32)
    ranking = np.argsort((full / full.max(axis=0)).T, axis=1, kind="stable")

    def reciprocal(p: int, k: int) -> set[int]:
        return {int(e) for e in ranking[p, : k + 1] if p in ranking[e, : k + 1]}

    count = 0
    for p in range(len(full)):
        r_p, grown = _expand(reciprocal, p, k1)
        count += len(grown) > len(r_p)
    return count


def _force_sparse(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sparse features path even where the dense one would be taken (N <= 4,096)."""
    monkeypatch.setattr(rerank, "_BLOCK_BYTES", 1)
    monkeypatch.setattr(rerank, "_dense_from_features", None)  # fails loudly if taken


def _small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sparse path with every block boundary exercised: first-pass blocks of one 256-row
    tile, Jaccard blocks of one query row and 5 pairs, chunks of 7 rows, 3 gathered pairs."""
    _force_sparse(monkeypatch)
    monkeypatch.setattr(rerank, "_ROW_CHUNK", 7)
    monkeypatch.setattr(rerank, "_PAIR_BUDGET", 5)
    monkeypatch.setattr(rerank, "_GATHER_ELEMS", 3 * 8)


def _concat_blocks(*args, **kwargs) -> torch.Tensor:
    return torch.cat([block.clone() for _, block in re_ranking_blocks(*args, **kwargs)])


@pytest.mark.parametrize(
    ("num_q", "num_g", "k1", "k2"),
    [(300, 290, 20, 6), (40, 530, 7, 1), (9, 31, 20, 6), (270, 12, 6, 3)],
)
def test_features_path_is_the_dense_result_bitwise_on_exact_distances(
    monkeypatch: pytest.MonkeyPatch, num_q: int, num_g: int, k1: int, k2: int
) -> None:
    """Integer features: every squared distance is an exact float32 integer, whatever order the
    products sum in, so the two paths see the same distances and must agree bit for bit. Values
    in -2..2 in 8 dimensions plus duplicated images give many exact ties, broken by index."""
    rng = np.random.default_rng(num_q * 1000 + num_g)
    feats = rng.integers(-2, 3, (num_q + num_g, 8)).astype(np.float32)
    dup = rng.integers(0, num_q + num_g, (num_q + num_g) // 5)
    feats[rng.integers(0, num_q + num_g, len(dup))] = feats[dup]  # exact duplicates
    q, g = torch.from_numpy(feats[:num_q]), torch.from_numpy(feats[num_q:])
    dense, mats = _dense(q, g, "euclidean", k1, k2, 0.3)
    assert _expanded_images(*(m.numpy() for m in mats), k1) > 0  # Eq. 6 is exercised
    assert torch.equal(re_ranking_features(q, g, "euclidean", k1, k2, 0.3), dense)
    _force_sparse(monkeypatch)
    assert torch.equal(re_ranking_features(q, g, "euclidean", k1, k2, 0.3), dense)
    assert torch.equal(_concat_blocks(q, g, "euclidean", k1, k2, 0.3), dense)
    _small_chunks(monkeypatch)
    assert torch.equal(re_ranking_features(q, g, "euclidean", k1, k2, 0.3), dense)
    assert torch.equal(_concat_blocks(q, g, "euclidean", k1, k2, 0.3), dense)
    assert torch.equal(re_ranking(*mats, k1=k1, k2=k2, lambda_value=0.3), dense)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_features_path_matches_dense_on_float_features(
    monkeypatch: pytest.MonkeyPatch, metric: str
) -> None:
    """Identity-structured float features with duplicated images, both metrics, 1e-6 apart.

    The first pass gives the very distances of ``compute_distance``'s rows; the dense path reads
    columns, equal where the products are symmetric bit for bit (checked, so that a neighbour
    set cannot differ); the V weights of pairs outside the top 21 come from a per-pair dot
    product, which rounds differently from the matrix product.
    """
    rng = np.random.default_rng(11 if metric == "cosine" else 12)
    num_q, num_g = 260, 700
    ids = rng.integers(0, 120, num_q + num_g)
    feats = rng.standard_normal((120, 16))[ids] + 0.6 * rng.standard_normal((num_q + num_g, 16))
    feats[rng.integers(0, num_q + num_g, 60)] = feats[rng.integers(0, num_q + num_g, 60)]
    q, g = (torch.from_numpy(f.astype(np.float32)) for f in (feats[:num_q], feats[num_q:]))
    dense, (qg, qq, gg) = _dense(q, g, metric, 20, 6, 0.3)
    assert torch.equal(qq, qq.T) and torch.equal(gg, gg.T)
    assert torch.equal(qg, compute_distance(g, q, metric).T)
    assert torch.equal(re_ranking_features(q, g, metric), dense)  # N <= 4,096: the dense path
    _force_sparse(monkeypatch)
    ours = re_ranking_features(q, g, metric)
    assert ours.shape == (num_q, num_g) and ours.dtype == torch.float32
    assert (ours - dense).abs().max() <= 1e-6  # the per-pair weights round differently
    # The blocks, which compute the Q x G distances again instead of holding them: the same.
    assert torch.equal(_concat_blocks(q, g, metric), ours)
    _small_chunks(monkeypatch)
    assert torch.equal(re_ranking_features(q, g, metric), ours)
    assert torch.equal(_concat_blocks(q, g, metric), ours)


@pytest.mark.parametrize("seed", range(6))
def test_features_path_matches_naive_reference(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    rng = np.random.default_rng(50 + seed)
    num_q, num_g = int(rng.integers(2, 9)), int(rng.integers(6, 30))
    k1, k2 = int(rng.integers(1, 12)), int(rng.integers(1, 5))
    lam = float(rng.choice([0.0, 0.3, rng.random()]))
    dim = int(rng.integers(2, 10))
    ids = rng.integers(0, max(2, (num_q + num_g) // 4), num_q + num_g)
    feats = rng.standard_normal((ids.max() + 1, dim))[ids]
    feats += 0.7 * rng.standard_normal((len(ids), dim))
    q, g = (torch.from_numpy(f.astype(np.float32)) for f in (feats[:num_q], feats[num_q:]))
    expected = naive_re_ranking(
        compute_distance(q, g), compute_distance(q, q), compute_distance(g, g), k1, k2, lam
    )
    _small_chunks(monkeypatch)
    ours = re_ranking_features(q, g, "euclidean", k1=k1, k2=k2, lambda_value=lam)
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("sparse", [False, True])
def test_blocks_are_the_full_result_bitwise(monkeypatch: pytest.MonkeyPatch, sparse: bool) -> None:
    if sparse:
        _force_sparse(monkeypatch)
    rng = np.random.default_rng(21)
    q = torch.from_numpy(rng.standard_normal((600, 12)).astype(np.float32))
    g = torch.from_numpy(rng.standard_normal((90, 12)).astype(np.float32))
    full = re_ranking_features(q, g, "cosine", k1=8, k2=3)
    # A budget with room for exactly one 256-row block of the result besides the sparse work.
    budget = rerank._sparse_memory_bytes(600, 90, 12, 4, "cosine", 8, 3, 256)
    starts, parts = [], []
    for start, block in re_ranking_blocks(q, g, "cosine", k1=8, k2=3, memory_budget=budget):
        starts.append(start)
        parts.append(block.clone())
    assert starts == [0, 256, 512] and [len(p) for p in parts] == [256, 256, 88]
    assert torch.equal(torch.cat(parts), full)
    # Without a budget (all the memory available) a single block.
    blocks = list(re_ranking_blocks(q, g, "cosine", k1=8, k2=3))
    assert len(blocks) == 1 and torch.equal(blocks[0][1], full)


def test_features_path_refuses_a_budget_it_cannot_fit_in_one_line() -> None:
    q, g = torch.randn(1200, 4), torch.randn(2000, 4)
    need_blocks = rerank._sparse_memory_bytes(1200, 2000, 4, 4, "euclidean", 20, 6, 256)
    need_full = rerank._sparse_memory_bytes(1200, 2000, 4, 4, "euclidean", 20, 6, None)
    assert need_blocks < need_full
    with pytest.raises(ReidbenchError) as info:
        re_ranking_features(q, g, memory_budget=need_full - 1)
    message = str(info.value)
    assert "\n" not in message and "1,200 queries x 2,000 gallery" in message
    assert "re_ranking_blocks" in message  # the way out: the result in blocks
    assert re_ranking_features(q, g, memory_budget=need_full).shape == (1200, 2000)
    with pytest.raises(ReidbenchError, match="one block of 256 query rows"):
        re_ranking_blocks(q, g, memory_budget=need_blocks - 1)  # refused at the call, not later
    blocks = list(re_ranking_blocks(q, g, memory_budget=need_blocks))
    assert [len(b) for _, b in blocks] == [256] * 4 + [176]


def test_msmt17_size_fits_the_issue_budget_by_the_estimate() -> None:
    """The estimate the refusal uses stays under 8 GB at MSMT17 size, 2048-d, both metrics, with
    the features on top, far below the 35 GB of the dense interface's inputs (the run itself is
    measured by ``benchmarks/bench_rerank.py``: 5.05 GB peak RSS at 512-d, 6.82 GB at
    2048-d cosine)."""
    for metric in ("euclidean", "cosine"):
        need = rerank._sparse_memory_bytes(11_659, 82_161, 2048, 4, metric, 20, 6, None)
        assert 11_659 * 82_161 * 4 < need < 8e9 - 93_820 * 2048 * 4
    assert rerank.rerank_memory_bytes(11_659, 82_161) > 35e9


def test_features_path_never_holds_n_by_n(tmp_path) -> None:
    """Peak RSS of the features path at N = 7,000 grows by far less than one N x N float32
    matrix (196 MB), which the dense interface needs three quarters of as inputs."""
    import subprocess
    import sys

    script = tmp_path / "peak.py"
    script.write_text(
        "import resource, torch\n"
        "import reidbench.eval.rerank as rr\n"
        "rr._BLOCK_BYTES = 4 << 20\n"
        "torch.manual_seed(0)\n"
        "q, g = torch.randn(200, 16), torch.randn(6800, 16)\n"
        "rr.re_ranking_features(q[:5], g[:1100])\n"  # warm up allocator and libraries
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out = rr.re_ranking_features(q, g)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print((after - before) * 1024)\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=True
    )
    grown = int(result.stdout.strip().splitlines()[-1])
    assert grown < 7_000 * 7_000 * 4 / 3


def test_features_validation() -> None:
    q, g = torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(ParameterError, match="gf has 3"):
        re_ranking_features(q, torch.randn(5, 3))
    with pytest.raises(ParameterError, match="non-empty 2-D"):
        re_ranking_features(torch.randn(0, 4), g)
    with pytest.raises(ParameterError, match="non-empty 2-D"):
        re_ranking_features(q, torch.randn(5))
    with pytest.raises(ParameterError, match="unknown metric"):
        re_ranking_features(q, g, "manhattan")
    with pytest.raises(ParameterError, match="k1"):
        re_ranking_features(q, g, k1=0)
    with pytest.raises(ParameterError, match="lambda_value"):
        re_ranking_blocks(q, g, lambda_value=-0.1)
    with pytest.raises(ParameterError, match="memory_budget"):
        re_ranking_features(q, g, memory_budget=0)


@pytest.mark.parametrize("sparse", [False, True])
def test_features_path_refuses_nan_and_all_zero_rows(
    monkeypatch: pytest.MonkeyPatch, sparse: bool
) -> None:
    if sparse:
        _force_sparse(monkeypatch)
    q, g = torch.randn(3, 4), torch.randn(5, 4)
    bad = q.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ParameterError, match="NaN"):
        re_ranking_features(bad, g)
    with pytest.raises(ParameterError, match="normalised"):
        re_ranking_features(torch.ones(3, 4), torch.ones(5, 4))  # all distances 0


def test_features_path_accepts_numpy_and_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(31)
    q, g = rng.standard_normal((7, 5)), rng.standard_normal((30, 5))
    pairs = ((q, g), (q, q), (g, g))
    dense = re_ranking(
        *(compute_distance(torch.from_numpy(a), torch.from_numpy(b)) for a, b in pairs), k1=6, k2=2
    )
    assert torch.equal(re_ranking_features(q, g, k1=6, k2=2), dense)
    _force_sparse(monkeypatch)
    from_numpy = re_ranking_features(q, g, k1=6, k2=2)
    assert from_numpy.dtype == torch.float32
    torch.testing.assert_close(from_numpy, dense, atol=1e-6, rtol=0)


@pytest.mark.parametrize("sparse", [False, True])
def test_threads_restored_and_result_independent_of_them(
    monkeypatch: pytest.MonkeyPatch, sparse: bool
) -> None:
    """Above _SINGLE_THREAD_MAX_IMAGES the first pass runs on the caller's threads and the rest
    on one; the count is restored and the result is the same on 1 or 2 threads."""
    monkeypatch.setattr(rerank, "_SINGLE_THREAD_MAX_IMAGES", 50)
    if sparse:
        _force_sparse(monkeypatch)
    seen: list[int] = []
    real_topk = torch.topk

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_topk(*args, **kwargs)

    monkeypatch.setattr(torch, "topk", spy)
    rng = np.random.default_rng(41)
    feats = rng.standard_normal((340, 6)).astype(np.float32)
    q, g = torch.from_numpy(feats[:30]), torch.from_numpy(feats[30:])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = re_ranking_features(q, g)
        assert torch.get_num_threads() == 2
        assert seen and set(seen) == {2}  # the first pass's top-k on the caller's 2 threads
        torch.set_num_threads(1)
        assert torch.equal(re_ranking_features(q, g), two)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_features_path_matches_the_original_algorithm(
    monkeypatch: pytest.MonkeyPatch, metric: str
) -> None:
    """Against the authors' Python reference as torchreid ships it (dense numpy, float32), an
    oracle independent of this module: it gets the square roots (float64) of the squared
    distances, which it squares back exactly (cosine distances a rounding below 0, on the
    diagonal, are clamped to 0 first: the reference would take the root of a negative)."""
    reference = pytest.importorskip("torchreid.reid.utils.rerank").re_ranking
    rng = np.random.default_rng(71 if metric == "cosine" else 72)
    num_q, num_g = 120, 380
    ids = rng.integers(0, 60, num_q + num_g)
    feats = rng.standard_normal((60, 32))[ids] + 0.8 * rng.standard_normal((num_q + num_g, 32))
    q, g = (torch.from_numpy(f.astype(np.float32)) for f in (feats[:num_q], feats[num_q:]))
    mats = (
        compute_distance(q, g, metric),
        compute_distance(q, q, metric),
        compute_distance(g, g, metric),
    )
    roots = (m.double().clamp(min=0).sqrt().numpy() for m in mats)
    expected = reference(*roots, k1=20, k2=6, lambda_value=0.3)
    assert np.abs(re_ranking(*mats).numpy() - expected).max() <= 1e-6
    assert np.abs(re_ranking_features(q, g, metric).numpy() - expected).max() <= 1e-6
    _force_sparse(monkeypatch)
    assert np.abs(re_ranking_features(q, g, metric).numpy() - expected).max() <= 1e-6
