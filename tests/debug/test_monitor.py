"""The monitor command table targets use to answer qRcmd."""
from __future__ import annotations

import pytest

from emu.debug.monitor import MonitorDispatcher, MonitorError, parse_int, parse_options


def _dispatcher() -> tuple[MonitorDispatcher, list[list[str]]]:
    seen: list[list[str]] = []
    d = MonitorDispatcher()

    @d.command("info pic", "info pic", "the 8259 pair's registers")
    def info_pic(args: list[str]) -> str:
        seen.append(["info pic", *args])
        return "pic state"

    @d.command("info", "info WHAT", "generic info")
    def info(args: list[str]) -> str:
        seen.append(["info", *args])
        return "generic\n"

    @d.command("exits", "exits [N]", "the last N exits")
    def exits(args: list[str]) -> str:
        n = parse_int(args[0]) if args else 10
        return f"{n} exits"

    return d, seen


def test_help_lists_every_command_sorted() -> None:
    d, _ = _dispatcher()
    text = d.dispatch("help")
    lines = text.splitlines()
    assert lines[0] == "monitor commands:"
    assert [line.split()[0] for line in lines[1:]] == ["exits", "help", "info", "info"]
    assert "info pic" in text and "the last N exits" in text
    assert d.dispatch("") == text  # bare `monitor` shows help
    assert d.dispatch("help exits") == "exits [N]\n  the last N exits\n"
    assert d.dispatch("help nothing").startswith("error: no monitor command 'nothing'")


def test_two_word_commands_win_over_one_word() -> None:
    d, seen = _dispatcher()
    assert d.dispatch("info pic extra") == "pic state\n"
    assert d.dispatch("info pit") == "generic\n"
    assert seen == [["info pic", "extra"], ["info", "pit"]]


def test_errors_are_text_not_exceptions() -> None:
    d, _ = _dispatcher()
    assert d.dispatch("bogus 1 2") == "error: unknown monitor command 'bogus'; try 'monitor help'\n"
    assert d.dispatch("exits many") == "error: not a number: 'many'\nusage: exits [N]\n"
    assert d.dispatch("exits 0x10") == "16 exits\n"


def test_group_without_generic_command_shows_usages() -> None:
    d = MonitorDispatcher()
    d.add("info pic", "info pic", "pic", lambda a: "p")
    d.add("info pit", "info pit", "pit", lambda a: "t")
    assert d.dispatch("info") == "error: usage: info pic | info pit\n"


def test_parse_options() -> None:
    assert parse_options(["port=0x1f7", "vector=14"], ["port", "msr", "vector"]) == {"port": 0x1F7, "vector": 14}
    with pytest.raises(MonitorError, match="unexpected argument 'bad=1'"):
        parse_options(["bad=1"], ["port"])
    with pytest.raises(MonitorError, match="unexpected argument 'port'"):
        parse_options(["port"], ["port"])
    with pytest.raises(MonitorError, match="not a number"):
        parse_options(["port=x"], ["port"])
