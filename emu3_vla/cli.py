"""The ``emu3-vla`` command line.

Sub-commands live next to the code they drive and are discovered through the
``emu3_vla.commands`` entry-point group (see ``pyproject.toml``). That keeps the dependency
direction clean: ``emu3_vla`` never imports ``eval`` or ``policies``; those packages register
their commands (``eval``, ``serve``, ``collect``, ...) themselves. Each entry point is a function
``register(subparsers)`` that adds one parser and sets ``func`` to a callable taking the parsed
arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

COMMAND_GROUP = "emu3_vla.commands"
log = logging.getLogger("emu3_vla")

DESCRIPTION = """\
Emu3 as a vision-language-action policy: one decoder-only transformer predicting the next token
over text, VQ image codes and FAST action tokens.

Typical flow:
  emu3-vla demo                       collect -> tokenise -> train -> evaluate, on CPU defaults
  emu3-vla collect --out data/        scripted-expert demonstrations (LeRobot / CALVIN format)
  emu3-vla train model=tiny ...       train the VLA (hydra overrides)
  emu3-vla eval calvin --checkpoint runs/x/checkpoint
  emu3-vla serve --checkpoint ...     websocket policy server (openpi protocol)
"""


def _builtin_commands() -> list[Callable[[argparse._SubParsersAction], None]]:
    from emu3_vla import commands

    return [commands.register_info, commands.register_smoke]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it stops as on Ctrl-C (``finally`` blocks run)."""


def _raise_terminated(signum: int, frame: object) -> None:
    # Ctrl-C reaches every process of the terminal's group; a SIGTERM only this one. Pass it on to our
    # worker processes (simulators of a collection or an evaluation) so that none finishes its current
    # job first: an executor would wait for those before the command could exit.
    for child in multiprocessing.active_children():
        child.terminate()
    raise Terminated


def terminate_like_interrupt() -> None:
    """Make SIGTERM (``kill``, a job scheduler) stop a command the way Ctrl-C does: what handles an
    interruption (a collection finalises the episodes it has, pools stop their workers) runs instead of
    the process vanishing mid-write. Only from the main thread and only over the default handler."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_terminated)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emu3-vla", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _builtin_commands():
        register(sub)
    for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        try:
            ep.load()(sub)
        except Exception as err:  # a broken plugin must not take the whole CLI down
            log.warning("command %r could not be loaded (%s: %s)", ep.name, type(err).__name__, err)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    terminate_like_interrupt()
    try:
        return int(args.func(args) or 0)
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as err:
        if args.verbose:
            raise
        print(f"emu3-vla {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
