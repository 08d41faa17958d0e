"""Time reidbench's evaluation against the references users actually run, side by side in one run.

1. ``evaluate_rank`` on a Market-1501-sized problem (3,368 queries x 15,913 gallery images,
   750 identities, 6 cameras, 512-d features with identity and camera structure) against
   **torchreid's Cython evaluator** (``evaluate_cy``, what ``torchreid.metrics.evaluate_rank``
   runs when it is compiled; a full ``np.argsort`` of the matrix, then a C loop per query).
   Every distribution is run twice: the realistic distances of the features (the headline) and
   **uniform random distances** with the same labels, the worst case of reidbench's ranking (every
   gallery item precedes some true match, so all of them are ranked) and the regime of attacked
   cells whose mAP is near 0; the two ratios are printed side by side. Then the harness's whole
   path from features, ``evaluate_features`` (distances and ranking in query blocks), against
   ``compute_distance`` + ``evaluate_cy``.
   torchreid's pip wheel ships no Cython source, so the benchmark compiles its ``rank_cy.pyx``
   (``--torchreid-cython PATH``: the file or a torchreid checkout; default: the copy in
   ``benchmarks/reference/``) with Cython into ``--build-dir``. Without Cython (``pip install
   cython``) that reference is skipped with a message. ``--numpy-loop`` adds torchreid's Python
   path (a per-query numpy loop with numpy's default argsort) and the exact protocol (the same
   loop with a stable argsort, which must agree exactly).
2. ``re_ranking`` against a naive numpy implementation of Zhong et al. (CVPR 2017) written here
   from the paper, on a subset (``--rerank-size``) because the reference is slow and dense;
   with ``--original-rerank PATH`` also against the authors' Python code
   (``python-version/re_ranking_ranklist.py`` of zhunzhong07/person-re-ranking, or torchreid's
   ``torchreid/utils/rerank.py``), imported from a checkout you provide. The original squares
   its inputs, so it is given ``sqrt`` of our squared distances. Then ours alone on the full size.
   Before that, a table of ours against the naive reference at N = 120, 1,200 and 4,200 images
   (``--rerank-sizes``) with 1 and 2 torch threads (``--rerank-threads``), with the ratio;
   ``--only-rerank-sizes`` prints just that table.

Every side of a comparison is timed the same way: the best of ``--repeats`` runs (of
``--rerank-repeats`` for re-ranking), interleaved, so a stall of the machine hits both.

Run: ``.venv/bin/python benchmarks/bench_eval.py [--original-rerank ~/src/person-re-ranking]``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

import reidbench.eval.rerank as rerank_module
from reidbench.eval.distance import compute_distance
from reidbench.eval.metrics import evaluate_features, evaluate_rank
from reidbench.eval.rerank import re_ranking

SortKind = Literal["stable", "quicksort"]


def make_problem(args: argparse.Namespace) -> dict[str, Any]:
    """Features with identity and camera structure; gallery distractors are pid 0."""
    rng = np.random.default_rng(args.seed)
    dim = args.dim
    centers = rng.standard_normal((args.num_ids + 1, dim)) / np.sqrt(dim)
    cam_shift = 0.7 * rng.standard_normal((args.num_cams, dim)) / np.sqrt(dim)
    num_real = args.num_gallery - args.num_distractors
    q_pids = rng.integers(1, args.num_ids + 1, args.num_query)
    g_pids = np.concatenate(
        [rng.integers(1, args.num_ids + 1, num_real), np.zeros(args.num_distractors, int)]
    )
    q_cams = rng.integers(0, args.num_cams, args.num_query)
    g_cams = rng.integers(0, args.num_cams, args.num_gallery)

    def features(pids: np.ndarray, cams: np.ndarray) -> torch.Tensor:
        # Per-image noise level varies, so some images are much harder than others.
        scale = 1.4 * rng.lognormal(0.0, 0.1, (len(pids), 1))
        f = (
            centers[pids]
            + cam_shift[cams]
            + scale * rng.standard_normal((len(pids), dim)) / np.sqrt(dim)
        )
        f[pids == 0] = rng.standard_normal(((pids == 0).sum(), dim)) / np.sqrt(dim)
        return torch.nn.functional.normalize(torch.from_numpy(f.astype(np.float32)), dim=1)

    return {
        "qf": features(q_pids, q_cams),
        "gf": features(g_pids, g_cams),
        "q_pids": q_pids,
        "g_pids": g_pids,
        "q_cams": q_cams,
        "g_cams": g_cams,
    }


def reference_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank: int, kind: SortKind):
    """torchreid's per-query loop (Market-1501 protocol), returning (cmc, mAP, mINP)."""
    cmcs, aps, inps = [], [], []
    for i in range(dist.shape[0]):
        order = np.argsort(dist[i], kind=kind)
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        hits = g_pids[order][keep] == q_pids[i]
        if not hits.any():
            continue
        found = hits.cumsum()
        cmc = np.minimum(found, 1)[:max_rank]
        cmcs.append(np.concatenate([cmc, np.full(max_rank - cmc.size, cmc[-1])]))
        at = np.flatnonzero(hits)
        aps.append(np.mean(found[at] / (at + 1.0)))
        inps.append(found[-1] / (at[-1] + 1.0))
    return np.mean(cmcs, axis=0), float(np.mean(aps)), float(np.mean(inps))


