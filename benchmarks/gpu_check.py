"""reidbench at real scale on one GPU, in one command (at most ~5 minutes on an H100/H200).

Prints one table, row by row as each check finishes:

1. M-IFGSM (eps 5/255, 15 steps) over the queries of a Market-sized set with a randomly
   initialised ResNet-50 BNNeck baseline at 256x128 (fp32, as the harness crafts): images/s,
   achieved TFLOP/s and the fraction of the GPU's dense bf16 peak. FLOPs are counted with
   ``torch.utils.flop_counter.FlopCounterMode`` on one forward + backward (the gradient with
   respect to the input, as the attack takes it) and multiplied by steps x images.
   The queries are the ``synthetic-market`` preset's 3,368 when it is on disk (``--data DIR``, a
   folder written by ``reidbench data synth --preset market --out DIR``, or the preset under
   ``$REIDBENCH_DATA``), else 3,368 random 256x128 images; the table says which.
2. Feature extraction images/s, fp32 and bf16 autocast (``reidbench run --amp``).
3. ``reidbench.eval.metrics.evaluate_rank`` on random distances at Market-1501 size
   (3,368 x 15,913) and MSMT17 size (11,659 x 82,161), on the GPU: time and peak memory, or
   "does not fit".
4. Peak GPU memory of the whole check.
5. AMP vs fp32: the largest |difference| of any metric (rank-1/5/10, mAP, mINP, in percentage
   points) over a small grid (the shipped baseline on synthetic-mini: clean, M-IFGSM, erasing,
   fmap-erase), run through the harness twice.

``--cpu-tiny`` (automatic without CUDA) runs the same code on a handful of images with the
``resnet_tiny`` backbone and a small ``evaluate_rank`` in a few seconds, so CI keeps this script
working; its numbers say nothing about a GPU.

    python benchmarks/gpu_check.py            # on a CUDA machine
    python benchmarks/gpu_check.py --cpu-tiny
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) by device name; the first match wins.
PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H800", 989.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
]
MARKET = ("Market-1501", 3368, 15913, 751, 6)
MSMT17 = ("MSMT17", 11659, 82161, 3060, 15)
HEADER = "| check | value | note |"


@dataclass(frozen=True)
class Sizes:
    queries: int
    backbone: str
    input_size: tuple[int, int]
    feat_dim: int
    steps: int
    batch: int
    rank_sizes: tuple[tuple[str, int, int, int, int], ...]
    amp_grid: bool


FULL = Sizes(queries=MARKET[1], backbone="resnet50", input_size=(256, 128), feat_dim=2048, steps=15, batch=512,
             rank_sizes=(MARKET, MSMT17), amp_grid=True)  # fmt: skip
TINY = Sizes(queries=8, backbone="resnet_tiny", input_size=(128, 64), feat_dim=128, steps=2, batch=8,
             rank_sizes=(("tiny", 40, 200, 20, 3),), amp_grid=False)  # fmt: skip


def peak_bf16(name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            return tflops
    return None


class Table:
    """Rows printed as they come, so a slow or failing check still shows what finished."""

    def __init__(self) -> None:
        print(HEADER)
        print("|---|---|---|", flush=True)

    def row(self, check: str, value: str, note: str = "") -> None:
        print(f"| {check} | {value} | {note} |", flush=True)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn: Callable[[], Any], dev: torch.device) -> tuple[Any, float]:
    sync(dev)
    t0 = time.perf_counter()
    out = fn()
    sync(dev)
    return out, time.perf_counter() - t0


def reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def peak_gib(dev: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None


def fmt_mem(gib: float | None) -> str:
    return "n/a (CPU)" if gib is None else f"{gib:.2f} GiB"


def load_queries(sizes: Sizes, data: str | None, tiny: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """uint8 query images at the model's size, their pids and camids, and where they came from."""
    from reidbench.data.images import load_images

    n = sizes.queries
    if not tiny:
        ds = None
        if data:
            from reidbench.data.layout_io import read_market_layout

            ds, where = read_market_layout(Path(data), name="synthetic-market"), f"--data {data}"
        else:
            from reidbench.data import load_dataset
            from reidbench.data.registry import default_data_root
            from reidbench.data.synthetic import preset_folder

            folder = preset_folder(default_data_root(), "market")
            if (folder / "synthetic.json").is_file():
                ds, where = load_dataset("synthetic-market"), str(folder)
        if ds is not None and ds.query:
            q = ds.query[:n]
            images = load_images(q, sizes.input_size, desc="queries")
            pids = torch.tensor([s.pid for s in q])
            camids = torch.tensor([s.camid for s in q])
            return images, pids, camids, f"{len(q)} synthetic-market queries ({where})"
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, *sizes.input_size), generator=gen, dtype=torch.uint8)
    pids = torch.arange(n) // 4
    camids = torch.arange(n) % 6
    why = "cpu-tiny" if tiny else "no synthetic-market data on disk; `reidbench data synth --preset market --out DIR`, then --data DIR"
    return images, pids, camids, f"{n} random {sizes.input_size[0]}x{sizes.input_size[1]} images ({why})"


