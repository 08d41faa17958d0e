"""k-reciprocal re-ranking against a naive implementation written from the paper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reidbench.eval.rerank as rerank
from reidbench.errors import ParameterError
from reidbench.eval.distance import compute_distance
from reidbench.eval.rerank import re_ranking


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

    half = round(k1 / 2)
    v = np.zeros((n, n))
    for p in range(n):
        r_p = reciprocal(p, k1)
        expanded = set(r_p)
        for q in r_p:
            r_q = reciprocal(q, half)
            if len(r_q & r_p) > 2 / 3 * len(r_q):
                expanded |= r_q
        cols = sorted(expanded)
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
