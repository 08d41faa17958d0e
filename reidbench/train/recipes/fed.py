"""FED's recipe: NPO augmentation with occlusion masks, OEM supervision, the feature diffusion
module (FDM), two memory banks of identity centres and FED's losses.

Paper: Zhikang Wang, Feng Zhu, Shixiang Tang, Rui Zhao, Lihuo He and Jiangning Song, "Feature
Erasing and Diffusion Network for Occluded Person Re-Identification", CVPR 2022.
Code: https://github.com/ZacharyWang-007/FED-Occluded-ReID. The network (part pooling, OEM, neck)
and the card with every deviation are in ``reidbench.models.fed``.

Each iteration, on the batch ``x`` after the shared augmentation:

* **NPO** (Sec. 3.1): ``x'`` is ``x`` with a jittered crop of a training image pasted as a corner
  strip, by the ``npo`` attack's own code (tall crops become side strips W/4-W/2 wide, others
  top/bottom strips H/4-H/2 high). The occlusion mask of each of the 4 horizontal stripes comes
  from the pixel differences, as the paper says: 0 if more than 3/4 of the stripe changed, else 1.
  The clean branch's target is all ones.
* **OEM** (Eq. 1-2): the network's occlusion scores, supervised with MSE against the masks.
* **FDM** (Sec. 3.2): for each image, the K = 8 nearest centres of memory bank 1 (cosine) of
  *other* identities; multi-head cross-attention (8 heads) with the image's embedding as query
  and those centres as keys and values (Eq. 4-6); FFN1 with a residual and post-LayerNorm;
  the OEM-weighted residual ``s * FFN1(f_d) + f'``; FFN2 (Eq. 7); a BatchNorm with frozen bias.
  The FDM, its classifier and the memory banks belong to this recipe, not to the network: the
  network's ``forward`` cannot reach them, and the checkpoint does not hold them.
* **Memory banks** (Eq. 3): bank 1 holds identity centres of the embedding, bank 2 of the FDM
  output; both start from the centres of the embedding over the un-augmented training split and
  are updated after each step from the clean branch only, ``c_k = 0.2 c_k + 0.8 mean(f_i, y_i = k)``.
* **Losses** (Eq. 10): 1/2 of the sum of MSE (2 branches), ID cross-entropy (global pooled map,
  embedding, FDM output; 2 branches each) and the contrastive loss (Eq. 9, tau = 0.05; embedding
  on bank 1, FDM output on bank 2; 2 branches each).

The schedule, optimiser and batch are the shared trainer's, as for every model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from reidbench.attacks.base import AttackContext
from reidbench.attacks.npo import NPO
from reidbench.errors import ParameterError, ReidbenchError
from reidbench.models.fed import FEDNetwork, FEDTrainOutput
from reidbench.params import check_range
from reidbench.train.registry import register_recipe
from reidbench.train.trainer import Recipe, TrainContext, adam

#: A stripe is occluded (mask 0) when more than this fraction of it was pasted over (FED Sec. 3.1).
COVERED = 0.75


def npo_masks(clean: torch.Tensor, occluded: torch.Tensor, parts: int, covered: float = COVERED) -> torch.Tensor:
    """FED's occlusion masks from d = |x - x'|: per horizontal stripe, 0 if more than ``covered``
    of its pixels changed, else 1. (B, 3, H, W) twice -> (B, parts)."""
    changed = (occluded != clean).any(dim=1, keepdim=True).to(clean.dtype)
    fraction = F.adaptive_avg_pool2d(changed, (parts, 1)).flatten(1)
    return (fraction <= covered).to(clean.dtype)


def heads_for(dim: int, wanted: int) -> int:
    """The paper's number of heads if it divides the width, else the largest divisor below it."""
    return next(h for h in range(min(wanted, dim), 0, -1) if dim % h == 0)


