"""Feature extraction: images in, L2-normalised or raw embeddings out, always in eval mode."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from reidbench.data.images import to_float
from reidbench.models.base import check_eval_mode

FmapHook = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (fmap, global indices) -> fmap


def _device_of(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@torch.no_grad()
def extract_features(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 256,
    defense: nn.Module | None = None,
    fmap_hook: FmapHook | None = None,
    amp: bool = False,
    progress: Callable[[int], None] | None = None,
    rows: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Embeddings of ``images`` ((N,3,H,W), uint8 or float in [0,1]) on the model's device, float32.

    ``defense`` is applied to the images first; ``fmap_hook(fmap, index)`` perturbs the backbone's
    map (feature-map attacks; the model must expose ``feature_map``/``head``). ``amp`` runs the
    forward in bfloat16 autocast on CUDA (see the harness for its measured tolerance).
    The model must be in eval mode: a train-mode model is refused, never silently switched.

    ``rows=(lo, hi)`` (a shard of whole batches, :mod:`reidbench.eval.distributed`) returns only
    the features of images ``lo..hi-1``, computed in the same batches with the same global
    indices as the whole set; a random ``defense`` is still run on every batch (its output
    discarded outside the shard) so that its generator draws what one process would draw.
    """
    check_eval_mode(model, "evaluated")
    dev = _device_of(model)
    feats = []
    lo, hi = rows if rows is not None else (0, len(images))
    replay = defense is not None and bool(getattr(defense, "random", False))
    for s in range(0, len(images), batch_size):
        inside = lo <= s < hi
        if not inside and not replay:
            continue
        x = to_float(images[s : s + batch_size].to(dev, non_blocking=True))
        if defense is not None:
            x = defense(x)
        if not inside:  # only to advance the random defense's generator
            continue
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and dev.type == "cuda"):
            if fmap_hook is None:
                f = model(x)
            else:
                if not hasattr(model, "feature_map"):
                    from reidbench.errors import ReidbenchError

                    raise ReidbenchError("feature-map attacks need a reidbench model with feature_map/head; "
                                         "this model is a black box (--model module:factory)")  # fmt: skip
                if getattr(model, "input_transform", None) is not None:
                    x = model.input_transform(x)
                idx = torch.arange(s, s + len(x), device=dev)
                f = model.head(fmap_hook(model.feature_map(x), idx))
        feats.append(f.float())
        if progress is not None:
            progress(len(x))
    return torch.cat(feats) if feats else torch.empty(0, device=dev)
