"""Throughput of the attack suite against naive per-image loops and against the previous release,
side by side in one run, with the achieved FLOP/s as a fraction of a matmul peak measured here.

The reference loops are written in the style of the papers' scripts: one image at a time
(batch size 1), and the AOS sliding window scored 32 positions at a time per image as in
``sw_occlude.py``. Each does the same work as reidbench's batched attack: the same loss (for
M-IFGSM and I-FGSM, one run over all of the image's same-identity guides jointly, as reidbench
does; the LTA authors' copy restarts M-IFGSM once per guide, which would be ``--guides`` times the
work), the same steps, the same number of guides. So the ratio is what batching buys. Both sides
are timed the same way: the best of ``--repeat`` runs, interleaved. The model is an untrained
``baseline`` (resnet_tiny at 128x64): throughput does not depend on the weights.

The previous release (0.1.0, see ``previous_release.py``) runs the same attack on the same
weights, images and context in a worker process with the same thread count, interleaved with
this release's runs; the script checks that both return identical images.

FLOP/s: forward hooks count the images the attack passes through the model with and without a
gradient; each is priced at the FLOPs torch's FlopCounterMode measures for one image (forward, or
forward plus the gradient with respect to the input), and the sum divided by the attack's time is
set against the best of five 2048x2048 float32 matmuls on the same threads.

    python benchmarks/bench_attacks.py                      # CPU, about two minutes on 2 busy cores
    python benchmarks/bench_attacks.py --device cuda --images 256
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from reidbench import ops
from reidbench.attacks import AttackContext, create_attack
from reidbench.attacks.aos_window import window_grid
from reidbench.attacks.base import mean_colour
from reidbench.zoo import create_model

try:
    from previous_release import Unavailable, release_tree, worker
except ImportError:  # run from elsewhere than benchmarks/
    release_tree = None  # type: ignore[assignment]

Loss = Callable[[torch.Tensor, int], torch.Tensor]  # (normalised feature (1, D), step) -> scalar


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# Naive references: batch size 1, the papers' loop structure
# ---------------------------------------------------------------------------------------------


def naive_ifgsm(model: torch.nn.Module, x: torch.Tensor, loss: Loss, eps: float, step: float, steps: int,
                momentum: float, start: torch.Tensor | None = None) -> torch.Tensor:
    """One image: MI-FGSM (momentum > 0) or I-FGSM/PGD, as in Bai et al.'s ``MI_FGSM``."""
    lower, upper = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    adv = x.clone() if start is None else start.clone()
    g = torch.zeros_like(x)
    for t in range(steps):
        adv.requires_grad_(True)
        cost = loss(F.normalize(model(adv), dim=1), t)
        grad = torch.autograd.grad(cost, adv)[0]
        if momentum:
            grad = grad / grad.abs().mean().clamp_min(1e-12)
            g = momentum * g + grad
            grad = g
        adv = torch.min(torch.max(adv.detach() + step * grad.sign(), lower), upper)
    return adv


def naive_metric(name: str, model: torch.nn.Module, images: torch.Tensor, guides: list[torch.Tensor],
                 far: torch.Tensor, args: argparse.Namespace) -> torch.Tensor:
    eps, step, steps = args.eps / 255, 1 / 255, args.steps
    gen = torch.Generator().manual_seed(0)
    out = []
    for i in range(images.shape[0]):
        x, g, p = images[i : i + 1], guides[i], far[i]
        if name == "mifgsm":  # one momentum run over all guides jointly: reidbench's loss
            adv = naive_ifgsm(model, x, _distance_to(g), eps, step, steps, 1.0)
        elif name == "ifgsm":
            adv = naive_ifgsm(model, x, _distance_to(g), eps, step, steps, 0.0)
        elif name == "fna":
            adv = naive_ifgsm(model, x, _push_pull(g, p), eps, step, steps, 0.0)
        elif name == "sma":
            with torch.no_grad():
                clean = F.normalize(model(x), dim=1)
            start = (x + (2 * torch.rand(x.shape, generator=gen).to(x) - 1) * eps).clamp(0, 1)
            adv = naive_ifgsm(model, x, _distance_to(clean), eps, step, steps, 0.0, start)
        elif name == "lta":
            adv = naive_ifgsm(model, x, _lta_loss(model, x, gen), eps, step, steps, 1.0)
        else:
            raise ValueError(name)
        out.append(adv.detach())
    return torch.cat(out)


def _distance_to(targets: torch.Tensor) -> Loss:
    def loss(f: torch.Tensor, t: int) -> torch.Tensor:
        return ((f - targets) ** 2).sum()

    return loss


def _push_pull(push: torch.Tensor, pull: torch.Tensor) -> Loss:
    def loss(f: torch.Tensor, t: int) -> torch.Tensor:
        return ((f - push) ** 2).sum() - ((f - pull) ** 2).sum()

    return loss


