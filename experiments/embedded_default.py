"""Experiments on the embedded default: why do defenses change clean accuracy the way they do here?

Each *condition* changes one thing about the embedded default (training length, identities,
backbone width, evaluation set, identity cues) and trains the same models with the same budget
(the shared trainer's schedule, scaled to the condition's epochs; every recipe with its paper's
hyper-parameters). Checkpoints go under ``experiments/runs/CONDITION/``; clean accuracy is then
measured by the benchmark's own harness (``reidbench run --attack none``, eval mode, the model's
own inference defense) and written to ``experiments/results/CONDITION.json``; ``table`` renders
every condition into ``docs/embedded-default.md``'s table.

    python experiments/embedded_default.py train longer --epochs 60 --curve 10,20,30,40,50,60
    python experiments/embedded_default.py evaluate longer
    python experiments/embedded_default.py table

Training runs one model after another in one process; ``--threads 1`` lets two conditions train
side by side on a 2-core machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RUNS = ROOT / "runs"
RESULTS = ROOT / "results"
MODELS = ["baseline", "aos", "igoas", "jad"]
EVAL_SETS = ["synthetic-mini", "synthetic-mini-occluded"]


def _train(args: argparse.Namespace) -> None:
    import torch

    from reidbench.models.checkpoints import save_checkpoint
    from reidbench.train.training import default_config, train_registered

    torch.set_num_threads(args.threads)
    out_dir = RUNS / args.condition
    out_dir.mkdir(parents=True, exist_ok=True)
    curve = {int(e) for e in args.curve.split(",")} if args.curve else set()
    log_path = out_dir / "train-log.jsonl"
    for name in args.models.split(","):
        backbone = args.backbone
        cfg = default_config(backbone or "resnet_tiny").scaled(args.epochs)
        cfg = dataclasses.replace(cfg, seed=args.seed)
        final = out_dir / f"{name}-e{args.epochs}.safetensors"
        if final.exists():
            print(f"{final} exists; skipping {name}", flush=True)
            continue
        options = {}
        if name == "aos" or name.startswith("aos"):
            # AOS's stage 1 is the baseline trained with the same config and seed: reuse this condition's.
            stage1 = out_dir / f"baseline-e{args.epochs}.safetensors"
            if stage1.exists():
                options["stage1_checkpoint"] = str(stage1)
        if args.recipe_option:
            for kv in args.recipe_option:
                k, v = kv.split("=", 1)
                options[k] = v
        tag = args.tag or name

        def save_point(epoch: int, model, card, tag: str = tag) -> None:  # type: ignore[no-untyped-def]
            if epoch in curve and epoch != args.epochs:
                save_checkpoint(model, card, out_dir / f"{tag}-e{epoch}.safetensors", extra={"epoch": epoch})

        t0 = time.perf_counter()
        card, path = train_registered(name, dataset=args.dataset, out=out_dir / f"{tag}-e{args.epochs}.safetensors",
                                      backbone=backbone, config=cfg, recipe_options=options, progress=False,
                                      on_epoch_end=save_point if curve else None)
        with log_path.open("a") as fh:
            fh.write(json.dumps({"model": tag, "recipe_options": options, "epochs": args.epochs,
                                 "dataset": args.dataset, "backbone": backbone or card.backbone,
                                 "seconds": round(time.perf_counter() - t0, 1), "threads": args.threads,
                                 "checkpoint": path.name}) + "\n")
        print(f"{tag}: {path} in {time.perf_counter() - t0:.0f} s", flush=True)


def _evaluate(args: argparse.Namespace) -> None:
    import tempfile

    import torch

    from reidbench.eval.harness import AttackRequest, GridSpec, run_grid
    from reidbench.models.checkpoints import read_card_json

    torch.set_num_threads(args.threads)
    out_dir = RUNS / args.condition
    results_path = RESULTS / f"{args.condition}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = json.loads(results_path.read_text())["rows"] if results_path.exists() else []
    done = {(r["checkpoint"], r["dataset"]) for r in rows}
    sets = args.datasets.split(",")
    for ck in sorted(p for p in out_dir.glob("*.safetensors") if ".mpg." not in p.name):  # not APD's generator
        card = read_card_json(ck)[0]
        tag, epoch = ck.stem.rsplit("-e", 1)
        for ds in sets:
            if (ck.name, ds) in done:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                spec = GridSpec(models=[card.name], attacks=[AttackRequest("none")], dataset=ds,
                                checkpoints={card.name: str(ck)}, defenses=["auto"])
                (rec,) = run_grid(spec, Path(tmp), command="experiments/embedded_default.py evaluate", progress=False)
            rows.append({"condition": args.condition, "model": tag, "recipe": card.recipe, "epoch": int(epoch),
                         "dataset": ds, "train_dataset": card.train_dataset, "backbone": card.backbone,
                         "defense": rec.config.defense, "checkpoint": ck.name,
                         "rank1": round(rec.rank1, 4), "mAP": round(rec.mAP, 4), "mINP": round(rec.mINP, 4)})
            print(f"{args.condition} {tag} e{epoch} on {ds}: R1 {rec.rank1:.1f} mAP {rec.mAP:.1f}", flush=True)
            results_path.write_text(json.dumps({"condition": args.condition, "rows": rows}, indent=1))


CONDITIONS = [  # (condition, what changed, epochs, the evaluation sets)
    ("control", "the shipped embedded default before this study: 30 epochs, resnet_tiny, 96 ids", 30),
    ("longer", "training to convergence: 60 epochs (the same schedule stretched)", 60),
    ("more-ids", "twice the training identities and images (synthetic-mini-large; same test split)", 30),
    ("wider", "a wider backbone: resnet_tiny_wide, widths 32-256, 1.2M parameters", 30),
    ("rich", "identity cues beyond colour (synthetic-mini-rich: textures, hats, coats, back prints)", 30),
]
ORDER = ["baseline", "etndnet", "igoas", "aos", "aos-hard1", "aos-random", "jad", "advtrain", "fed", "apd"]


def _rows(condition: str) -> list[dict]:
    path = RESULTS / f"{condition}.json"
    return json.loads(path.read_text())["rows"] if path.exists() else []


def _table(args: argparse.Namespace) -> None:
    """Markdown tables of every condition's results (printed; docs/embedded-default.md embeds them)."""
    del args
    out = []
    models = ["baseline", "igoas", "aos", "jad", "etndnet", "advtrain"]
    out.append("| condition | what changed | epochs | test set | " + " | ".join(models) + " |")
    out.append("|---|---|---|---|" + "---|" * len(models))
    for cond, what, epochs in CONDITIONS:
        rows = [r for r in _rows(cond) if r["epoch"] == epochs]
        for ds in dict.fromkeys(r["dataset"] for r in rows):
            by = {r["model"]: r["mAP"] for r in rows if r["dataset"] == ds}
            base = by.get("baseline")
            cells = []
            for m in models:
                if m not in by:
                    cells.append("–")
                elif m == "baseline" or base is None:
                    cells.append(f"{by[m]:.1f}")
                else:
                    cells.append(f"{by[m]:.1f} ({by[m] - base:+.1f})")
            out.append(f"| {cond} | {what} | {epochs} | {ds} | " + " | ".join(cells) + " |")
    out.append("")
    curve = [r for r in _rows("longer")]
    if curve:
        epochs = sorted({r["epoch"] for r in curve})
        out.append("Learning curve (condition `longer`), mAP on synthetic-mini | synthetic-mini-occluded:")
        out.append("")
        out.append("| model | " + " | ".join(f"epoch {e}" for e in epochs) + " |")
        out.append("|---|" + "---|" * len(epochs))
        for m in [m for m in ORDER if any(r["model"] == m for r in curve)]:
            cells = []
            for e in epochs:
                v = {r["dataset"]: r["mAP"] for r in curve if r["model"] == m and r["epoch"] == e}
                cells.append(" | ".join(f"{v[d]:.1f}" for d in EVAL_SETS if d in v).replace(" | ", " \\| ") or "–")
            out.append(f"| {m} | " + " | ".join(cells) + " |")
    final = [r for r in _rows("longer") if r["epoch"] == 60]
    if final:
        out.append("")
        out.append("Every shipped model at 60 epochs (the new default), mAP and the change against the baseline:")
        out.append("")
        out.append("| model | " + " | ".join(EVAL_SETS) + " |")
        out.append("|---|" + "---|" * len(EVAL_SETS))
        base = {r["dataset"]: r["mAP"] for r in final if r["model"] == "baseline"}
        for m in [m for m in ORDER if any(r["model"] == m for r in final)]:
            v = {r["dataset"]: r["mAP"] for r in final if r["model"] == m}
            cells = [("–" if d not in v else f"{v[d]:.1f}" if m == "baseline" else f"{v[d]:.1f} ({v[d] - base[d]:+.1f})")
                     for d in EVAL_SETS]
            out.append(f"| {m} | " + " | ".join(cells) + " |")
    print("\n".join(out))


