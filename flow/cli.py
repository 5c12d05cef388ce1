"""``pimgen`` command line: a thin dispatcher over ``flow.commands.<name>`` modules.

Each sub-command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status). User errors are raised as ``ValueError`` and
reported here as one line on stderr with exit status 2, never as a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from flow.buildfolder import interrupted, watch_sigint
from gen.errors import ToolError

COMMANDS = ["build", "simulate", "crossbar", "map", "compare", "topology", "generate", "synth", "demo", "quantize",
            "accuracy", "cache", "sweep"]


def pimgen_version() -> str:
    try:
        from importlib.metadata import version
        return version("pimgen")
    except Exception:       # a checkout that is not installed
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pimgen",
        description="Generate, simulate and evaluate RRAM processing-in-memory CNN accelerators.")
    parser.add_argument("--version", action="version", version=f"pimgen {pimgen_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"flow.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"flow.commands.{name}":
                continue  # not built yet
            raise
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _quiet_unused() -> None:
    """An interrupted build leaves components it never elaborated; Amaranth would warn about
    each as they are collected at exit, burying the interruption under dozens of lines."""
    import warnings
    from amaranth.hdl import UnusedElaboratable
    warnings.simplefilter("ignore", UnusedElaboratable)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:        # a command may take a shorter spelling of itself
        alias = getattr(importlib.import_module(f"flow.commands.{argv[0]}"), "alias", None)
        argv = alias(argv) if alias else argv
    args = parser.parse_args(argv)
    watch_sigint()
    try:
        rc = int(args._run(args) or 0)
        if interrupted():
            _quiet_unused()
            return 130
        return rc
    except ValueError as e:
        print(f"pimgen {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _quiet_unused()
        return 130
    except BrokenPipeError:  # output piped into `head` and friends
        return 0
    except ToolError as e:  # a tool failed (simulator build, synthesis): its own words
        print(f"pimgen {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
