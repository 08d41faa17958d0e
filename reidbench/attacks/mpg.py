"""MPG: the APD-like model's trained metric-perturbation generator, used as a feed-forward attack.

Paper: Hongchen Tan et al., "Adversarial perturbation and defense for generalizable person
re-identification", Neural Networks 186:107287, 2025, https://doi.org/10.1016/j.neunet.2025.107287.
Code: not public (only the abstract is). The generator (MPG-Net) is reidbench's reading of the
abstract: ``reidbench.models.mpg_net``; it is trained by ``reidbench train --model apd``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from reidbench.attack_types import Access, Budget, Family, Threat, register_family
from reidbench.attacks.base import InputAttack, register_attack
from reidbench.errors import CheckpointError
from reidbench.models import mpg_net
from reidbench.params import check_eps

#: A perturbation made by a network trained beforehand: no optimisation against the attacked
#: model (so no white-box sanity checks), bounded in L-inf (the harness verifies the budget).
GENERATOR = register_family(Family("generator", linf_family=True))

THREAT = Threat(
    Access.NONE,
    "(a feed-forward generator trained beforehand against a surrogate network; no gradients, scores or labels "
    "of the attacked model)",
    knows="the surrogate network and its training data, named on the generator's card (black-box on the target "
    "unless the target is that surrogate)",
    budget=Budget.LINF,
)

MISSING = ("no trained MPG-Net generator; train one with `reidbench train --model apd` "
           "or pass --attack-option generator=PATH")  # fmt: skip


@register_attack(
    "mpg",
    family=GENERATOR,
    threat=THREAT,
    description="APD-like MPG-Net: one forward pass of a generator trained to push samples off their identity",
)
class MPG(InputAttack):
    r"""MPG-Net as an attack: ``x' = clamp(x + eps * tanh(G(x)), 0, 1)``, one forward pass per image.

    ``G`` is the metric-perturbation generator of the APD-like model (``reidbench.models.apd``),
    trained against a frozen surrogate re-ID network to push each training image away from its
    identity's mean embedding and toward the nearest other identity's, with L1 and SSIM terms that
    keep its detail (``reidbench.train.recipes.apd``). Its output is bounded by construction, and
    the result is projected once more onto the L-inf ball of radius ``eps`` and clamped to [0,1],
    so it is read at the same budget as the iterative attacks.

    Distance measure: L-inf.

    Threat model: no access to the attacked model (no gradients, scores or labels); the attacker
    holds a generator trained beforehand on a surrogate network and that network's training data,
    both named on the generator's card (``generator_card``). Against its own surrogate it is a
    white-box-trained attack; against any other model, a black-box transfer. Budget: eps.

    Arguments:
        model (nn.Module): the attacked model (only checked for eval mode; never queried).
        eps (float): L-inf budget. (Default: 5/255, as ``mifgsm``)
        generator (str): a generator file (``NAME.mpg.safetensors`` from ``reidbench train --model
            apd``), read weights-only; ``default`` is the shipped
            ``reidbench/models/weights/mpg.safetensors``. (Default: ``default``)

    Shape:
        images (B, 3, H, W) in [0,1]; output as images. Any H, W (the generator pads to a multiple
        of 8); it was trained at the size on its card.

    Deviations from the paper/code:
        * The paper uses MPG-Net only to make training samples; using it as a test-time attack is
          reidbench's, to measure how well the hard samples it was trained to make transfer.
        * The generator is trained at one eps (on its card); at another eps its pattern
          ``tanh(G(x))`` is scaled to that eps, not re-trained, so an eps sweep measures one
          generator at several budgets.
        * Every choice inside MPG-Net (architecture, losses, weights) is reidbench's reading of
          the abstract; see the ``apd`` card.

    Examples::
        >>> attack = create_attack("mpg", model, eps=5, generator="checkpoints/apd-synthetic-mini.mpg.safetensors")
        >>> adv = attack(images, index=index)
    """

    def __init__(self, model: nn.Module, eps: float = 5 / 255, generator: str = "default") -> None:
        super().__init__(model, eps=eps, generator=generator)
        check_eps(eps, self.name)
        self.eps = eps
        self.net, self.generator_card = load(generator)
        self._copies: dict[tuple[str, torch.dtype], mpg_net.MPGNet] = {}

    def _net_for(self, like: torch.Tensor) -> mpg_net.MPGNet:
        """The generator on the images' device and dtype (a float64 model gets a float64 generator)."""
        key = (str(like.device), like.dtype)
        net = self._copies.get(key)
        if net is None:
            net = self.net if _same(self.net, like) else _clone(self.net).to(like.device, like.dtype).eval()
            self._copies[key] = net
        return net

    def perturb(self, images: torch.Tensor, labels: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor:
        del labels, index  # deterministic, image by image: no labels and no randomness
        eps = float(self.eps or 0.0)
        adv = (images + self._net_for(images)(images, eps)).clamp(0.0, 1.0)
        return (images + (adv - images).clamp(-eps, eps)).clamp(0.0, 1.0)


def generator_path(generator: Any) -> Path:
    """The file the ``generator`` parameter names ("default": the shipped generator)."""
    if not isinstance(generator, (str, Path)) or not str(generator).strip():
        raise CheckpointError(f"mpg: generator must be a path to a .safetensors file or 'default', not {generator!r}")
    if str(generator) == "default":
        path = mpg_net.SHIPPED_GENERATOR
        if not path.is_file():
            raise CheckpointError(MISSING)
        return path
    return Path(generator).expanduser()


def load(generator: Any) -> tuple[mpg_net.MPGNet, dict[str, Any]]:
    """The generator named by the ``generator`` parameter, and its card."""
    return mpg_net.load_generator(generator_path(generator))


def generator_sha256(generator: Any) -> str:
    """sha256 of the generator file (what a resumed run checks its mpg cells against)."""
    from reidbench.models.checkpoints import sha256_file

    return sha256_file(generator_path(generator))


def _same(net: nn.Module, like: torch.Tensor) -> bool:
    p = next(net.parameters())
    return p.device == like.device and p.dtype == like.dtype


def _clone(net: mpg_net.MPGNet) -> mpg_net.MPGNet:
    twin = mpg_net.MPGNet(net.width)
    twin.load_state_dict(net.state_dict())
    return twin
