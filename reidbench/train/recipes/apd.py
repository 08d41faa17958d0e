"""The APD-like recipe: a metric-perturbation generator, then a re-ID network trained against it.

Paper: Hongchen Tan et al., "Adversarial perturbation and defense for generalizable person
re-identification", Neural Networks 186:107287, 2025, https://doi.org/10.1016/j.neunet.2025.107287.
Code: not public, and only the abstract is: every loss, weight and layer below is reidbench's
reading of it, listed on the card (``reidbench.models.apd``). The generator's architecture is
``reidbench.models.mpg_net``.

Three stages, all run by ``reidbench train --model apd``, each on the shared trainer's schedule
(the same :class:`~reidbench.train.trainer.TrainConfig` as every other model):

1. **surrogate**: the baseline recipe (CE + triplet), or a trained network given with the recipe
   option ``stage1_checkpoint=PATH``;
2. **MPG-Net**: the generator ``G`` is trained against the stage-1 network ``F``, frozen in eval
   mode. With ``c_k`` the L2-normalised mean clean embedding of training identity k (computed once,
   without augmentation), ``y`` the image's identity and ``t`` the identity whose centre is nearest
   to the image's clean embedding among the others (fixed per image and step), ``x' = clamp(x +
   eps * tanh(G(x)), 0, 1)`` and ``f = F(x') / ||F(x')||``, it minimises

   ``L_G = cos(f, c_y) - cos(f, c_t) + l1_weight * mean|x' - x| / eps + ssim_weight * (1 - SSIM(x', x))``

   the metric term pushing the sample away from its identity and toward its nearest other one,
   the L1 and SSIM terms (7x7 Gaussian window, sigma 1.5, per channel) keeping its visual detail.
   A trained generator can be reused instead with ``generator_checkpoint=PATH``;
3. **SP-Net with SSD**: the network (the card's ``ReIDModel``, from the same initialisation as
   stage 1) is trained on every batch ``x`` and its hard twin ``x_h = clamp(x + eps *
   tanh(G(x)), 0, 1)`` (G frozen), plus the semantic self-perturbation and defense (SSD): a third
   pass of ``x_h`` in which the network drops channels of its own mid-stage map (``ssd_layer``,
   each channel of each image with probability ``ssd_magnitude``, survivors scaled by
   1/(1-magnitude)), and a consistency loss pulls that pass's embedding onto the unperturbed one:

   ``L = (1 - hard_weight) * L_reid(x) + hard_weight * L_reid(x_h) + ssd_weight * (1 - cos(f_ssd(x_h), sg[f(x_h)]))``

   with ``L_reid`` the baseline's CE + triplet and ``sg`` stop-gradient.

After training, :meth:`APDRecipe.save_artifacts` writes the generator beside the checkpoint
(``NAME.mpg.safetensors``) with a JSON card naming its surrogate, data, eps and losses; that file
is what the ``mpg`` attack loads.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from reidbench import __version__
from reidbench.errors import ParameterError
from reidbench.models.base import ReIDModel
from reidbench.models.card import ModelCard
from reidbench.models.checkpoints import load_into, read_card_json, read_state_dict, sha256_file
from reidbench.models.mpg_net import MPGNet, load_generator, save_generator
from reidbench.params import check_range
from reidbench.train.recipes.baseline import BaselineRecipe
from reidbench.train.registry import register_recipe
from reidbench.train.trainer import Recipe, TrainContext, adam, reid_loss, train

log = logging.getLogger(__name__)

PAPER = ('Tan et al., "Adversarial perturbation and defense for generalizable person re-identification", '
         "Neural Networks 186:107287, 2025, https://doi.org/10.1016/j.neunet.2025.107287")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# MPG-Net's losses
# ---------------------------------------------------------------------------------------------


def ssim(a: torch.Tensor, b: torch.Tensor, size: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Per-image mean SSIM of images in [0,1] (Wang et al. 2004; Gaussian window, per channel,
    C1 = 0.01^2, C2 = 0.03^2, no padding). The window shrinks to fit images smaller than ``size``."""
    size = max(1, min(size, a.shape[-2], a.shape[-1]))
    c = a.shape[1]
    r = torch.arange(size, device=a.device, dtype=a.dtype) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :]).expand(c, 1, size, size).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, win, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    m = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return m.mean(dim=(1, 2, 3))


@torch.no_grad()
def identity_centres(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                     batch: int = 256) -> torch.Tensor:
    """(C, D): the L2-normalised mean of each identity's L2-normalised clean embeddings.

    ``images`` are uint8 (N, 3, H, W), ``labels`` 0..C-1; ``model`` must be in eval mode."""
    feats = torch.cat([F.normalize(model(images[s : s + batch].to(device).float().div_(255.0)), dim=1)
                       for s in range(0, len(images), batch)])  # fmt: skip
    lab = labels.to(feats.device)
    sums = torch.zeros(int(lab.max()) + 1, feats.shape[1], device=feats.device).index_add_(0, lab, feats)
    return F.normalize(sums, dim=1)


