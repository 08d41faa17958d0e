"""Peak memory and time of evaluation from features: full distance matrix against query blocks.

Each method runs in its own subprocess on the same synthetic problem (MSMT17-sized by default:
11,659 queries x 82,161 gallery, 3,060 identities, 15 cameras; features with identity and camera
structure, so that the ranking work is realistic). Methods:

* ``features``: only build the problem (the baseline every method pays: features and labels);
* ``full``: ``evaluate_rank(compute_distance(qf, gf, metric), ...)``, the Q x G matrix in memory;
* ``chunked``: ``evaluate_features(qf, gf, ..., memory_budget=--memory-budget)``, the harness's
  path: query blocks sized from the budget (default 512 MiB: a few hundred rows at MSMT17 size).
* ``rerank`` (only when asked, ``--methods rerank``): the three distance matrices, k-reciprocal
  re-ranking and its evaluation; Market-1501 size fits in ~2-3 GB, MSMT17 size is refused with
  one line (it needs the 93,820 x 93,820 float32 distances, 35 GB).

Peak RSS is ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` read after each child has exited
(the maximum over the children so far, so the methods run in increasing order of memory), checked
against the child's own ``RUSAGE_SELF``. The two evaluations must give identical results.

Run: ``.venv/bin/python benchmarks/bench_memory.py [--dim 2048] [--num-query 3368 --num-gallery
15913 --num-ids 1501 --num-cams 6]`` (the defaults take ~2 minutes on 2 cores at --dim 512).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from reidbench.errors import ReidbenchError


def make_problem(args: argparse.Namespace) -> dict:
    g = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    dim = args.dim
    centers = torch.randn(args.num_ids, dim, generator=g) / dim**0.5
    cam_shift = 0.7 * torch.randn(args.num_cams, dim, generator=g) / dim**0.5
    q_pids = rng.integers(0, args.num_ids, args.num_query)
    g_pids = rng.integers(0, args.num_ids, args.num_gallery)
    q_cams = rng.integers(0, args.num_cams, args.num_query)
    g_cams = rng.integers(0, args.num_cams, args.num_gallery)

    def features(pids: np.ndarray, cams: np.ndarray) -> torch.Tensor:
        f = torch.randn(len(pids), dim, generator=g).mul_(1.4 / dim**0.5)
        f += centers[torch.from_numpy(pids)]
        f += cam_shift[torch.from_numpy(cams)]
        return f

    return {
        "qf": features(q_pids, q_cams),
        "gf": features(g_pids, g_cams),
        "labels": (q_pids, g_pids, q_cams, g_cams),
    }


def child(args: argparse.Namespace) -> None:
    from reidbench.eval.distance import compute_distance
    from reidbench.eval.metrics import evaluate_features, evaluate_rank

    p = make_problem(args)
    start = time.perf_counter()
    if args.child == "full":
        r = evaluate_rank(compute_distance(p["qf"], p["gf"], metric=args.metric), *p["labels"])
    elif args.child == "chunked":
        r = evaluate_features(
            p["qf"], p["gf"], *p["labels"], metric=args.metric, memory_budget=args.memory_budget
        )
    elif args.child == "rerank":
        from reidbench.eval.rerank import check_rerank_fits, re_ranking

        check_rerank_fits(args.num_query, args.num_gallery)  # one line instead of the OOM killer
        qf, gf = p["qf"], p["gf"]
        d = compute_distance(qf, gf, metric=args.metric)
        qq, gg = (
            compute_distance(qf, qf, metric=args.metric),
            compute_distance(gf, gf, metric=args.metric),
        )
        r = evaluate_rank(re_ranking(d, qq, gg), *p["labels"])
    else:
        r = None
    seconds = time.perf_counter() - start
    out = {"seconds": seconds, "self_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    if r is not None:
        out.update(
            mAP=r.mAP, mINP=r.mINP, cmc=r.cmc.tolist(), ap=np.nan_to_num(r.ap, nan=-1).tolist()
        )
    with open(args.out, "w") as f:
        json.dump(out, f)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-query", type=int, default=11659)
    parser.add_argument("--num-gallery", type=int, default=82161)
    parser.add_argument("--num-ids", type=int, default=3060)
    parser.add_argument("--num-cams", type=int, default=15)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--metric", choices=("cosine", "euclidean"), default="cosine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--memory-budget", default=None, help="evaluate_features' budget, e.g. 1GB (default 512 MiB)"
    )
    parser.add_argument("--methods", default="features,chunked,full")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        try:
            child(args)
        except ReidbenchError as e:
            raise SystemExit(f"reidbench: {e}") from None
        return
    print(
        f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"problem: {args.num_query} queries x {args.num_gallery} gallery, {args.num_ids} ids, "
        f"{args.num_cams} cameras, dim {args.dim}, {args.metric}; a full float32 distance matrix "
        f"is {args.num_query * args.num_gallery * 4 / 2**30:.2f} GiB"
    )
    results: dict[str, dict] = {}
    passthrough = [
        f"--{name.replace('_', '-')}={getattr(args, name)}"
        for name in ("num_query", "num_gallery", "num_ids", "num_cams", "dim", "metric", "seed")
    ] + ([f"--memory-budget={args.memory_budget}"] if args.memory_budget else [])
    for method in args.methods.split(","):
        out = f"/tmp/bench_memory_{os.getpid()}_{method}.json"
        cmd = [sys.executable, __file__, *passthrough, "--child", method, "--out", out]
        wall = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - wall
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            print(f"{method:8s}: exited with status {proc.returncode} after {wall:.1f} s: {last}")
            continue
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        with open(out) as f:
            res = json.load(f)
        os.unlink(out)
        res["children_maxrss_kb"] = peak_kb
        results[method] = res
        print(
            f"{method:8s}: peak RSS {peak_kb / 2**20:6.2f} GiB (child's own {res['self_maxrss_kb'] / 2**20:.2f})"
            f"   evaluation {res['seconds']:7.2f} s   (process wall {wall:6.1f} s)"
            + (f"   mAP {res['mAP']:.4f}" if "mAP" in res else "")
        )
    if "full" in results and "chunked" in results:
        full, chunked = results["full"], results["chunked"]
        same = all(full[k] == chunked[k] for k in ("mAP", "mINP", "cmc", "ap"))
        print(
            f"full / chunked: peak RSS {full['self_maxrss_kb'] / chunked['self_maxrss_kb']:.2f}x, "
            f"time {full['seconds'] / chunked['seconds']:.2f}x; results identical: {same}"
        )
        if "features" in results:
            base = results["features"]["self_maxrss_kb"]
            print(
                f"above the features baseline: full {(full['self_maxrss_kb'] - base) / 2**20:.2f} GiB, "
                f"chunked {(chunked['self_maxrss_kb'] - base) / 2**20:.2f} GiB"
            )
        if not same:
            raise SystemExit("the chunked evaluation disagrees with the full matrix")


if __name__ == "__main__":
    main()
