"""The ``reidbench`` command.

Every command has ``--help``. A user error (a bad path, an unknown name, a corrupt file, an
out-of-range parameter) is printed as one line ``Error: ...`` and exits with status 2; it never
shows a traceback. Set ``REIDBENCH_DEBUG=1`` to see the traceback anyway.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from reidbench import __version__
from reidbench.errors import ReidbenchError

# click >= 8.2 raises this for a group run without a command; it shows the help
_NO_ARGS_IS_HELP: tuple[type[BaseException], ...] = tuple(
    t for t in [getattr(click.exceptions, "NoArgsIsHelpError", None)] if t is not None
)


def _one_line(message: str) -> str:
    """The message on one line (a torch or OS message may carry newlines)."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


class ReidbenchGroup(click.Group):
    """A click group that turns :class:`ReidbenchError` and a subcommand's click usage errors
    (a bad option value, an unknown option) into one line ``Error: ...`` and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ReidbenchError as exc:
            if os.environ.get("REIDBENCH_DEBUG"):
                raise
            click.echo(f"Error: {_one_line(str(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except click.UsageError as exc:
            if os.environ.get("REIDBENCH_DEBUG") or isinstance(exc, _NO_ARGS_IS_HELP):
                raise  # a group run without a command shows its help, as click does
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            click.echo(f"Error: {_one_line(exc.format_message())} See `{where} --help`.", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted; finished cells are saved and a re-run resumes from them.", err=True)
            ctx.exit(130)


@click.group(cls=ReidbenchGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="reidbench")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """reidbench: robustness benchmark for person re-identification.

    \b
    Quick start (the embedded default: synthetic data and shipped models, CPU is enough):
      reidbench run                      the default benchmark, with a report PDF
      reidbench run --model baseline --attack mifgsm --attack sma
      reidbench list models|attacks|defenses|datasets
      reidbench doctor                   check versions, devices, data and checkpoints
    """
    from reidbench._alloc import keep_large_allocations_on_heap

    keep_large_allocations_on_heap()
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _register_commands() -> None:
    from reidbench.cli import commands

    for cmd in commands.ALL:
        main.add_command(cmd)


_register_commands()
