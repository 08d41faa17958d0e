"""Any torchattacks classification attack, through a classifier over the gallery identities.

The re-ID model becomes a classifier whose classes are the gallery identities: the logits are
the negative cosine distances of the embedding to each identity's mean gallery embedding, times
a scale. ``create_attack("pgd", model)`` and the other registered names use fixed torchattacks
classes; ``create_attack("tk:NAME", model, **kwargs)`` builds any torchattacks class by name.

torchattacks: Hoki Kim, "Torchattacks: A PyTorch Repository for Adversarial Attacks",
https://arxiv.org/abs/2010.01950
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, ClassVar

import torch
import torchattacks
from torch import nn
from torch.nn import functional as F
from torchattacks.attack import Attack as TorchAttack

from reidbench.attack_types import Access, Budget, Family, Threat
from reidbench.attacks.base import MetricAttack, image_seed, register_attack
from reidbench.errors import ParameterError, UnknownNameError
from reidbench.params import check_eps, check_range

GALLERY_AWARE = (
    "gallery-aware: knows the attacked images' identities and every gallery identity's mean clean embedding "
    "(a classifier over the gallery identities), a stronger threat model than the metric attacks"
)
THREAT = Threat(Access.WHITE_BOX, knows=GALLERY_AWARE, budget=Budget.LINF)
SCALE = 30.0


class GalleryClassifier(nn.Module):
    r"""A re-ID model as a classifier over the gallery identities.

    ``logits = -scale * (1 - cos(f(x), p_k))`` for the mean gallery embedding p_k of each
    identity k (both L2-normalised). The cosine distance lies in [0, 2], so without a scale the
    logits of ~750 identities span at most 2 and the softmax is nearly flat (its cross-entropy
    gradient saturates into noise). ``scale = 30`` is the usual scale of normalised-softmax
    re-ID/face losses (CosFace/ArcFace s = 30): a cosine gap of 0.1 becomes a logit gap of 3.
    Margin and DLR losses are scale-free; CE-based attacks (PGD, APGD-CE) depend on it.
    """

    def __init__(self, model: nn.Module, scale: float = SCALE) -> None:
        super().__init__()
        self.model = model
        self.scale = scale
        self.prototypes: torch.Tensor | None = None  # (K, D), normalised; set per batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.prototypes is not None, "set GalleryClassifier.prototypes first"
        f = F.normalize(self.model(x), dim=1)
        return -self.scale * (1 - f @ self.prototypes.T)


class ClassificationAttack(MetricAttack):
    r"""A torchattacks attack on :class:`GalleryClassifier`; the base of ``pgd``, ``apgd-ce``,
    ``apgd-dlr``, ``square``, ``cw`` and of every ``tk:NAME``.

    The label of an image is the index of its own identity among ``context.proto_pids``; images
    whose identity has no prototype are returned unchanged. Randomness: with
    ``batch_invariant=True`` (default) an attack that draws random numbers runs image by image,
    each under a forked RNG seeded by (seed, image index) (torchattacks draws from the global RNG
    and Square even shares one window position across the batch, so batching would change the
    result); deterministic ones (CW) run batched. ``batch_invariant=False`` runs whole batches
    under a seed from the batch's first index: faster on a GPU, but the numbers then depend on
    the batching.

    Threat model: white-box, gallery-aware (see ``THREAT``): stronger than the metric attacks,
    which never see the gallery's identity means (FNA excepted).

    Deviations from the paper/code: the target model is a nearest-class-mean classifier over
    the gallery identities rather than a trained classification head; gradient telemetry
    (``grad_stats``) is not recorded because the gradients stay inside torchattacks.
    """

    family: ClassVar[Family] = Family.CLASSIFICATION
    threat: ClassVar[Threat] = THREAT
    uses_labels = True
    uses_prototypes = True
    tk_name: ClassVar[str] = ""
    tk_fixed: ClassVar[dict[str, Any]] = {}  # torchattacks arguments the registered variant pins
    random: ClassVar[bool] = True

    def __init__(self, model: nn.Module, scale: float = SCALE, batch_invariant: bool = True, **tk_kwargs: Any) -> None:
        tk_cls = torchattacks_class(self.tk_name)
        allowed = [p for p in inspect.signature(tk_cls).parameters if p != "model"]
        unknown = sorted(set(tk_kwargs) - set(allowed))
        if unknown:
            raise ParameterError(
                f"{self.name}: torchattacks.{self.tk_name} has no parameter(s) {', '.join(unknown)}; "
                f"its parameters are: {', '.join(allowed)}"
            )
        eps = tk_kwargs.get("eps")
        if eps is not None:
            check_eps(eps, self.name)
        rest = {k: v for k, v in tk_kwargs.items() if k != "eps"}
        super().__init__(model, eps=eps, scale=scale, batch_invariant=batch_invariant, **rest)
        check_range(self.name, "scale", scale, 1e-3, 1e4)
        self.eps = eps if "eps" in allowed else None
        self.batch_invariant = bool(batch_invariant)
        self.classifier = GalleryClassifier(model, scale).eval()
        try:
            self.inner = tk_cls(self.classifier, **{**tk_kwargs, **self.tk_fixed})
        except (TypeError, ValueError, AssertionError) as exc:
            raise ParameterError(f"{self.name}: torchattacks.{self.tk_name} rejected its arguments: {exc}") from None

    @property
    def grad_stats(self) -> dict[str, Any]:
        """Empty: the gradients stay inside torchattacks, so there is nothing to report."""
        return {}

    @property
    def per_image(self) -> bool:
        return self.batch_invariant and self.random

    def _run(self, x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            if hasattr(self.inner, "seed"):  # APGD and Square reseed the global RNG from it
                self.inner.seed = seed
            return self.inner.forward(x, y)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                index: torch.Tensor | None = None) -> torch.Tensor:
        assert index is not None
        labels = self.check_labels(labels, images.shape[0]).to(images.device)
        self.classifier.prototypes = self.context_tensor("proto_feats", images, normalize=True)
        match = labels.unsqueeze(1) == self.context_tensor("proto_pids", labels).unsqueeze(0)
        target = match.to(torch.int64).argmax(dim=1)
        rows = match.any(dim=1).nonzero().flatten().tolist()
        out = images.clone()
        seeds = [image_seed(self.context.seed, self.name, int(i)) for i in index.tolist()]
        if self.per_image:
            for i in rows:
                out[i : i + 1] = self._run(images[i : i + 1], target[i : i + 1], seeds[i])
        elif rows:
            out[rows] = self._run(images[rows], target[rows], seeds[rows[0]])
        return out.detach()


def torchattacks_classes() -> dict[str, type]:
    """Every torchattacks attack class, by name (``Attack`` and ``MultiAttack`` are not attacks)."""
    out = {}
    for name in dir(torchattacks):
        cls = getattr(torchattacks, name)
        if isinstance(cls, type) and issubclass(cls, TorchAttack) and name not in ("Attack", "MultiAttack"):
            out[name] = cls
    return out


def torchattacks_class(name: str) -> type:
    """The torchattacks class called ``name``, matched case-insensitively (``pgd`` -> ``PGD``)."""
    classes = torchattacks_classes()
    by_lower = {n.lower(): n for n in classes}
    if name.lower() in by_lower:
        return classes[by_lower[name.lower()]]
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join('tk:' + by_lower[c] for c in close)}?" if close else ""
    raise UnknownNameError(f"torchattacks has no attack {name!r}.{hint} Use a class name such as tk:PGD, tk:APGDT, "
                           "tk:FAB or tk:Square; `reidbench list attacks` lists them")


def generic_attack(name: str) -> type[ClassificationAttack]:
    """The class behind ``tk:NAME``: any torchattacks attack on the gallery classifier."""
    tk_name = torchattacks_class(name[3:] if name.lower().startswith("tk:") else name).__name__
    return type(f"TK{tk_name}", (ClassificationAttack,), {"name": f"tk:{tk_name}", "tk_name": tk_name})


@register_attack("pgd", family=Family.CLASSIFICATION, threat=THREAT,
                 description="torchattacks PGD (cross-entropy) on the gallery-identity classifier")
class PGD(ClassificationAttack):
    r"""PGD (Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks",
    https://arxiv.org/abs/1706.06083) on :class:`GalleryClassifier`, via ``torchattacks.PGD``.

    Loss: cross-entropy of the gallery-identity logits, maximised; L-inf; random start U(-eps,
    eps). Arguments: eps (5/255), step (1/255), steps (15), random_start (True), scale (30),
    batch_invariant (True). Threat model: :class:`ClassificationAttack` (gallery-aware).

    Deviations from the paper/code: the target is the gallery nearest-mean classifier; the
    random start is seeded per image; 15 steps of 1/255 (the metric attacks' budget) instead of
    Madry et al.'s CIFAR settings.
    """

    tk_name = "PGD"

    def __init__(self, model: nn.Module, eps: float = 5 / 255, step: float = 1 / 255, steps: int = 15,
                 random_start: bool = True, scale: float = SCALE, batch_invariant: bool = True) -> None:
        check_range("pgd", "step", step, 1e-6 / 255, 64 / 255, scale=255, unit="/255")
        check_range("pgd", "steps", steps, 1, 10000, integer=True)
        self.random = bool(random_start)  # type: ignore[misc]
        super().__init__(model, scale=scale, batch_invariant=batch_invariant, eps=eps, alpha=step, steps=steps,
                         random_start=random_start)


class _APGD(ClassificationAttack):
    tk_name = "APGD"

    def __init__(self, model: nn.Module, eps: float = 5 / 255, steps: int = 15, n_restarts: int = 1,
                 scale: float = SCALE, batch_invariant: bool = True) -> None:
        check_range(self.name, "steps", steps, 1, 10000, integer=True)
        check_range(self.name, "n_restarts", n_restarts, 1, 100, integer=True)
        super().__init__(model, scale=scale, batch_invariant=batch_invariant, eps=eps, steps=steps,
                         n_restarts=n_restarts)


@register_attack("apgd-ce", family=Family.CLASSIFICATION, threat=THREAT,
                 description="torchattacks APGD-CE (AutoAttack's step-size-free PGD) on the gallery-identity classifier")
class APGDCE(_APGD):
    r"""APGD with cross-entropy (Croce & Hein, "Reliable evaluation of adversarial robustness
    with an ensemble of diverse parameter-free attacks", ICML 2020,
    https://arxiv.org/abs/2003.01690) on :class:`GalleryClassifier`, via ``torchattacks.APGD``.

    L-inf, rho 0.75. Arguments: eps (5/255), steps (15), n_restarts (1), scale (30),
    batch_invariant (True). Threat model: :class:`ClassificationAttack` (gallery-aware).

    Deviations from the paper/code: the target is the gallery nearest-mean classifier; 15 steps
    (AutoAttack runs 100) to match the metric attacks' budget; the seed is per image.
    """

    tk_fixed = {"loss": "ce", "norm": "Linf"}


@register_attack("apgd-dlr", family=Family.CLASSIFICATION, threat=THREAT,
                 description="torchattacks APGD-DLR (scale-free margin loss) on the gallery-identity classifier")
class APGDDLR(_APGD):
    r"""APGD with the difference-of-logits-ratio loss (Croce & Hein, ICML 2020,
    https://arxiv.org/abs/2003.01690) on :class:`GalleryClassifier`, via ``torchattacks.APGD``.

    DLR is invariant to the logit scale, so it does not depend on ``scale``; it needs at least
    three gallery identities. Arguments as :class:`APGDCE`. Threat model:
    :class:`ClassificationAttack` (gallery-aware).

    Deviations from the paper/code: as :class:`APGDCE`.
    """

    tk_fixed = {"loss": "dlr", "norm": "Linf"}


@register_attack("square", family=Family.CLASSIFICATION,
                 threat=Threat(Access.SCORES, "black-box (the classifier's logits, no gradients)", knows=GALLERY_AWARE,
                               budget=Budget.LINF),
                 description="torchattacks Square (score-based black-box random search) on the gallery-identity classifier")
class Square(ClassificationAttack):
    r"""Square Attack (Andriushchenko et al., ECCV 2020, https://arxiv.org/abs/1912.00049) on
    :class:`GalleryClassifier`, via ``torchattacks.Square``: gradient-free, so it is the check
    that a defense's robustness is not gradient masking.

    L-inf, margin loss. Arguments: eps (5/255), n_queries (1000; the paper uses 5000 or more,
    lowered for CPU runs), p_init (0.8), scale (30), batch_invariant (True). Threat model:
    :class:`ClassificationAttack` (gallery-aware; score-based, so no gradients are needed).

    Deviations from the paper/code: the target is the gallery nearest-mean classifier; 1000
    queries by default instead of 5000-10000; run image by image so that torchattacks' single
    window position per iteration is not shared across a batch.
    """

    differentiable = False  # score-based: it queries the model's scores, never its gradients
    queries_model = True

    tk_name = "Square"
    tk_fixed = {"norm": "Linf", "loss": "margin"}

    def __init__(self, model: nn.Module, eps: float = 5 / 255, n_queries: int = 1000, p_init: float = 0.8,
                 scale: float = SCALE, batch_invariant: bool = True) -> None:
        check_range("square", "n_queries", n_queries, 1, 1_000_000, integer=True)
        check_range("square", "p_init", p_init, 1e-4, 1.0)
        super().__init__(model, scale=scale, batch_invariant=batch_invariant, eps=eps, n_queries=n_queries,
                         p_init=p_init)


@register_attack("cw", family=Family.CLASSIFICATION, threat=Threat(Access.WHITE_BOX, knows=GALLERY_AWARE, budget=Budget.L2),
                 description="torchattacks CW (L2, ignores eps) on the gallery-identity classifier")
class CW(ClassificationAttack):
    r"""Carlini & Wagner's L2 attack ("Towards Evaluating the Robustness of Neural Networks",
    S&P 2017, https://arxiv.org/abs/1608.04644) on :class:`GalleryClassifier`, via
    ``torchattacks.CW``.

    CW minimises ||delta||_2^2 + c * max(z_y - max_{k != y} z_k, -kappa) with Adam in tanh space.
    It is an L2 attack: it has no eps and is not bounded in L-inf, so it must not be compared
    with the eps-bounded attacks at the same "budget". Images it never fools are returned
    unchanged. Arguments: c (1.0), kappa (0.0), steps (50), lr (0.01), scale (30; CW's margin
    is in logit units, so the scale sets how hard c pushes), batch_invariant (True).

    Threat model: :class:`ClassificationAttack` (gallery-aware), with an L2 budget set by c.

    Deviations from the paper/code: no binary search over c (torchattacks does not implement
    it); the target is the gallery nearest-mean classifier.
    """

    tk_name = "CW"
    random = False

    def __init__(self, model: nn.Module, c: float = 1.0, kappa: float = 0.0, steps: int = 50, lr: float = 0.01,
                 scale: float = SCALE, batch_invariant: bool = True) -> None:
        check_range("cw", "c", c, 0.0, 1e6)
        check_range("cw", "kappa", kappa, 0.0, 1e6)
        check_range("cw", "steps", steps, 1, 100000, integer=True)
        check_range("cw", "lr", lr, 1e-6, 10.0)
        super().__init__(model, scale=scale, batch_invariant=batch_invariant, c=c, kappa=kappa, steps=steps, lr=lr)
