"""The `emu` command: one subcommand per job; each package adds its own parsers."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn, Optional, Sequence

from emu import EmuError, __version__

# Each module here defines ``add_parsers(subparsers)``; the parsers set ``func``.
SUBCOMMAND_MODULES = (
    "emu.run_cli",
    "emu.demo_cli",
    "emu.hypervisor.cli",
    "emu.storage.cli",
    "emu.integrity.cli",
    "emu.trace.cli",
)


def _integer(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must {what}: {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 in any base (``0x100``, ``4096``)."""
    return _integer(text, 1, "be positive")


def count_int(text: str) -> int:
    """argparse type: an integer >= 0 in any base."""
    return _integer(text, 0, "not be negative")


class Parser(argparse.ArgumentParser):
    """argparse with the project's error contract: one line on stderr, status 2 (the usage is in ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")

    def parse_known_args(self, args=None, namespace=None):
        """Also note the innermost (sub)command that parsed, so leftover arguments are blamed on it."""
        namespace, extra = super().parse_known_args(args, namespace)
        if not hasattr(namespace, "_parser"):
            namespace._parser = self
        return namespace, extra


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every subcommand that is installed; subparsers inherit :class:`Parser`)."""
    parser = Parser(
        prog="emu",
        description="Cycle-level x86 emulator with a VMX-like monitor that validates guests from a VM-exit trap.",
    )
    parser.add_argument("--version", action="version", version=f"emu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.add_parsers(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `emu` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        args._parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EmuError as exc:
        print(f"emu: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("emu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