def forward_backward_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one forward + backward to the input (what one attack step costs), per image."""
    from torch.utils.flop_counter import FlopCounterMode

    x = x.detach().clone().requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward(inputs=[x])  # autograd.grad does not run under the counter's hooks
    return counter.get_total_flops() / x.shape[0]


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / x.shape[0]


def check_attack(table: Table, model: torch.nn.Module, images: torch.Tensor, pids: torch.Tensor, camids: torch.Tensor,
                 sizes: Sizes, dev: torch.device, peak: float | None) -> float | None:  # fmt: skip
    from reidbench.attacks import AttackContext, create_attack
    from reidbench.data.images import to_float
    from reidbench.eval.features import extract_features

    n, b = len(images), sizes.batch
    # the guides (what M-IFGSM pushes the queries away from): the clean features of the set itself
    guides = extract_features(model, images, batch_size=b)
    attack = create_attack("mifgsm", model, eps=5, steps=sizes.steps)
    attack.set_context(AttackContext(guide_feats=guides, guide_pids=pids.to(dev), guide_camids=camids.to(dev),
                                     camids=camids.to(dev), seed=0))  # fmt: skip
    flops_img = forward_backward_flops(model, to_float(images[: min(8, n)].to(dev)))

    def run() -> float:
        worst = 0.0
        for s in range(0, n, b):
            x = to_float(images[s : s + b].to(dev))
            adv = attack(x, pids[s : s + b].to(dev), index=torch.arange(s, s + len(x), device=dev))
            worst = max(worst, float((adv - x).abs().max()))
        return worst

    reset_peak(dev)
    worst, seconds = timed(run, dev)
    tflops = flops_img * sizes.steps * n / seconds / 1e12
    frac = f"{100 * tflops / peak:.1f}% of {peak:.0f} TFLOP/s bf16 peak" if peak else "bf16 peak: unknown device"
    table.row(f"M-IFGSM {sizes.steps} steps, {n} queries, {sizes.backbone} {sizes.input_size[0]}x{sizes.input_size[1]}",
              f"{n / seconds:,.1f} img/s", f"{seconds:.3g} s; batch {b}; fp32 attack; largest Linf(x_adv - x) {worst * 255:.2f}/255")  # fmt: skip
    table.row("M-IFGSM achieved compute", f"{tflops:.3g} TFLOP/s",
              f"{frac}; {flops_img / 1e9:.2f} GFLOP per image per step (FlopCounterMode, forward + input-gradient backward)")  # fmt: skip
    table.row("M-IFGSM peak memory", fmt_mem(peak_gib(dev)))
    return peak_gib(dev)


def check_extraction(table: Table, model: torch.nn.Module, images: torch.Tensor, sizes: Sizes, dev: torch.device,
                     peak: float | None) -> float | None:  # fmt: skip
    from reidbench.data.images import to_float
    from reidbench.eval.features import extract_features

    flops_img = forward_flops(model, to_float(images[: min(8, len(images))].to(dev)))
    extract_features(model, images[: sizes.batch], batch_size=sizes.batch)  # warm-up (cuDNN autotune, allocator)
    mem: float | None = None
    for amp in (False, True) if dev.type == "cuda" else (False,):
        reset_peak(dev)
        _, seconds = timed(partial(extract_features, model, images, batch_size=sizes.batch, amp=amp), dev)
        tflops = flops_img * len(images) / seconds / 1e12
        frac = f", {100 * tflops / peak:.1f}% of bf16 peak" if peak else ""
        table.row(f"feature extraction, {'bf16 autocast' if amp else 'fp32'}", f"{len(images) / seconds:,.1f} img/s",
                  f"{seconds:.3g} s incl. host-to-device copies; {tflops:.3g} TFLOP/s{frac}; peak {fmt_mem(peak_gib(dev))}")  # fmt: skip
        m = peak_gib(dev)
        mem = m if mem is None or (m is not None and m > mem) else mem
    if dev.type != "cuda":
        table.row("feature extraction, bf16 autocast", "skipped", "autocast is used on CUDA only")
    return mem


def check_evaluate_rank(table: Table, sizes: Sizes, dev: torch.device) -> float | None:
    from reidbench.eval.metrics import evaluate_rank

    mem: float | None = None
    for name, nq, ng, ids, cams in sizes.rank_sizes:
        gen = torch.Generator(device=dev).manual_seed(0)
        try:
            reset_peak(dev)
            dist = torch.rand(nq, ng, device=dev, generator=gen)
            q_pids = torch.randint(0, ids, (nq,), device=dev, generator=gen)
            g_pids = torch.randint(0, ids, (ng,), device=dev, generator=gen)
            q_cams = torch.randint(0, cams, (nq,), device=dev, generator=gen)
            g_cams = torch.randint(0, cams, (ng,), device=dev, generator=gen)
            res, seconds = timed(partial(evaluate_rank, dist, q_pids, g_pids, q_cams, g_cams), dev)
            m = peak_gib(dev)
            table.row(f"evaluate_rank {name} size ({nq:,} x {ng:,}) on {dev.type}", f"{seconds:.3g} s",
                      f"random distances; mAP {100 * res.mAP:.2f}%; peak {fmt_mem(m)} incl. the "
                      f"{nq * ng * 4 / 2**30:.2f} GiB distance matrix")  # fmt: skip
            mem = m if mem is None or (m is not None and m > mem) else mem
            del dist
        except torch.cuda.OutOfMemoryError:
            table.row(f"evaluate_rank {name} size ({nq:,} x {ng:,}) on {dev.type}", "does not fit",
                      f"out of GPU memory ({nq * ng * 4 / 2**30:.2f} GiB for the float32 distances alone)")  # fmt: skip
        finally:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return mem


def amp_grid(dev: torch.device, amps: tuple[bool, bool] = (False, True)) -> tuple[float, str, int, list[float]]:
    """The largest |metric difference| (percentage points) between a grid run with ``amps[0]``
    and with ``amps[1]``: (difference, where, cells, seconds of each run)."""
    from reidbench.eval.harness import AttackRequest, GridSpec, run_grid
    from reidbench.eval.results import METRICS

    attacks = [AttackRequest("none"), AttackRequest("mifgsm", {"eps": 5}), AttackRequest("erasing", {"area": 0.2}),
               AttackRequest("fmap-erase")]  # fmt: skip
    records = []
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, amp in enumerate(amps):
            spec = GridSpec(models=["baseline"], attacks=attacks, dataset="synthetic-mini", defenses=["none"],
                            modes=["oblivious"], device=str(dev), amp=amp, samples=0)  # fmt: skip
            recs, sec = timed(partial(run_grid, spec, Path(tmp) / f"run{i}", progress=False), dev)
            records.append({r.cell_id: r for r in recs})
            seconds.append(sec)
    worst, where = 0.0, "-"
    for cid, r in records[0].items():
        other = records[1][cid]
        for m in METRICS:
            d = abs(getattr(r, m) - getattr(other, m))
            if d >= worst:
                worst, where = d, f"{r.config.attack} {m}"
    return worst, where, len(records[0]), seconds


def check_amp_grid(table: Table, dev: torch.device, skip: bool) -> None:
    check = "AMP vs fp32, largest metric difference"
    if dev.type != "cuda" or skip:
        table.row(check, "skipped", "CUDA only (autocast is used on CUDA only)" if dev.type != "cuda" else "--no-amp-grid")
        return
    worst, where, cells, seconds = amp_grid(dev)
    table.row(check, f"{worst:.3f} pp", f"{cells} cells (shipped baseline, synthetic-mini, metrics in percent); "
              f"largest at {where}; fp32 {seconds[0]:.1f} s, amp {seconds[1]:.1f} s")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-tiny", action="store_true", help="a tiny CPU run (automatic without CUDA)")
    ap.add_argument("--data", default=None, help="a synthetic-market folder (reidbench data synth --preset market --out DIR)")
    ap.add_argument("--device", default="cuda", help="CUDA device (default cuda)")
    ap.add_argument("--batch", type=int, default=None, help="images per batch (default 512 on the GPU, as the harness)")
    ap.add_argument("--no-amp-grid", action="store_true", help="skip the AMP vs fp32 grid")
    args = ap.parse_args(argv)
    tiny = args.cpu_tiny or not torch.cuda.is_available()
    dev = torch.device("cpu") if tiny else torch.device(args.device)
    sizes = TINY if tiny else FULL
    if args.batch:
        sizes = dataclasses.replace(sizes, batch=args.batch)
    if tiny:
        os.environ.setdefault("REIDBENCH_CACHE", tempfile.mkdtemp(prefix="reidbench-gpu-check-"))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
    peak = peak_bf16(name) if dev.type == "cuda" else None

    from reidbench.progress import quiet
    from reidbench.zoo import create_model

    with quiet():
        return _run(args, tiny, dev, sizes, name, peak, create_model)


def _run(args: argparse.Namespace, tiny: bool, dev: torch.device, sizes: Sizes, name: str, peak: float | None,
         create_model: Callable[..., torch.nn.Module]) -> int:  # fmt: skip
    t_start = time.perf_counter()
    print(f"gpu_check: {'cpu-tiny (no CUDA or --cpu-tiny): numbers say nothing about a GPU' if tiny else 'full size'}")
    table = Table()
    table.row("device", name, f"torch {torch.__version__}, CUDA {torch.version.cuda or '-'}; "
              f"bf16 peak {f'{peak:.0f} TFLOP/s' if peak else 'unknown'}")  # fmt: skip
    images, pids, camids, source = load_queries(sizes, args.data, tiny)
    table.row("queries", f"{len(images):,}", source)
    torch.manual_seed(0)
    model = create_model("baseline", checkpoint=None, backbone=sizes.backbone, input_size=sizes.input_size,
                         num_classes=751, feat_dim=sizes.feat_dim, device=dev)  # fmt: skip
    peaks = [
        check_attack(table, model, images, pids, camids, sizes, dev, peak),
        check_extraction(table, model, images, sizes, dev, peak),
        check_evaluate_rank(table, sizes, dev),
    ]
    known = [p for p in peaks if p is not None]
    table.row("peak GPU memory", fmt_mem(max(known) if known else None), "max over the checks above")
    check_amp_grid(table, dev, args.no_amp_grid or not sizes.amp_grid)
    table.row("total", f"{time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