def _lta_loss(model: torch.nn.Module, x: torch.Tensor, gen: torch.Generator) -> Loss:
    def loss(f: torch.Tensor, t: int) -> torch.Tensor:
        with torch.no_grad():  # a fresh local-grayscale reference at every step
            ref = F.normalize(model(ops.local_grayscale(x, gen)), dim=1)
        return ((f - ref) ** 2).sum()

    return loss


@torch.no_grad()
def naive_window(model: torch.nn.Module, images: torch.Tensor, area: float, stride: int) -> torch.Tensor:
    """AOS's ``sw_occlude.py`` loop: per image, the masks in chunks of 32, then the argmax."""
    h, w = images.shape[-2:]
    dh, dw, tops, lefts = window_grid(h, w, area, stride)
    fill = mean_colour(model, images).view(1, 3, 1, 1)
    out = images.clone()
    for i in range(images.shape[0]):
        x = images[i : i + 1]
        clean = F.normalize(model(x), dim=1)
        positions = [(t, left) for t in tops for left in lefts]
        scores = []
        for k in range(0, len(positions), 32):
            batch = x.repeat(len(positions[k : k + 32]), 1, 1, 1)
            for j, (t, left) in enumerate(positions[k : k + 32]):
                batch[j, :, t : t + dh, left : left + dw] = fill[0]
            scores.append(1 - F.normalize(model(batch), dim=1) @ clean[0])
        t, left = positions[int(torch.cat(scores).argmax())]
        out[i, :, t : t + dh, left : left + dw] = fill[0]
    return out


# ---------------------------------------------------------------------------------------------
# FLOP/s and the previous release
# ---------------------------------------------------------------------------------------------


def matmul_peak(device: torch.device, n: int = 2048) -> float:
    """FLOP/s of the best of five n x n float32 matmuls: the machine's practical peak here."""
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    a @ b
    return 2 * n**3 / min(timed(lambda: a @ b, device) for _ in range(5))


def flops_per_image(model: torch.nn.Module, h: int, w: int, device: torch.device) -> tuple[float, float]:
    """(forward, forward + gradient w.r.t. the input) FLOPs of one image, by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:  # only the input's gradient, as in an attack
        p.requires_grad_(False)
    try:
        x = torch.rand(8, 3, h, w, device=device, requires_grad=True)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model(x)
        fwd = fc.get_total_flops() / 8
        with FlopCounterMode(display=False) as fc:
            model(x).sum().backward()
        both = fc.get_total_flops() / 8
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return fwd, both


class PassCounter:
    """Counts the images a model sees with and without gradient tracking (forward hook)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.grad = self.plain = 0
        self.handle = model.register_forward_hook(self.hook)

    def hook(self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0]
        if torch.is_grad_enabled() and x.requires_grad:
            self.grad += x.shape[0]
        else:
            self.plain += x.shape[0]