def generator_losses(generator: MPGNet, surrogate: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     centres: torch.Tensor, eps: float, l1_weight: float, ssim_weight: float) -> dict[str, torch.Tensor]:
    """MPG-Net's objective on a batch (``eps`` in [0,1] units); ``"loss"`` is the one to minimise.

    ``metric`` is cos(f(x'), own centre) - cos(f(x'), nearest other centre), the nearest other
    centre taken from the clean embedding; ``l1`` is mean|x' - x| / eps (the share of the budget
    used); ``ssim`` is 1 - SSIM(x', x)."""
    with torch.no_grad():
        sims = F.normalize(surrogate(x), dim=1) @ centres.T
        sims[torch.arange(len(y), device=sims.device), y] = -float("inf")
        target = sims.argmax(dim=1)
    adv = (x + generator(x, eps)).clamp(0.0, 1.0)
    f = F.normalize(surrogate(adv), dim=1)
    metric = ((f * centres[y]).sum(dim=1) - (f * centres[target]).sum(dim=1)).mean()
    l1 = (adv - x).abs().mean() / eps
    ssim_term = 1.0 - ssim(adv, x).mean()
    total = metric + l1_weight * l1 + ssim_weight * ssim_term
    return {"loss": total, "metric": metric, "l1": l1, "ssim": ssim_term}


class MPGStage(Recipe):
    """Stage 2 on the shared trainer: ``ctx.model`` is the frozen surrogate; only ``generator`` learns."""

    name = "apd-mpg"

    def __init__(self, generator: MPGNet, eps: float, l1_weight: float, ssim_weight: float) -> None:
        super().__init__(eps=eps, l1_weight=l1_weight, ssim_weight=ssim_weight)
        self.generator, self.eps, self.l1_weight, self.ssim_weight = generator, eps, l1_weight, ssim_weight
        self.centres: torch.Tensor | None = None

    def prepare(self, ctx: TrainContext) -> None:
        ctx.model.eval().requires_grad_(False)
        self.centres = identity_centres(ctx.model, ctx.images, ctx.labels, ctx.device)
        self.generator.to(ctx.device).train()

    def optimizers(self, ctx: TrainContext) -> list[torch.optim.Optimizer]:
        return [adam(self.generator.parameters(), ctx.cfg)]

    def step(self, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> dict[str, float]:
        assert self.centres is not None, "prepare() computes the identity centres first"
        ctx.model.eval()  # the trainer puts its model in train mode; the surrogate stays frozen
        losses = generator_losses(self.generator, ctx.model, x, y, self.centres, self.eps / 255,
                                  self.l1_weight, self.ssim_weight)  # fmt: skip
        opt = ctx.optimizers[0]
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()
        return {k: float(v.detach()) for k, v in losses.items()}


# ---------------------------------------------------------------------------------------------
# SSD: semantic self-perturbation and defense
# ---------------------------------------------------------------------------------------------


@contextmanager
def self_perturbation(model: nn.Module, layer: str, magnitude: float, gen: torch.Generator) -> Iterator[None]:
    """Inside the block, ``model``'s submodule ``layer`` drops each channel of each image's output
    with probability ``magnitude`` (drawn from ``gen`` on CPU) and scales the rest by
    1/(1 - magnitude). Magnitude 0 changes nothing."""
    module = submodule(model, layer)

    def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> torch.Tensor:
        if magnitude <= 0:
            return out
        keep = (torch.rand(out.shape[:2], generator=gen) >= magnitude).to(out.device, out.dtype)
        return out * keep.view(*out.shape[:2], 1, 1) / (1.0 - magnitude)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def submodule(model: nn.Module, layer: str) -> nn.Module:
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_children()]
        raise ParameterError(f"APD: ssd_layer {layer!r} is not a submodule of the model; use a dotted name such as "
                             f"backbone.layer2 (top level: {', '.join(names)})") from None  # fmt: skip


def ssd_consistency(perturbed: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean 1 - cos between the self-perturbed pass's embeddings and the unperturbed ones (the
    reference is not pulled: stop-gradient)."""
    return (1.0 - F.cosine_similarity(perturbed, reference.detach(), dim=1)).mean()


def ssd_loss(model: ReIDModel, x: torch.Tensor, layer: str, magnitude: float, gen: torch.Generator) -> torch.Tensor:
    """SSD's consistency loss of ``x`` alone: an unperturbed and a self-perturbed pass."""
    ref = model.forward_train(x).feat
    with self_perturbation(model, layer, magnitude, gen):
        pert = model.forward_train(x).feat
    return ssd_consistency(pert, ref)


