"""``verilator --lint-only -Wall`` on generated Verilog (DESIGN.md §6).

The warnings switched off are the one list ``sim.runner.VERILATOR_LINT_OFF`` (with the
reasons there); anything else Verilator reports on generated code fails the test. The
check itself is the ``verilator_lint`` fixture (``tests/conftest.py``).
"""
from __future__ import annotations

import pytest

from flow.emit import to_verilog
from gen.config import CrossbarConfig
from hw.crossbar import Crossbar
from hw.fpga_top import ScanTop

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


@pytest.mark.parametrize("kind", list(CONFIGS) + ["fpga_top"])
def test_lint_clean(kind, verilator_lint):
    design, top = _design(kind)
    verilator_lint.clean(to_verilog(design, top), top)


def test_lint_catches_a_warning(verilator_lint):
    """The check can fail: an undriven, used signal is reported."""
    found = verilator_lint("module bad(input clk, output [3:0] y);\n  wire [3:0] w;\n  assign y = w;\nendmodule\n",
                           "bad")
    assert any(code == "UNDRIVEN" for code, _ in found)