class Previous:
    """The previous release in a worker process, given the same weights, images and context."""

    def __init__(self, model: torch.nn.Module, images: torch.Tensor, pids: torch.Tensor, ctx: AttackContext,
                 threads: int, tmp: str) -> None:
        tree = release_tree()
        self.tmp = tmp
        context = {k: getattr(ctx, k) for k in ("guide_feats", "guide_pids", "proto_feats", "proto_pids", "seed")}
        inputs = os.path.join(tmp, "inputs.pt")
        torch.save({"state": model.state_dict(), "images": images.cpu(), "pids": pids.cpu(),
                    "context": {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in context.items()},
                    "threads": threads}, inputs)  # fmt: skip
        self.proc = worker(tree, "attacks", inputs, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the previous release's worker stopped; its error is above")
        return json.loads(line)

    def run(self, name: str, params: dict[str, Any]) -> tuple[float, torch.Tensor]:
        assert self.proc.stdin is not None
        out = os.path.join(self.tmp, f"{name}.pt")
        self.proc.stdin.write(json.dumps({"name": name, "params": params, "out": out}) + "\n")
        self.proc.stdin.flush()
        seconds = float(self._read()["seconds"])
        return seconds, torch.load(out, weights_only=True)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()


def main() -> None:
    from reidbench._alloc import keep_large_allocations_on_heap

    keep_large_allocations_on_heap()  # as reidbench's CLI and run_grid do (the previous release's worker too)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    parser.add_argument("--images", type=int, default=16, help="attacked images (default: 16)")
    parser.add_argument("--naive-images", type=int, default=None,
                        help="images for the naive loops (default: min(images, 4)); throughput is per image")
    parser.add_argument("--repeat", type=int, default=2,
                        help="timed runs of each side, interleaved; the fastest counts (default: 2)")
    parser.add_argument("--guides", type=int, default=4, help="same-identity guides per image (default: 4)")
    parser.add_argument("--steps", type=int, default=15, help="attack iterations (default: 15)")
    parser.add_argument("--eps", type=float, default=5, help="L-inf budget in /255 (default: 5)")
    parser.add_argument("--area", type=float, default=0.1, help="AOS window area (default: 0.1)")
    parser.add_argument("--attacks", default="mifgsm,ifgsm,fna,sma,lta,aos-window",
                        help="comma-separated (default: all compared ones)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-previous", action="store_true", help="skip the previous release's column")
    args = parser.parse_args()

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    torch.manual_seed(0)
    model = create_model("baseline", checkpoint=None, device=device)
    h, w = model.input_size
    n, k = args.images, args.guides
    n_naive = args.naive_images or min(n, 4)
    images = torch.rand(n, 3, h, w, device=device)
    pids = torch.arange(n, device=device)
    gallery = torch.rand(n * k, 3, h, w, device=device)
    g_pids = torch.arange(n, device=device).repeat_interleave(k)
    with torch.no_grad():
        g_feats = model(gallery)
        feats = F.normalize(model(images), dim=1)
    protos = g_feats.view(n, k, -1).mean(dim=1)
    ctx = AttackContext(guide_feats=g_feats, guide_pids=g_pids, proto_feats=protos, proto_pids=pids, seed=0)
    guides = [F.normalize(g_feats[g_pids == i], dim=1) for i in range(n)]
    pn = F.normalize(protos, dim=1)
    sim = (feats @ pn.T).fill_diagonal_(math.inf)
    far = pn[sim.argmin(dim=1)]

    # Warm-up: the first pass at a new batch shape builds oneDNN/cuDNN plans (seconds on CPU).
    for size in sorted({1, 2, n, 32, create_attack("aos-window", model).chunk}):
        x = torch.rand(size, 3, h, w, device=device, requires_grad=True)
        torch.autograd.grad(model(x).sum(), x)

    previous: Previous | None = None
    why_not = "--no-previous"
    if not args.no_previous and device.type == "cpu":
        try:
            if release_tree is None:
                raise Unavailable("run it from the repository: python benchmarks/bench_attacks.py")
            previous = Previous(model, images, pids, ctx, torch.get_num_threads(), tmp.name)
        except Unavailable as e:
            why_not = str(e)
    elif device.type != "cpu":
        why_not = "CPU only"
    peak = matmul_peak(device)
    f_fwd, f_grad = flops_per_image(model, h, w, device)

    print(f"device {device}, model baseline/resnet_tiny {h}x{w} (untrained), threads {torch.get_num_threads()}, "
          f"{n} images batched vs {n_naive} naive, {k} guides/image, {args.steps} steps, eps {args.eps:g}/255, "
          f"best of {args.repeat}, load average {os.getloadavg()[0]:.1f}")
    print(f"matmul peak {peak / 1e9:.1f} GFLOP/s; one image: forward {f_fwd / 1e6:.1f} MFLOP, forward + input "
          f"gradient {f_grad / 1e6:.1f} MFLOP; previous release: {'0.1.0 in a worker' if previous else 'skipped (' + why_not + ')'}")
    print(f"{'attack':12s} {'reidbench img/s':>16s} {'naive img/s':>12s} {'ratio':>7s} {'0.1.0 img/s':>12s} {'ratio':>7s} "
          f"{'GFLOP/s':>8s} {'of peak':>8s}  naive loop")
    for name in args.attacks.split(","):
        params: dict[str, Any] = {"area": args.area} if name == "aos-window" else {"eps": args.eps, "steps": args.steps}
        attack = create_attack(name, model, **params)
        if name == "aos-window":
            style = "per image, 32 positions per forward (AOS sw_occlude.py)"
        else:
            style = "batch size 1 (papers' scripts), same loss and guides"
        attack.set_context(ctx)
        counter = PassCounter(model)
        mine = attack(images, pids, torch.arange(n))
        counter.handle.remove()
        work = counter.grad * f_grad + counter.plain * f_fwd

        def ours(attack: Any = attack) -> object:
            return attack(images, pids, torch.arange(n))

        def naive(name: str = name) -> object:
            if name == "aos-window":
                return naive_window(model, images[:n_naive], args.area, 10)
            return naive_metric(name, model, images[:n_naive], guides, far, args)

        t_ours = t_naive = t_prev = math.inf
        same = True
        for _ in range(args.repeat):  # best of N, interleaved: the machine may be shared
            t_ours = min(t_ours, timed(ours, device))
            t_naive = min(t_naive, timed(naive, device))
            if previous is not None:
                seconds, theirs = previous.run(name, params)
                t_prev, same = min(t_prev, seconds), same and torch.equal(theirs, mine.cpu())
        ours, ref = n / t_ours, n_naive / t_naive
        prev = f"{n / t_prev:12.1f} {t_prev / t_ours:6.2f}x" if previous is not None else f"{'-':>12s} {'-':>7s}"
        flops = work / t_ours
        print(f"{name:12s} {ours:16.1f} {ref:12.1f} {ours / ref:6.1f}x {prev} {flops / 1e9:8.1f} {flops / peak:7.0%}  "
              f"{style}{'' if same else '  (0.1.0 returned DIFFERENT images)'}", flush=True)
    if previous is not None:
        previous.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()
