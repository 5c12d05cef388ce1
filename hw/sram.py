"""Deep memories as tiles of one RAM macro (DESIGN.md §6), as a memory compiler builds them.

A chip's deep memories (a stem layer's feature-map buffer, a skip FIFO holding whole
images) hold megabits. Amaranth writes every memory's initial contents bit by bit, so one
256-bit × 31 360-word skip FIFO cost ResNet-34's generation 52 seconds and 2.75 MiB of
Verilog. :class:`TiledMemory` builds such a memory from :class:`RamMacro` tiles of
``MACRO_DEPTH × MACRO_WIDTH`` (``rows × columns`` of them), one shared module
(``hw.blackbox``) converted once per chip however many memories and tiles use it.
A memory no deeper than a macro stays one ``lib.memory.Memory`` of its own size (LUT RAM on
an FPGA), as before.

Both have the ports of a ``lib.memory.Memory`` with one write port and ``n_read``
synchronous read ports (``WritePort.Signature``, ``ReadPort.Signature``): a read's data
arrives the clock after its address and holds while its ``en`` is low; a read of the word
being written returns the old word. ``ce`` is the whole memory's clock enable (writes,
reads and the read data held while low): an ``EnableInserter`` around the memory does not
reach into a black box, so a parent under one drives ``ce`` with that enable.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw.blackbox import instantiate

__all__ = ["MACRO_DEPTH", "MACRO_WIDTH", "RamMacro", "TiledMemory", "addr_bits", "memory_signature"]

#: The RAM macro: words (a power of two) and bits per word. 1 024 × 64 is two 18-kbit block
#: RAMs of an ECP5 or four of an iCE40's 4-kbit ones, and a 64-kbit SRAM macro on silicon.
MACRO_DEPTH = 1024
MACRO_WIDTH = 64


def addr_bits(depth: int) -> int:
    """Address bits of a ``depth``-word memory (at least one)."""
    return max(1, ceil_log2(max(2, depth)))


def memory_signature(width: int, depth: int, n_read: int) -> wiring.Signature:
    """The ports of a ``width``-bit, ``depth``-word memory with one write port ``wr`` and
    ``n_read`` read ports ``rd`` (the memory's side: addresses in, read data out), and its
    clock enable ``ce``."""
    a = addr_bits(depth)
    return wiring.Signature({"wr": Out(WritePort.Signature(addr_width=a, shape=unsigned(width))),
                             "rd": Out(ReadPort.Signature(addr_width=a, shape=unsigned(width))).array(n_read),
                             "ce": In(1, init=1)})


def _one_memory(m, mem_if):
    """Ports ``mem_if`` (:func:`memory_signature`) on one ``lib.memory.Memory`` of its size."""
    m.submodules.mem = mem = Memory(shape=unsigned(mem_if.width), depth=mem_if.depth, init=[])
    wp = mem.write_port()
    m.d.comb += [wp.addr.eq(mem_if.wr.addr), wp.data.eq(mem_if.wr.data), wp.en.eq(mem_if.wr.en & mem_if.ce)]
    for port in mem_if.rd:
        rp = mem.read_port()
        m.d.comb += [rp.addr.eq(port.addr), rp.en.eq(port.en & mem_if.ce), port.data.eq(rp.data)]


class RamMacro(wiring.Component):
    """One ``depth`` × ``width`` synchronous RAM, zero at power-up (module docstring)."""

    def __init__(self, width: int, depth: int, n_read: int):
        self.width, self.depth, self.n_read = width, depth, n_read
        super().__init__(memory_signature(width, depth, n_read))

    @staticmethod
    def module_name(width: int, depth: int, n_read: int) -> str:
        return f"pimgen_ram_{depth}x{width}_r{n_read}"

    def elaborate(self, platform):
        m = Module()
        _one_memory(m, self)
        return m


class TiledMemory(wiring.Component):
    """A ``width`` × ``depth`` memory (:func:`memory_signature`) from :class:`RamMacro` tiles:
    ``ceil(depth / macro depth)`` rows of ``ceil(width / macro width)`` columns. A write
    goes to the row its address's high bits name; a read reads that row only, and the row
    it read (registered with the macros' data) picks the word.

    ``shared``: the macros are instances of one module (``hw.blackbox``); ``False`` makes
    each a submodule of its own, which an ``EnableInserter`` reaches (the emulation build's
    target clock) and Amaranth's simulator runs. ``macro``: ``(depth, width)`` of a tile,
    the module's :data:`MACRO_DEPTH` and :data:`MACRO_WIDTH` unless given."""

    def __init__(self, width: int, depth: int, n_read: int = 1, *, shared: bool = True,
                 macro: tuple[int, int] | None = None):
        self.width, self.depth, self.n_read, self.shared = width, depth, n_read, shared
        self.macro_depth, self.macro_width = macro or (MACRO_DEPTH, MACRO_WIDTH)
        if self.macro_depth & (self.macro_depth - 1):
            raise ValueError(f"a RAM macro is {self.macro_depth} words deep: it must be a power of two")
        super().__init__(memory_signature(width, depth, n_read))

    @property
    def tiled(self) -> bool:
        """Deeper than a macro: built from tiles (else one memory of its own size)."""
        return self.depth > self.macro_depth

    def elaborate(self, platform):
        m = Module()
        if not self.tiled:
            _one_memory(m, self)
            return m
        md, mw = self.macro_depth, self.macro_width
        lo = addr_bits(md)
        rows, cols = -(-self.depth // md), -(-self.width // mw)
        wdata = Cat(self.wr.data, Const(0, cols * mw - self.width))
        # per read port: the row it read, registered as the macros register their data
        sel = [Signal(range(rows), name=f"rd{k}_row") for k in range(self.n_read)]
        for k, port in enumerate(self.rd):
            with m.If(port.en & self.ce):
                m.d.sync += sel[k].eq(port.addr[lo:])
        data = [[] for _ in range(self.n_read)]
        for r in range(rows):
            words = [[] for _ in range(self.n_read)]
            for c in range(cols):
                name = f"ram_r{r}_c{c}"
                if self.shared:
                    t = instantiate(m, name, RamMacro.module_name(mw, md, self.n_read),
                                    memory_signature(mw, md, self.n_read), lambda: RamMacro(mw, md, self.n_read))
                else:
                    m.submodules[name] = t = RamMacro(mw, md, self.n_read)
                m.d.comb += [t.ce.eq(self.ce), t.wr.addr.eq(self.wr.addr[:lo]),
                             t.wr.data.eq(wdata[c * mw:(c + 1) * mw]),
                             t.wr.en.eq(self.wr.en & (self.wr.addr[lo:] == r))]
                for k, port in enumerate(self.rd):
                    m.d.comb += [t.rd[k].addr.eq(port.addr[:lo]), t.rd[k].en.eq(port.en & (port.addr[lo:] == r))]
                    words[k].append(t.rd[k].data)
            for k in range(self.n_read):
                data[k].append(Cat(*words[k])[:self.width])
        for k, port in enumerate(self.rd):
            with m.Switch(sel[k]):
                for r in range(rows):
                    with m.Case(r):
                        m.d.comb += port.data.eq(data[k][r])
        return m
