"""Does bfloat16 autocast (`reidbench run --amp`) change the numbers? Run on a CUDA machine.

Runs the same grid twice on the GPU, fp32 and with --amp (autocast only wraps feature
extraction; attacks always craft in fp32), then prints per-cell |delta| of every metric, the
wall time of both and their ratio, and exits 1 if any metric moved by more than --tolerance
percentage points. reidbench keeps --amp off by default; turn it on only where this check passes
for your models.

    python benchmarks/check_amp.py --tolerance 0.1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from reidbench.eval.harness import AttackRequest, GridSpec, run_grid
from reidbench.eval.results import METRICS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None, help="registered models (default: baseline, etndnet, jad)")
    ap.add_argument("--attack", action="append", default=None, help="attacks (default: none, mifgsm, sma, lta, erasing)")
    ap.add_argument("--dataset", default="synthetic-mini")
    ap.add_argument("--tolerance", type=float, default=0.1, help="largest allowed |delta| in percentage points")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("check_amp: needs a CUDA device (autocast is only used on CUDA); nothing to check here")
        return 2
    models = args.model or ["baseline", "etndnet", "jad"]
    attacks = [AttackRequest(a) for a in (args.attack or ["none", "mifgsm", "sma", "lta", "erasing"])]
    out = {}
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for amp in (False, True):
            spec = GridSpec(models=models, attacks=attacks, dataset=args.dataset, device="cuda", amp=amp, samples=0)
            t0 = time.perf_counter()
            recs = run_grid(spec, Path(tmp) / f"amp{int(amp)}", progress=False)
            times[amp] = time.perf_counter() - t0
            out[amp] = {r.cell_id: r for r in recs}
    worst = 0.0
    print(f"{'cell':60s} " + " ".join(f"{m:>8s}" for m in METRICS))
    for cid, r in out[False].items():
        other = out[True][cid]
        deltas = [abs(getattr(r, m) - getattr(other, m)) for m in METRICS]
        worst = max(worst, *deltas)
        print(f"{r.config.label()[:60]:60s} " + " ".join(f"{d:8.3f}" for d in deltas))
    print(f"\nfp32 {times[False]:.1f} s, amp {times[True]:.1f} s, speed-up {times[False] / times[True]:.2f}x")
    print(f"largest |delta| {worst:.3f} pp (tolerance {args.tolerance} pp): {'OK' if worst <= args.tolerance else 'TOO LARGE'}")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
