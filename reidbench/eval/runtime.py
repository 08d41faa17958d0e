"""Runtime state of a grid: models, images and clean gallery features, loaded once and reused.

The clean gallery's features depend only on (model, defense, dataset, draw), so they are
computed once per run directory and cached in ``run_dir/cache``; every attack on the query side
reuses them.

Under ``torchrun`` (:mod:`reidbench.eval.distributed`) :meth:`Runtime.features` extracts this
rank's shard of whole batches and gathers every rank's rows, so every caller sees the whole set's
features; only rank 0 reads and writes the gallery cache, and sends what it read to the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reidbench.data import ReIDDataset
from reidbench.data.images import load_images
from reidbench.defenses import create_defense
from reidbench.errors import ReidbenchError
from reidbench.eval.distributed import SINGLE, Dist, gather_rows, shard
from reidbench.eval.features import extract_features
from reidbench.eval.planning import GridSpec
from reidbench.zoo import create_model

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    query: torch.Tensor  # uint8 (N,3,H,W) at one model's input size
    gallery: torch.Tensor
    q_pids: torch.Tensor
    g_pids: torch.Tensor
    q_camids: torch.Tensor
    g_camids: torch.Tensor

    def side(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images, pids and camids of the ``query`` or ``gallery`` side."""
        if name == "query":
            return self.query, self.q_pids, self.q_camids
        return self.gallery, self.g_pids, self.g_camids

    def other(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.side("gallery" if name == "query" else "query")


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def write_cached_features(path: Path, key: str, feats: torch.Tensor) -> None:
    """Features as safetensors, with their cache key and a sha256 of their bytes in the metadata."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    t = feats.detach().cpu().contiguous()
    save_file({"features": t}, str(tmp), metadata={"key": key, "sha256": _digest(t)})
    tmp.replace(path)


def read_cached_features(path: Path, key: str, device: torch.device) -> torch.Tensor | None:
    """Cached features, or None (recompute) when the file is absent, unreadable, or not what its
    key and checksum say: the run directory is untrusted input, and a cache never runs code."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            t = f.get_tensor("features")
        if meta.get("key") != key or meta.get("sha256") != _digest(t) or t.dim() != 2 or not t.is_floating_point():
            raise ValueError("key, checksum or shape does not match")
    except Exception as exc:  # any unreadable cache is recomputed, never trusted
        log.warning("ignoring gallery cache %s (%s); recomputing it", path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None
    return t.to(device)


#: Memory for crafted images kept for reuse (:meth:`Runtime.crafted`): every set of the embedded
#: default fits (4 MB each); at Market-1501 size (331 MB of queries at 256x128) a few do.
CRAFTED_BYTES = 1 << 30


def _nbytes(value: Any) -> int:
    """Bytes of the tensors in a (possibly nested) value."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


def _pinned(t: torch.Tensor, pin: bool) -> torch.Tensor:
    return t.pin_memory() if pin else t


class Runtime:
    """Models, images and gallery features, loaded lazily and reused across cells."""

    def __init__(self, spec: GridSpec, dataset: ReIDDataset | None, run_dir: Path, progress: bool = True,
                 dist: Dist = SINGLE, device: torch.device | None = None) -> None:
        self.spec = spec
        self.dist = dist
        self.progress = progress and dist.is_main
        self.dataset = dataset  # set before the first cell runs (the plan is validated first)
        self.run_dir = run_dir
        self.device = device if device is not None else torch.device(spec.device)
        self._models: dict[str, nn.Module] = {}
        self._splits: dict[tuple[int, int], SplitData] = {}
        self._gallery: dict[str, torch.Tensor] = {}
        self._features: dict[tuple[Any, ...], torch.Tensor] = {}
        self._crafted: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._fitted_batch: int | None = None  # set when the device ran out of memory (fit_batch)

    def for_dataset(self, dataset: ReIDDataset) -> Runtime:
        """A runtime for another dataset of the same run: the models are shared, the images and
        every feature cache are its own."""
        rt = Runtime(self.spec, dataset, self.run_dir, progress=self.progress, dist=self.dist, device=self.device)
        rt._models = self._models
        return rt

    # models ------------------------------------------------------------------------------
    def model(self, name: str) -> nn.Module:
        if name not in self._models:
            ckpt = self.spec.checkpoints.get(name, "default")
            self._models[name] = create_model(name, checkpoint=ckpt, device=self.device,
                                              options=self.spec.model_options.get(name))  # fmt: skip
        return self._models[name]

    def bare(self, name: str) -> nn.Module:
        return self.model(name).bare()  # type: ignore[operator]

    def card(self, name: str) -> Any:
        return self.model(name).card

    # data --------------------------------------------------------------------------------
    def split(self, size: tuple[int, int]) -> SplitData:
        size = tuple(size)  # type: ignore[assignment]
        if size not in self._splits:
            assert self.dataset is not None, "Runtime.dataset must be set before data is read"
            q, g = self.dataset.query, self.dataset.gallery
            pin = self.device.type == "cuda"  # page-locked, so batches go up with non_blocking copies
            self._splits[size] = SplitData(
                query=_pinned(load_images(q, size, desc="query"), pin),
                gallery=_pinned(load_images(g, size, desc="gallery"), pin),
                q_pids=torch.tensor([s.pid for s in q]),
                g_pids=torch.tensor([s.pid for s in g]),
                q_camids=torch.tensor([s.camid for s in q]),
                g_camids=torch.tensor([s.camid for s in g]),
            )
        return self._splits[size]

    @property
    def batch_size(self) -> int:
        """``--batch-size``; else 512 on CUDA and 128 on CPU, halved for the rest of the run
        each time the device runs out of memory (:meth:`fit_batch`)."""
        return self.spec.batch_size or self._fitted_batch or (512 if self.device.type == "cuda" else 128)

    @property
    def batch_was_fitted(self) -> bool:
        return self._fitted_batch is not None

    def fit_batch(self, failed: int, what: str, exc: BaseException, can_retry: bool = True) -> int:
        """After the device ran out of memory at batch size ``failed`` while ``what``: the
        smaller batch size to retry with (half; every later cell of the run keeps it).

        Refused with one line naming ``--batch-size`` where a retry could change the numbers
        or cannot be agreed: a batch size the user set, torchrun (every rank must cut the set
        into the same batches), a random defense whose generator has already drawn for the
        failed batch (``can_retry=False``), or a batch of one image.
        """
        size = self.batch_size
        why = ""
        if self.spec.batch_size:
            why = f"at --batch-size {size}; pass a smaller --batch-size"
        elif self.dist.active:
            why = f"at batch size {size} under torchrun; pass a smaller --batch-size (the same on every rank)"
        elif not can_retry:
            why = (f"at batch size {size} through a random defense, whose draws a retry would change; "
                   "pass a smaller --batch-size")  # fmt: skip
        elif failed <= 1:
            why = "with one image per batch; use a device with more memory or a smaller model"
        if why:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ReidbenchError(f"{self.device} ran out of memory {what} {why} ({first[:160]})") from None
        self._fitted_batch = max(1, min(size, failed) // 2)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        log.warning("%s ran out of memory %s at batch size %d; continuing with %d for the rest of the run "
                    "(each image's randomness is seeded by its index, not its batch)",
                    self.device, what, failed, self._fitted_batch)  # fmt: skip
        return self._fitted_batch

    def features(self, net: nn.Module, images: torch.Tensor, **kw: Any) -> torch.Tensor:
        """``extract_features`` with the run's batch size; under torchrun this rank's shard,
        gathered from every rank (a collective: every rank calls it with the same images).
        Out of device memory, the extraction starts over with half the batch (:meth:`fit_batch`)."""
        if not self.dist.active:
            while True:
                size = self.batch_size
                try:
                    return extract_features(net, images, batch_size=size, **kw)
                except torch.cuda.OutOfMemoryError as exc:
                    defense = kw.get("defense")
                    self.fit_batch(size, "extracting features", exc,
                                   can_retry=not (defense is not None and getattr(defense, "random", False)))  # fmt: skip
        n, b = len(images), self.batch_size
        part = extract_features(net, images, batch_size=b, rows=shard(n, b, self.dist.rank, self.dist.world_size), **kw)
        return gather_rows(self.dist, part, n, b, device=part.device)

    def cached_features(self, key: tuple[Any, ...] | None, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Features that depend only on ``key`` (a deterministic network and an image set),
        computed once per run and reused by every cell; ``key=None`` computes afresh."""
        if key is None:
            return compute()
        if key not in self._features:
            self._features[key] = compute()
        return self._features[key]

    def crafted(self, key: tuple[Any, ...] | None, craft: Callable[[], Any]) -> tuple[Any, bool]:
        """What an attack crafted, reused by every later cell that would craft exactly the same
        (``key``: the crafting network, attack, parameters, seed and target; None: never reuse).
        A defended model's oblivious cells craft on the bare network, as its undefended cells
        do, so one of the two is free. Least recently used entries are dropped beyond
        :data:`CRAFTED_BYTES`. Returns ``(value, reused)``; the value's tensors are never modified."""
        if key is not None and key in self._crafted:
            self._crafted.move_to_end(key)
            return self._crafted[key], True
        value = craft()
        if key is not None:
            self._crafted[key] = value
            total = sum(_nbytes(v) for v in self._crafted.values())
            while total > CRAFTED_BYTES and len(self._crafted) > 1:
                total -= _nbytes(self._crafted.popitem(last=False)[1])
        return value, False

    # defenses ----------------------------------------------------------------------------
    def defense(self, name: str, input_size: tuple[int, int], seed: int) -> nn.Module | None:
        if name == "none":
            return None
        return create_defense(name, input_size=tuple(input_size), seed=seed).to(self.device)

    # gallery features ---------------------------------------------------------------------
    def gallery_features(self, model: str, defense_name: str, draw_seed: int) -> torch.Tensor:
        """Clean gallery features of ``model`` behind ``defense_name`` for one defense draw."""
        assert self.dataset is not None
        card = self.card(model)
        key_src = json.dumps([model, card.sha256, card.checkpoint, defense_name, draw_seed, self.dataset.fingerprint,
                              list(card.input_size), self.spec.amp], sort_keys=True, default=str)  # fmt: skip
        key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
        if key in self._gallery:
            return self._gallery[key]
        path = self.run_dir / "cache" / f"gallery-{key}.safetensors"
        feats = read_cached_features(path, key, self.device) if self.dist.is_main else None
        if self.dist.active:  # rank 0 alone reads the run directory; the others get what it read
            got = self.dist.broadcast_object(None if feats is None else feats.cpu())
            feats = None if got is None else got.to(self.device)
        if feats is None:
            split = self.split(card.input_size)
            d = self.defense(defense_name, card.input_size, draw_seed)
            feats = self.features(self.bare(model), split.gallery, defense=d, amp=self.spec.amp)
            if self.dist.is_main:
                write_cached_features(path, key, feats)
        self._gallery[key] = feats
        return feats