def _ship(args: argparse.Namespace) -> None:
    """Copy a condition's final checkpoints into reidbench/models/weights as the shipped ones.

    The weights are copied byte for byte; the card beside each takes the method facts from the
    registry (deviations, paper, code) and keeps the training record. The baseline's card also
    records the digest of its weights after epoch 10, which the test suite reproduces cheaply.
    """
    import shutil

    from reidbench.models.checkpoints import read_state_dict, state_digest
    from reidbench.models.registry import MODELS, WEIGHTS_DIR

    src = RUNS / args.condition
    for name in args.models.split(","):
        ck = src / f"{name}-e{args.epochs}.safetensors"
        card = json.loads(ck.with_suffix(".json").read_text())
        code = MODELS.get(name).card
        for key in ("method", "paper", "code", "deviations", "notes", "recipe_options", "ablation_of", "paper_results"):
            value = getattr(code, key)
            card[key] = [dataclasses.asdict(v) for v in value] if key == "paper_results" else (
                list(value) if isinstance(value, tuple) else value)
        card["checkpoint"] = f"{name}.safetensors"
        early = src / f"{name}-e10.safetensors"
        if name == "baseline" and early.exists():
            card.setdefault("training", {})["state_sha256_epoch10"] = state_digest(read_state_dict(early))
            e10 = [r["mAP"] for r in _rows(args.condition)
                   if (r["model"], r["epoch"], r["dataset"]) == (name, 10, "synthetic-mini")]
            if e10:
                card["training"]["mAP_epoch10"] = e10[0]
        shutil.copyfile(ck, WEIGHTS_DIR / f"{name}.safetensors")
        (WEIGHTS_DIR / f"{name}.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
        gen = src / f"{name}-e{args.epochs}.mpg.safetensors"
        if gen.exists():  # APD's generator: the shipped `mpg` attack
            shutil.copyfile(gen, WEIGHTS_DIR / "mpg.safetensors")
            shutil.copyfile(gen.with_suffix(".json"), WEIGHTS_DIR / "mpg.json")
        print(f"shipped {name} ({card.get('sha256', '')[:12]})")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the models of one condition")
    t.add_argument("condition")
    t.add_argument("--models", default=",".join(MODELS))
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--curve", default="", help="epochs at which to save a checkpoint (learning curve)")
    t.add_argument("--dataset", default="synthetic-mini")
    t.add_argument("--backbone", default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--tag", default=None, help="file name stem instead of the model name (ablations)")
    t.add_argument("--recipe-option", action="append", default=[])
    t.add_argument("--threads", type=int, default=1)
    e = sub.add_parser("evaluate", help="clean accuracy of every checkpoint of one condition")
    e.add_argument("condition")
    e.add_argument("--datasets", default=",".join(EVAL_SETS))
    e.add_argument("--threads", type=int, default=1)
    sub.add_parser("table", help="print the tables of every condition (markdown)")
    sh = sub.add_parser("ship", help="make a condition's final checkpoints the shipped ones")
    sh.add_argument("condition")
    sh.add_argument("--models", required=True)
    sh.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args(argv)
    {"train": _train, "evaluate": _evaluate, "table": _table, "ship": _ship}[args.cmd](args)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT.parent))
    main()
