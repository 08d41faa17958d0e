"""``reidbench doctor``: check the environment, one line per check, with the fix for each problem."""

from __future__ import annotations

import os
import platform
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from reidbench.cli.options import nonempty_path

OK, WARN, FAIL = "OK", "WARN", "FAIL"
#: Packages whose versions decide the numbers: checked against pyproject's ranges and constraints.txt.
PACKAGES = ("torch", "torchvision", "torchattacks")
#: Free space below which a disk check warns or fails (bytes).
WARN_FREE = 5 * 2**30
FAIL_FREE = 2**30


@dataclass(frozen=True)
class Check:
    status: str
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f"; fix: {self.fix}" if self.fix and self.status != OK else ""
        return f"{self.status:<4}  {self.name}: {self.detail}{fix}"


# --- versions -----------------------------------------------------------------------------------


def _version_tuple(text: str) -> tuple[int, ...]:
    m = re.match(r"\d+(\.\d+)*", text.strip())
    return tuple(int(p) for p in m.group(0).split(".")) if m else ()


def _satisfies(version: str, spec: str) -> bool:
    """``"2.4.1"`` against ``">=2.3,<3"`` (the operators pyproject uses; local tags ignored)."""
    v = _version_tuple(version)
    for part in filter(None, (p.strip() for p in spec.split(","))):
        m = re.match(r"(>=|<=|==|!=|~=|>|<)\s*(.+)", part)
        if not m:
            continue
        op, want = m.group(1), _version_tuple(m.group(2))
        n = max(len(v), len(want))
        a, b = v + (0,) * (n - len(v)), want + (0,) * (n - len(want))
        ok = {">=": a >= b, "<=": a <= b, "==": a == b, "!=": a != b, ">": a > b, "<": a < b,
              "~=": a >= b and a[: len(want) - 1] == b[: len(want) - 1]}[op]  # fmt: skip
        if not ok:
            return False
    return True


def _requirements() -> tuple[str, dict[str, str]]:
    """(requires-python, {package: specifier}) from the installed reidbench's metadata."""
    from importlib import metadata

    try:
        meta = metadata.metadata("reidbench")
        reqs = metadata.requires("reidbench") or []
    except metadata.PackageNotFoundError:
        return ">=3.10", {}
    out = {}
    for r in reqs:
        if ";" in r:  # extras (dev) and markers
            continue
        m = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", r)
        if m:
            out[m.group(1).lower()] = m.group(2).strip().strip("()")
    return meta["Requires-Python"] or ">=3.10", out


def constraints_file() -> Path | None:
    """constraints.txt beside the package (a source checkout or an editable install)."""
    import reidbench

    p = Path(reidbench.__file__).resolve().parent.parent / "constraints.txt"
    return p if p.is_file() else None


