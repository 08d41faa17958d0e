"""User-facing errors.

Every error a user can cause (a bad path, an unknown name, a corrupt file, an out-of-range
parameter) is raised as a :class:`ReidbenchError`. The CLI prints its message as one line and
exits non-zero; it never shows a traceback for these. The message names the problem and the fix.
"""

from __future__ import annotations


class ReidbenchError(Exception):
    """Base class for errors caused by user input; the message is shown to the user as is."""

    exit_code = 2


class UnknownNameError(ReidbenchError, KeyError):
    """A model, attack, defense or dataset name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(ReidbenchError):
    """A dataset folder, file name or image that cannot be read as expected."""


class CheckpointError(ReidbenchError):
    """A checkpoint that is missing, unreadable, or does not match the model."""


class ParameterError(ReidbenchError, ValueError):
    """A parameter outside its valid range (eps, steps, area, ...)."""


class ModelModeError(ReidbenchError, RuntimeError):
    """A model used in the wrong mode, e.g. attacked or evaluated in train mode."""
