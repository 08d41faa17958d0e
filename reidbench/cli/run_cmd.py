"""``reidbench run``: the benchmark grid, with resume, results and a report."""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from reidbench.cli.options import closest, nonempty_path, parse_kv, resolve_device, split_numbers
from reidbench.errors import ParameterError
from reidbench.progress import quiet as quiet_progress

# The standard attack set of the default benchmark (`reidbench run` with no --model/--attack).
DEFAULT_ATTACKS: list[tuple[str, dict[str, Any]]] = [
    ("none", {}),
    ("mifgsm", {"eps": 2}), ("mifgsm", {"eps": 5}), ("mifgsm", {"eps": 8}),
    ("sma", {}), ("lta", {}), ("fna", {}), ("noise", {"eps": 5}),
    ("erasing", {"area": 0.1}), ("erasing", {"area": 0.2}), ("erasing", {"area": 0.3}), ("erasing", {"area": 0.4}),
    ("aos-window", {}), ("npo", {}), ("ntp", {}), ("mpg", {}),
    ("fmap-erase", {}), ("fmap-transform", {}), ("fmap-noise", {}),
]  # fmt: skip

# The default benchmark also runs on the embedded default's occluded twin (Occluded-Duke style
# queries), with the attacks that say something about occlusion there (clean accuracy, test-time
# occlusion, feature-map erasing, M-IFGSM at the papers' budget), and measures clean accuracy on
# a domain no model was trained on (synthetic-mini-b), for the reproduction table's
# cross-domain claims. Each is a dataset of the same run, so the report sets them side by side.
OCCLUDED_TWIN, OTHER_DOMAIN = "synthetic-mini-occluded", "synthetic-mini-b"
DEFAULT_DATASETS = ("synthetic-mini", OCCLUDED_TWIN, OTHER_DOMAIN)
DEFAULT_DATASET_ATTACKS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    OCCLUDED_TWIN: [("none", {}), ("mifgsm", {"eps": 5}), ("erasing", {"area": 0.2}), ("npo", {}), ("ntp", {}),
                    ("fmap-erase", {})],
    OTHER_DOMAIN: [("none", {})],
}  # fmt: skip

# The default benchmark evaluates each model as published (auto: JAD with its circuitous scaling)
# and bare (none), so a built-in inference defense is shown with and without it; for models
# without one the two are the same cells.
DEFAULT_DEFENSES = ["auto", "none"]


def attack_parameters(name: str) -> set[str]:
    """The parameters attack ``name`` accepts: its registry defaults, and for ``tk:NAME`` also
    the torchattacks class's own arguments (eps, alpha, steps, ...)."""
    import inspect

    from reidbench.attacks import attack_entry

    entry = attack_entry(name)
    accepted = set(entry.defaults)
    tk_name = getattr(entry.cls, "tk_name", "")
    if name.lower().startswith("tk:") and tk_name:
        from reidbench.attacks.classification import torchattacks_class

        accepted |= {p for p in inspect.signature(torchattacks_class(tk_name)).parameters if p != "model"}
    return accepted


def build_attacks(attacks: tuple[str, ...], sweeps: dict[str, list[Any]], options: dict[str, Any]) -> list[Any]:
    """Expand ``--attack`` x the sweep flags into AttackRequests (parameters only where they apply).

    Names are registered attacks or ``tk:NAME`` (any torchattacks class, case-insensitive; its
    name is written canonically, ``tk:pgd`` -> ``tk:PGD``). For a ``tk:`` attack whose class
    takes ``alpha`` (torchattacks' step size), ``--step`` sets ``alpha``. A flag that no attack
    of the run takes is an error, never dropped.
    """
    import itertools

    from reidbench.attacks import canonical_name
    from reidbench.eval.harness import AttackRequest

    requests = []
    used: set[str] = set()
    for raw in attacks:
        if raw == "none":
            requests.append(AttackRequest("none"))
            continue
        name = canonical_name(raw)
        accepted = attack_parameters(name)
        alias = {"step": "alpha"} if name.startswith("tk:") and "alpha" in accepted and "step" not in accepted else {}
        keys = [k for k in sweeps if k in accepted or k in alias]
        used.update(keys)
        fixed = {k: v for k, v in options.items() if k in accepted}
        used.update(fixed)
        for combo in itertools.product(*[sweeps[k] for k in keys]) if keys else [()]:
            swept = {alias.get(k, k): v for k, v in zip(keys, combo, strict=True)}
            requests.append(AttackRequest(name, {**fixed, **swept}))
    unused = (set(sweeps) | set(options)) - used
    if unused:
        raise ParameterError(f"no attack in this run takes {', '.join('--' + u for u in sorted(unused))}; "
                             "see `reidbench list attacks` for each attack's parameters")  # fmt: skip
    return requests


