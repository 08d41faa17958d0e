"""Imports run one way: no module of reidbench imports a module of a higher layer.

The layers, lowest first (a module may import its own layer's package and anything below it):

0. shared helpers: ``errors``, ``registry``, ``ops``, ``progress``, ``_alloc``, ``params``, ``seeding``,
   ``attack_types`` (attack metadata that attacks, eval and reports share); one group: they may
   import each other;
1. ``data``;
2. ``models``: architecture, cards, checkpoints, the registry, the network's own options;
3. ``attacks`` and ``defenses``: the same level, so neither may import the other;
4. ``zoo``: a registered model assembled for use, with the defense its card puts in its
   inference path (JAD's circuitous scaling);
5. ``train``: the trainer, the recipes and the training driver;
6. ``eval``; 7. ``reports``; 8. ``check``; 9. ``cli``.

``reidbench/__init__.py`` and ``reidbench/__main__.py`` are exempt, and importing the root package
itself (``from reidbench import __version__``) is always allowed.

Every import counts: module level and inside functions, ``import x`` and ``from x import y``,
relative imports, imports under ``if TYPE_CHECKING:``, and ``importlib.import_module("reidbench.x")``
or ``__import__("reidbench.x")`` with a literal name. A module that is in no layer is an error too,
so a new package has to be placed here before it can import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "reidbench"

# (rank, group): a higher rank is a higher layer; two groups of one rank must not import each other.
HELPERS = ("errors", "registry", "ops", "progress", "_alloc", "params", "seeding", "attack_types")
LAYERS: dict[str, tuple[int, str]] = {
    **{h: (0, "helpers") for h in HELPERS},
    "data": (1, "data"),
    "models": (2, "models"),
    "attacks": (3, "attacks"),
    "defenses": (3, "defenses"),
    "zoo": (4, "zoo"),
    "train": (5, "train"),
    "eval": (6, "eval"),
    "reports": (7, "reports"),
    "check": (8, "check"),
    "cli": (9, "cli"),
}
EXEMPT = {"reidbench", "reidbench.__main__"}


def module_name(path: Path, root: Path = PACKAGE_DIR) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> tuple[int, str] | None:
    """The (rank, group) of ``reidbench.X...``; None for a module in no layer."""
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "reidbench":
        return None
    return LAYERS.get(parts[1])


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imported_modules(module: str, source: str, *, is_package: bool = False, known: set[str] | None = None) -> list[str]:
    """Every reidbench module ``source`` imports, anywhere in the file, in order.

    ``from a.b import c`` counts as ``a.b.c`` when that is a module (``known``), else as ``a.b``.
    """
    out: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append(sub if known is not None and sub in known else base)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            f = node.func
            fname = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if fname in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                out.append(node.args[0].value)
    return [m for m in out if m == "reidbench" or m.startswith("reidbench.")]


def violations_in_source(module: str, source: str, *, is_package: bool = False, known: set[str] | None = None) -> list[str]:
    """``module -> imported`` for each import of a higher layer, or of another group at the same rank."""
    if module in EXEMPT:
        return []
    own = layer_of(module)
    if own is None:
        return [f"{module} is in no layer: add its package to LAYERS in tests/test_layering.py"]
    bad = []
    for target in imported_modules(module, source, is_package=is_package, known=known):
        if target == "reidbench":
            continue  # the root package (its __version__)
        theirs = layer_of(target)
        if theirs is None:
            bad.append(f"{module} -> {target} (in no layer)")
        elif theirs[0] > own[0] or (theirs[0] == own[0] and theirs[1] != own[1]):
            bad.append(f"{module} -> {target}")
    return list(dict.fromkeys(bad))


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def layering_violations() -> list[str]:
    mods = all_modules()
    known = set(mods)
    out: list[str] = []
    for name, path in mods.items():
        out += violations_in_source(name, path.read_text(), is_package=path.name == "__init__.py", known=known)
    return out


def test_no_module_imports_a_higher_layer() -> None:
    mods = all_modules()
    assert len(mods) > 40 and "reidbench.models.registry" in mods, "the scan found reidbench's modules"
    bad = layering_violations()
    assert not bad, "imports against the layering (module -> imported module):\n  " + "\n  ".join(bad)


# --- the checker itself -------------------------------------------------------------------------


def test_checker_catches_a_planted_upward_import_inside_a_function() -> None:
    src = "import torch\n\ndef craft(x):\n    from reidbench.attacks import create_attack\n    return create_attack\n"
    assert violations_in_source("reidbench.models.fake", src) == ["reidbench.models.fake -> reidbench.attacks"]


@pytest.mark.parametrize(
    ("module", "is_package", "src", "expected"),
    [
        # plain import, module level
        ("reidbench.eval.fake", False, "import reidbench.cli.main\n", ["reidbench.eval.fake -> reidbench.cli.main"]),
        # relative imports climb out of the package
        ("reidbench.models.fake", False, "from ..defenses import cs\n", ["reidbench.models.fake -> reidbench.defenses.cs"]),
        ("reidbench.models", True, "from ..train.trainer import Recipe\n", ["reidbench.models -> reidbench.train.trainer"]),
        # same rank, other group: attacks and defenses must not import each other
        ("reidbench.attacks.fake", False, "from reidbench.defenses.base import Defense\n",
         ["reidbench.attacks.fake -> reidbench.defenses.base"]),
        # helpers are the bottom: a helper reaching into data is upward
        ("reidbench.ops", False, "from reidbench.data import load_dataset\n", ["reidbench.ops -> reidbench.data"]),
        # an import hidden from the import statement
        ("reidbench.models.fake", False, "import importlib\nm = importlib.import_module('reidbench.defenses.cs')\n",
         ["reidbench.models.fake -> reidbench.defenses.cs"]),
        # type-checking-only imports count too
        ("reidbench.models.fake", False, "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from reidbench.eval import harness\n",
         ["reidbench.models.fake -> reidbench.eval"]),
        # a package in no layer
        ("reidbench.newpkg.mod", False, "import torch\n", ["reidbench.newpkg.mod is in no layer: add its package to LAYERS in tests/test_layering.py"]),
    ],
)
def test_checker_flags(module: str, is_package: bool, src: str, expected: list[str]) -> None:
    known = {"reidbench.defenses.cs", "reidbench.cli.main", "reidbench.train.trainer"}
    assert violations_in_source(module, src, is_package=is_package, known=known) == expected


def test_checker_allows_downward_same_package_and_root_imports() -> None:
    src = (
        "from reidbench import __version__\n"
        "from reidbench.errors import ParameterError\n"
        "from reidbench.data import load_dataset\n"
        "from reidbench.models.registry import MODELS\n"
        "from reidbench.attacks import create_attack\n"
        "from reidbench.defenses import create_defense\n"
        "from .trainer import Recipe\n"
        "def f():\n    from reidbench.zoo import create_model\n"
    )
    assert violations_in_source("reidbench.train.training", src) == []
    assert violations_in_source("reidbench.registry", "from reidbench.errors import UnknownNameError\n") == []
    assert violations_in_source("reidbench.__main__", "from reidbench.cli import main\n") == []
