"""The default run's cells against the previous release, side by side in one run.

Both releases run the same grid in their own process, one after the other, repeated and
interleaved (the fastest of ``--repeat`` counts for each cell): the default benchmark's attack set
that both releases have (``ntp`` and ``mpg`` are newer) on ``synthetic-mini``, for ``--models``
(default ``baseline`` and ``jad``, whose circuitous scaling adds oblivious and adaptive cells),
with the defenses ``auto`` and ``none``. Both load this release's shipped weights (the previous
release's own weights were trained for 30 epochs), so every cell must give identical numbers:
the script checks R1, R5, R10, mAP and mINP of every cell and says which differ.

Times are each harness's own per-cell ``seconds``. Threads: ``--threads 1`` (default) gives both
the same single core, the like-for-like comparison of the code; ``--threads default`` lets each
release choose as a user would get it (torch's default in 0.1.0, ``--threads auto`` now), and
``--load N`` keeps N busy processes running meanwhile, as on a shared machine or CI runner.

    python benchmarks/bench_release.py                          # about 7 minutes on 2 cores
    python benchmarks/bench_release.py --threads default --load 1
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from previous_release import PREVIOUS_RELEASE, REPO, Unavailable, release_tree, worker

METRICS = ("rank1", "rank5", "rank10", "mAP", "mINP")


def _spin() -> None:  # a busy process: another job on a shared machine
    while True:
        pass


def describe(tree: Path) -> dict[str, Any]:
    """The release in ``tree``: its version, the file Python imported it from, its attacks."""
    import subprocess

    p = worker(tree, "names", stdout=subprocess.PIPE)
    stdout, _ = p.communicate()
    got = json.loads(stdout.strip().splitlines()[-1])
    if not Path(got["file"]).resolve().is_relative_to(tree.resolve()):  # an installed copy shadowing the tree
        sys.exit(f"bench_release: {tree} imports reidbench from {got['file']}; uninstall that copy or run elsewhere")
    return got


def run(tree: Path, spec: dict[str, Any], out: Path) -> dict[str, Any]:
    spec_path = out.with_suffix(".json")
    spec_path.write_text(json.dumps({**spec, "out": str(out)}))
    import subprocess

    p = worker(tree, "grid", str(spec_path), stdout=subprocess.PIPE)
    stdout, _ = p.communicate()
    if p.returncode:
        sys.exit(f"bench_release: the run in {tree} failed (exit {p.returncode}); its error is above")
    return json.loads(stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="baseline,jad", help="comma-separated (default: baseline,jad)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each release, interleaved (default: 1)")
    parser.add_argument("--threads", default="1", help="a number, or default: each release's own (default: 1)")
    parser.add_argument("--load", type=int, default=0, help="busy processes kept running meanwhile (default: 0)")
    parser.add_argument("--previous", default=PREVIOUS_RELEASE, help="the release to compare with (a git revision)")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from reidbench.cli.run_cmd import DEFAULT_ATTACKS
    from reidbench.data.registry import default_data_root
    from reidbench.models.registry import shipped_checkpoint

    try:
        old_tree = release_tree(args.previous)
    except Unavailable as e:
        print(f"bench_release: skipped: {e}")
        return
    models = args.models.split(",")
    checkpoints = {}
    for m in models:
        path = shipped_checkpoint(m)
        if path is None:
            sys.exit(f"bench_release: {m} has no shipped checkpoint; choose from the shipped models")
        checkpoints[m] = str(path)
    info = {label: describe(tree) for label, tree in (("previous", old_tree), ("this", REPO))}
    common = [(n, p) for n, p in DEFAULT_ATTACKS if n == "none" or n in info["previous"]["attacks"]]
    left_out = sorted({n for n, _ in DEFAULT_ATTACKS} - {n for n, _ in common})
    spec = {"models": models, "attacks": common, "checkpoints": checkpoints, "threads": args.threads,
            "data_root": str(default_data_root())}  # fmt: skip

    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.load)]
    for s in spinners:
        s.start()
    results: dict[str, list[dict[str, Any]]] = defaultdict(list)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(args.repeat):
                for label, tree in (("previous", old_tree), ("this", REPO)):
                    results[label].append(run(tree, spec, Path(tmp) / f"{label}{rep}"))
    finally:
        for s in spinners:
            s.terminate()

    def best(label: str) -> dict[tuple[str, ...], dict[str, Any]]:
        cells: dict[tuple[str, ...], dict[str, Any]] = {}
        for res in results[label]:
            for c in res["cells"]:
                k = tuple(c["key"])
                if k not in cells or c["seconds"] < cells[k]["seconds"]:
                    cells[k] = c
        return cells

    old, new = best("previous"), best("this")
    fps = {c["fingerprint"] for c in [*old.values(), *new.values()]}
    if len(fps) != 1:
        sys.exit(f"bench_release: the two releases read different datasets (fingerprints {sorted(fps)})")
    keys = [k for k in new if k in old]
    differ = [k for k in keys if any(old[k]["metrics"][m] != new[k]["metrics"][m] for m in METRICS)]

    threads = {label: results[label][0]["threads"] for label in results}
    print(f"previous release {args.previous[:10]} (0.1.0) vs this tree; models {', '.join(models)} with this "
          f"release's weights; {len(keys)} common cells (not in 0.1.0: {', '.join(left_out) or 'none'}); "
          f"threads previous {threads['previous']}, this {threads['this']}; {args.load} busy process(es); "
          f"best of {args.repeat}; {os.cpu_count()} CPUs")  # fmt: skip
    per_attack: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])  # type: ignore[arg-type]
    for k in keys:
        acc = per_attack[old[k]["attack"]]
        acc[0] += old[k]["seconds"]
        acc[1] += new[k]["seconds"]
        acc[2] += 1
    print(f"{'attack':16s} {'cells':>5s} {'previous s':>11s} {'this s':>9s} {'speed-up':>9s}")
    for name, (a, b, n) in per_attack.items():
        print(f"{name:16s} {n:5d} {a:11.1f} {b:9.1f} {a / max(b, 1e-9):8.2f}x")
    att = [k for k in keys if old[k]["attack"] != "none"]
    a_old, a_new = sum(old[k]["seconds"] for k in att), sum(new[k]["seconds"] for k in att)
    t_old, t_new = sum(old[k]["seconds"] for k in keys), sum(new[k]["seconds"] for k in keys)
    print(f"{'attack cells':16s} {len(att):5d} {a_old:11.1f} {a_new:9.1f} {a_old / max(a_new, 1e-9):8.2f}x")
    print(f"{'all cells':16s} {len(keys):5d} {t_old:11.1f} {t_new:9.1f} {t_old / max(t_new, 1e-9):8.2f}x")
    walls = {label: min(r["wall"] for r in results[label]) for label in results}
    print(f"whole grid (wall, data loading and planning included): previous {walls['previous']:.1f} s, "
          f"this {walls['this']:.1f} s, {walls['previous'] / walls['this']:.2f}x")
    if differ:
        print(f"RESULTS DIFFER in {len(differ)} of {len(keys)} cells, e.g. {differ[0]}: "
              f"{old[differ[0]]['metrics']} vs {new[differ[0]]['metrics']}")
        sys.exit(1)
    print(f"results identical: {', '.join(METRICS)} equal in all {len(keys)} cells")


if __name__ == "__main__":
    main()
