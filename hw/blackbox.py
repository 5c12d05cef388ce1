"""Emit each distinct block once and instantiate it (DESIGN.md §6).

Amaranth turns every component instance into its own copy of the logic, so a chip of a
hundred identical crossbars would be a hundred copies in the Verilog. :func:`instantiate`
puts an ``Instance`` of a named module in the parent instead, and returns an interface with
the component's signature for the parent to connect; the component itself is recorded in
:data:`DEFINITIONS` under that module name and converted once by the Verilog emitter
(``flow.emit``). The module name is a deterministic name from the block's configuration, so
equal configurations share one definition, and the component is built only once.

Counters and taps a testbench reads must therefore be ports of the black box (§6): nothing
inside it is reachable from outside.
"""
from __future__ import annotations

from amaranth.hdl import ClockSignal, Instance, ResetSignal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In

__all__ = ["DEFINITIONS", "INSTANCES", "instantiate"]

#: Module name -> the component that defines it (filled while a design elaborates).
DEFINITIONS: dict[str, wiring.Component] = {}

#: Module names in the order :func:`instantiate` was called, repeats included: what the
#: emitter (``flow.emit``) clears before elaborating one block to learn which blocks that
#: block instantiates, in order.
INSTANCES: list[str] = []


def instantiate(m, name: str, module: str, signature: wiring.Signature, build, clocked: bool = True):
    """Add an instance of Verilog module ``module`` to ``m`` as submodule ``name`` and return
    an interface with ``signature`` to connect. ``build()`` makes the component that defines
    the module; it is called only for the first instance of ``module``. ``clocked=False``: a
    combinational block, whose Verilog has no clock and reset ports."""
    INSTANCES.append(module)
    if module not in DEFINITIONS:
        DEFINITIONS[module] = build()
    intf = signature.create(path=(name,))
    ports = {}
    for path, member, value in signature.flatten(intf):
        port = "__".join(str(p) for p in path)
        ports[("i_" if member.flow == In else "o_") + port] = Value.cast(value)
    if clocked:
        ports.update(i_clk=ClockSignal("sync"), i_rst=ResetSignal("sync"))
    m.submodules[name] = Instance(module, **ports)
    return intf