def parse_checkpoints(items: tuple[str, ...], models: tuple[str, ...], surrogates: tuple[str, ...]) -> dict[str, str]:
    """``--checkpoint [MODEL=]PATH`` items -> {model: path}. A MODEL that is not a --model or
    --surrogate of this run is an error (a typo would otherwise evaluate the shipped weights)."""
    names = list(dict.fromkeys([*models, *surrogates]))
    ck: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or (name not in names and Path(item).expanduser().is_file()):
            if len(models) != 1:
                raise ParameterError(f"--checkpoint {item} names no model and this run has {len(models)}; "
                                     "use --checkpoint MODEL=PATH")  # fmt: skip
            name, path = models[0], item
        if not path.strip():
            raise ParameterError(f"--checkpoint {item}: the path is empty; use --checkpoint MODEL=PATH")
        if name not in names:
            raise ParameterError(f"--checkpoint {item}: {name!r} is not a model of this run{closest(name, names)}; "
                                 f"its models are {', '.join(names)}. Use --checkpoint MODEL=PATH with a --model "
                                 "or --surrogate name")  # fmt: skip
        if name in ck and ck[name] != path:
            raise ParameterError(f"--checkpoint gives model {name!r} two checkpoints ({ck[name]} and {path}); keep one")
        ck[name] = path
    return ck


THREADS_HELP = ("CPU threads for torch: a number, or auto (the default): the CPUs this process may use less those "
                "busy with other work at start, at least 1. With OMP_NUM_THREADS set, auto keeps it. The numbers do "
                "not depend on it; on a shared machine more threads than idle cores make every step wait.")


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity set, capped by a cgroup CPU quota if there is one."""
    import os

    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def busy_cpus(window: float = 0.3) -> float:
    """CPUs busy with other work now: the non-idle share of ``/proc/stat`` over ``window`` seconds
    times its CPU count (Linux). Elsewhere the 1-minute load average, which lags: it still counts
    a job that ended a minute ago (the test suite before ``make regress``, pip before ``make demo``)."""
    import os
    import time

    def snapshot() -> tuple[int, int, int]:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
        vals = [int(v) for v in lines[0].split()[1:]]
        cpus = sum(1 for ln in lines if ln.startswith("cpu") and ln[3:4].isdigit())
        return sum(vals), vals[3] + (vals[4] if len(vals) > 4 else 0), cpus  # total, idle + iowait, CPUs

    try:
        t0, i0, cpus = snapshot()
        time.sleep(window)
        t1, i1, _ = snapshot()
        if t1 <= t0 or cpus < 1:
            raise ValueError("no ticks")
        return (1.0 - (i1 - i0) / (t1 - t0)) * cpus
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except OSError:
            return 0.0


def auto_threads() -> int:
    """``--threads auto``: the usable CPUs less those busy with other work now (rounded), at
    least 1, and no more than torch's own default (its physical cores, or OMP_NUM_THREADS)."""
    import torch

    return max(1, min(torch.get_num_threads(), usable_cpus() - round(busy_cpus())))