def naive_re_ranking(qg, qq, gg, k1: int, k2: int, lam: float) -> np.ndarray:
    """Zhong et al. 2017, one image at a time over dense numpy arrays (inputs squared already).

    Written from the paper with the authors' conventions (see reidbench.eval.rerank): k + 1
    nearest including self, row-normalised float32 distances, round-half-even k1 / 2, strict 2/3.
    """
    num_q, num_g = qg.shape
    n = num_q + num_g
    full = np.block([[qq, qg], [qg.T, gg]]).astype(np.float32)
    dist = (full / full.max(axis=0)).T
    del full
    ranking = np.argsort(dist, axis=1, kind="stable")[:, : max(k1 + 1, k2)]
    half = round(k1 / 2)

    def reciprocal(p: int, k: int) -> set[int]:
        return {int(g) for g in ranking[p, : k + 1] if p in ranking[g, : k + 1]}

    v = np.zeros((n, n), dtype=np.float32)
    for p in range(n):
        r_p = reciprocal(p, k1)
        expanded = set(r_p)
        for q in r_p:
            r_q = reciprocal(q, half)
            if len(r_q & r_p) > 2 / 3 * len(r_q):
                expanded |= r_q
        cols = np.array(sorted(expanded))
        weight = np.exp(-dist[p, cols])
        v[p, cols] = weight / weight.sum()
    if k2 != 1:
        v = np.stack([v[ranking[p, :k2]].mean(axis=0) for p in range(n)])
    out = np.empty((num_q, num_g), dtype=np.float32)
    for i in range(num_q):
        cols = np.flatnonzero(v[i])
        shared = np.minimum(v[i, cols], v[num_q:, cols]).sum(axis=1)
        out[i] = (1 - lam) * (1 - shared / (2 - shared)) + lam * dist[i, num_q:]
    return out


