"""Arguments and output helpers shared by several sub-commands."""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from typing import Any

from gen.config import CrossbarConfig


def add_config_flags(g, cls, defaults=None, *, where: str = "") -> None:
    """One ``--field-name N`` flag per knob of config dataclass ``cls`` (every field with a
    ``help`` in its metadata, ``gen.config._knob``): one spelling and one help text per knob in
    every command. ``defaults`` (an instance) is what the help shows in brackets, after ``where``."""
    d = defaults if defaults is not None else cls()
    for f in dataclasses.fields(cls):
        if "help" in f.metadata:
            v = getattr(d, f.name)
            g.add_argument("--" + f.name.replace("_", "-"), type=int, metavar="N",
                           help=f"{f.metadata['help']} [{where}{'none' if v is None else v}]")


def knob_help(name: str) -> str:
    """The help text of knob ``name`` (a ``CrossbarConfig`` or ``ChipConfig`` field)."""
    from gen.config import ChipConfig
    for cls in (CrossbarConfig, ChipConfig):
        for f in dataclasses.fields(cls):
            if f.name == name and "help" in f.metadata:
                return f.metadata["help"]
    raise KeyError(name)


def config_overrides(args: argparse.Namespace, cls) -> dict[str, Any]:
    """The knobs of ``cls`` the command line set (:func:`add_config_flags`), by field name."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if "help" in f.metadata and getattr(args, f.name, None) is not None}


def add_crossbar_args(p: argparse.ArgumentParser, *, defaults: CrossbarConfig | None = None) -> None:
    """The crossbar knobs (:func:`add_config_flags`) plus ``--config FILE.toml`` (a crossbar TOML)."""
    g = p.add_argument_group("crossbar")
    g.add_argument("--config", metavar="TOML", help="load the crossbar config from a TOML file; flags override it")
    add_config_flags(g, CrossbarConfig, defaults)


def add_device_args(p: argparse.ArgumentParser, note: str | None = None) -> None:
    """The device-model flags (``gen.devices.DeviceModel``); the draws use the command's ``--seed``.
    ``note``: what they mean for this command (the group's description)."""
    g = p.add_argument_group("device model (non-ideal cells, DESIGN.md §3)", note)
    g.add_argument("--variation", type=float, metavar="SIGMA", help="programming variation sigma, in levels [0]")
    g.add_argument("--stuck-at", type=float, metavar="RATE", help="fraction of cells stuck at 0 [0]")
    g.add_argument("--stuck-at-1", type=float, metavar="RATE", help="fraction of cells stuck at the top level [0]")
    g.add_argument("--drift", type=float, metavar="NU", help="drift exponent nu: g scales by (T / 1 s)**-nu [0]")
    g.add_argument("--time", type=float, metavar="T", help="seconds since programming, for --drift [1]")
    g.add_argument("--ideal-ref-column", action="store_true",
                   help="keep the reference column's cells ideal (default: they get the same effects)")
    g.add_argument("--fault-aware", action="store_true",
                   help="program the cells around the stuck cells a test measures: free slices and the row's reference "
                        "absorb the stuck ones (gen.fault_aware)")


def device_from_args(args: argparse.Namespace, seed: int, *, fallback=None):
    """The ``gen.devices.DeviceModel`` the flags ask for, or ``None`` when none is given.
    ``--fault-aware`` needs a model: the flags' or ``fallback`` (e.g. the one a build holds)."""
    from gen.devices import DeviceModel
    given = {k: getattr(args, a, None) for k, a in (("variation", "variation"), ("stuck_at_0", "stuck_at"),
                                                    ("stuck_at_1", "stuck_at_1"), ("drift_nu", "drift"),
                                                    ("time", "time"))}
    given = {k: v for k, v in given.items() if v is not None}
    if not given and not getattr(args, "ideal_ref_column", False):
        if getattr(args, "fault_aware", False) and fallback is None:
            raise ValueError("--fault-aware needs a device model to work around: give --stuck-at and/or "
                             "--stuck-at-1 (and any other device flags)")
        return None
    try:
        return DeviceModel(**given, ref_column=not getattr(args, "ideal_ref_column", False), seed=seed)
    except ValueError as e:     # the model names its fields; the user typed flags
        msg = str(e)
        for field, flag in _DEVICE_FLAGS.items():
            msg = re.sub(rf"\b{field}\b=?", lambda m, flag=flag: flag + (" " if m.group().endswith("=") else ""), msg)
        raise ValueError(msg) from None


#: DeviceModel field -> the flag that sets it (for error messages).
_DEVICE_FLAGS = {"stuck_at_0": "--stuck-at", "stuck_at_1": "--stuck-at-1", "variation": "--variation",
                 "drift_nu": "--drift", "time": "--time", "seed": "--seed"}


def crossbar_from_args(args: argparse.Namespace) -> CrossbarConfig:
    """The crossbar :func:`add_crossbar_args` describe: ``--config`` (or the defaults), then the flags."""
    base = CrossbarConfig.from_toml(args.config).to_dict() if getattr(args, "config", None) else {}
    return CrossbarConfig.from_dict({**base, **config_overrides(args, CrossbarConfig)})


def add_jobs_arg(p: argparse.ArgumentParser) -> None:
    """``-j/--jobs N``: processes converting the chip's Verilog blocks (``flow.emit``)."""
    p.add_argument("-j", "--jobs", type=int, metavar="N",
                   help="processes converting the Verilog's distinct blocks (the same text as one process) "
                        "[PIMGEN_JOBS, else the cores this process may use]")


def jobs_from_args(args: argparse.Namespace) -> int:
    """The ``--jobs`` value, or ``flow.emit.default_jobs()`` when it was not given."""
    from flow.emit import default_jobs
    if args.jobs is None:
        return default_jobs()
    if args.jobs < 1:
        raise ValueError(f"--jobs {args.jobs} is not allowed: it must be >= 1")
    return args.jobs


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")
