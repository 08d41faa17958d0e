"""What every registered attack is, and what the harness gives it.

Three kinds of attack share one registry (``ATTACKS``):

* **input attacks** (:class:`InputAttack`): take images in [0,1] and return perturbed images in
  [0,1]. Metric attacks (M-IFGSM, SMA, FNA, LTA, I-FGSM, FGSM) and the classification wrapper are
  subclasses of ``torchattacks.Attack`` through :class:`MetricAttack`; occlusions and random noise
  are plain input attacks (no gradient).
* **feature-map attacks** (:class:`FeatureMapAttack`): perturb the backbone's map between backbone
  and head during test-time extraction (ETNDNet Fig. 6a).

The harness hands an attack only what its threat model allows, through :class:`AttackContext`:
the identities of the attacked images only to attacks with ``uses_labels = True``, the other
set's features only to attacks that use guides, the gallery prototypes only to gallery-aware
attacks, the occluder bank only to attacks that paste occluders (and the identities of its images
only to those that are also given identities). Everything an attacker is given is listed in its
``threat`` text, which goes into every result row.

Every call takes ``index``, the global indices of the batch's images in the attacked set. All
randomness (random starts, LGT rectangles, erasing positions, occluder pastes, feature-map
regions) is drawn from one generator per image, seeded by ``(context.seed, attack name, index)``
(:func:`image_generators`), so no random draw depends on the batch size or order: the GPU runs
bigger batches than the CPU and draws the same numbers (convolution arithmetic can still move at
the 1e-6 level with the batch's shape: oneDNN and cuDNN pick kernels by shape).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from torchattacks.attack import Attack as TorchAttack

from reidbench.attack_types import AttackEntry, Family, Threat, signature_defaults
from reidbench.attacks.telemetry import GradStats
from reidbench.errors import ModelModeError, ParameterError
from reidbench.ops import eot_gradient
from reidbench.params import check_eps, check_range
from reidbench.registry import Registry
from reidbench.seeding import generators, stream_seed


@dataclass(eq=False)
class AttackContext:
    """Side information for one attacked set, filled by the harness per the attack's flags.

    ``guide_*`` (``uses_guides``): clean embeddings, pids and camids of the *other* set (for query
    attacks: the gallery; for gallery attacks: the queries). ``proto_*`` (``uses_prototypes``):
    the mean clean gallery embedding of each gallery identity. ``camids`` (``uses_labels``): the
    camera ids of the attacked set, by global index (only needed to drop same-camera guides).
    ``occluder_bank`` (``uses_occluder_bank``): clean images (N, 3, H, W) in [0,1] from which NPO
    cuts its occluders; the harness passes a seeded sample of the attacked set. ``occluder_pids``
    (``uses_occluder_bank`` and ``uses_labels``): the identities of the bank's images (N,), so that
    an occlusion can refuse donors of the target's own identity (NTP). ``seed`` seeds all of the
    attack's randomness.
    """

    guide_feats: torch.Tensor | None = None
    guide_pids: torch.Tensor | None = None
    guide_camids: torch.Tensor | None = None
    proto_feats: torch.Tensor | None = None
    proto_pids: torch.Tensor | None = None
    camids: torch.Tensor | None = None
    occluder_bank: torch.Tensor | None = None
    occluder_pids: torch.Tensor | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Checks shared by every kind of attack
# ---------------------------------------------------------------------------------------------


def check_images(x: torch.Tensor, who: str) -> None:
    """Inputs must be float images in [0,1]; torchattacks 3.5 no longer checks this itself."""
    if not torch.is_floating_point(x):
        raise ParameterError(f"{who}: images must be float tensors in [0,1], got {x.dtype}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ParameterError(f"{who}: images must be shaped (B, 3, H, W), got {tuple(x.shape)}")
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ParameterError(
            f"{who}: images must lie in [0,1] (got min {float(x.min()):.3f}, max {float(x.max()):.3f}); "
            "attacks work in pixel space and the model normalises internally"
        )


def check_eval(model: nn.Module, who: str) -> None:
    bad = [n for n, m in model.named_modules() if m.training]
    if bad:
        raise ModelModeError(
            f"{who}: refusing to attack a model in train mode ({len(bad)} module(s), first "
            f"{bad[0] or type(model).__name__!r}); BatchNorm/dropout would change the numbers. Call model.eval()."
        )


_IMAGENET_MEAN = (0.485, 0.456, 0.406)


def mean_colour(model: nn.Module | None, like: torch.Tensor) -> torch.Tensor:
    """The model's normalisation mean as a (3,) colour: a region filled with it is zero after
    normalisation (AOS's occlusion). ImageNet's mean for models that do not expose ``mean``."""
    mean = getattr(model, "mean", None)
    if isinstance(mean, torch.Tensor) and mean.numel() == 3:
        return mean.detach().reshape(3).to(like.device, like.dtype)
    return torch.tensor(_IMAGENET_MEAN, device=like.device, dtype=like.dtype)


# ---------------------------------------------------------------------------------------------
# Seeded randomness per image (see reidbench.seeding)
# ---------------------------------------------------------------------------------------------


#: The seed of one image's generator, a hash of (run seed, attack name, image index), and one CPU
#: generator per image (draws are made on CPU and moved, so they match on every device).
image_seed = stream_seed
image_generators = generators


def as_index(index: torch.Tensor | Sequence[int] | None, n: int, who: str) -> torch.Tensor:
    """The batch's global indices as a CPU int64 tensor; ``None`` means ``0..n-1``.

    The harness must pass the real indices: with ``None`` the draws depend on the batching.
    """
    if index is None:
        return torch.arange(n)
    idx = torch.as_tensor(index).reshape(-1).to("cpu", torch.int64)
    if idx.numel() != n:
        raise ParameterError(f"{who}: index has {idx.numel()} entries for a batch of {n} images")
    return idx


class _ModeGuard:
    """Puts every submodule back in the mode it had, whatever happens in between."""

    def __init__(self, model: nn.Module) -> None:
        self.modes = [(m, m.training) for m in model.modules()]

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        for m, training in self.modes:
            m.training = training


class _Attack:
    """What all three kinds share: the threat-model flags, the context and seeded generators."""

    name: ClassVar[str] = ""
    family: ClassVar[Family]
    threat: ClassVar[Threat]
    uses_labels: ClassVar[bool] = False
    uses_guides: ClassVar[bool] = False
    uses_prototypes: ClassVar[bool] = False
    uses_occluder_bank: ClassVar[bool] = False
    differentiable: ClassVar[bool] = False  # whether it needs gradients of the model
    queries_model: ClassVar[bool] = False  # whether it uses the model's outputs (gradients or scores)
    eps: float | None = None  # the L-inf budget in [0,1] units, for eps-bounded attacks

    context: AttackContext

    def set_context(self, context: AttackContext) -> None:
        self.context = context
        self._ctx_cache: dict[tuple[str, str, torch.dtype], torch.Tensor] = {}

    def generators(self, index: torch.Tensor) -> list[torch.Generator]:
        return image_generators(self.context.seed, self.name, index)

    def context_tensor(self, key: str, like: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """``context.<key>`` on ``like``'s device (and dtype, for float tensors), cached per device.

        Guide features are moved once per cell, not once per batch.
        """
        value = getattr(self.context, key)
        if value is None:
            raise ParameterError(
                f"{self.name}: the harness did not provide context.{key}, which this attack needs "
                f"(uses_guides={self.uses_guides}, uses_prototypes={self.uses_prototypes}, "
                f"uses_occluder_bank={self.uses_occluder_bank})"
            )
        dtype = like.dtype if torch.is_floating_point(value) else value.dtype
        cache = self.__dict__.setdefault("_ctx_cache", {})
        k = (key, str(like.device), dtype)
        if k not in cache:
            t = value.to(like.device, dtype)
            cache[k] = F.normalize(t, dim=1) if normalize else t
        return cache[k]

    def check_labels(self, labels: torch.Tensor | None, n: int) -> torch.Tensor:
        if labels is None:
            raise ParameterError(f"{self.name}: this attack needs the pids of the attacked images (labels)")
        labels = torch.as_tensor(labels).reshape(-1)
        if labels.numel() != n:
            raise ParameterError(f"{self.name}: {labels.numel()} labels for a batch of {n} images")
        return labels


class InputAttack(_Attack):
    """An attack that maps images in [0,1] to images in [0,1], without gradients.

    Subclasses set the class attributes and implement ``perturb(images, labels, index)``, drawing
    every random number from ``self.generators(index)``. ``__call__`` refuses a model in train
    mode and inputs outside [0,1], and puts nothing but the images (and, for label-using
    attacks, their pids) in the attacker's hands.
    """

    def __init__(self, model: nn.Module, **params: Any) -> None:
        self.model = model
        self.params = params
        self.set_context(AttackContext())

    def perturb(self, images: torch.Tensor, labels: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                 index: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        check_eval(self.model, self.name)
        check_images(images, self.name)
        idx = as_index(index, images.shape[0], self.name)
        with _ModeGuard(self.model), torch.no_grad():
            out = self.perturb(images, labels if self.uses_labels else None, idx)
        return out.detach()


class MetricAttack(_Attack, TorchAttack):
    """Base of the gradient attacks: a ``torchattacks.Attack`` with reidbench's checks.

    Subclasses implement ``forward(images, labels, index)``. Iterative ones call :meth:`iterate`
    with a per-step loss on L2-normalised embeddings; every gradient goes through
    :meth:`gradient`, which averages ``eot`` forward/backward passes (each a fresh draw of a
    random defense inside ``self.model``) and records :class:`GradStats` in ``grad_stats``.
    After every step the image is projected onto the L-inf ball around the clean image, then
    clamped to [0,1] (:meth:`project`).
    """

    family: ClassVar[Family] = Family.METRIC
    differentiable: ClassVar[bool] = True
    queries_model: ClassVar[bool] = True
    _active: torch.Tensor | None = None  # images with an objective this call (guide attacks set it)

    def __init__(self, model: nn.Module, eps: float | None = 5 / 255, eot: int = 1, **params: Any) -> None:
        TorchAttack.__init__(self, type(self).__name__, model)
        if eps is not None:  # None: not an L-inf attack (CW)
            check_eps(eps, self.name)
        check_range(self.name, "eot", eot, 1, 1000, integer=True)
        self.eps = eps
        self.eot = eot
        self.params = {"eps": eps, "eot": eot, **params}
        self.set_context(AttackContext())
        self.reset_grad_stats()

    def __setattr__(self, name: str, value: Any) -> None:
        # torchattacks 3.5's __setattr__ walks every assigned value looking for sub-attacks and
        # compares the values it meets with ==, which fails on tensors and dataclasses holding
        # them (the context). Only sub-attacks need that bookkeeping.
        if isinstance(value, TorchAttack):
            TorchAttack.__setattr__(self, name, value)
        else:
            object.__setattr__(self, name, value)

    # -- telemetry -------------------------------------------------------------------------------

    def reset_grad_stats(self) -> None:
        self._grad_stats = GradStats()
        self._step = 0

    @property
    def grad_stats(self) -> dict[str, Any]:
        """Gradient statistics since the last :meth:`reset_grad_stats` (see :class:`GradStats`)."""
        return self._grad_stats.summary()

    # -- the pieces every metric attack uses ------------------------------------------------------

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings: the losses live on the sphere that cosine ranking uses."""
        return F.normalize(self.model(x), dim=1)

    def gradient(self, adv: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """d(sum of per-image losses)/d(adv), averaged over ``eot`` independent passes of the model.

        ``loss_fn`` maps normalised embeddings (B, D) to per-image losses (B,) to be maximised.
        With ``eot == 1`` this is the plain gradient.
        """
        grad = eot_gradient(lambda x: loss_fn(self.features(x)), adv, self.eot)
        self._grad_stats.add(self._step, grad, self._active)
        self._step += 1
        return grad

    def project(self, adv: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        eps = self.eps
        assert eps is not None, "project() is for L-inf attacks"
        delta = torch.clamp(adv - images, min=-eps, max=eps)
        return torch.clamp(images + delta, min=0.0, max=1.0).detach()

    def random_start(self, images: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
        """x + U(-eps, eps), drawn per image from its own generator, clamped to [0,1].

        One call per image, each drawing that image's whole noise tensor: the work is the
        generators' own (measured at 128 images of 3x128x64: 10-30 ms, the same as one draw of
        the batch's size from a single generator; the Python loop adds ~1 ms). Drawing across the
        per-image generators in one vectorised call with the same numbers would mean
        re-implementing torch's CPU Mersenne Twister, so the draws stay with torch.
        """
        eps = self.eps
        assert eps is not None, "random_start() is for L-inf attacks"
        u = torch.stack([torch.rand(images.shape[1:], generator=g) for g in gens])
        return self.project(images + (2 * u.to(images) - 1) * eps, images)

    def iterate(self, images: torch.Tensor, loss_at: Callable[[int], Callable[[torch.Tensor], torch.Tensor]],
                *, steps: int, step: float, momentum: float = 0.0, start: torch.Tensor | None = None) -> torch.Tensor:
        """I-FGSM / MI-FGSM / PGD: ``steps`` signed steps of size ``step`` on ``loss_at(t)``.

        With ``momentum`` > 0 (MI-FGSM, Dong et al.), the gradient is divided by its per-image
        mean |g| and accumulated, ``g = momentum * g + grad / mean|grad|``, and the step follows
        sign(g). An all-zero gradient stays zero instead of dividing by zero.
        """
        adv = images.clone() if start is None else start
        acc = torch.zeros_like(images)
        for t in range(steps):
            grad = self.gradient(adv, loss_at(t))
            if momentum:
                grad = grad / grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
                acc = momentum * acc + grad
                grad = acc
            adv = self.project(adv + step * grad.sign(), images)
        return adv

    def guide_sums(self, labels: torch.Tensor, index: torch.Tensor, like: torch.Tensor,
                   same_camera: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """For each image: the sum S and count n of its same-identity guides (normalised).

        sum_j ||f - g_j||^2 = n ||f||^2 - 2 f.S + const, so the loss over all guides needs one
        (B, G) match matrix and no padding. ``same_camera=False`` drops guides from the image's
        own camera (junk for the query, so pushing from them changes no metric).
        """
        labels = labels.to(like.device)
        gfeat = self.context_tensor("guide_feats", like, normalize=True)
        gpid = self.context_tensor("guide_pids", labels)
        match = labels.unsqueeze(1) == gpid.unsqueeze(0)
        if not same_camera:
            gcam = self.context_tensor("guide_camids", labels)
            cams = self.context.camids
            if cams is None:
                raise ParameterError(f"{self.name}: same_camera_guides=False needs context.camids of the attacked set")
            own = cams.reshape(-1)[index].to(gcam.device)
            match &= own.unsqueeze(1) != gcam.unsqueeze(0)
        m = match.to(like.dtype)
        self._active = m.sum(dim=1) > 0  # images without a guide have no loss; see GradStats
        return m @ gfeat, m.sum(dim=1)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                 index: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        check_eval(self.model, self.name)
        check_images(images, self.name)
        idx = as_index(index, images.shape[0], self.name)
        self._step = 0
        self._active = None  # set by guide-based losses
        # torchattacks' own __call__ calls model.eval() and may call model.train() afterwards;
        # the guard puts every module back as it was, and enable_grad lets the harness call us
        # from inside torch.no_grad().
        with _ModeGuard(self.model), torch.enable_grad():
            out = TorchAttack.__call__(self, images, labels if self.uses_labels else None, index=idx)
        return out.detach()


class FeatureMapAttack(_Attack):
    """A perturbation of the backbone's feature map at test time (between backbone and head).

    ``hook(fmap, index)`` returns the perturbed map of a batch whose images have global indices
    ``index``; each image's region is drawn from its own seeded generator, so extraction in any
    batch size or order gives the same embeddings. :meth:`embed` runs the whole path (input
    transform, backbone, hook, head) with the same checks as the input attacks.
    """

    family: ClassVar[Family] = Family.FEATURE_MAP

    def __init__(self, model: nn.Module | None = None, **params: Any) -> None:
        self.model = model
        self.params = params
        self.set_context(AttackContext())

    def hook(self, fmap: torch.Tensor, index: torch.Tensor | Sequence[int]) -> torch.Tensor:
        raise NotImplementedError

    def embed(self, images: torch.Tensor, index: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """Embeddings of ``images`` with the perturbed map (what the harness ranks with)."""
        model = self.model
        if model is None or not hasattr(model, "feature_map") or not hasattr(model, "head"):
            raise ParameterError(
                f"{self.name}: feature-map attacks need a model exposing feature_map() and head "
                f"(a reidbench ReIDModel), not {type(model).__name__}"
            )
        check_eval(model, self.name)
        check_images(images, self.name)
        idx = as_index(index, images.shape[0], self.name)
        with _ModeGuard(model), torch.no_grad():
            transform = getattr(model, "input_transform", None)
            x = transform(images) if transform is not None else images
            head: Callable[[torch.Tensor], torch.Tensor] = getattr(model, "head")  # noqa: B009
            return head(self.hook(getattr(model, "feature_map")(x), idx))  # noqa: B009


ATTACKS: Registry[AttackEntry] = Registry("attack")


def register_attack(name: str, *, family: Family, threat: Threat, description: str) -> Callable[[type], type]:
    """Class decorator: register an attack class under ``name``.

    The user-settable parameters and their defaults are read from the constructor's signature
    (``eps``/``step`` converted to /255 units, see :data:`reidbench.attack_types.PIXEL_PARAMS`);
    ``create_attack`` converts them back and passes them to the constructor.
    """

    def deco(cls: type) -> type:
        cls.name = name  # type: ignore[attr-defined]
        cls.family = family  # type: ignore[attr-defined]
        cls.threat = threat  # type: ignore[attr-defined]
        ATTACKS.add(name, AttackEntry(name, cls, family, threat, signature_defaults(cls), description))
        return cls

    return deco
