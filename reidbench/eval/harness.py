"""The benchmark harness: a grid of (model, defense, mode, attack, parameters, target) cells.

``run_grid(spec, run_dir)`` plans the grid (:mod:`reidbench.eval.planning`), skips the cells whose
records already exist (resume), and runs the rest one by one (:mod:`reidbench.eval.cell`), with
models, images and gallery features held by :class:`~reidbench.eval.runtime.Runtime`. Each
finished cell is written atomically to ``run_dir/cells/<cell_id>.json`` before the next starts,
so an interrupted run loses at most the cell it was in, and a re-run computes exactly the missing
cells. Every cell is seeded from its own configuration (attack randomness from the seed and the
image index, defense draws from the seed and the draw number), never from what ran before it, so
a resumed run gives the same numbers as an uninterrupted one.

Under ``torchrun`` (:mod:`reidbench.eval.distributed`) every rank plans the same grid and runs
the same cells, each doing its shard of every cell's images; rank 0 alone takes the lock, reads
what is done, and writes the manifest, the records, the artifacts and the tables. It tells the
other ranks which cells to run, so a resumed run is resumed on every rank.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock, Timeout

from reidbench import __version__
from reidbench.attacks import attack_entry
from reidbench.data import load_dataset
from reidbench.errors import ParameterError, ReidbenchError
from reidbench.eval import distributed
from reidbench.eval.cell import run_cell
from reidbench.eval.planning import AttackRequest, GridSpec, PlannedCell, plan_cells
from reidbench.eval.results import (
    CellConfig,
    CellResult,
    artifact_path,
    atomic_write_text,
    read_records,
    write_record,
    write_tables,
)
from reidbench.eval.runtime import Runtime
from reidbench.eval.sanity import run_sanity_checks
from reidbench.progress import bar as tqdm

__all__ = ["AttackRequest", "GridSpec", "PlannedCell", "finalize", "plan_cells", "run_cell", "run_grid", "write_manifest"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# The grid
# ---------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    import torchattacks
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "torchattacks": torchattacks.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "platform": platform.platform()}  # fmt: skip


def _dataset_json(ds: Any) -> dict[str, Any]:
    return {"name": ds.name, "fingerprint": ds.fingerprint, "root": str(ds.root),
            "n_query": len(ds.query), "n_gallery": len(ds.gallery), "n_train": len(ds.train)}  # fmt: skip


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The run directory's manifest as written by an earlier invocation; {} when there is none,
    or it is unreadable or not a JSON object (it is then rewritten whole)."""
    path = run_dir / "manifest.json"
    if not path.is_file():
        return {}
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _section(manifest: dict[str, Any], key: str) -> dict[str, Any]:
    """One object of a manifest (``models``, ``generators``); {} if absent or malformed."""
    value = manifest.get(key)
    return value if isinstance(value, dict) else {}


