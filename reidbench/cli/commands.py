"""The commands registered on the ``reidbench`` group; each lives in its own module.

The modules import only click and light helpers at module level (torch and the registries are
imported inside the commands), so ``reidbench --help`` does not import torch.
"""

from __future__ import annotations

import importlib

import click

# (module, attribute): a command per module, added here with one line.
_COMMANDS = [
    ("reidbench.cli.list_cmd", "list_"),
    ("reidbench.cli.data_cmd", "data"),
    ("reidbench.cli.train_cmd", "train"),
    ("reidbench.cli.run_cmd", "run"),
    ("reidbench.cli.check_cmd", "check"),
    ("reidbench.cli.report_cmd", "report"),
    ("reidbench.cli.doctor_cmd", "doctor"),
]

ALL: list[click.Command] = []
for _mod, _attr in _COMMANDS:
    ALL.append(getattr(importlib.import_module(_mod), _attr))
