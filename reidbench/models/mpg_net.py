"""MPG-Net: the metric-perturbation generator of the APD-like model, and its weights files.

Paper: Hongchen Tan et al., "Adversarial perturbation and defense for generalizable person
re-identification", Neural Networks 186:107287, 2025, https://doi.org/10.1016/j.neunet.2025.107287.
Code: not public; only the abstract is. The abstract names a Metric-Perturbation Generation Network
that perturbs the metric relationship of samples in the latent space while keeping their visual
detail. Everything below the name is reidbench's choice, stated on the ``apd`` card
(``reidbench.models.apd``):

* an image-to-image encoder-decoder sized for 128x64 person crops: three stride-2 3x3 convolutions
  (16, 32, 64 channels) down to 1/8, two residual blocks there, and three bilinear x2 upsamplings
  each followed by a 3x3 convolution that also sees the encoder's map of that size (U-Net skips);
  instance norm and ReLU throughout (per image, so a batch never changes an image's perturbation);
  about 0.2M parameters and about 1.3 times ``resnet_tiny``'s multiply-adds per image;
* the output is ``eps * tanh(.)``: an L-inf bounded perturbation by construction. The network
  itself only yields the pattern ``tanh(.)`` in [-1, 1]; ``eps`` (in [0,1] units) is the caller's,
  so one generator serves several budgets (it is trained at one, see its card).

It is trained by the ``apd`` recipe (``reidbench.train.recipes.apd``) against a frozen re-ID
network and used as the feed-forward ``mpg`` attack (``reidbench.attacks.mpg``). Its weights are
a safetensors file with a JSON card beside it (same stem, ``.json``: surrogate, data, eps, losses);
:func:`load_generator` reads them weights-only and checks the file against the card's sha256.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F

from reidbench.errors import CheckpointError
from reidbench.models.checkpoints import load_into, load_weights_only, sha256_file
from reidbench.models.registry import WEIGHTS_DIR

#: The generator shipped with the package, used by the ``mpg`` attack unless told otherwise.
SHIPPED_GENERATOR = WEIGHTS_DIR / "mpg.safetensors"
#: What a safetensors file of this generator says it holds (its metadata).
KIND = "mpg-net"
#: The input is downsampled three times: sizes are padded to a multiple of this.
STRIDE = 8


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.InstanceNorm2d(cout, affine=True), nn.ReLU(inplace=True))  # fmt: skip


class _Residual(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.InstanceNorm2d(ch, affine=True), nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.InstanceNorm2d(ch, affine=True),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class MPGNet(nn.Module):
    """Images in [0,1], (B, 3, H, W) -> an L-inf bounded perturbation ``eps * tanh(.)``, same shape.

    ``width`` is the first stage's channels (then 2x and 4x). Any H, W work: the input is padded
    (replicate) to a multiple of 8 and the output cropped back.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = int(width)
        self.width = w
        self.enc1 = _block(3, w, stride=2)  # 1/2
        self.enc2 = _block(w, 2 * w, stride=2)  # 1/4
        self.enc3 = _block(2 * w, 4 * w, stride=2)  # 1/8
        self.res = nn.Sequential(_Residual(4 * w), _Residual(4 * w))
        self.dec3 = _block(4 * w + 2 * w, 2 * w)  # at 1/4, with enc2's map
        self.dec2 = _block(2 * w + w, w)  # at 1/2, with enc1's map
        self.out = nn.Conv2d(w, 3, 3, padding=1)  # at full size

    def pattern(self, x: torch.Tensor) -> torch.Tensor:
        """The perturbation's direction, ``tanh(.)`` in [-1, 1]."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % STRIDE, (-w) % STRIDE
        z = F.pad(x * 2 - 1, (0, pw, 0, ph), mode="replicate") if ph or pw else x * 2 - 1
        e1 = self.enc1(z)
        e2 = self.enc2(e1)
        d = self.res(self.enc3(e2))
        d = self.dec3(torch.cat([_up(d, e2), e2], dim=1))
        d = self.dec2(torch.cat([_up(d, e1), e1], dim=1))
        d = self.out(_up(d, z))
        return torch.tanh(d[..., :h, :w])

    def forward(self, x: torch.Tensor, eps: float) -> torch.Tensor:
        """The perturbation ``eps * tanh(.)``: ``||out||_inf <= eps`` (eps as the output's dtype holds
        it) whatever the weights."""
        return eps * self.pattern(x)


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------------------------
# Weights files: safetensors plus a JSON card, read weights-only
# ---------------------------------------------------------------------------------------------


def card_path(path: str | Path) -> Path:
    """The JSON card beside a generator file (``NAME.mpg.safetensors`` -> ``NAME.mpg.json``)."""
    return Path(path).with_suffix(".json")


def save_generator(net: MPGNet, path: str | Path, card: dict[str, Any]) -> dict[str, Any]:
    """Write ``path`` (.safetensors) and its JSON card; returns the card with the file's sha256."""
    p = Path(path)
    if p.suffix != ".safetensors":
        raise CheckpointError(f"an MPG-Net generator is written as .safetensors, not {p.name}")
    p.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tmp = p.with_name(p.name + ".tmp")
    save_file(state, str(tmp), metadata={"reidbench_generator": KIND, "width": str(net.width)})
    tmp.chmod(0o644)
    tmp.replace(p)
    card = {**card, "file": p.name, "sha256": sha256_file(p), "width": net.width}
    card_path(p).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card


def read_generator_card(path: str | Path) -> dict[str, Any]:
    """The card beside a generator file, or ``{}`` when there is none."""
    j = card_path(path)
    if not j.is_file():
        return {}
    try:
        card = json.loads(j.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"generator card {j} is malformed ({exc}); delete it or fix it") from None
    if not isinstance(card, dict):
        raise CheckpointError(f"generator card {j} is not a JSON object; delete it or fix it")
    return card


def load_generator(path: str | Path) -> tuple[MPGNet, dict[str, Any]]:
    """An MPG-Net from a safetensors file (never unpickled), in eval mode, with its card.

    The width is read from the weights; a file that is not a generator of this architecture is
    refused with one line listing the mismatched keys, and a file that does not match the sha256
    on its card is refused.
    """
    p = Path(path).expanduser()
    if p.suffix != ".safetensors":
        raise CheckpointError(f"MPG-Net generator {p}: generators are read weights-only from .safetensors files; "
                              "save it with reidbench.models.mpg_net.save_generator or `reidbench train --model apd`")  # fmt: skip
    if not p.is_file():
        raise CheckpointError(f"MPG-Net generator {p} not found; pass an existing .safetensors (--attack-option generator=PATH) "
                              "or leave generator out for the shipped one")
    card = read_generator_card(p)
    if card.get("sha256") and sha256_file(p) != card["sha256"]:
        raise CheckpointError(f"MPG-Net generator {p} does not match the sha256 on its card {card_path(p).name}; "
                              "the file is corrupt or was replaced")  # fmt: skip
    state = load_weights_only(p)
    first = state.get("enc1.0.weight")
    if first is None or first.dim() != 4:
        raise CheckpointError(f"{p} is not an MPG-Net generator (no enc1.0.weight); pass a file written by "
                              "`reidbench train --model apd` (NAME.mpg.safetensors)")  # fmt: skip
    net = MPGNet(width=int(first.shape[0]))
    load_into(net, state, source=f"MPG-Net generator {p}")
    return net.eval(), card