def thread_count(value: str | int | None, option: str = "--threads") -> int | None:
    """The torch CPU thread count that ``--threads`` asks for (None: auto), or None to keep
    torch's own (auto with OMP_NUM_THREADS set: the user chose already)."""
    import os

    text = "auto" if value is None else str(value).strip().lower()
    if text == "auto":
        return None if os.environ.get("OMP_NUM_THREADS") else auto_threads()
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1 or n > 4096:
        raise ParameterError(f"{option} must be a whole number from 1 to 4096 or auto, not {value!r}")
    return n


@contextlib.contextmanager
def cpu_threads(value: str | int | None, option: str = "--threads") -> Iterator[int]:
    """Run the block with torch's CPU threads set from ``--threads``; the count in use before is
    restored after it (a command invoked in-process, as the tests do, leaves no trace)."""
    import torch

    n = thread_count(value, option)
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def parse_model_options(items: tuple[str, ...], models: tuple[str, ...], surrogates: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``--model-option MODEL:KEY=VALUE`` items; MODEL must be a model of this run."""
    names = list(dict.fromkeys([*models, *surrogates]))
    mopts: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, kv = item.partition(":")
        if not sep:
            raise ParameterError(f"--model-option expects MODEL:KEY=VALUE, got {item!r}")
        if name not in names:
            raise ParameterError(f"--model-option {item}: {name!r} is not a model of this run{closest(name, names)}; "
                                 f"its models are {', '.join(names)}")  # fmt: skip
        mopts.setdefault(name, {}).update(parse_kv([kv]))
    return mopts


@click.command("run")
@click.option("--model", "models", multiple=True, help="Registered model or package.module:factory (repeat for several). Default: every model with a checkpoint.")
@click.option("--attack", "attacks", multiple=True, help="Attack name (see `reidbench list attacks`), tk:NAME for any torchattacks class (e.g. tk:PGD, case-insensitive), or none for the clean cell (repeat). Default: the standard set.")
@click.option("--clean/--no-clean", default=True, show_default=True, help="Also evaluate every model and defense without attack: the reference the tables' drops are measured from.")
@click.option("--defense", "defenses", multiple=True, help="auto (the model's own inference defense, e.g. JAD's CS), none, or a chain like jpeg+median (repeat). Default: auto.")
@click.option("--adaptive/--no-adaptive", default=True, show_default=True, help="Run attacks made through the defense (BPDA/EOT).")
@click.option("--oblivious/--no-oblivious", default=True, show_default=True, help="Run attacks made on the bare model, then defended.")
@click.option("--target", "targets", multiple=True, type=click.Choice(["query", "gallery", "both"]), help="Attacked side (repeat). Default: query.")
@click.option("--surrogate", "surrogates", multiple=True, help="Also craft each gradient attack on this model and evaluate on the target (transfer, black-box).")
@click.option("--eps", default=None, help="L-inf budget in /255 units; a comma list sweeps (e.g. 2,5,8).")
@click.option("--step", default=None, help="Step size in /255 units (comma list sweeps); torchattacks' alpha for tk:NAME.")
@click.option("--steps", default=None, help="Iterations, whole numbers (comma list sweeps).")
@click.option("--momentum", default=None, help="Momentum decay of M-IFGSM/LTA.")
@click.option("--area", default=None, help="Occluded fraction for occlusion attacks; a comma list sweeps (e.g. 0.1,0.2,0.3).")
@click.option("--attack-option", "attack_opts", multiple=True, metavar="KEY=VALUE", help="Any other attack parameter.")
@click.option("--dataset", "datasets", multiple=True, help="See `reidbench list datasets`; repeat to run the grid on each. "
              "Default: synthetic-mini (the default benchmark: synthetic-mini and its occluded twin).")
@click.option("--data-root", type=click.Path(), default=None, envvar="REIDBENCH_DATA", callback=nonempty_path, help="Folder holding the dataset folders (default $REIDBENCH_DATA).")
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="[MODEL=]PATH", help="Weights for a registered model (safetensors or a weights-only state dict).")
@click.option("--model-option", "model_opts", multiple=True, metavar="MODEL:KEY=VALUE", help="e.g. jad:cs=false.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/default", show_default=True, callback=nonempty_path, help="Run directory (one run writes it at a time).")
@click.option("--fresh", is_flag=True, help="Start over: forget the finished cells in --out.")
@click.option("--resume", is_flag=True, default=True, hidden=True, help="Skip finished cells (the default).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--rerank", is_flag=True, help="Also report k-reciprocal re-ranked metrics (k1=20, k2=6, lambda=0.3).")
@click.option("--distance", type=click.Choice(["cosine", "euclidean"]), default=None, help="Default: the model card's (cosine).")
@click.option("--ap", "ap_variant", type=click.Choice(["market", "official"]), default="market", show_default=True,
              help="market: mean precision at hits, queries without a match left out; official: Market-1501 code's trapezoidal AP, such queries count 0.")
@click.option("--eot", type=click.IntRange(1, 1000), default=20, show_default=True, help="EOT draws per gradient for adaptive attacks on random defenses.")
@click.option("--draws", type=click.IntRange(1, 100), default=5, show_default=True, help="Evaluation draws of a random defense (mean and worst case reported).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps (`reidbench doctor` lists what this machine has).")
@click.option("--batch-size", type=click.IntRange(1, 65536), default=None, help="Default 128 on CPU, 512 on GPU, halved for the rest of the run whenever the device runs out of memory (a size you set is kept: out of memory, the run stops with one line).")
@click.option("--threads", default=None, metavar="N|auto", help=THREADS_HELP)
@click.option("--memory-budget", default=None, metavar="SIZE",
              help="Working memory of each evaluation, e.g. 2GB or 512MiB (default 512 MiB); the distances are ranked in "
                   "query blocks that fit in it, with the same numbers at any budget.")
@click.option("--amp", is_flag=True, help="bfloat16 autocast for feature extraction on CUDA only; check it with benchmarks/check_amp.py before trusting it.")
@click.option("--save-adv", type=click.Path(file_okay=False), default=None, callback=nonempty_path, help="Also write PNGs of adversarial samples here.")
@click.option("--report/--no-report", default=True, show_default=True, help="Write RUN/report.pdf at the end.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars and no results table: one summary line (where the results are, warnings, report).")
def run(models: tuple[str, ...], attacks: tuple[str, ...], defenses: tuple[str, ...], adaptive: bool, oblivious: bool,
        targets: tuple[str, ...], surrogates: tuple[str, ...], eps: str | None, step: str | None, steps: str | None,
        momentum: str | None, area: str | None, attack_opts: tuple[str, ...], datasets: tuple[str, ...], data_root: Path | None,
        checkpoints: tuple[str, ...], model_opts: tuple[str, ...], out: Path, fresh: bool, resume: bool, seed: int,
        rerank: bool, distance: str | None, ap_variant: str, eot: int, draws: int, device: str, batch_size: int | None,
        amp: bool, save_adv: Path | None, report: bool, quiet: bool, clean: bool, threads: str | None = None,
        memory_budget: str | None = None) -> None:
    """Run a benchmark grid: every --model x --defense x --attack (x sweeps), one row per cell.

    With no --model and no --attack it runs the default benchmark on the embedded default
    (synthetic-mini, every shipped model, the standard attack set) and writes RUN/report.pdf.
    Re-running the same command on the same --out skips finished cells.
    """
    from reidbench.eval.harness import AttackRequest, GridSpec, run_grid
    from reidbench.models import MODELS
    from reidbench.models.registry import shipped_checkpoint

    del resume
    default_grid = not models and not attacks
    default_models = not models
    if not models:
        models = tuple(n for n in MODELS.names() if shipped_checkpoint(n) is not None)
        if not models:
            raise ParameterError("no model has a shipped checkpoint; pass --model NAME --checkpoint PATH")
    ck = parse_checkpoints(checkpoints, models, surrogates)
    mopts = parse_model_options(model_opts, models, surrogates)
    sweeps: dict[str, list[Any]] = {}
    for key, text in (("eps", eps), ("step", step), ("steps", steps), ("momentum", momentum), ("area", area)):
        if text is not None:
            sweeps[key] = split_numbers(text, f"--{key}", integer=key == "steps")
    options = parse_kv(attack_opts)
    dataset_attacks: dict[str, list[AttackRequest]] = {}
    clean_only: list[str] = []
    if default_grid and not sweeps and not options:
        requests = [AttackRequest(n, p) for n, p in DEFAULT_ATTACKS]
        if not datasets:
            datasets = DEFAULT_DATASETS
            dataset_attacks = {ds: [AttackRequest(n, p) for n, p in reqs] for ds, reqs in DEFAULT_DATASET_ATTACKS.items()}
        clean_only = [m for m in models if MODELS.get(m).card.ablation_of] if default_models else []
    else:
        requests = build_attacks(attacks or ("none",), sweeps, options)
    if clean and not any(r.name == "none" for r in requests):
        requests.insert(0, AttackRequest("none"))
    modes = [m for m, on in (("oblivious", oblivious), ("adaptive", adaptive)) if on]
    if not modes:
        raise ParameterError("--no-adaptive and --no-oblivious leave nothing to run for defended models")
    from reidbench.eval.distributed import check_cuda, launched_rank

    check_cuda(device)  # under torchrun: one line naming the rank, before the generic device check
    dev = resolve_device(device)
    if amp and dev.type != "cuda":
        raise ParameterError(f"--amp autocasts feature extraction on CUDA only, and the device is {dev}; drop --amp or pass --device cuda")
    datasets = tuple(dict.fromkeys(datasets)) or ("synthetic-mini",)
    spec = GridSpec(models=list(models), attacks=requests, dataset=datasets[0], datasets=list(datasets),
                    dataset_attacks=dataset_attacks, clean_only=clean_only, data_root=data_root,
                    defenses=list(defenses) or (DEFAULT_DEFENSES if default_grid else ["auto"]), modes=modes, targets=list(targets) or ["query"],
                    surrogates=list(surrogates), checkpoints=ck, model_options=mopts, seed=seed, rerank=rerank,
                    distance=distance, ap_variant=ap_variant, eot=eot, draws=draws, batch_size=batch_size,
                    device=str(dev), amp=amp, save_adv=str(save_adv) if save_adv else None)  # fmt: skip
    if memory_budget is not None:
        from reidbench.eval.metrics import memory_budget_bytes

        spec.memory_budget = memory_budget_bytes(memory_budget.strip(), "--memory-budget")
    command = "reidbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with quiet_progress(quiet), cpu_threads(threads):  # the manifest records the count in use
        records = run_grid(spec, out, command=command, fresh=fresh, progress=not quiet)
    if launched_rank() != 0:  # under torchrun rank 0 alone writes the report and prints
        return
    summary = [f"{len(records)} cells in {out / 'results.csv'}"]
    warn = sum(len(r.warnings) for r in records)
    if warn:
        summary.append(f"{warn} sanity-check warning(s); see the report or results.csv's warnings column")
    if report:
        try:
            from reidbench.reports import write_report
        except ImportError:
            summary.append("no report (reports are not available in this build)")
        else:
            summary.append(f"report: {write_report(out, out / 'report.pdf')}")
    if quiet:
        click.echo("; ".join(summary))
        return
    click.echo(format_table(records))
    click.echo("")
    for line in summary:
        click.echo(line)


def format_table(records: list[Any]) -> str:
    """The run's rows as a compact text table (metrics in percent)."""
    from reidbench.cli.list_cmd import _table

    rows = []
    for r in records:
        c = r.config
        rows.append([c.model, c.defense if c.defense == "none" else f"{c.defense}/{c.mode}", c.attack,
                     "" if c.eps is None else f"{c.eps:g}", "" if c.area is None else f"{c.area:g}",
                     c.target if c.attack != "none" else "", c.surrogate,
                     f"{r.rank1:.1f}", f"{r.mAP:.1f}", f"{r.mINP:.1f}", f"{r.seconds:.1f}"])  # fmt: skip
    return _table(rows, ["model", "defense", "attack", "eps", "area", "target", "surrogate", "R1", "mAP", "mINP", "sec"])

