"""Dispatch of gdb ``monitor`` commands (``qRcmd``): a small command table with built-in ``help``.

The stub hands the decoded command line to ``DebugTarget.monitor``; targets build one
``MonitorDispatcher``, register their commands (``exits``, ``break-exit``, ``info pic``, ``icount``,
``trap``...) and return ``dispatcher.dispatch(line)``. GDB manual E.4 "qRcmd": the output is text.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

Handler = Callable[[list[str]], str]
"""A command body: gets the words after the command name, returns text (newline-terminated or not)."""


class MonitorError(Exception):
    """A monitor command's usage error; ``dispatch`` prints it as ``error: ...`` with the usage."""


@dataclass(frozen=True)
class MonitorCommand:
    """One registered command: name (may be two words, e.g. "info pic"), usage line, one-line help."""

    name: str
    usage: str
    summary: str
    handler: Handler


def parse_int(text: str) -> int:
    """An integer written as decimal, ``0x`` hex, or ``0b``/``0o``; MonitorError otherwise."""
    try:
        return int(text, 0)
    except ValueError:
        raise MonitorError(f"not a number: {text!r}") from None


def parse_options(words: Iterable[str], allowed: Iterable[str]) -> dict[str, int]:
    """``key=value`` words (values are integers, see ``parse_int``); MonitorError for other keys."""
    allowed_set = set(allowed)
    options: dict[str, int] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or key not in allowed_set:
            names = ", ".join(f"{k}=N" for k in sorted(allowed_set)) or "none"
            raise MonitorError(f"unexpected argument {word!r} (options: {names})")
        options[key] = parse_int(value)
    return options


class MonitorDispatcher:
    """A table of monitor commands; ``help`` lists them, the longest matching name wins."""

    def __init__(self) -> None:
        self._commands: dict[str, MonitorCommand] = {}
        self.add("help", "help [COMMAND]", "list the monitor commands, or show one command's usage", self._help)

    def add(self, name: str, usage: str, summary: str, handler: Handler) -> None:
        """Register ``handler`` under ``name`` (one or two words)."""
        key = " ".join(name.split())
        if not key:
            raise ValueError("empty monitor command name")
        self._commands[key] = MonitorCommand(key, usage, summary, handler)

    def command(self, name: str, usage: str, summary: str) -> Callable[[Handler], Handler]:
        """Decorator form of ``add``."""
        def register(handler: Handler) -> Handler:
            self.add(name, usage, summary, handler)
            return handler
        return register

    @property
    def names(self) -> list[str]:
        """The registered command names, sorted."""
        return sorted(self._commands)

    def lookup(self, words: list[str]) -> tuple[Optional[MonitorCommand], list[str]]:
        """The command named by the first one or two ``words`` and the remaining arguments."""
        for n in (2, 1):
            if len(words) >= n:
                cmd = self._commands.get(" ".join(words[:n]))
                if cmd is not None:
                    return cmd, words[n:]
        return None, words

    def dispatch(self, line: str) -> str:
        """Run one command line and return its output, always newline-terminated (empty = help)."""
        words = line.split()
        if not words:
            words = ["help"]
        cmd, args = self.lookup(words)
        if cmd is None:
            group = [n for n in self.names if n.split()[0] == words[0]]
            if group:
                return f"error: usage: {' | '.join(self._commands[n].usage for n in group)}\n"
            return f"error: unknown monitor command {words[0]!r}; try 'monitor help'\n"
        try:
            out = cmd.handler(args)
        except MonitorError as exc:
            return f"error: {exc}\nusage: {cmd.usage}\n"
        if out and not out.endswith("\n"):
            out += "\n"
        return out

    def _help(self, args: list[str]) -> str:
        if args:
            cmd, _ = self.lookup(args)
            if cmd is None:
                raise MonitorError(f"no monitor command {' '.join(args)!r}")
            return f"{cmd.usage}\n  {cmd.summary}\n"
        width = max(len(self._commands[n].usage) for n in self.names)
        lines = ["monitor commands:"]
        lines += [f"  {self._commands[n].usage:<{width}}  {self._commands[n].summary}" for n in self.names]
        return "\n".join(lines) + "\n"
