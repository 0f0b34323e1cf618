"""Rules file syntax and key/value configuration parsing (docs/storage.md)."""
from __future__ import annotations

import pytest

from emu import EmuError
from emu.integrity.rules import Rule, RuleOp, evaluate, parse_config, parse_rules


def test_parse_rules():
    rules = parse_rules('# c\n/ETC/A.CFG vlan == 10  # trailing\n"/My Dir/B.CFG" Mode in "a, b"\n/X K absent\n')
    assert rules == [Rule("/ETC/A.CFG", "VLAN", RuleOp.EQ, "10", 2), Rule("/My Dir/B.CFG", "MODE", RuleOp.IN, "a, b", 3),
                     Rule("/X", "K", RuleOp.ABSENT, "", 4)]
    assert Rule.from_json(rules[1].to_json()) == rules[1]


@pytest.mark.parametrize("text,message", [
    ("/A K", "rules:1: expected 'PATH KEY OP [VALUE]'"),
    ("/A K == ", "needs exactly one value"),
    ("/A K present yes", "takes no value"),
    ("A K == 1", "path must start with '/'"),
    ("/A K matches (", "bad regular expression"),
    ('/A K == "unterminated', "No closing quotation"),
    ("\n\n/A K <> 1", "rules:3: unknown operator '<>'"),
])
def test_bad_rules_name_the_line(text, message):
    with pytest.raises(EmuError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_rules(text)


def test_parse_config_forms():
    cfg = parse_config(b"# comment\n; comment\nVLAN=10\r\nmode : bridge\nNAME \"quoted value\"\n"
                       b"[Guest]\nshell = none\nEMPTY=\nFLAG\n")
    assert cfg == {"VLAN": ["10"], "MODE": ["bridge"], "NAME": ["quoted value"], "GUEST.SHELL": ["none"],
                   "GUEST.EMPTY": [""], "GUEST.FLAG": [""]}


def rule(op, value=""):
    return Rule("/C", "VLAN", RuleOp(op), value)


@pytest.mark.parametrize("config,op,value,ok", [
    (b"VLAN=10", "==", "10", True),
    (b"VLAN=010", "==", "10", False),
    (b"", "==", "10", False),
    (b"VLAN=10", "!=", "10", False),
    (b"", "!=", "10", True),
    (b"VLAN=11", "in", "10, 11", True),
    (b"VLAN=12", "in", "10,11", False),
    (b"VLAN=19", "matches", "1[0-9]", True),
    (b"VLAN=190", "matches", "1[0-9]", False),
    (b"VLAN=", "present", "", True),
    (b"", "present", "", False),
    (b"OTHER=1", "absent", "", True),
    (b"VLAN=10\nVLAN=20", "==", "10", False),   # ambiguous
    (b"VLAN=10\nVLAN=10", "==", "10", True),
])
def test_evaluate(config, op, value, ok):
    why = evaluate(rule(op, value), parse_config(config))
    assert (why is None) == ok, why


def test_ambiguous_message():
    why = evaluate(rule("==", "10"), parse_config(b"VLAN=10\nVLAN=20"))
    assert "ambiguous" in why
