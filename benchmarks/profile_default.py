"""Where a default run's time goes: cProfile over one model's default cells on synthetic-mini.

Runs the default benchmark's attack set (the same list as ``reidbench run``) for ``--models``
through ``run_grid`` on ``--threads`` threads, then prints the cells' times and the top of the
profile by time spent inside each function.

    python benchmarks/profile_default.py                     # baseline, 1 thread: about a minute
    python benchmarks/profile_default.py --models jad --top 30
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time

import torch

from reidbench.cli.run_cmd import DEFAULT_ATTACKS, DEFAULT_DEFENSES
from reidbench.eval.harness import AttackRequest, GridSpec, run_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="baseline", help="comma-separated (default: baseline)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--top", type=int, default=15, help="profile rows (default: 15)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = GridSpec(models=args.models.split(","), attacks=[AttackRequest(n, dict(p)) for n, p in DEFAULT_ATTACKS],
                    dataset="synthetic-mini", datasets=["synthetic-mini"], defenses=list(DEFAULT_DEFENSES),
                    modes=["oblivious", "adaptive"], targets=["query"], device="cpu")  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        records = prof.runcall(run_grid, spec, out, fresh=True, progress=False)
        wall = time.perf_counter() - t0
    print(f"{len(records)} cells in {wall:.1f} s on {args.threads} thread(s)")
    for r in records:
        print(f"  {r.config.label():60s} {r.seconds:7.2f} s")
    stats = pstats.Stats(prof)
    print(f"\ntop {args.top} by time inside the function, of {stats.total_tt:.1f} s profiled:")  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
