"""Verilog emission from Amaranth components (one module per distinct configuration)."""
from __future__ import annotations

from amaranth.back import verilog


def to_verilog(component, name: str) -> str:
    """Verilog text of ``component`` with top module ``name`` (ports from its signature)."""
    return verilog.convert(component, name=name, emit_src=False)
