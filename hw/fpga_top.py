"""IO-limiting FPGA top wrapper: a scan chain in, an XOR fold out.

A block such as a crossbar has hundreds or thousands of port bits, far more than any
FPGA package has pins. To synthesize and place it as it is, :class:`ScanTop` wraps it:

* every DUT **input** bit (stream ``valid``/``payload`` of an ``In`` stream, ``ready`` of
  an ``Out`` stream, plain inputs) is a flip-flop of one serial scan chain fed from the
  ``sin`` pin, shifting one bit per clock while ``sen`` is high. Nothing the DUT sees is
  a constant, so Yosys cannot fold any of it away -- in particular a crossbar's weight
  cells stay registers because its write port ``w`` is driven from the chain too;
* every DUT **output** bit is registered and folded into the single ``sout`` pin by a
  pipelined XOR tree (``fold_arity`` bits per register stage, 4 = one LUT4), so every
  output bit stays observable and the wrapper adds no long combinational path.

The top's pins are ``clk``, ``rst`` (from the ``sync`` domain), ``sin``, ``sen`` and
``sout``: five, whatever the DUT.

Chain order: DUT input bits are concatenated in the order of :attr:`ScanTop.inputs`
(first port at bit 0) into a word of :attr:`ScanTop.scan_bits` bits; ``sin`` enters at
bit 0 and every clock with ``sen`` high moves the chain up by one, so a word is loaded by
shifting its bits in MSB first (:meth:`ScanTop.shift_sequence`).

The DUT may be any :class:`amaranth.lib.wiring.Component` (its signature is walked,
streams included), or a Verilog module given by name and port list
(:class:`VerilogBlackBox`).
"""
from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Instance, Module, ResetSignal, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ScanTop", "VerilogBlackBox", "port_bits"]


def port_bits(dut: wiring.Component) -> tuple[list[tuple[str, Value]], list[tuple[str, Value]]]:
    """The DUT's ports as ``(inputs, outputs)``: lists of ``(dotted name, Value)``, in
    signature order, with the flow as seen from outside the DUT (streams included)."""
    inputs, outputs = [], []
    for path, member, value in dut.signature.flatten(dut):
        name = ".".join(str(p) for p in path)
        value = Value.cast(value)
        if len(value) == 0:
            continue
        (inputs if member.flow == In else outputs).append((name, value))
    return inputs, outputs


class VerilogBlackBox(wiring.Component):
    """A Verilog module used as a DUT: an ``Instance`` with a signature built from its ports.

    Args:
        module: the Verilog module name.
        ports: ``{name: ("input" | "output", width)}`` of its data ports.
        clock, reset: names of its clock and (active-high, synchronous) reset ports, tied to
            the ``sync`` domain; ``None`` when the module has no such port.
    """

    def __init__(self, module: str, ports: dict[str, tuple[str, int]], *,
                 clock: str | None = "clk", reset: str | None = "rst"):
        self.module, self.clock, self.reset = module, clock, reset
        members = {}
        for name, (direction, width) in ports.items():
            if name in (clock, reset):
                continue
            if direction not in ("input", "output"):
                raise ValueError(f"port {name!r} of {module!r} has direction {direction!r}; "
                                 "only input and output ports can be wrapped")
            members[name] = (In if direction == "input" else Out)(width)
        self._names = list(members)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        conns = {}
        if self.clock:
            conns[f"i_{self.clock}"] = ClockSignal()
        if self.reset:
            conns[f"i_{self.reset}"] = ResetSignal()
        for name in self._names:
            flow = self.signature.members[name].flow
            conns[("i_" if flow == In else "o_") + name] = getattr(self, name)
        m.submodules.dut = Instance(self.module, **conns)
        return m


class ScanTop(wiring.Component):
    """Wrap ``dut`` so that it needs five pins: ``clk``, ``rst``, ``sin``, ``sen``, ``sout``.

    Args:
        dut: the component to wrap (added as submodule ``dut``).
        fold_arity: output bits XOR-ed per pipeline register of the fold tree (>= 2).

    Attributes:
        inputs, outputs: ``(name, Value)`` of the DUT's input and output ports.
        scan_bits: length of the scan chain (total DUT input bits).
        out_bits: total DUT output bits folded into ``sout``.
        fold_stages: register stages between a DUT output and ``sout``, the output
            register included.
        wrapper_ffs: flip-flops the wrapper itself adds (scan chain + fold registers).
    """

    def __init__(self, dut: wiring.Component, *, fold_arity: int = 4):
        if not isinstance(dut, wiring.Component):
            raise TypeError(f"ScanTop wraps a wiring.Component, not {type(dut).__name__}")
        if fold_arity < 2:
            raise ValueError(f"fold_arity={fold_arity} is not allowed: it must be >= 2")
        self.dut = dut
        self.fold_arity = fold_arity
        self.inputs, self.outputs = port_bits(dut)
        if not self.outputs:
            raise ValueError("the DUT has no output ports: nothing would survive synthesis")
        self.scan_bits = sum(len(v) for _, v in self.inputs)
        self.out_bits = sum(len(v) for _, v in self.outputs)
        n, stages, regs = self.out_bits, 1, self.out_bits
        while n > 1:
            n, stages = -(-n // fold_arity), stages + 1
            regs += n
        self.fold_stages = stages
        self.wrapper_ffs = self.scan_bits + regs
        super().__init__({"sin": In(1), "sen": In(1), "sout": Out(1)})

    # --- helpers for testbenches ------------------------------------------------------
    def input_offsets(self) -> dict[str, tuple[int, int]]:
        """``{port name: (bit offset in the scan word, width)}``."""
        offs, o = {}, 0
        for name, v in self.inputs:
            offs[name] = (o, len(v))
            o += len(v)
        return offs

    def scan_word(self, values: dict[str, int]) -> int:
        """The scan word that puts ``values`` (``{port name: int}``, others 0) on the DUT inputs."""
        offs, word = self.input_offsets(), 0
        for name, val in values.items():
            if name not in offs:
                raise ValueError(f"{name!r} is not a DUT input; inputs: {list(offs)}")
            o, w = offs[name]
            word |= (int(val) & ((1 << w) - 1)) << o
        return word

    def shift_sequence(self, word: int) -> list[int]:
        """Bits to present on ``sin`` (one per clock, ``sen`` high) to load ``word``: MSB first."""
        return [(word >> i) & 1 for i in reversed(range(self.scan_bits))]

    # --- hardware ---------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut

        if self.scan_bits:
            chain = Signal(self.scan_bits, name="scan_chain")
            with m.If(self.sen):
                if self.scan_bits == 1:
                    m.d.sync += chain.eq(self.sin)
                else:
                    m.d.sync += chain.eq(Cat(self.sin, chain[:-1]))
            o = 0
            for _, v in self.inputs:
                m.d.comb += v.eq(chain[o:o + len(v)])
                o += len(v)

        level = Signal(self.out_bits, name="fold0")
        m.d.sync += level.eq(Cat(*(v for _, v in self.outputs)))
        stage = 1
        while len(level) > 1:
            k = self.fold_arity
            groups = [level[i:i + k] for i in range(0, len(level), k)]
            nxt = Signal(len(groups), name=f"fold{stage}")
            m.d.sync += nxt.eq(Cat(*(g.xor() for g in groups)))
            level, stage = nxt, stage + 1
        m.d.comb += self.sout.eq(level)
        return m
