"""Runs inside one release's source tree (``PYTHONPATH=<tree>``), for the side-by-side benchmarks.

It only uses what every release since 0.1.0 has: ``reidbench.eval.harness`` (``GridSpec``,
``AttackRequest``, ``run_grid``), ``reidbench.attacks`` (``create_attack``, ``AttackContext``) and
``reidbench.zoo.create_model`` or ``reidbench.models.create_model``. Three modes:

``grid SPEC.json``
    Runs a grid (models x attacks on synthetic-mini, defenses auto and none, both modes) with
    the spec's checkpoints and threads, and prints one JSON line: the release's version and, per
    cell, its identifying fields, the harness's own ``seconds`` and its metrics.

``names``
    Prints the release's version, the file it was imported from and its attack names.

``attacks INPUTS.pt``
    A worker for ``bench_attacks.py``: loads the model weights, images and attack context the
    parent saved, then reads one JSON request per line from stdin (``{"name", "params",
    "out"}``), runs that attack once, saves the adversarial images to ``out`` and answers with one
    JSON line ``{"seconds": ...}``. The parent interleaves these runs with its own.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any


def _heap() -> None:
    """What each release's CLI does first (``reidbench._alloc``, in every release since 0.1.0):
    large CPU tensors reuse heap memory instead of fresh mmaps, so both sides run as users run them."""
    try:
        from reidbench._alloc import keep_large_allocations_on_heap
    except ImportError:
        return
    keep_large_allocations_on_heap()


def _create_model(name: str, device: str) -> Any:
    try:
        from reidbench.zoo import create_model
    except ImportError:  # 0.1.0: the registry built models
        from reidbench.models import create_model  # type: ignore[no-redef]
    return create_model(name, checkpoint=None, device=device)


def _threads(value: str) -> Any:
    """A context manager setting torch's threads: a number, or "default" (the release's own choice:
    ``--threads auto`` where the release has it, else torch's default)."""
    import contextlib

    import torch

    if value == "default":
        try:
            from reidbench.cli.run_cmd import cpu_threads
        except ImportError:
            return contextlib.nullcontext(torch.get_num_threads())
        return cpu_threads("auto")
    torch.set_num_threads(int(value))
    return contextlib.nullcontext(int(value))


def grid(spec_path: str) -> None:
    from pathlib import Path

    import reidbench
    from reidbench.eval.harness import AttackRequest, GridSpec, run_grid

    cfg = json.loads(Path(spec_path).read_text())
    _heap()
    wanted: dict[str, Any] = dict(
        models=cfg["models"], attacks=[AttackRequest(n, dict(p)) for n, p in cfg["attacks"]],
        dataset="synthetic-mini", datasets=["synthetic-mini"], data_root=cfg["data_root"],
        defenses=["auto", "none"], modes=["oblivious", "adaptive"], targets=["query"],
        checkpoints=cfg["checkpoints"], device="cpu", seed=0,
    )  # fmt: skip
    known = {f.name for f in dataclasses.fields(GridSpec)}
    spec = GridSpec(**{k: v for k, v in wanted.items() if k in known})
    with _threads(cfg["threads"]) as threads:
        t0 = time.perf_counter()
        records = run_grid(spec, cfg["out"], fresh=True, progress=False)
        wall = time.perf_counter() - t0
    cells = []
    for r in records:
        c = r.config
        cells.append({
            "key": [c.model, c.defense, c.mode, c.target, c.attack, c.params],
            "attack": c.attack, "seconds": r.seconds, "fingerprint": r.fingerprint,
            "metrics": {k: getattr(r, k) for k in ("rank1", "rank5", "rank10", "mAP", "mINP")},
        })  # fmt: skip
    print(json.dumps({"version": getattr(reidbench, "__version__", "?"), "threads": threads, "wall": wall,
                      "cells": cells}))  # fmt: skip


def attacks(inputs_path: str) -> None:
    import torch

    from reidbench.attacks import AttackContext, create_attack

    inputs = torch.load(inputs_path, weights_only=True)
    _heap()
    torch.set_num_threads(int(inputs["threads"]))
    model = _create_model("baseline", "cpu")
    model.load_state_dict(inputs["state"])
    model.eval()
    ctx = AttackContext(**inputs["context"])
    images, pids = inputs["images"], inputs["pids"]
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        atk = create_attack(req["name"], model, **req["params"])
        atk.set_context(ctx)
        t0 = time.perf_counter()
        adv = atk(images, pids, torch.arange(len(images)))
        seconds = time.perf_counter() - t0
        torch.save(adv, req["out"])
        print(json.dumps({"seconds": seconds}), flush=True)


def names(_: str) -> None:
    """The release's version, file and registered attack names, as one JSON line."""
    import reidbench
    from reidbench.attacks import ATTACKS

    print(json.dumps({"version": getattr(reidbench, "__version__", "?"), "file": reidbench.__file__,
                      "attacks": ATTACKS.names("*")}))  # fmt: skip


if __name__ == "__main__":
    {"grid": grid, "attacks": attacks, "names": names}[sys.argv[1]](sys.argv[2] if len(sys.argv) > 2 else "")
