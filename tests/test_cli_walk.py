"""Walk every ``pimgen`` sub-command (and nested ones, e.g. ``synth crossbar``): ``--help`` exits 0
and mentions every flag, and every command that does the work has ``--json``.

The flags come from the parsers themselves, so a flag added later is covered without editing
this file; so is a command added to ``flow.cli.COMMANDS``.
"""
from __future__ import annotations

import argparse

import pytest

from flow.cli import COMMANDS, build_parser, main

# commands known to lack --json; each is an expected failure (strict: the test flips to an
# unexpected pass, and fails, when the command gains the flag; then delete it from here)
MISSING_JSON: set[str] = set()


def _children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-parsers of ``parser`` by name (argparse keeps them in a sub-parsers action's ``choices``)."""
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:      # argparse has no public list of a parser's actions
        if isinstance(action.choices, dict) and all(isinstance(p, argparse.ArgumentParser)
                                                     for p in action.choices.values()):
            out.update(action.choices)
    return out


def _walk(path: tuple[str, ...], parser: argparse.ArgumentParser):
    """``(path, parser)`` for ``parser`` and every parser below it."""
    yield path, parser
    for name, child in _children(parser).items():
        yield from _walk(path + (name,), child)


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return [o for a in parser._actions if a.help != argparse.SUPPRESS for o in a.option_strings]


def _command(name: str) -> argparse.ArgumentParser:
    parsers = _children(build_parser())
    assert name in parsers, f"{name} is in flow.cli.COMMANDS but its module flow/commands/{name}.py does not load"
    return parsers[name]


def test_every_command_is_registered():
    assert sorted(_children(build_parser())) == sorted(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_exits_0_and_mentions_every_flag(name, capsys):
    for path, parser in _walk((name,), _command(name)):
        with pytest.raises(SystemExit) as e:
            main([*path, "--help"])
        assert e.value.code == 0, f"pimgen {' '.join(path)} --help exited {e.value.code}"
        out = capsys.readouterr().out
        missing = [f for f in _flags(parser) if f not in out]
        assert not missing, f"pimgen {' '.join(path)} --help does not mention {', '.join(missing)}"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=f"{n} has no --json"))
                                  if n in MISSING_JSON else n for n in COMMANDS])
def test_every_command_has_json(name):
    # a command with sub-commands (synth BLOCK) takes --json on each of them
    leaves = [(p, parser) for p, parser in _walk((name,), _command(name)) if not _children(parser)]
    lacking = [" ".join(p) for p, parser in leaves if "--json" not in _flags(parser)]
    assert not lacking, f"no --json on: pimgen {', pimgen '.join(lacking)}"


def test_missing_json_names_real_commands():
    assert MISSING_JSON <= set(COMMANDS)


def test_one_spelling_and_one_help_per_knob():
    """Every config knob a command takes is spelled ``--field-name`` and has the same help text
    (the bracketed default aside) in every command; no command spells a knob another way.
    The knobs come from the dataclasses' fields, so a knob added later is covered."""
    import dataclasses
    import re

    from gen.config import ChipConfig, CrossbarConfig
    knobs = {f.name: f.metadata["help"] for cls in (CrossbarConfig, ChipConfig)
             for f in dataclasses.fields(cls) if "help" in f.metadata}
    seen: dict[str, set[str]] = {}
    for name in COMMANDS:
        for path, parser in _walk((name,), _command(name)):
            for a in parser._actions:
                for opt in a.option_strings:
                    field = opt[2:].replace("-", "_")
                    if field in knobs and a.type is int:      # list-valued grid flags (sweep) take strings
                        seen.setdefault(field, set()).add(re.sub(r" \[[^\]]*\]$", "", a.help))
                    # old spellings of knobs (--crossbar RxC, --global-bus) are gone
                    assert opt not in ("--crossbar", "--global-bus", "--tile-bus", "--pe-bus"), (path, opt)
    assert seen.keys() == knobs.keys()
    assert {k: v for k, v in seen.items() if v != {knobs[k]}} == {}
