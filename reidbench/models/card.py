"""Model cards: typed, frozen records of what a registered model is and how it was made."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PaperResult:
    """A number the method's paper reports, shown in reports beside ours, labelled as the paper's."""

    dataset: str
    attack: str
    rank1: float | None
    mAP: float | None
    model: str = ""  # the row in the paper's table ("baseline", "JAD", ...)
    source: str = ""  # table or figure
    note: str = ""


@dataclass(frozen=True)
class ModelCard:
    """What a registered model is, how it was trained, and where it differs from its paper."""

    name: str
    method: str
    paper: str
    backbone: str
    input_size: tuple[int, int]
    feat_dim: int
    num_classes: int
    train_dataset: str
    recipe: str
    hyperparams: dict[str, Any] = field(default_factory=dict)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    pooling: str = "avg"
    distance: str = "cosine"
    checkpoint: str | None = None
    sha256: str | None = None
    inference_defense: str | None = None
    paper_results: tuple[PaperResult, ...] = ()
    deviations: tuple[str, ...] = ()
    code: str = ""
    notes: str = ""
    recipe_options: dict[str, Any] = field(default_factory=dict)  # the recipe's options for this model (ablations)
    ablation_of: str = ""  # a paper's ablation of that model: the default benchmark measures its clean accuracy only

    def replace(self, **changes: Any) -> ModelCard:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["input_size"] = tuple(d["input_size"])
        d["mean"] = tuple(d.get("mean", cls.mean))
        d["std"] = tuple(d.get("std", cls.std))
        d["paper_results"] = tuple(PaperResult(**p) for p in d.get("paper_results", ()))
        d["deviations"] = tuple(d.get("deviations", ()))
        return cls(**d)