class PostLNFFN(nn.Module):
    """FFN with residual and post-LayerNorm: LN(x + W2 GELU(W1 x)), hidden width 4d."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mult), nn.GELU(), nn.Linear(dim * mult, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.mlp(x))


class FeatureDiffusion(nn.Module):
    """FDM (FED Eq. 4-7): multi-head cross-attention from an embedding f' (query, bias-free
    projection W1) to K memory centres (keys and values, W2 and W3), with the code's output
    projection; then ``FFN2(s * FFN1(f_d) + f')`` per part (Eq. 7, s the OEM scores); then a
    BatchNorm with frozen bias (the code's ``bottleneck_local``)."""

    def __init__(self, dim: int, parts: int, heads: int) -> None:
        super().__init__()
        self.parts, self.heads = parts, heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.ffn1 = PostLNFFN(dim // parts)
        self.ffn2 = PostLNFFN(dim // parts)
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)

    def attend(self, f: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """Multi-head attention of ``f`` (B, D) over ``centres`` (B, K, D) -> f_d (B, D)."""
        b, k, d = centres.shape
        h = self.heads
        q = self.q(f).view(b, h, 1, d // h)
        keys = self.k(centres).view(b, k, h, d // h).transpose(1, 2)
        values = self.v(centres).view(b, k, h, d // h).transpose(1, 2)
        att = torch.softmax(q @ keys.transpose(-2, -1) / (d // h) ** 0.5, dim=-1)  # (B, h, 1, K)
        return self.proj((att @ values).reshape(b, d))

    def forward(self, f: torch.Tensor, scores: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        b = f.shape[0]
        fd = self.attend(f, centres).view(b, self.parts, -1)
        y = scores.unsqueeze(-1) * self.ffn1(fd) + f.view(b, self.parts, -1)
        return self.bn(self.ffn2(y).reshape(b, -1))


class IdentityMemory:
    """A bank of identity centres (FED Sec. 3.2, after Ge et al.'s hybrid memory): the contrastive
    loss against it (Eq. 9), the search of the nearest centres of other identities and the
    momentum update (Eq. 3). Centres are stored unnormalised and compared by cosine."""

    def __init__(self, centres: torch.Tensor, momentum: float, tau: float) -> None:
        self.centres = centres.detach().clone()
        self.momentum, self.tau = momentum, tau

    def loss(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = F.normalize(f, dim=1) @ F.normalize(self.centres, dim=1).t() / self.tau
        return F.cross_entropy(logits, y)

    @torch.no_grad()
    def nearest_others(self, f: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
        """(B, k, D): for each row, the k centres most cosine-similar to it, its own identity's excluded."""
        sim = F.normalize(f, dim=1) @ F.normalize(self.centres, dim=1).t()
        sim[torch.arange(len(y), device=y.device), y] = float("-inf")
        return self.centres[sim.topk(k, dim=1).indices]

    @torch.no_grad()
    def update(self, f: torch.Tensor, y: torch.Tensor) -> None:
        for c in torch.unique(y).tolist():
            batch_mean = f[y == c].mean(0)
            self.centres[c] = self.momentum * self.centres[c] + (1 - self.momentum) * batch_mean


@torch.no_grad()
def identity_centres(model: FEDNetwork, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     device: torch.device, batch: int = 256) -> torch.Tensor:
    """The mean embedding of each identity over ``images`` (uint8), in eval mode (the memory's start)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        feats = torch.cat([model(images[s : s + batch].to(device).float().div_(255.0)) for s in range(0, len(images), batch)])
    finally:
        for m, training in modes:
            m.training = training
    lab = labels.to(device)
    sums = torch.zeros(num_classes, feats.shape[1], device=device).index_add_(0, lab, feats)
    counts = torch.bincount(lab, minlength=num_classes).clamp(min=1).unsqueeze(1).to(feats.dtype)
    return sums / counts


@register_recipe
class FEDRecipe(Recipe):
    """NPO pairs, OEM supervision, FDM and the memory banks; see the module docstring."""

    name = "fed"

    def __init__(self, k: int = 8, heads: int = 8, tau: float = 0.05, momentum: float = 0.2, jitter: float = 0.5,
                 occluder_bank: int = 256, **hparams: Any) -> None:
        who = "fed recipe"
        k = check_range(who, "k", k, 1, 1000, integer=True, coerce=True)
        heads = check_range(who, "heads", heads, 1, 64, integer=True, coerce=True)
        tau = check_range(who, "tau", tau, 0.0, 10.0, lo_open=True, coerce=True)
        momentum = check_range(who, "momentum", momentum, 0.0, 1.0, coerce=True)
        jitter = check_range(who, "jitter", jitter, 0.0, 1.0, coerce=True)
        occluder_bank = check_range(who, "occluder_bank", occluder_bank, 1, 100_000, integer=True, coerce=True)
        super().__init__(k=k, heads=heads, tau=tau, momentum=momentum, jitter=jitter, occluder_bank=occluder_bank,
                         **hparams)  # fmt: skip
        self.k, self.heads, self.tau, self.momentum = k, heads, tau, momentum
        self.jitter, self.bank_size = jitter, occluder_bank
        self.aux: nn.ModuleDict | None = None
        self.memory: tuple[IdentityMemory, IdentityMemory] | None = None
        self.npo: NPO | None = None
        self._drawn = 0  # images occluded so far: the index of each NPO draw

    # -- set-up, once: the training-only modules, the memory banks and the occluder bank ----------

    def prepare(self, ctx: TrainContext) -> None:
        self._setup(ctx)

    def _setup(self, ctx: TrainContext) -> None:
        if self.aux is not None:
            return
        model = ctx.model
        if not isinstance(model, FEDNetwork):
            raise ReidbenchError(
                f"the fed recipe trains a FEDNetwork (reidbench.models.fed), not a {type(model).__name__}; "
                "build it with reidbench.zoo.create_model('fed') or train it with `reidbench train --model fed`"
            )
        if ctx.num_classes < 2:
            raise ParameterError("fed recipe: the feature diffusion needs at least 2 training identities")
        dim, parts = model.feat_dim, model.head.num_parts
        self.k_used = min(self.k, ctx.num_classes - 1)
        self.heads_used = heads_for(dim, self.heads)
        self.hparams.update(k_used=self.k_used, heads_used=self.heads_used)
        if (self.k_used, self.heads_used) != (self.k, self.heads):
            ctx.log(f"fed: K = {self.k_used} nearest centres, {self.heads_used} heads "
                    f"({ctx.num_classes} identities, embedding width {dim})")  # fmt: skip
        global_classifier = nn.Linear(dim, ctx.num_classes, bias=False)
        fdm_classifier = nn.Linear(dim, ctx.num_classes, bias=False)
        for layer in (global_classifier, fdm_classifier):
            nn.init.normal_(layer.weight, std=0.001)
        self.aux = nn.ModuleDict({
            "fdm": FeatureDiffusion(dim, parts, self.heads_used),
            "fdm_classifier": fdm_classifier,
            "global_classifier": global_classifier,
        }).to(ctx.device).train()  # fmt: skip
        centres = identity_centres(model, ctx.images, ctx.labels, ctx.num_classes, ctx.device)
        self.memory = (IdentityMemory(centres, self.momentum, self.tau), IdentityMemory(centres, self.momentum, self.tau))
        pick = torch.randperm(len(ctx.images), generator=ctx.gen)[: self.bank_size]
        self.npo = NPO(model, area=None, jitter=self.jitter)
        self.npo.set_context(AttackContext(occluder_bank=ctx.images[pick].to(ctx.device).float().div_(255.0),
                                           seed=ctx.cfg.seed))  # fmt: skip

    def optimizers(self, ctx: TrainContext) -> list[torch.optim.Optimizer]:
        self._setup(ctx)
        assert self.aux is not None
        return [adam([*ctx.model.parameters(), *self.aux.parameters()], ctx.cfg)]

    # -- one iteration --------------------------------------------------------------------------

    def occlude(self, x: torch.Tensor, parts: int) -> tuple[torch.Tensor, torch.Tensor]:
        """NPO on every image (FED's code: probability 1) and the masks of the ``parts`` stripes.

        Each draw is seeded by (training seed, the number of images occluded before it), so an
        image gets a fresh occluder every epoch and a run is reproducible."""
        assert self.npo is not None, "optimizers() or prepare() sets the recipe up first"
        index = torch.arange(self._drawn, self._drawn + len(x))
        self._drawn += len(x)
        occ = self.npo.perturb(x, None, index)
        return occ, npo_masks(x, occ, parts)

    def losses(self, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> tuple[dict[str, torch.Tensor], FEDTrainOutput, torch.Tensor]:
        """FED's three losses (Eq. 10) on the pair (x, NPO(x)), the network's output on the pair
        and the FDM's output (clean rows first)."""
        self._setup(ctx)
        assert self.aux is not None and self.memory is not None
        model = ctx.model
        assert isinstance(model, FEDNetwork)
        bank1, bank2 = self.memory
        occ, mask = self.occlude(x, model.head.num_parts)
        out = model.forward_train(torch.cat([x, occ]))
        yy = torch.cat([y, y])
        centres = bank1.nearest_others(out.feat, yy, self.k_used)  # each image's own query, both branches
        diffused = self.aux["fdm"](out.feat, out.scores, centres)
        # Eq. 10 halves the sums over the two branches: the mean over the concatenated pair
        mse = F.mse_loss(out.scores, torch.cat([torch.ones_like(mask), mask]))  # clean branch: all visible
        ident = (F.cross_entropy(self.aux["global_classifier"](out.pooled), yy)
                 + F.cross_entropy(out.logits, yy)
                 + F.cross_entropy(self.aux["fdm_classifier"](diffused), yy))  # fmt: skip
        contrastive = bank1.loss(out.feat, yy) + bank2.loss(diffused, yy)
        return {"mse": mse, "id": ident, "con": contrastive}, out, diffused

    def step(self, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> dict[str, float]:
        parts, out, diffused = self.losses(x, y, ctx)
        loss = parts["mse"] + parts["id"] + parts["con"]
        opt = ctx.optimizers[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        assert self.memory is not None
        b = len(x)  # the clean branch alone updates the memory (FED Sec. 3.3)
        self.memory[0].update(out.feat[:b].detach(), y)
        self.memory[1].update(diffused[:b].detach(), y)
        return {"loss": loss.item(), **{k: v.item() for k, v in parts.items()}}
