"""Arguments and output helpers shared by several sub-commands."""
from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from gen.config import CrossbarConfig


def add_crossbar_args(p: argparse.ArgumentParser, *, defaults: CrossbarConfig | None = None) -> None:
    """The crossbar knobs, one flag per ``CrossbarConfig`` field, plus ``--config FILE.toml``."""
    d = defaults or CrossbarConfig()
    g = p.add_argument_group("crossbar")
    g.add_argument("--config", metavar="TOML", help="load the crossbar config from a TOML file; flags override it")
    g.add_argument("--rows", type=int, help=f"cell rows [{d.rows}]")
    g.add_argument("--cols", type=int, help=f"cell columns incl. the reference column [{d.cols}]")
    g.add_argument("--cell-bits", type=int, help=f"bits per cell, 1|2|4 [{d.cell_bits}]")
    g.add_argument("--w-bits", type=int, help=f"signed weight bits [{d.w_bits}]")
    g.add_argument("--a-bits", type=int, help=f"unsigned activation bits [{d.a_bits}]")
    g.add_argument("--dac-bits", type=int, help=f"input bits per input cycle [{d.dac_bits}]")
    g.add_argument("--adc-bits", type=int, help="ADC resolution [lossless]")
    g.add_argument("--adc-shift", type=int, help=f"coarse ADC step 2**S [{d.adc_shift}]")
    g.add_argument("--cols-per-adc", type=int, help=f"columns sharing one ADC [{d.cols_per_adc}]")
    g.add_argument("--g-frac-bits", type=int, help=f"fraction bits F of a cell's conductance (non-ideal cells) "
                                                   f"[{d.g_frac_bits}]")


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


def device_from_args(args: argparse.Namespace, seed: int):
    """The ``gen.devices.DeviceModel`` the flags ask for, or ``None`` when none is given."""
    from gen.devices import DeviceModel
    given = {k: getattr(args, a, None) for k, a in (("variation", "variation"), ("stuck_at_0", "stuck_at"),
                                                    ("stuck_at_1", "stuck_at_1"), ("drift_nu", "drift"),
                                                    ("time", "time"))}
    given = {k: v for k, v in given.items() if v is not None}
    if not given and not getattr(args, "ideal_ref_column", False):
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
    base = CrossbarConfig.from_toml(args.config).to_dict() if getattr(args, "config", None) else {}
    for name in CrossbarConfig.__dataclass_fields__:
        v = getattr(args, name, None)
        if v is not None:
            base[name] = v
    return CrossbarConfig.from_dict(base)


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")