def load_original(path: Path) -> Callable[..., np.ndarray]:
    """``re_ranking`` from a file, or from a checkout of person-re-ranking or torchreid."""
    if path.is_dir():
        candidates = [
            path / "python-version" / "re_ranking_ranklist.py",
            path / "re_ranking_ranklist.py",
            path / "torchreid" / "utils" / "rerank.py",
        ]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise SystemExit(f"--original-rerank: none of {', '.join(map(str, candidates))} exists")
        path = found[0]
    if not path.is_file():
        raise SystemExit(f"--original-rerank: {path} is not a file or a checkout")
    spec = importlib.util.spec_from_file_location("original_re_ranking", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(f"original re-ranking: {path}")
    return module.re_ranking


def with_stable_argsort(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """``fn`` with the ``np`` of its module swapped for numpy whose argsort is stable."""

    class StableArgsortNumpy:
        def __getattr__(self, name: str) -> Any:
            return getattr(np, name)

        @staticmethod
        def argsort(a: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
            return np.argsort(a, *args, **{**kwargs, "kind": "stable"})

    def call(*args: Any) -> np.ndarray:
        module_globals = fn.__globals__
        saved = module_globals["np"]
        module_globals["np"] = StableArgsortNumpy()
        try:
            return fn(*args)
        finally:
            module_globals["np"] = saved

    return call


def best_and_median(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Best and median of ``repeats`` runs: the median shows the stalls that a busy machine adds."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times)), out


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


CYTHON_SOURCE = Path(__file__).parent / "reference" / "torchreid_rank_cy.pyx"

_SETUP = """
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(name="torchreid_rank_cy", script_args=["build_ext", "--inplace"],
      ext_modules=cythonize([Extension("torchreid_rank_cy", ["torchreid_rank_cy.pyx"],
                                       include_dirs=[np.get_include()])], quiet=True))
"""


def load_torchreid_cython(source: Path | None, build_root: Path) -> tuple[Callable[..., Any] | None, str]:
    """torchreid's ``evaluate_cy`` and where it came from, or ``(None, why it is skipped)``.

    A compiled torchreid is used as installed; otherwise ``rank_cy.pyx`` (``source``: the file or
    a torchreid checkout; default the copy in ``benchmarks/reference``) is compiled with Cython,
    with the compiler flags of torchreid's own setup.py, into a folder of ``build_root`` keyed by
    the source and the versions of Python, numpy and Cython.
    """
    if source is None:
        for name in ("torchreid.reid.metrics.rank_cylib.rank_cy", "torchreid.metrics.rank_cylib.rank_cy"):
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            return module.evaluate_cy, f"installed {name}"
        source = CYTHON_SOURCE
    if source.is_dir():
        found = [p for p in (source / "torchreid" / "metrics" / "rank_cylib" / "rank_cy.pyx",
                             source / "torchreid" / "reid" / "metrics" / "rank_cylib" / "rank_cy.pyx",
                             source / "rank_cy.pyx") if p.is_file()]  # fmt: skip
        if not found:
            raise SystemExit(f"--torchreid-cython: no rank_cy.pyx under {source}")
        source = found[0]
    if not source.is_file():
        raise SystemExit(f"--torchreid-cython: {source} is not a file or a torchreid checkout")
    try:
        import Cython
    except ImportError:
        return None, "skipped: Cython is not installed (pip install cython), so rank_cy.pyx cannot be compiled"
    text = source.read_bytes()
    key = hashlib.sha256(
        text + f"{sys.version}|{np.__version__}|{Cython.__version__}".encode()
    ).hexdigest()[:16]
    build = build_root / f"torchreid_rank_cy-{key}"
    built = sorted(build.glob("torchreid_rank_cy*.so")) + sorted(build.glob("torchreid_rank_cy*.pyd"))
    if not built:
        build.mkdir(parents=True, exist_ok=True)
        (build / "torchreid_rank_cy.pyx").write_bytes(text)
        (build / "setup.py").write_text(_SETUP)
        print(f"compiling torchreid's rank_cy.pyx with Cython {Cython.__version__} in {build} ...", flush=True)
        proc = subprocess.run([sys.executable, "setup.py"], cwd=build, capture_output=True, text=True)
        built = sorted(build.glob("torchreid_rank_cy*.so")) + sorted(build.glob("torchreid_rank_cy*.pyd"))
        if proc.returncode != 0 or not built:
            last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            return None, f"skipped: compiling {source} failed: {last}"
    spec = importlib.util.spec_from_file_location("torchreid_rank_cy", built[0])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.evaluate_cy, f"{source} compiled with Cython {Cython.__version__}"


def interleaved_best(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[float, Any]]:
    """Best time and last output of each function over ``repeats`` rounds, the functions taking
    turns within a round: every side gets the same number of runs and the same machine."""
    best = {name: (float("inf"), None) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            out = fn()
            elapsed = time.perf_counter() - start
            best[name] = (min(best[name][0], elapsed), out)
    return best


def bench_metrics(p: dict[str, Any], args: argparse.Namespace) -> None:
    labels = (p["q_pids"], p["g_pids"], p["q_cams"], p["g_cams"])
    dist = compute_distance(p["qf"], p["gf"])
    ours = evaluate_rank(dist, *labels, args.max_rank)
    official = evaluate_rank(dist, *labels, args.max_rank, ap="official")
    print(
        f"problem: mAP {ours.mAP:.4f}  rank-1 {ours.rank(1):.4f}  mINP {ours.mINP:.4f}  "
        f"valid queries {ours.num_valid}/{dist.shape[0]}  (official AP: mAP {official.mAP:.4f})"
    )
    cython, where = load_torchreid_cython(args.torchreid_cython, args.build_dir)
    print(f"torchreid's Cython evaluator: {where}")
    # Uniform random distances without exact ties (each row a random permutation of 0..G-1,
    # scaled to [0, 1)): with ties, numpy's unstable argsort in the reference would move a
    # query's first match by a rank now and then, and the results would not be comparable.
    num_g = dist.shape[1]
    rng = np.random.default_rng(args.seed + 7)
    # rng.permuted returns a column-major array; a distance matrix (compute_distance, any matmul)
    # is row-major, so both sides get the random values in that layout, as they get the realistic ones
    ranks = rng.permuted(np.broadcast_to(np.arange(num_g, dtype=np.float32), dist.shape), axis=1)
    distributions = {
        "realistic features": dist,
        "uniform random (worst case)": torch.from_numpy(np.ascontiguousarray(ranks / np.float32(num_g))),
    }
    print(f"evaluate_rank on {dist.shape[0]:,} x {dist.shape[1]:,} distances; every side best of {args.repeats}, interleaved")
    print(f"{'distances':28s} {'reidbench':>10s} {'torchreid Cython':>17s} {'ratio':>7s} {'max |diff|':>10s}")
    ratios: dict[str, float] = {}
    for name, d in distributions.items():
        dn = d.numpy()
        fns: dict[str, Callable[[], Any]] = {"ours": lambda d=d: evaluate_rank(d, *labels, args.max_rank)}
        if cython is not None:
            fns["cython"] = lambda dn=dn: cython(dn, *labels, args.max_rank)
        if args.numpy_loop:
            fns["numpy"] = lambda dn=dn: reference_rank(dn, *labels, args.max_rank, "quicksort")
        times = interleaved_best(fns, args.repeats)
        ours_s, r = times["ours"]
        line = f"{name:28s} {ours_s * 1e3:8.1f}ms"
        if cython is not None:
            cy_s, (cmc, m_ap) = times["cython"]
            # torchreid sums in float32: differences far below one query's weight (1/Q).
            diff = max(abs(r.mAP - float(m_ap)), float(np.abs(r.cmc - cmc).max()))
            if diff > 1e-5:
                raise SystemExit(f"evaluate_rank disagrees with torchreid's Cython evaluator by {diff:.3g} on {name}")
            ratios[name] = cy_s / ours_s
            line += f" {cy_s * 1e3:15.1f}ms {cy_s / ours_s:6.1f}x {diff:10.1e}"
        else:
            line += f" {'-':>17s} {'-':>7s}"
        print(line)
        if args.numpy_loop:
            np_s, (cmc, m_ap, m_inp) = times["numpy"]
            print(f"{'':28s} numpy loop as torchreid's Python path (default argsort): {np_s * 1e3:9.1f} ms, "
                  f"ratio {np_s / ours_s:5.1f}x")  # fmt: skip
            if name == "realistic features":
                _, (cmc, m_ap, m_inp) = best_of(lambda dn=dn: reference_rank(dn, *labels, args.max_rank, "stable"), 1)
                diff = max(abs(r.mAP - m_ap), abs(r.mINP - m_inp), float(np.abs(r.cmc - cmc).max()))
                if diff > 1e-12:
                    raise SystemExit(f"evaluate_rank disagrees with the exact protocol (stable loop) by {diff:.3g}")
                print(f"{'':28s} exact protocol (stable argsort loop): max |diff| {diff:.1e}")
    if ratios:
        head, worst = ratios["realistic features"], ratios["uniform random (worst case)"]
        print(f"headline: {head:.1f}x faster than torchreid's Cython evaluator on realistic distances; "
              f"worst case (uniform random distances): {worst:.1f}x")  # fmt: skip
    # The harness's path from features: distances and ranking in query blocks.
    qf, gf = p["qf"], p["gf"]
    fns = {"ours": lambda: evaluate_features(qf, gf, *labels, metric="euclidean", max_rank=args.max_rank)}
    if cython is not None:
        fns["cython"] = lambda: cython(compute_distance(qf, gf).numpy(), *labels, args.max_rank)
    times = interleaved_best(fns, args.repeats)
    line = f"from features: evaluate_features {times['ours'][0] * 1e3:.1f} ms"
    if cython is not None:
        cy_s = times["cython"][0]
        line += f"; compute_distance + torchreid Cython {cy_s * 1e3:.1f} ms; ratio {cy_s / times['ours'][0]:.1f}x"
    print(line)


def subset(p: dict[str, Any], size: int, seed: int) -> dict[str, Any]:
    """About ``size`` gallery images: all images of a random share of the identities, plus the
    same share of the distractors, so each identity keeps its images (a random sample of images
    would leave about one per identity and no neighbourhoods for re-ranking to find)."""
    rng = np.random.default_rng(seed + 1)
    share = min(1.0, size / len(p["g_pids"]))
    ids = np.unique(p["g_pids"][p["g_pids"] > 0])
    keep_ids = rng.choice(ids, max(1, round(share * len(ids))), replace=False)
    distractors = np.flatnonzero(p["g_pids"] == 0)
    gi = np.sort(
        np.concatenate(
            [
                np.flatnonzero(np.isin(p["g_pids"], keep_ids)),
                distractors[: round(share * len(distractors))],
            ]
        )
    )
    qi = np.flatnonzero(np.isin(p["q_pids"], keep_ids))
    return {
        "qf": p["qf"][qi],
        "gf": p["gf"][gi],
        **{k: p[k][qi] for k in ("q_pids", "q_cams")},
        **{k: p[k][gi] for k in ("g_pids", "g_cams")},
    }


def bench_rerank(p: dict[str, Any], args: argparse.Namespace) -> None:
    s = subset(p, args.rerank_size, args.seed)
    qf, gf = s["qf"], s["gf"]
    labels = (s["q_pids"], s["g_pids"], s["q_cams"], s["g_cams"])
    qg, qq, gg = compute_distance(qf, gf), compute_distance(qf, qf), compute_distance(gf, gf)
    k = {"k1": args.k1, "k2": args.k2, "lambda_value": args.lambda_value}
    print(
        f"\nre-ranking on a subset of the identities: {qg.shape[0]} queries x {qg.shape[1]} gallery "
        f"(--rerank-size {args.rerank_size}; k1={args.k1} k2={args.k2} lambda={args.lambda_value})"
    )
    nq, nqq, ngg = (x.numpy() for x in (qg, qq, gg))
    # The original squares its inputs; ours takes squared distances: give it their roots.
    roots = [np.sqrt(x.astype(np.float64)) for x in (nq, nqq, ngg)]
    original = load_original(args.original_rerank) if args.original_rerank is not None else None
    fns: dict[str, Callable[[], Any]] = {
        "ours": lambda: re_ranking(qg, qq, gg, **k),
        "naive": lambda: naive_re_ranking(nq, nqq, ngg, args.k1, args.k2, args.lambda_value),
    }
    if original is not None:
        fns["original"] = lambda: original(*roots, args.k1, args.k2, args.lambda_value)
    times = interleaved_best(fns, args.rerank_repeats)  # every side best of the same N
    ours_s, ours = times["ours"]
    ours = ours.numpy()
    before = evaluate_rank(qg, *labels).mAP
    after = evaluate_rank(ours, *labels).mAP
    print(
        f"re_ranking (ours, best of {args.rerank_repeats}):          {ours_s:8.2f} s   mAP {before:.4f} -> {after:.4f}"
    )
    ref_s, ref = times["naive"]
    print(
        f"naive numpy reference (from the paper):  {ref_s:8.2f} s   ratio {ref_s / ours_s:5.1f}x   "
        f"max |diff| {np.abs(ours - ref).max():.1e}"
    )
    if original is not None:
        orig_s, orig = times["original"]
        print(
            f"original re_ranking (zhunzhong07/Luo Hao): {orig_s:8.2f} s   ratio {orig_s / ours_s:5.1f}x   "
            f"max |diff| {np.abs(ours - orig).max():.1e}   mAP {evaluate_rank(orig, *labels).mAP:.4f}"
        )
        # The original ranks with numpy's default (unstable) argsort, ours breaks ties by index.
        stable = with_stable_argsort(original)(*roots, args.k1, args.k2, args.lambda_value)
        print(
            f"  the same with a stable argsort in place of its np.argsort:          "
            f"max |diff| {np.abs(ours - stable).max():.1e}   "
            f"(query rows that differ from the unmodified original: "
            f"{int((np.abs(stable - orig).max(axis=1) > 1e-5).sum())})"
        )
    if args.skip_full_rerank:
        return
    qf, gf = p["qf"], p["gf"]
    full_labels = (p["q_pids"], p["g_pids"], p["q_cams"], p["g_cams"])
    qg = compute_distance(qf, gf)
    qq, gg = compute_distance(qf, qf), compute_distance(gf, gf)
    full_s, full = best_of(lambda: re_ranking(qg, qq, gg, **k), 1)
    print(
        f"re_ranking (ours) on the full {qg.shape[0]} x {qg.shape[1]}:  {full_s:8.2f} s   "
        f"mAP {evaluate_rank(qg, *full_labels).mAP:.4f} -> {evaluate_rank(full, *full_labels).mAP:.4f}"
        "   (no reference at this size: it needs dense N x N matrices)"
    )


def bench_rerank_sizes(p: dict[str, Any], args: argparse.Namespace) -> None:
    """Ours against the naive reference at a few sizes N = Q + G, with 1 and 2 torch threads.

    Also ours with the small-input single-thread switch turned off, to show the fixed cost it
    removes. The naive reference is numpy and Python loops; torch's thread count does not
    apply to it, so its column changes only with the machine's load.
    """
    k = {"k1": args.k1, "k2": args.k2, "lambda_value": args.lambda_value}
    sizes = [int(x) for x in args.rerank_sizes.split(",") if x]
    thread_counts = [int(x) for x in args.rerank_threads.split(",") if x]
    saved_threads = torch.get_num_threads()
    saved_switch = rerank_module._SINGLE_THREAD_MAX_IMAGES
    print(
        f"\nre-ranking by size (small inputs run on one thread up to N = {saved_switch}; "
        "'switch off' is ours without that):"
    )
    print("times are best/median of the runs; the ratio is reference / ours, best/median")
    print(
        f"{'N':>6} {'Q x G':>11} {'threads':>7} {'ours':>13} {'switch off':>13} {'reference':>13} "
        f"{'ref/ours':>11} {'max |diff|':>10}"
    )
    try:
        for size in sizes:
            s = subset(p, max(2, round(size / 1.21)), args.seed)
            qf, gf = s["qf"], s["gf"]
            qg, qq, gg = (
                compute_distance(qf, gf),
                compute_distance(qf, qf),
                compute_distance(gf, gf),
            )
            n = qg.shape[0] + qg.shape[1]
            repeats = 7 if n <= 1500 else 3
            nq, nqq, ngg = (x.numpy() for x in (qg, qq, gg))
            ref_s, ref_m, ref = best_and_median(
                lambda nq=nq, nqq=nqq, ngg=ngg: naive_re_ranking(
                    nq, nqq, ngg, args.k1, args.k2, args.lambda_value
                ),
                repeats,
            )
            for threads in thread_counts:
                torch.set_num_threads(threads)

                def ours(qg=qg, qq=qq, gg=gg) -> torch.Tensor:
                    return re_ranking(qg, qq, gg, **k)

                ours_s, ours_m, out = best_and_median(ours, repeats)
                rerank_module._SINGLE_THREAD_MAX_IMAGES = 0
                try:
                    off_s, off_m, off = best_and_median(ours, repeats)
                finally:
                    rerank_module._SINGLE_THREAD_MAX_IMAGES = saved_switch
                if not torch.equal(off, out):
                    raise SystemExit("re_ranking differs with the thread switch off")
                diff = np.abs(out.numpy() - ref).max()
                print(
                    f"{n:6d} {qg.shape[0]:4d} x {qg.shape[1]:<5d}{threads:7d} "
                    f"{ours_s:7.3f}/{ours_m:.3f}s {off_s:7.3f}/{off_m:.3f}s {ref_s:7.3f}/{ref_m:.3f}s "
                    f"{ref_s / ours_s:6.1f}x/{ref_m / ours_m:.1f}x {diff:10.1e}"
                )
    finally:
        torch.set_num_threads(saved_threads)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-query", type=int, default=3368)
    parser.add_argument("--num-gallery", type=int, default=15913)
    parser.add_argument("--num-distractors", type=int, default=2793, help="gallery images of pid 0")
    parser.add_argument("--num-ids", type=int, default=750)
    parser.add_argument("--num-cams", type=int, default=6)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--max-rank", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats", type=int, default=3,
        help="timed runs of every side of the evaluation comparison, interleaved; the best counts",
    )
    parser.add_argument(
        "--torchreid-cython", type=Path, default=None,
        help="torchreid's rank_cy.pyx, or a torchreid checkout (default: an installed compiled "
        "torchreid, else benchmarks/reference/torchreid_rank_cy.pyx)",
    )
    parser.add_argument(
        "--build-dir", type=Path, default=Path.home() / ".cache" / "reidbench" / "bench-cython",
        help="where the Cython reference is compiled (reused while its source and versions match)",
    )
    parser.add_argument(
        "--numpy-loop", action="store_true",
        help="also time torchreid's Python path (a per-query numpy loop; slow) and check the "
        "exact protocol",
    )
    parser.add_argument(
        "--rerank-size", type=int, default=6000, help="gallery images in the re-ranking subset"
    )
    parser.add_argument("--rerank-repeats", type=int, default=2)
    parser.add_argument("--k1", type=int, default=20)
    parser.add_argument("--k2", type=int, default=6)
    parser.add_argument("--lambda-value", type=float, default=0.3)
    parser.add_argument(
        "--original-rerank",
        type=Path,
        default=None,
        help="re_ranking_ranklist.py, or a checkout of zhunzhong07/person-re-ranking or torchreid",
    )
    parser.add_argument(
        "--rerank-sizes", default="120,1200,4200", help="N = Q + G for the re-ranking size table"
    )
    parser.add_argument("--rerank-threads", default="1,2", help="torch threads for that table")
    parser.add_argument("--only-rerank-sizes", action="store_true", help="just that table")
    parser.add_argument("--skip-rerank", action="store_true")
    parser.add_argument(
        "--skip-full-rerank", action="store_true", help="skip ours on the full size"
    )
    args = parser.parse_args(argv)

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), numpy {np.__version__}, "
        f"load average {os.getloadavg()[0]:.1f} (timings on a busy machine are noisy)"
    )
    print(
        f"synthetic Market-1501-sized problem: {args.num_query} queries x {args.num_gallery} gallery "
        f"({args.num_distractors} distractors), {args.num_ids} ids, {args.num_cams} cameras, dim {args.dim}"
    )
    problem = make_problem(args)
    if args.only_rerank_sizes:
        bench_rerank_sizes(problem, args)
        return
    bench_metrics(problem, args)
    if not args.skip_rerank:
        bench_rerank_sizes(problem, args)
        bench_rerank(problem, args)


if __name__ == "__main__":
    main()