# ---------------------------------------------------------------------------------------------
# The recipe
# ---------------------------------------------------------------------------------------------


def state_digest(model: nn.Module) -> str:
    """sha256 over a network's tensors (names and bytes, in name order): which weights they are."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


OPTIONS = ("eps", "l1_weight", "ssim_weight", "hard_weight", "ssd_magnitude", "ssd_weight", "ssd_layer",
           "generator_width", "stage1_checkpoint", "generator_checkpoint")


@register_recipe
class APDRecipe(Recipe):
    """Surrogate, MPG-Net against it, then SP-Net on clean and MPG samples with SSD.

    Options (``--recipe-option KEY=VALUE``): ``eps`` (/255, the generator's budget in training and
    for the hard samples), ``l1_weight``, ``ssim_weight`` (MPG-Net's detail terms),
    ``hard_weight`` (the hard samples' share of the re-ID loss), ``ssd_magnitude``,
    ``ssd_weight``, ``ssd_layer``, ``generator_width``, ``stage1_checkpoint`` (a trained network
    to attack instead of training stage 1), ``generator_checkpoint`` (a trained MPG-Net instead
    of stage 2).
    """

    name = "apd"

    def __init__(self, eps: float = 5.0, l1_weight: float = 0.1, ssim_weight: float = 0.1, hard_weight: float = 0.5,
                 ssd_magnitude: float = 0.2, ssd_weight: float = 1.0, ssd_layer: str = "backbone.layer2",
                 generator_width: int = 16, stage1_checkpoint: str | None = None,
                 generator_checkpoint: str | None = None, **hparams: Any) -> None:
        who = "APD"
        if hparams:
            raise ParameterError(f"APD has no recipe option {', '.join(map(repr, sorted(hparams)))}; its options are: "
                                 f"{', '.join(OPTIONS)}")  # fmt: skip
        eps = check_range(who, "eps", eps, 0.0, 64.0, lo_open=True, unit="/255", coerce=True)
        l1_weight = check_range(who, "l1_weight", l1_weight, 0.0, 100.0, coerce=True)
        ssim_weight = check_range(who, "ssim_weight", ssim_weight, 0.0, 100.0, coerce=True)
        hard_weight = check_range(who, "hard_weight", hard_weight, 0.0, 1.0, coerce=True)
        ssd_magnitude = check_range(who, "ssd_magnitude", ssd_magnitude, 0.0, 0.9, coerce=True)
        ssd_weight = check_range(who, "ssd_weight", ssd_weight, 0.0, 100.0, coerce=True)
        generator_width = check_range(who, "generator_width", generator_width, 4, 256, integer=True, coerce=True)
        super().__init__(eps=eps, l1_weight=l1_weight, ssim_weight=ssim_weight, hard_weight=hard_weight,
                         ssd_magnitude=ssd_magnitude, ssd_weight=ssd_weight, ssd_layer=str(ssd_layer),
                         generator_width=generator_width, stage1_checkpoint=stage1_checkpoint,
                         generator_checkpoint=generator_checkpoint)  # fmt: skip
        self.eps, self.l1_weight, self.ssim_weight, self.hard_weight = eps, l1_weight, ssim_weight, hard_weight
        self.ssd_magnitude, self.ssd_weight, self.ssd_layer = ssd_magnitude, ssd_weight, str(ssd_layer)
        self.generator_width = int(generator_width)
        self.stage1_checkpoint, self.generator_checkpoint = stage1_checkpoint, generator_checkpoint
        self.generator: MPGNet | None = None
        self.surrogate: dict[str, Any] = {}
        self.stage2: dict[str, Any] = {}
        self.cfg: Any = None

    # -- stages 1 and 2 ------------------------------------------------------------------------

    def prepare(self, ctx: TrainContext) -> None:
        submodule(ctx.model, self.ssd_layer)  # a bad layer name is one line now, not after two stages
        self.cfg = ctx.cfg
        if self.generator_checkpoint:
            self.generator, gcard = load_generator(self.generator_checkpoint)
            self.surrogate = {**gcard.get("surrogate", {}), "generator_reused_from": str(self.generator_checkpoint)}
            self.stage2 = {"reused": str(self.generator_checkpoint),
                           "final_losses": gcard.get("stage2", {}).get("final_losses", {})}  # fmt: skip
            ctx.log(f"APD: reusing the MPG-Net generator {self.generator_checkpoint} (stages 1 and 2 skipped)")
        else:
            stage1 = self.train_stage1(ctx)
            ctx.log("APD stage 2: training MPG-Net against the frozen stage-1 network")
            torch.manual_seed(ctx.cfg.seed)
            self.generator = MPGNet(self.generator_width)
            stage = MPGStage(self.generator, self.eps, self.l1_weight, self.ssim_weight)
            record = train(stage1, stage, ctx.images, ctx.labels, ctx.camids, ctx.cfg, device=ctx.device)
            self.stage2 = {"seconds": record["seconds"], "final_losses": record["history"][-1] if record["history"] else {}}
            del stage1
        self.generator.to(ctx.device).eval().requires_grad_(False)

    def train_stage1(self, ctx: TrainContext) -> ReIDModel:
        stage1 = copy.deepcopy(ctx.model)
        if self.stage1_checkpoint:
            load_into(stage1, read_state_dict(self.stage1_checkpoint), source=self.stage1_checkpoint)
            trained, _ = read_card_json(self.stage1_checkpoint)
            self.surrogate = {"model": trained.name if trained else "unknown", "checkpoint": str(self.stage1_checkpoint),
                              "sha256": sha256_file(self.stage1_checkpoint)}  # fmt: skip
            ctx.log(f"APD stage 1: attacking {self.stage1_checkpoint}")
        else:
            ctx.log("APD stage 1: training the baseline to attack")
            train(stage1, BaselineRecipe(), ctx.images, ctx.labels, ctx.camids, ctx.cfg, device=ctx.device)
            self.surrogate = {"model": "baseline recipe, trained as APD stage 1 (same data, seed and schedule)"}
        self.surrogate["weights_sha256"] = state_digest(stage1)
        return stage1.eval()

    # -- stage 3 -------------------------------------------------------------------------------

    def hard_samples(self, x: torch.Tensor) -> torch.Tensor:
        """MPG-Net's hard twin of a batch: ``clamp(x + eps * tanh(G(x)), 0, 1)``, G frozen."""
        assert self.generator is not None, "prepare() trains or loads the generator first"
        with torch.no_grad():
            return (x + self.generator(x, self.eps / 255)).clamp(0.0, 1.0)

    def step(self, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> dict[str, float]:
        m = ctx.model
        hard = self.hard_samples(x)
        out_clean = m.forward_train(x)
        out_hard = m.forward_train(hard)
        with self_perturbation(m, self.ssd_layer, self.ssd_magnitude, ctx.gen):
            out_ssd = m.forward_train(hard)
        loss_clean = reid_loss(out_clean, y, ctx.cfg)
        loss_hard = reid_loss(out_hard, y, ctx.cfg)
        loss_ssd = ssd_consistency(out_ssd.feat, out_hard.feat)
        loss = (1 - self.hard_weight) * loss_clean + self.hard_weight * loss_hard + self.ssd_weight * loss_ssd
        opt = ctx.optimizers[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "hard": loss_hard.item(), "ssd": loss_ssd.item()}

    # -- outputs -------------------------------------------------------------------------------

    def generator_path(self, checkpoint: str | Path) -> Path:
        """Where the generator goes: ``NAME.mpg.safetensors`` beside ``NAME.safetensors``."""
        p = Path(checkpoint)
        return p.with_name(p.stem + ".mpg.safetensors")

    def save_artifacts(self, checkpoint: str | Path, card: ModelCard) -> list[Path]:
        """Write the trained generator beside ``checkpoint`` with its JSON card; returns the paths."""
        assert self.generator is not None, "train the recipe first"
        _, training = read_card_json(checkpoint) if Path(checkpoint).is_file() else (None, {})
        out = self.generator_path(checkpoint)
        gcard = {
            "name": "mpg",
            "method": "MPG-Net (APD-like: reidbench's reading of the paper's abstract)",
            "paper": PAPER,
            "code": "not public",
            "architecture": "reidbench.models.mpg_net.MPGNet: conv encoder-decoder (1/8, U-Net skips, instance norm), "
                            "output eps * tanh(.)",
            "eps": self.eps,
            "eps_units": "/255",
            "input_size": list(card.input_size),
            "surrogate": {"backbone": card.backbone, **self.surrogate},  # stage 1 is a copy of this network
            "train_dataset": card.train_dataset,
            "dataset_fingerprint": training.get("dataset_fingerprint"),
            "losses": {
                "metric": "cos(f(x'), own identity centre) - cos(f(x'), nearest other identity centre), f the "
                          "frozen surrogate's L2-normalised embedding, centres from clean training images",
                "l1": "mean|x' - x| / eps",
                "ssim": "1 - SSIM(x', x), 7x7 Gaussian window, sigma 1.5, per channel",
                "l1_weight": self.l1_weight,
                "ssim_weight": self.ssim_weight,
            },
            "schedule": dataclasses.asdict(self.cfg) if self.cfg is not None else {},
            "stage2": self.stage2,
            "apd_checkpoint": Path(checkpoint).name,
            "apd_sha256": card.sha256,
            "reidbench": __version__,
            "torch": torch.__version__,
        }  # fmt: skip
        save_generator(self.generator.cpu(), out, gcard)
        log.info("wrote the MPG-Net generator %s", out)
        return [out, out.with_suffix(".json")]
