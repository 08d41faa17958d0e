"""Throughput of the attack suite against naive per-image loops, side by side in one run.

The reference loops are written in the style of the papers' scripts: one image at a time
(batch size 1), and the AOS sliding window scored 32 positions at a time per image as in
``sw_occlude.py``. Each does the same work as reidbench's batched attack: the same loss (for
M-IFGSM and I-FGSM, one run over all of the image's same-identity guides jointly, as reidbench
does; the LTA authors' copy restarts M-IFGSM once per guide, which would be ``--guides`` times the
work), the same steps, the same number of guides. So the ratio is what batching buys. Both sides
are timed the same way: the best of ``--repeat`` runs, interleaved. The model is an untrained
``baseline`` (resnet_tiny at 128x64): throughput does not depend on the weights.

    python benchmarks/bench_attacks.py                      # CPU, about two minutes on 2 busy cores
    python benchmarks/bench_attacks.py --device cuda --images 256
"""

from __future__ import annotations

import argparse
import math
import os
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


def main() -> None:
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
    args = parser.parse_args()

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
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

    print(f"device {device}, model baseline/resnet_tiny {h}x{w} (untrained), threads {torch.get_num_threads()}, "
          f"{n} images batched vs {n_naive} naive, {k} guides/image, {args.steps} steps, eps {args.eps:g}/255, "
          f"best of {args.repeat}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'attack':12s} {'reidbench img/s':>16s} {'naive img/s':>12s} {'ratio':>7s}  naive loop")
    for name in args.attacks.split(","):
        if name == "aos-window":
            attack = create_attack(name, model, area=args.area)
            style = "per image, 32 positions per forward (AOS sw_occlude.py)"
        else:
            attack = create_attack(name, model, eps=args.eps, steps=args.steps)
            style = "batch size 1 (papers' scripts), same loss and guides"
        attack.set_context(ctx)

        def ours(attack: Any = attack) -> object:
            return attack(images, pids, torch.arange(n))

        def naive(name: str = name) -> object:
            if name == "aos-window":
                return naive_window(model, images[:n_naive], args.area, 10)
            return naive_metric(name, model, images[:n_naive], guides, far, args)

        t_ours = t_naive = math.inf
        for _ in range(args.repeat):  # best of N, interleaved: the machine may be shared
            t_ours = min(t_ours, timed(ours, device))
            t_naive = min(t_naive, timed(naive, device))
        ours, ref = n / t_ours, n_naive / t_naive
        print(f"{name:12s} {ours:16.1f} {ref:12.1f} {ours / ref:6.1f}x  {style}", flush=True)


if __name__ == "__main__":
    main()