def _pins(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s#;]+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def check_versions() -> Iterator[Check]:
    from importlib import metadata

    requires_python, ranges = _requirements()
    py = platform.python_version()
    if _satisfies(py, requires_python):
        yield Check(OK, "python", f"{py} (reidbench needs {requires_python})")
    else:
        yield Check(FAIL, "python", f"{py}, but reidbench needs {requires_python}", f"use a Python {requires_python}")
    cfile = constraints_file()
    pins = _pins(cfile)
    for pkg in PACKAGES:
        want = ranges.get(pkg, "")
        pin = pins.get(pkg)
        try:
            have = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            yield Check(FAIL, pkg, "not installed", f"pip install '{pkg}{want}'" + (" -c constraints.txt" if pin else ""))
            continue
        if want and not _satisfies(have, want):
            yield Check(FAIL, pkg, f"{have}, but reidbench needs {want}", f"pip install '{pkg}{want}'")
        elif pin and _version_tuple(have) != _version_tuple(pin):
            yield Check(WARN, pkg, f"{have}; the shipped checkpoints and golden numbers were measured with {pin}, "
                                   "so numbers may move", f"pip install -c {cfile} -e .  (pins {pkg}=={pin})")  # fmt: skip
        else:
            yield Check(OK, pkg, have + (f" (pinned {pin})" if pin else f" (needs {want or 'any'}; no constraints.txt found)"))


# --- devices ------------------------------------------------------------------------------------


def check_devices() -> Iterator[Check]:
    try:
        import torch
    except Exception as exc:  # a broken torch install: say so, do not crash
        yield Check(FAIL, "torch import", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                    "reinstall torch: pip install -c constraints.txt -e .")  # fmt: skip
        return
    if torch.cuda.is_available():
        devs = []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            devs.append(f"cuda:{i} {p.name} ({p.total_memory / 2**30:.0f} GiB)")
        yield Check(OK, "CUDA", f"available (CUDA {torch.version.cuda}): " + ", ".join(devs) + "; --device auto uses cuda:0")
    elif torch.version.cuda and (Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi")):
        yield Check(WARN, "CUDA", f"torch is built with CUDA {torch.version.cuda} but sees no GPU; runs use the CPU",
                    "check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES, or ignore this on a CPU machine")  # fmt: skip
    else:
        why = f"no NVIDIA driver on this machine; torch is built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only torch build"
        yield Check(OK, "CUDA", f"not available ({why}); runs use the CPU, enough for the embedded default")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        yield Check(OK, "MPS", "available (--device mps)")


# --- data ---------------------------------------------------------------------------------------


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_data_root(root: Path) -> Iterator[Check]:
    fix = "pass --data-root or set REIDBENCH_DATA to a writable folder"
    if root.exists() and not root.is_dir():
        yield Check(FAIL, "data root", f"{root} is a file, not a folder", fix)
    elif not root.exists():
        parent = _existing_ancestor(root)
        if os.access(parent, os.W_OK):
            yield Check(OK, "data root", f"{root} (does not exist yet; synthetic datasets are generated there on first use)")
        else:
            yield Check(FAIL, "data root", f"{root} does not exist and {parent} is not writable", fix)
    elif not os.access(root, os.W_OK):
        yield Check(WARN, "data root", f"{root} is read-only: real layouts can be read, synthetic ones cannot be generated there", fix)
    else:
        yield Check(OK, "data root", str(root))


def _locked(path: Path) -> bool:
    """Whether another process holds the file lock at ``path`` right now."""
    from filelock import FileLock, Timeout

    if not path.exists():
        return False
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def check_datasets(root: Path) -> Iterator[Check]:
    """Each dataset layout found under ``root``, read with its registered loader."""
    from reidbench.data import DATASETS
    from reidbench.errors import ReidbenchError

    if not root.is_dir():
        return
    absent = []
    for name in DATASETS.names():
        entry = DATASETS.get(name)
        if entry.synthetic:
            folder = root / entry.folder.split(" ")[0]
            partial = folder.with_name(folder.name + ".partial")
            if partial.exists():
                if _locked(root / f".{folder.name}.lock"):
                    yield Check(OK, name, f"being generated now by another process, in {partial}")
                    continue
                yield Check(WARN, name, f"{partial} is left from an interrupted generation",
                            f"delete it, or let the next run that uses {name} regenerate it")  # fmt: skip
            if not (folder / "synthetic.json").is_file():
                continue  # generated on first use: nothing to check yet
        else:
            folders = [f.strip() for f in entry.folder.split(" or ")]
            if not any((root / f).exists() for f in folders):
                absent.append(name)
                continue
        try:
            ds = entry.load(root)
        except ReidbenchError as exc:
            yield Check(FAIL, name, f"found but does not parse: {exc}", f"fix the layout, or move it out of {root}")
            continue
        yield Check(OK, name, f"{ds.root} parses: {len(ds.train)} train / {len(ds.query)} query / "
                              f"{len(ds.gallery)} gallery images, fingerprint {ds.fingerprint}")  # fmt: skip
    if absent:
        yield Check(OK, "datasets", f"not under {root}: {', '.join(absent)} (only needed to run on them; "
                                    "`reidbench list datasets` shows the folder each one needs)")  # fmt: skip


# --- checkpoints ----------------------------------------------------------------------------------


REINSTALL = "reinstall reidbench (pip install --force-reinstall --no-deps reidbench)"


def check_checkpoint(path: Path, label: str, restore: str = "restore the file, or re-train it with `reidbench train`") -> Check:
    from reidbench.errors import ReidbenchError
    from reidbench.models.checkpoints import read_card_json, sha256_file

    if not path.is_file():
        return Check(FAIL, label, f"{path} not found", "check the path")
    try:
        card, _ = read_card_json(path)
    except ReidbenchError as exc:
        return Check(FAIL, label, str(exc), "restore the card JSON beside the checkpoint")
    if card is None:
        return Check(WARN, label, f"{path} has no card {path.with_suffix('.json').name} beside it, so it cannot be verified",
                     "keep the card that `reidbench train` writes next to the checkpoint")  # fmt: skip
    if not card.sha256:
        return Check(WARN, label, f"{path}: its card records no sha256, so it cannot be verified", "re-save it with `reidbench train`")
    digest = sha256_file(path)
    if digest != card.sha256:
        return Check(FAIL, label, f"{path} does not match its card (sha256 {digest[:12]}..., card {card.sha256[:12]}...)",
                     f"the file is corrupt or was replaced: {restore}")  # fmt: skip
    return Check(OK, label, f"{path.name} matches its card (sha256 {digest[:12]}...)")


def _check_generator(path: Path) -> Check:
    from reidbench.errors import ReidbenchError
    from reidbench.models.mpg_net import load_generator

    label = "generator mpg"
    try:
        _, card = load_generator(path)
    except ReidbenchError as exc:
        return Check(FAIL, label, str(exc), REINSTALL)
    sur = card.get("surrogate") if isinstance(card.get("surrogate"), dict) else {}
    return Check(OK, label, f"{path.name} matches its card (sha256 {str(card.get('sha256', ''))[:12]}...; trained against "
                            f"{sur.get('model', '?')} sha256 {str(sur.get('sha256', ''))[:12]}...)")


def check_shipped_checkpoints() -> Iterator[Check]:
    from reidbench.models import MODELS, registry

    weights = Path(registry.WEIGHTS_DIR)
    files = sorted(weights.glob("*.safetensors")) if weights.is_dir() else []
    if not files:
        yield Check(FAIL, "shipped checkpoints", f"none in {weights}", REINSTALL)
        return
    for f in files:
        label = f"checkpoint {f.stem}"
        if f.stem == "mpg":  # the mpg attack's generator, trained with apd
            yield _check_generator(f)
            continue
        if f.stem not in MODELS:
            yield Check(WARN, label, f"{f} belongs to no registered model", "remove it, or register the model")
            continue
        yield check_checkpoint(f, label, REINSTALL)
    missing = [n for n in MODELS.names() if registry.shipped_checkpoint(n) is None]
    if missing:
        yield Check(OK, "models without a shipped checkpoint", ", ".join(missing) + " (train one with `reidbench train --model NAME`)")


# --- disk -----------------------------------------------------------------------------------------


def check_disk(label: str, path: Path, fix: str) -> Check:
    where = _existing_ancestor(path)
    usage = shutil.disk_usage(where)
    free = usage.free / 2**30
    detail = f"{free:.1f} GiB free on the filesystem of {path}"
    if usage.free < FAIL_FREE:
        return Check(FAIL, label, detail + f" (under {FAIL_FREE / 2**30:.0f} GiB)", fix)
    if usage.free < WARN_FREE:
        return Check(WARN, label, detail + f" (the market and occluded presets take a few GiB; under {WARN_FREE / 2**30:.0f} GiB)", fix)
    return Check(OK, label, detail)


# --- the command ----------------------------------------------------------------------------------


def _guarded(name: str, fn: Callable[[], Iterator[Check]]) -> Iterator[Check]:
    """A check that crashes is reported as FAIL on its line; doctor itself never crashes."""
    try:
        yield from fn()
    except Exception as exc:  # noqa: BLE001  doctor reports, never raises
        yield Check(FAIL, name, f"the check itself failed: {type(exc).__name__}: {exc}",
                    "report this with the output of `reidbench doctor`")  # fmt: skip


@click.command("doctor")
@click.option("--data-root", type=click.Path(), default=None, envvar="REIDBENCH_DATA", callback=nonempty_path,
              help="Folder holding the dataset folders (default $REIDBENCH_DATA or ~/.cache/reidbench/data).")
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(dir_okay=False), callback=lambda c, p, v: tuple(v),
              metavar="PATH", help="Also verify this checkpoint against the card beside it (repeat).")
def doctor(data_root: Path | None, checkpoints: tuple[str, ...]) -> None:
    """Check the environment: versions, devices, data, checkpoints and disk space.

    \b
    One line per check, OK, WARN or FAIL, with the fix for each WARN and FAIL:
      python, torch, torchvision, torchattacks   against pyproject's ranges and constraints.txt
      CUDA (and MPS)                             availability and the devices --device can use
      data root and each dataset found there    read with its layout loader
      shipped checkpoints (and --checkpoint)    sha256 against the model card beside each
      free disk space                            of the data root and the image cache
    Exit status: 0 when nothing FAILs, 1 otherwise.
    """
    from reidbench.data import default_data_root
    from reidbench.data.images import cache_dir

    root = Path(data_root).expanduser() if data_root is not None else default_data_root()
    cache = cache_dir()
    groups: list[tuple[str, Callable[[], Iterator[Check]]]] = [
        ("versions", check_versions),
        ("devices", check_devices),
        ("data root", lambda: check_data_root(root)),
        ("datasets", lambda: check_datasets(root)),
        ("shipped checkpoints", check_shipped_checkpoints),
        *[(f"checkpoint {c}", lambda c=c: iter([check_checkpoint(Path(c).expanduser(), f"checkpoint {c}")])) for c in checkpoints],
        ("disk (data root)", lambda: iter([check_disk("disk (data root)", root, "free space, or set REIDBENCH_DATA to a bigger disk")])),
        ("disk (cache)", lambda: iter([check_disk("disk (cache)", cache, "free space, or set REIDBENCH_CACHE to a bigger disk")])),
    ]
    counts = {OK: 0, WARN: 0, FAIL: 0}
    for name, fn in groups:
        for check in _guarded(name, fn):
            counts[check.status] += 1
            click.echo(check.line())
    click.echo(f"\n{counts[OK]} OK, {counts[WARN]} WARN, {counts[FAIL]} FAIL")
    if counts[FAIL]:
        raise click.exceptions.Exit(1)