def write_manifest(run_dir: Path, spec: GridSpec, rt: Runtime, command: str, cells: list[PlannedCell],
                   world_size: int = 1, datasets: list[Any] | None = None, *, prev: dict[str, Any] | None = None,
                   generators: dict[str, str] | None = None) -> dict[str, Any]:
    """Write ``run_dir/manifest.json``, keeping what ``prev`` (the earlier manifest, read if not
    given) records of earlier invocations; ``generators``: :func:`input_files` of ``cells``."""
    models: dict[str, Any] = {}
    for name in dict.fromkeys([*spec.models, *spec.surrogates]):
        card = rt.card(name)
        models[name] = {"checkpoint": card.checkpoint, "sha256": card.sha256,
                        "card": json.loads(card.to_json()), "options": getattr(rt.model(name), "options", {})}  # fmt: skip
    defenses: dict[str, Any] = {}
    for name in sorted({c.config.defense for c in cells} - {"none"}):
        d = rt.defense(name, rt.card(cells[0].config.model).input_size, 0)
        defenses[name] = {"random": bool(getattr(d, "random", False)), "differentiable": bool(getattr(d, "differentiable", True)),
                          "description": (type(d).__doc__ or "").strip().splitlines()[0] if type(d).__doc__ else ""}  # fmt: skip
    import re

    from reidbench.attack_types import Access, Budget

    def plain(text: str) -> str:  # the threat prose marks parameters as code (`area`); JSON is plain text
        return re.sub(r"`+([^`]+?)`+", r"'\1'", text)

    attacks = {}
    entries = {name: attack_entry(name) for name in sorted({c.config.attack for c in cells} - {"none"})}
    for name, e in entries.items():
        t = e.threat
        attacks[name] = {"family": e.family.value, "threat": plain(t.render()), "defaults": e.defaults,
                         "threat_model": {"access": t.access.name, "how": plain(t.how), "knows": plain(t.knows),
                                          "budget": t.budget.name, "scope": plain(t.scope)}}  # fmt: skip
    # the run's threat models, each clause rendered from the structured threats of the attacks it names
    attacked = [c.config for c in cells if c.config.attack != "none"]
    if not attacked:
        threat_models = ["who is attacked: nobody; every cell of this run is clean (no attack, no attacker, no budget)"]
    else:
        sides = {"query": "query", "gallery": "gallery", "both": "both (query and gallery)"}
        threat_models = ["who is attacked: " + "; ".join(
            f"{text} ({', '.join(sorted({c.attack for c in attacked if c.target == side}))})"
            for side, text in sides.items() if any(c.target == side for c in attacked))]  # fmt: skip
        access_text = {Access.WHITE_BOX: "white-box on the evaluated model", Access.SCORES: "score queries of the evaluated model (no gradients)",
                       Access.NONE: "no knowledge of the model", Access.INTERNAL: "none: a test-time perturbation inside the model (not an input attack)"}  # fmt: skip
        budget_text = {Budget.LINF: "L-inf eps and step in /255 units of [0,1] images", Budget.L2: "L2, no eps (not comparable with L-inf budgets)",
                       Budget.AREA: "area, the occluded or perturbed fraction of the image", Budget.NONE: "none"}  # fmt: skip
        know: dict[str, list[str]] = {}
        budgets: dict[str, list[str]] = {}
        for name, e in entries.items():
            know.setdefault(access_text[e.threat.access], []).append(name)
            budgets.setdefault(budget_text[e.threat.budget], []).append(name)
        clauses = [f"{k} ({', '.join(v)})" for k, v in know.items()]
        if any(c.surrogate for c in attacked):
            clauses.append("transfer: crafted on " + ", ".join(sorted({c.surrogate for c in attacked if c.surrogate}))
                           + ", evaluated on the target (black-box)")  # fmt: skip
        threat_models.append("what the attacker knows: " + "; ".join(clauses))
        modes = {c.mode for c in attacked if c.defense != "none"}
        if modes:
            how = (["oblivious (crafted on the bare model, the defense applied afterwards)"] if "oblivious" in modes else []) + (
                [f"adaptive (crafted through the defense: BPDA for non-differentiable parts, EOT over {spec.eot} draws for random ones)"]
                if "adaptive" in modes else [])  # fmt: skip
            threat_models.append("defenses: " + " and ".join(how))
        threat_models.append("budget: " + "; ".join(f"{k} ({', '.join(v)})" for k, v in budgets.items())
                             + ("; iterations as listed per cell" if any(c.steps is not None for c in attacked) else ""))  # fmt: skip
        if any(c.target == "both" for c in attacked):
            threat_models.append("'both': query and gallery images are both perturbed; matching perturbed queries against "
                                 "perturbed gallery images can restore their similarity, so 'both' can look weaker than one side")  # fmt: skip
    prev = read_manifest(run_dir) if prev is None else prev
    # the weights of every model and generator the run directory's cells were computed with,
    # earlier invocations' included (a resumed run is checked against them: _check_same_inputs)
    for name, entry in _section(prev, "models").items():
        models.setdefault(name, entry)
    generators = {**_section(prev, "generators"), **(input_files(cells) if generators is None else generators)}
    manifest = {
        "reidbench_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "device": str(rt.device) + (f" ({torch.cuda.get_device_name(rt.device)})" if rt.device.type == "cuda" else ""),
        "threads": torch.get_num_threads(),
        "world_size": world_size,
        "seed": spec.seed,
        "command": command,
        "config": spec.to_json(),
        "dataset": _dataset_json(rt.dataset),
        "datasets": [_dataset_json(d) for d in (datasets or [rt.dataset])],
        "models": models,
        "generators": generators,
        "defenses": defenses,
        "attacks": attacks,
        "threat_models": threat_models,
        "cells_planned": len(cells),
    }  # fmt: skip
    old = run_dir / "manifest.json"
    if prev:
        manifest["created"] = prev.get("created", manifest["created"])
        manifest["invocations"] = prev.get("invocations", []) + [{"command": command, "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}]
    manifest.setdefault("invocations", [{"command": command, "at": manifest["created"]}])
    atomic_write_text(old, json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return manifest


def _generator_of(cfg: CellConfig) -> str | None:
    """The ``generator`` parameter of an ``mpg`` cell; None for other attacks."""
    return str(json.loads(cfg.params).get("generator", "default")) if cfg.attack == "mpg" else None


def input_files(cells: list[PlannedCell]) -> dict[str, str]:
    """sha256 of the generator files the grid's ``mpg`` cells use, by their ``generator`` parameter."""
    from reidbench.attacks.mpg import generator_sha256

    names = dict.fromkeys(g for g in (_generator_of(c.config) for c in cells) if g is not None)
    return {g: generator_sha256(g) for g in names}


def _check_same_inputs(run_dir: Path, prev: dict[str, Any], rt: Runtime, spec: GridSpec,
                       generators: dict[str, str], records: list[CellResult]) -> None:
    """Resuming must not mix weights: a cell already in ``run_dir`` (``records``) was computed
    with the model (and generator) weights its manifest (``prev``) names; if this run has other
    weights under the same name (``generators``: this grid's :func:`input_files`), those cells
    would be kept as if they were this model's. Refused in one line."""
    models, before = _section(prev, "models"), _section(prev, "generators")
    for name in dict.fromkeys([*spec.models, *spec.surrogates]):
        entry = models.get(name)
        old, new = entry.get("sha256") if isinstance(entry, dict) else None, rt.card(name).sha256
        n = sum(1 for r in records if name in (r.config.model, r.config.surrogate))
        if n and old and new and old != new:
            raise ReidbenchError(f"{run_dir} holds {n} cell(s) of {name} computed with other weights (sha256 "
                                 f"{old[:12]}, these are {new[:12]}); pass --fresh to recompute them, or use another --out")  # fmt: skip
    for g, new in generators.items():
        old = before.get(g)
        n = sum(1 for r in records if _generator_of(r.config) == g)
        if n and old and old != new:
            raise ReidbenchError(f"{run_dir} holds {n} mpg cell(s) computed with another generator file {g} (sha256 "
                                 f"{old[:12]}, now {new[:12]}); pass --fresh to recompute them, or use another --out")  # fmt: skip


def _lock_timeout(value: float | None) -> float:
    if value is not None:
        return value
    text = os.environ.get("REIDBENCH_LOCK_TIMEOUT", "10")
    try:
        return float(text)
    except ValueError:
        raise ParameterError(f"REIDBENCH_LOCK_TIMEOUT={text!r} is not a number of seconds; unset it or use e.g. 10") from None


@contextmanager
def run_dir_lock(run_dir: Path, timeout: float) -> Iterator[None]:
    """Hold the OS file lock ``run_dir/.reidbench.lock``: one writer per run directory.

    The lock is released when the process ends, however it ends. A second writer waits up to
    ``timeout`` seconds and then refuses with one line.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReidbenchError(f"cannot create the run directory {run_dir}: {exc.strerror}; use another --out") from None
    lock = FileLock(run_dir / ".reidbench.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("another reidbench run is writing %s; waiting up to %g s for it", run_dir, timeout)
        try:
            lock.acquire(timeout=max(timeout, 0))
        except Timeout:
            raise ReidbenchError(f"another reidbench run is writing {run_dir} (waited {timeout:g} s); "
                                 "wait for it or use another --out") from None  # fmt: skip
    try:
        yield
    finally:
        lock.release()


def _clear(run_dir: Path, fresh: bool) -> None:
    """Under the lock: forget everything with ``fresh``; always drop the temporary files a killed
    writer left behind (a finished file is only ever renamed into place)."""
    if fresh:
        for sub in ("cells", "artifacts", "cache"):
            shutil.rmtree(run_dir / sub, ignore_errors=True)
        for f in ("results.csv", "results.jsonl", "manifest.json", "sanity.json", "report.pdf"):
            (run_dir / f).unlink(missing_ok=True)
    for sub in ("cells", "artifacts", "cache", "."):
        for tmp in (run_dir / sub).glob(".*.tmp*"):
            tmp.unlink(missing_ok=True)


def _todo(run_dir: Path, cells: list[PlannedCell]) -> tuple[dict[str, CellResult], list[str]]:
    """Under the lock: the records already there (another run's cells count) and the cell ids still to run."""
    done = {r.cell_id: r for r in _existing(run_dir)}
    todo = [c.config.cell_id for c in cells if c.config.cell_id not in done]
    if done:
        log.info("resuming: %d of %d cells already done", len(cells) - len(todo), len(cells))
    return done, todo


def _run_cells(rts: dict[str, Runtime], run_dir: Path, cells: list[PlannedCell], progress: bool,
               done: dict[str, CellResult], todo: list[str]) -> None:
    """Run the cells ``todo`` (each on its dataset's runtime), writing each record (and artifact)
    as it ends; under torchrun every rank computes and rank 0 alone writes."""
    write = next(iter(rts.values())).dist.is_main
    wanted = set(todo)
    with tqdm(total=len(cells), initial=len(cells) - len(todo), desc="cells", unit="cell",
              disable=not (progress and write), position=0) as bar:  # fmt: skip
        for plan in (c for c in cells if c.config.cell_id in wanted):
            bar.set_postfix_str(plan.config.label()[:60], refresh=True)
            result, artifact = run_cell(rts[plan.config.dataset], plan)
            if write:
                if artifact is not None:
                    artifact.save(artifact_path(run_dir, result.cell_id))
                write_record(run_dir, result)
                done[result.cell_id] = result
                write_tables(run_dir, _grid_records(cells, done))
            bar.update(1)


def run_grid(spec: GridSpec, run_dir: str | Path, *, command: str = "", fresh: bool = False,
             progress: bool = True, lock_timeout: float | None = None) -> list[CellResult]:
    """Run every missing cell of ``spec`` in ``run_dir``; return the records of the grid's cells.

    The grid is planned and every model and attack built before any data is read, so bad input
    fails at once. One process writes a run directory at a time (:func:`run_dir_lock`; default
    wait ``$REIDBENCH_LOCK_TIMEOUT``, else 10 s); a second run on the same directory then computes
    only the cells the first did not, or refuses with one line.

    Under ``torchrun`` the ranks share the work of every cell and rank 0 alone takes the lock
    and writes; ranks other than 0 return ``[]``.
    """
    run_dir = Path(run_dir)
    timeout = _lock_timeout(lock_timeout)
    from reidbench._alloc import keep_large_allocations_on_heap

    keep_large_allocations_on_heap()  # as the CLI does: a run from Python is as fast (never a number changes)
    dist, device = distributed.setup(torch.device(spec.device))
    try:
        return _run_grid(spec, run_dir, dist, device, command=command, fresh=fresh, progress=progress, timeout=timeout)
    finally:
        distributed.teardown(dist)


def _run_grid(spec: GridSpec, run_dir: Path, dist: distributed.Dist, device: torch.device, *, command: str,
              fresh: bool, progress: bool, timeout: float) -> list[CellResult]:
    torch.manual_seed(spec.seed)
    rt = Runtime(spec, None, run_dir, progress=progress, dist=dist, device=device)
    for name in dict.fromkeys([*spec.models, *spec.surrogates]):
        rt.model(name)  # fail early on an unknown model or a bad checkpoint
    cards = {n: rt.card(n) for n in spec.models}
    cells = plan_cells(spec, cards, {n: rt.bare(n) for n in spec.models})  # validates before any data is read
    rts = {name: rt.for_dataset(load_dataset(name, spec.data_root)) for name in spec.dataset_names()}
    rt = rts[spec.dataset_names()[0]]
    for r in rts.values():
        if dist.active:
            distributed.check_work(dist.world_size, len(r.dataset.query), r.dataset.name)  # type: ignore[union-attr]
    # one path for one process and for torchrun: without a process group the broadcasts return
    # their argument and the barrier is a no-op
    with ExitStack() as held:
        failure: str | None = None
        done: dict[str, CellResult] = {}
        todo: list[str] = []
        if dist.is_main:  # rank 0 alone locks, clears, reads and writes the run directory
            try:
                held.enter_context(run_dir_lock(run_dir, timeout))
                _clear(run_dir, fresh)
                prev, generators = read_manifest(run_dir), input_files(cells)
                done, todo = _todo(run_dir, cells)
                _check_same_inputs(run_dir, prev, rt, spec, generators, list(done.values()))
                write_manifest(run_dir, spec, rt, command, cells, world_size=dist.world_size,
                               datasets=[r.dataset for r in rts.values()], prev=prev, generators=generators)  # type: ignore[misc]
            except ReidbenchError as exc:
                dist.broadcast_object((str(exc), []))  # the others stop with the same line
                raise
        failure, todo = dist.broadcast_object((failure, todo))
        if failure is not None:
            raise ReidbenchError(failure)
        _run_cells(rts, run_dir, cells, progress, done, todo)
        records = finalize(run_dir, cells) if dist.is_main else []
        dist.barrier()  # the others end only once rank 0 has written everything
        return records


def _existing(run_dir: Path) -> Iterator[CellResult]:
    if (run_dir / "cells").is_dir():
        yield from read_records(run_dir)


def _grid_records(cells: list[PlannedCell], done: dict[str, CellResult]) -> list[CellResult]:
    return [done[c.config.cell_id] for c in cells if c.config.cell_id in done]


def finalize(run_dir: Path, cells: list[PlannedCell] | None = None) -> list[CellResult]:
    """Attach the sanity checks' warnings to every record of the run and rewrite the tables.

    Warnings are recomputed from all records each time, so they never go stale when a run grows.
    """
    records = read_records(run_dir)
    by_cell: dict[str, list[str]] = {}
    for w in run_sanity_checks(records):
        by_cell.setdefault(w.cell_id, []).append(w.message)
    updated = []
    for r in records:
        base = tuple(r.extra.get("runtime_warnings", ()))
        new = dataclasses.replace(r, warnings=base + tuple(by_cell.get(r.cell_id, ())))
        if new.warnings != r.warnings:
            write_record(run_dir, new)
        updated.append(new)
    atomic_write_text(run_dir / "sanity.json", json.dumps(by_cell, indent=1, sort_keys=True))
    if cells is not None:
        # the grid's cells first, in grid order; cells of earlier invocations of the same run dir after them
        by_id = {r.cell_id: r for r in updated}
        grid = [by_id[c.config.cell_id] for c in cells if c.config.cell_id in by_id]
        in_grid = {r.cell_id for r in grid}
        write_tables(run_dir, grid + [r for r in updated if r.cell_id not in in_grid])
        return grid
    write_tables(run_dir, updated)
    return updated

