"""Batch size, threads and parallel cells for the attacks on this CPU, measured side by side.

One attack step of the gradient attacks (forward, then the gradient with respect to the input,
on the embedded default's network, resnet_tiny at 128x64) is timed at several batch sizes with
1 thread and with every CPU as torch threads, and as one process per CPU, each with one thread,
running at once (cells in parallel processes). The reference is reidbench's default: batch 128
on CPU, and ``--threads auto`` (every CPU that is idle). Images per second, best of ``--repeat``.

Forward passes alone (the AOS window search, feature extraction) are timed at several batch
sizes against the AOS window's chunk of 256. channels_last is timed too, with how far it moves the embeddings and how
many gradient signs it flips: reidbench keeps the default memory format because it does.

    python benchmarks/bench_cpu_settings.py                 # about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from functools import partial

import torch
from torch.nn import functional as F

from reidbench.zoo import create_model


def step_rate(batch: int, threads: int, seconds: float, repeat: int, channels_last: bool = False,
              queue: mp.Queue | None = None, barrier: object | None = None, forward_only: bool = False) -> float:
    """Images per second of forward + input gradient (or the forward alone) at ``batch``, best
    of ``repeat`` rounds."""
    from reidbench._alloc import keep_large_allocations_on_heap

    keep_large_allocations_on_heap()  # also in the spawned processes
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model("baseline", checkpoint=None).eval()
    x = torch.rand(batch, 3, 128, 64)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def one() -> None:
        if forward_only:
            with torch.no_grad():
                model(x)
            return
        adv = x.clone().requires_grad_(True)
        torch.autograd.grad(F.normalize(model(adv), dim=1).sum(), adv)

    one()  # oneDNN builds its plans on the first pass of a shape
    if barrier is not None:
        barrier.wait()  # type: ignore[attr-defined]
    best = 0.0
    for _ in range(repeat):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            one()
            n += batch
        best = max(best, n / (time.perf_counter() - t0))
    if queue is not None:
        queue.put(best)
    return best


def parallel(procs: int, batch: int, seconds: float, repeat: int) -> float:
    """Total images per second of ``procs`` processes with one thread each, running at once."""
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    barrier = ctx.Barrier(procs)
    ps = [ctx.Process(target=step_rate, args=(batch, 1, seconds, repeat, False, queue, barrier)) for _ in range(procs)]
    for p in ps:
        p.start()
    rates = [queue.get() for _ in ps]
    for p in ps:
        p.join()
    return sum(rates)


def main() -> None:
    from reidbench._alloc import keep_large_allocations_on_heap

    keep_large_allocations_on_heap()  # as reidbench's CLI and run_grid do (the previous release's worker too)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="32,64,128,256,384", help="batch sizes (default: 32,64,128,256,384)")
    parser.add_argument("--seconds", type=float, default=1.5, help="timed seconds per round (default: 1.5)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over all settings, interleaved; the best "
                        "counts (default: 3)")  # fmt: skip
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    batches = [int(b) for b in args.batches.split(",")]
    settings: dict[str, Callable[[], float]] = {}
    for threads in sorted({1, cpus}):
        for b in batches:
            default = " (reidbench's default)" if (b, threads) == (128, cpus) else ""
            settings[f"batch {b}, {threads} thread(s){default}"] = partial(step_rate, b, threads, args.seconds, 1)
    if cpus > 1:
        settings[f"{cpus} processes x 1 thread, batch 128 (cells in parallel)"] = partial(parallel, cpus, 128, args.seconds, 1)
    settings[f"channels_last, batch 128, {cpus} thread(s)"] = partial(step_rate, 128, cpus, args.seconds, 1, True)
    for b in (16, 32, 64, 128, 256):  # the AOS window search and feature extraction: forward passes alone
        default = " (the AOS window's chunk)" if b == 256 else ""
        settings[f"forward only, batch {b}, {cpus} thread(s){default}"] = partial(
            step_rate, b, cpus, args.seconds, 1, forward_only=True)
    ref_name = f"batch 128, {cpus} thread(s) (reidbench's default)"
    print(f"{cpus} CPUs, load average {os.getloadavg()[0]:.1f}; forward + input gradient, resnet_tiny 128x64; "
          f"images/s, best of {args.repeat} interleaved rounds of {args.seconds:g} s")
    best = dict.fromkeys(settings, 0.0)
    for _ in range(args.repeat):  # every setting once per round: a shared machine's drift hits all alike
        for name, fn in settings.items():
            best[name] = max(best[name], fn())
    torch.manual_seed(0)
    model = create_model("baseline", checkpoint=None).eval()
    x = torch.rand(128, 3, 128, 64)
    grads, feats = [], []
    for fmt in (torch.contiguous_format, torch.channels_last):
        m, xi = model.to(memory_format=fmt), x.contiguous(memory_format=fmt).requires_grad_(True)
        f = F.normalize(m(xi), dim=1)
        grads.append(torch.autograd.grad(f.sum(), xi)[0])
        feats.append(f.detach())
    flips = int((grads[0].sign() != grads[1].sign()).sum())
    print(f"{'setting':58s} {'img/s':>8s} {'vs default':>10s}")
    fwd_ref = best[f"forward only, batch 256, {cpus} thread(s) (the AOS window's chunk)"]
    for name, rate in best.items():
        if name.startswith("forward only"):
            print(f"{name:58s} {rate:8.1f} {rate / fwd_ref:9.2f}x (vs batch 256)")
            continue
        note = ""
        if name.startswith("channels_last"):
            note = (f"  embeddings move {float((feats[0] - feats[1]).abs().max()):.1e}, {flips} of "
                    f"{grads[0].numel()} gradient signs flip")  # fmt: skip
        print(f"{name:58s} {rate:8.1f} {rate / best[ref_name]:9.2f}x{note}")


if __name__ == "__main__":
    main()
