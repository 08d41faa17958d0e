"""k-reciprocal re-ranking: the sparse features path against the dense one and the original.

Three ways to re-rank the same query and gallery features (k1=20, k2=6, lambda=0.3, squared
Euclidean distances by default), each timed from the features, best of the same ``--repeat``
runs:

* ``project``: :func:`reidbench.eval.rerank.re_ranking_features`, which never holds an N x N
  matrix (N = Q + G);
* ``dense``: ``compute_distance`` three times (Q x G, Q x Q, G x G) and
  :func:`reidbench.eval.rerank.re_ranking` on them, the matrix interface (skipped where the
  N x N float32 inputs do not fit in memory). The three products run under the project's thread
  rule (one thread up to 2,048 images), here and for the reference, so that no side pays the
  thread pool's fixed cost on small products that the other is spared;
* ``reference``: the same three ``compute_distance`` matrices given to the original algorithm,
  the Python reference of Zhong et al. (github.com/zhunzhong07/person-re-ranking) as torchreid
  ships it (``torchreid.reid.utils.rerank.re_ranking``; a dev dependency, skipped with a message
  if absent). It squares its inputs, so it gets ``sqrt`` of the squared distances (same work:
  its ``np.power(d, 2)`` gives them back, to float32 rounding). Skipped where its dense arrays
  (about 24 bytes x N^2) do not fit.

For each size it prints the times, the ratios dense / project and reference / project (above 1:
the project is faster), and the largest absolute difference of the project's result from the
dense one's and the reference's. Where the reference differs by more than 1e-5, the cause is exact
ties in the normalised distances, which its unstable ``np.argsort`` orders arbitrarily (this
module breaks them by index): it is run once more, untimed, with a stable argsort, and that
difference is printed too. The exit status is 1 if the project differs from the dense result or
the stable reference by more than 1e-5. The problem: features with identity and camera structure, Q/G as
in Market-1501 (3,368 : 15,913) unless a size is given as ``QxG``.

Run: ``.venv/bin/python benchmarks/bench_rerank.py`` (sizes N = 120, 1200, 4200; about a minute on
2 cores; add ``--sizes 120,1200,4200,3368x15913`` for Market-1501 size, another ~3 minutes, most
of it the reference). MSMT17 size, the project alone, with its time and peak RSS:
``OMP_NUM_THREADS=1 /usr/bin/time -v .venv/bin/python benchmarks/bench_rerank.py --sizes
11659x82161 --methods project --repeat 1`` (measured on one core: 152 s and 5.05 GB at the default
512-d euclidean; 392 s and 6.82 GB with ``--dim 2048 --metric cosine``).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from reidbench.errors import ReidbenchError
from reidbench.eval.distance import compute_distance
from reidbench.eval.rerank import (
    _SINGLE_THREAD_MAX_IMAGES,
    _available_memory_bytes,
    _one_thread,
    check_rerank_fits,
    re_ranking,
    re_ranking_features,
)

K1, K2, LAMBDA = 20, 6, 0.3
# Market-1501's query share: 3,368 queries of 19,281 images.
QUERY_SHARE = 3368 / (3368 + 15913)


def make_problem(num_q: int, num_g: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Query and gallery features: identity centres (~30 images each), camera shifts and noise."""
    g = torch.Generator().manual_seed(seed)
    num_ids = max(2, (num_q + num_g) // 30)
    num_cams = 15
    centers = torch.randn(num_ids, dim, generator=g) / dim**0.5
    cam_shift = 0.7 * torch.randn(num_cams, dim, generator=g) / dim**0.5

    def features(n: int) -> torch.Tensor:
        ids = torch.randint(0, num_ids, (n,), generator=g)
        cams = torch.randint(0, num_cams, (n,), generator=g)
        f = torch.randn(n, dim, generator=g).mul_(1.4 / dim**0.5)
        return f.add_(centers[ids]).add_(cam_shift[cams])

    return features(num_q), features(num_g)


def parse_size(text: str) -> tuple[int, int]:
    if "x" in text:
        q, g = text.split("x")
        return int(q), int(g)
    n = int(text)
    q = max(1, round(n * QUERY_SHARE))
    return q, n - q


def best_of(repeat: int, fn: Callable[[], torch.Tensor | np.ndarray]) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    assert out is not None
    return best, torch.as_tensor(out)


def run_size(
    args: argparse.Namespace, methods: list[str], reference: Callable | None, num_q: int, num_g: int
) -> tuple[dict[str, float], dict[str, torch.Tensor], list[str]]:
    """Times (best of ``args.repeat``), results and notes of each method at one size."""
    n = num_q + num_g
    qf, gf = make_problem(num_q, num_g, args.dim, args.seed)
    times: dict[str, float] = {}
    results: dict[str, torch.Tensor] = {}
    notes: list[str] = []
    if "project" in methods:
        times["project"], results["project"] = best_of(
            args.repeat, lambda: re_ranking_features(qf, gf, args.metric, K1, K2, LAMBDA)
        )

    def matrices() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Under the project's thread rule (one thread up to _SINGLE_THREAD_MAX_IMAGES), so that
        # the ratios compare the re-ranking, not the thread pool's cost on small products.
        with _one_thread(n <= _SINGLE_THREAD_MAX_IMAGES):
            return (
                compute_distance(qf, gf, args.metric),
                compute_distance(qf, qf, args.metric),
                compute_distance(gf, gf, args.metric),
            )

    if "dense" in methods:
        try:
            check_rerank_fits(num_q, num_g)
        except ReidbenchError:
            notes.append(f"dense: does not fit ({4 * n * n / 1e9:.0f} GB of N x N inputs)")
        else:
            times["dense"], results["dense"] = best_of(
                args.repeat, lambda: re_ranking(*matrices(), K1, K2, LAMBDA)
            )
    if "reference" in methods and reference is not None:
        if 24 * n * n > _available_memory_bytes():
            notes.append(f"reference: does not fit (~{24 * n * n / 1e9:.0f} GB of N x N arrays)")
        else:

            def run_reference() -> np.ndarray:
                # float64 square roots: the reference's float32 squares of them are the very
                # distances the project re-ranks.
                qg, qq, gg = (d.double().clamp_(min=0).sqrt_().numpy() for d in matrices())
                return reference(qg, qq, gg, k1=K1, k2=K2, lambda_value=LAMBDA)

            times["reference"], results["reference"] = best_of(args.repeat, run_reference)
            if "project" in results:
                diff = (results["reference"] - results["project"]).abs().max().item()
                if diff > 1e-5:
                    # Exact ties in the normalised distances (common from a few thousand images
                    # on: ~1e4 float32 values per row in a narrow range), which the reference's
                    # np.argsort orders arbitrarily and this module by index. Run once more (not
                    # timed) with a stable argsort to tell them from a real difference.
                    stable = torch.as_tensor(_with_stable_argsort(reference, run_reference))
                    diff = (stable - results["project"]).abs().max().item()
                    notes.append(
                        "reference: its result differs by more than 1e-5 where exact ties meet "
                        f"its unstable argsort; with a stable argsort, max |diff| {diff:.1e}"
                    )
                    results["reference (stable argsort)"] = stable
    return times, results, notes


def _with_stable_argsort(reference: Callable, run: Callable[[], np.ndarray]) -> np.ndarray:
    """``run()`` with the reference module's ``np.argsort`` made stable."""
    module = sys.modules[reference.__module__]

    class StableNumpy:
        def __getattr__(self, name: str) -> object:
            return getattr(np, name)

        @staticmethod
        def argsort(a: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
            kwargs["kind"] = "stable"
            return np.argsort(a, *args, **kwargs)  # type: ignore[call-overload]

    saved = module.np
    module.np = StableNumpy()
    try:
        return run()
    finally:
        module.np = saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="120,1200,4200", help="N or QxG, comma-separated")
    parser.add_argument("--methods", default="project,dense,reference")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--metric", choices=("euclidean", "cosine"), default="euclidean")
    parser.add_argument("--repeat", type=int, default=3, help="runs per method (best is kept)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    reference = None
    if "reference" in methods:
        try:
            from torchreid.reid.utils.rerank import re_ranking as reference
        except ImportError:
            print("reference: torchreid is not installed (pip install torchreid); skipped")
    print(
        f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"load average {os.getloadavg()[0]:.1f}; k1={K1} k2={K2} lambda={LAMBDA}, {args.metric}, "
        f"dim {args.dim}, best of {args.repeat}"
    )
    disagree = False
    slower = []
    for text in args.sizes.split(","):
        num_q, num_g = parse_size(text)
        times, results, notes = run_size(args, methods, reference, num_q, num_g)
        n = num_q + num_g
        line = f"N={n:>6,} ({num_q:,} x {num_g:,}):"
        for name in ("project", "dense", "reference"):
            if name in times:
                line += f"  {name} {times[name]:8.3f} s"
        for name in ("dense", "reference"):
            if name in times and "project" in times:
                ratio = times[name] / times["project"]
                diff = (results[name].to(torch.float32) - results["project"]).abs().max().item()
                line += f"  {name}/project {ratio:6.2f}x (max |diff| {diff:.1e})"
                if name == "reference":
                    checked = results.get("reference (stable argsort)", results[name])
                    diff = (checked.to(torch.float32) - results["project"]).abs().max().item()
                    if ratio < 1:
                        slower.append(n)
                disagree |= diff > 1e-5
        print(line)
        if "project" in times and len(methods) == 1:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            print(f"  project: {times['project']:.1f} s, peak RSS of this process {peak:.2f} GiB")
        for note in notes:
            print(f"  {note}")
        sys.stdout.flush()
    if slower:
        print(f"the project was slower than the reference at N = {slower}")
    if disagree:
        print("the project's result differs from the dense or reference one by more than 1e-5")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
