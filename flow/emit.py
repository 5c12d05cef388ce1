"""Verilog emission from Amaranth components: one module per distinct configuration.

Components that parents instantiate through ``hw.blackbox.instantiate`` are converted once
each, under their module name, and appended to the top's Verilog (DESIGN.md §6).
"""
from __future__ import annotations

from amaranth.back import verilog

from hw import blackbox


def to_verilog(component, name: str) -> str:
    """Verilog text of ``component`` with top module ``name`` (ports from its signature),
    followed by one definition of every black-boxed block it instantiates."""
    blackbox.DEFINITIONS.clear()
    parts = [verilog.convert(component, name=name, emit_src=False)]
    done: set[str] = set()
    while len(done) < len(blackbox.DEFINITIONS):
        # a definition may itself instantiate black boxes: convert until none is new
        for module, comp in list(blackbox.DEFINITIONS.items()):
            if module not in done:
                done.add(module)
                parts.append(verilog.convert(comp, name=module, emit_src=False))
    return "\n".join(parts)
