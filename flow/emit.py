"""Verilog emission from Amaranth components: one module per distinct configuration.

Components that parents instantiate through ``hw.blackbox.instantiate`` are converted once
each, under their module name, and appended to the top's Verilog (DESIGN.md §6).
"""
from __future__ import annotations

from amaranth.back import verilog
from amaranth.hdl import Fragment

from hw import blackbox


def _definitions(parts: list[str]) -> list[str]:
    """Convert every black-boxed block recorded so far, and those they instantiate in turn."""
    done: set[str] = set()
    while len(done) < len(blackbox.DEFINITIONS):
        # a definition may itself instantiate black boxes: convert until none is new
        for module, comp in list(blackbox.DEFINITIONS.items()):
            if module not in done:
                done.add(module)
                parts.append(verilog.convert(comp, name=module, emit_src=False))
    return parts


def to_verilog(component, name: str) -> str:
    """Verilog text of ``component`` with top module ``name`` (ports from its signature),
    followed by one definition of every black-boxed block it instantiates."""
    blackbox.DEFINITIONS.clear()
    return "\n".join(_definitions([verilog.convert(component, name=name, emit_src=False)]))


def definitions_verilog(component) -> str:
    """One definition of every black-boxed block ``component`` instantiates, without
    ``component`` itself: for a flow that converts the top on its own (an FPGA platform's
    build), which then needs these modules as a Verilog file beside it."""
    blackbox.DEFINITIONS.clear()
    Fragment.get(component, None)       # elaborates the whole hierarchy: records the black boxes
    return "\n".join(_definitions([]))
