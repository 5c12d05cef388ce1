"""The chip on an FPGA board: images in over UART, the class and the logits out.

:class:`BoardCore` is everything below the board's pins and clock primitives, so cocotb runs
it as it is: the chip's emulation build (:class:`hw.decoupled.EmulatedChip`) with every
crossbar's cells as its block RAMs' initial contents — the cells the programming beats
``pimgen build`` writes to ``weights/program.hex`` leave (``gen.cells.cells_from_beats``) — and
the serial protocol:

* host → board: an image as its input words (``ChipPlan.input_layout``), each word
  ``ceil(word_bits / 8)`` bytes, least significant first. Images may follow each other back
  to back while the serial line is slower than the chip (a FIFO holds one image's words, the
  chip two more in its input banks); a byte that finds the FIFO full is lost and lights LED 2,
  so a host that cannot be sure waits for each reply (as ``sim.tb.board`` does);
* board → host, per image, in order: one byte, the class (the index of the largest logit,
  the first on a tie, as ``numpy.argmax``), then every logit as 4 bytes, little-endian two's
  complement.

No programming port on the board: broadcasting the 139-bit programming beat of the digits chip
to all its banks is what kept it from routing on the ECP5 (``docs/fpga.md``), and ~100 kB of
cells over the serial line would be slow; the simulation build is still programmed as a real
chip is, through ``prog``.

LEDs: 0 ready (lit from reset), 1 an image in the chip, 2 a received byte was lost (overrun), 3 the
serial receiver's line, 4-7 the last class.

:class:`PinTop` puts a core on a board's pins (``amaranth-boards``' platforms, e.g.
``ULX3S_85F_Platform``: the 25 MHz oscillator, the FTDI UART, the LEDs, the power button as
reset).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from amaranth.hdl import Cat, Const, Elaboratable, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from hw.decoupled import EmulatedChip
from hw.uart import UartRx, UartTx

__all__ = ["BoardCore", "PinTop", "Ecp5Pll", "board_reply_bytes"]


def board_reply_bytes(n_logits: int) -> int:
    """Bytes the board sends per image: the class, then ``n_logits`` 4-byte logits."""
    return 1 + 4 * n_logits


class BoardCore(wiring.Component):
    """The chip of ``cp`` behind a UART (module docstring).

    Args:
        cp: the :class:`gen.chipplan.ChipPlan`.
        cells: every crossbar's cells (``gen.cells.cells_from_beats`` of the chip's programming
            beats), the banks' initial contents.
        clocks_per_bit: clock frequency / baud rate.

    Ports: ``rx`` (in), ``tx`` (out), ``leds`` (out, 8), ``cycles`` (out: the chip's target
    clocks), ``host_cycles`` (out: clocks since reset).
    """

    def __init__(self, cp, cells, clocks_per_bit: int):
        if not 1 <= cp.logits <= 256:
            raise ValueError(f"a network of {cp.logits} logits is not allowed on the board: its class is one "
                             f"byte (1 to 256 logits)")
        self.cp, self.clocks_per_bit = cp, clocks_per_bit
        self.chip = EmulatedChip(cp, cells)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "leds": Out(8),
                          "cycles": Out(32), "host_cycles": Out(32)})

    def elaborate(self, platform):
        m = Module()
        cp = self.cp
        m.submodules.chip = chip = self.chip
        m.d.comb += chip.prog.valid.eq(0)       # the cells are there from the start
        m.submodules.uart_rx = urx = UartRx(self.clocks_per_bit)
        m.submodules.uart_tx = utx = UartTx(self.clocks_per_bit)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx),
                     self.cycles.eq(chip.cycles), self.host_cycles.eq(chip.host_cycles)]

        # --- image words from bytes, into a FIFO; into the chip once it is programmed -------
        wbits = len(chip.i.payload)
        nbytes = -(-wbits // 8)
        m.submodules.images = q = fifo.SyncFIFOBuffered(width=wbits, depth=cp.input_layout.depth)
        acc = Signal(8 * nbytes)
        k = Signal(range(nbytes))
        lost = Signal()
        m.d.comb += urx.o.ready.eq(1)
        with m.If(urx.o.valid):
            m.d.sync += acc.eq(Cat(acc[8:], urx.o.payload) if nbytes > 1 else urx.o.payload)
            m.d.sync += k.eq(Mux(k == nbytes - 1, 0, k + 1))
        last_byte = urx.o.valid & (k == nbytes - 1)
        word = Cat(acc[8:], urx.o.payload) if nbytes > 1 else urx.o.payload
        m.d.comb += [q.w_en.eq(last_byte), q.w_data.eq(word[:wbits])]
        with m.If(last_byte & ~q.w_rdy):
            m.d.sync += lost.eq(1)
        m.d.comb += [chip.i.valid.eq(q.r_rdy), chip.i.payload.eq(q.r_data), q.r_en.eq(chip.i.ready)]

        # --- logits: collect an image's words, find the class, send class and logits -------
        n, depth, g = cp.logits, cp.logit_layout.depth, len(chip.o.payload)
        vec = Signal(depth * g)
        got = Signal(range(depth + 1))
        best, best_i = Signal(32), Signal(range(max(2, n)))
        i = Signal(range(n + 1))
        j = Signal(range(board_reply_bytes(n) + 1))
        cls = Signal(4)
        value = vec.word_select(i, 32) if n > 1 else vec[:32]
        with m.FSM():
            with m.State("collect"):
                m.d.comb += chip.o.ready.eq(1)
                with m.If(chip.o.valid):
                    m.d.sync += [vec.eq(Cat(vec[g:], chip.o.payload) if depth > 1 else chip.o.payload),
                                 got.eq(got + 1)]
                    with m.If(got == depth - 1):
                        m.d.sync += got.eq(0)
                        m.next = "first"
            with m.State("first"):
                m.d.sync += [best.eq(vec[:32]), best_i.eq(0), i.eq(1)]
                m.next = "argmax"
            with m.State("argmax"):        # one logit per clock; the first of equal ones wins
                with m.If(i == n):
                    m.d.sync += j.eq(0)
                    m.next = "send"
                with m.Else():
                    m.d.sync += i.eq(i + 1)
                    with m.If(value.as_signed() > best.as_signed()):
                        m.d.sync += [best.eq(value), best_i.eq(i)]
            with m.State("send"):
                m.d.comb += [utx.i.valid.eq(1),
                             utx.i.payload.eq(Mux(j == 0, best_i, vec.word_select((j - 1)[:len(j)], 8)))]
                with m.If(utx.i.ready):
                    m.d.sync += j.eq(j + 1)
                    with m.If(j == 0):
                        m.d.sync += cls.eq(best_i)
                    with m.If(j == board_reply_bytes(n) - 1):
                        m.next = "collect"
        m.d.comb += self.leds.eq(Cat(Const(1, 1), chip.status != 0, lost | urx.overrun, self.rx, cls))
        return m


@dataclass(frozen=True)
class Ecp5Pll:
    """An ECP5 ``EHXPLLL`` setting, its output fed back: ``f_out = f_in * feedback_div /
    refclk_div``, the VCO at ``f_out * output_div``. :meth:`for_frequency` picks the dividers as
    Project Trellis' ``ecppll`` does (the closest output, then the VCO nearest 600 MHz)."""
    f_in_hz: int
    refclk_div: int
    feedback_div: int
    output_div: int

    #: the device's limits (ECP5 family data sheet, as ``ecppll`` has them): dividers, the
    #: phase detector's input and the VCO, in Hz
    REFCLK_DIV_MAX, FEEDBACK_DIV_MAX, OUTPUT_DIV_MAX = 128, 80, 128
    PFD_HZ, VCO_HZ, OUT_HZ_MAX = (3_125_000, 400_000_000), (400_000_000, 800_000_000), 400_000_000

    @property
    def f_out_hz(self) -> Fraction:
        return Fraction(self.f_in_hz * self.feedback_div, self.refclk_div)

    @property
    def vco_hz(self) -> Fraction:
        return self.f_out_hz * self.output_div

    @classmethod
    def for_frequency(cls, f_in_hz: int, f_out_hz: float) -> "Ecp5Pll":
        """The setting whose output is closest to ``f_out_hz`` (it may differ: read
        :attr:`f_out_hz`); ``ValueError`` when no setting reaches it within 1 %."""
        want = Fraction(f_out_hz)
        best, key = None, None
        for r in range(1, cls.REFCLK_DIV_MAX + 1):
            pfd = Fraction(f_in_hz, r)
            if not cls.PFD_HZ[0] <= pfd <= cls.PFD_HZ[1]:
                continue
            for fb in range(1, cls.FEEDBACK_DIV_MAX + 1):
                out = pfd * fb
                if out > cls.OUT_HZ_MAX:
                    break
                lo = -(-cls.VCO_HZ[0] // out)          # output dividers that keep the VCO in range
                hi = min(cls.OUTPUT_DIV_MAX, cls.VCO_HZ[1] // out)
                for od in range(max(1, int(lo)), int(hi) + 1):
                    k = (abs(out - want), abs(out * od - 600_000_000))
                    if key is None or k < key:
                        best, key = cls(f_in_hz, r, fb, od), k
        if best is None or key[0] > want / 100:
            near = f" (the closest is {float(best.f_out_hz) / 1e6:.4g} MHz)" if best else ""
            raise ValueError(f"a {float(want) / 1e6:g} MHz clock is not allowed from the {f_in_hz / 1e6:g} MHz "
                             f"oscillator: the ECP5 PLL must reach it within 1 %{near}")
        return best

    def instance(self, clk_in, clk_out, locked):
        """The ``EHXPLLL`` primitive (as ``ecppll`` writes it: the output phase shifted by half
        a period, the frequencies as attributes nextpnr derives its timing constraint from)."""
        from amaranth.hdl import Instance
        return Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{self.f_in_hz / 1e6:g}", a_FREQUENCY_PIN_CLKOP=f"{float(self.f_out_hz) / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=self.refclk_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=self.output_div,
            p_CLKOP_CPHASE=self.output_div // 2, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=self.feedback_div,
            i_RST=0, i_STDBY=0, i_CLKI=clk_in, o_CLKOP=clk_out, i_CLKFB=clk_out,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)


class PinTop(Elaboratable):
    """A :class:`BoardCore` on a board's pins, from its ``amaranth-boards`` platform: the
    platform's default clock (the ULX3S's 25 MHz oscillator) drives ``sync``, the button
    resource ``reset`` resets it (through a reset synchronizer: the crossbars, black boxes, take
    a reset port, so the domain cannot be the platform's reset-less one), ``uart`` 0 carries the
    serial line and the core's LEDs go to ``led`` 0.. as far as the board has them. With a
    ``pll`` (:class:`Ecp5Pll`), ``sync`` runs at its output instead, held in reset until it
    locks: for a design that does not close timing at the oscillator's frequency. With
    ``reset_on_global`` (ECP5), the synchronized reset goes through a ``DCCA`` onto a global
    line (comment in :meth:`elaborate`)."""

    def __init__(self, core: BoardCore, reset: str, pll: Ecp5Pll | None = None, *, reset_on_global: bool = False):
        self.core, self.reset, self.pll, self.reset_on_global = core, reset, pll, reset_on_global

    def elaborate(self, platform):
        from amaranth.build import ResourceError
        from amaranth.hdl import ClockDomain, Instance
        from amaranth.lib import io
        from amaranth.lib.cdc import ResetSynchronizer
        m = Module()
        m.submodules.clk_buf = clk = io.Buffer("i", platform.request(platform.default_clk, dir="-"))
        m.submodules.rst_buf = rst = io.Buffer("i", platform.request(self.reset, 0, dir="-"))
        m.domains.sync = cd = ClockDomain("sync")
        arst = rst.i
        if self.pll is None:
            m.d.comb += cd.clk.eq(clk.i)
        else:
            locked = Signal()
            m.submodules.pll = self.pll.instance(clk.i, cd.clk, locked)
            arst = rst.i | ~locked
        if self.reset_on_global:
            # The reset reaches every flip-flop's LSR (~54 k on the digits chip); nextpnr
            # promotes only clocks to the global network, so a net that large would take
            # fabric wires in every tile. A DCCA buffer puts it on a global line instead.
            m.domains.rst_src = src = ClockDomain("rst_src")
            m.d.comb += src.clk.eq(cd.clk)
            m.submodules.reset_sync = ResetSynchronizer(arst, domain="rst_src")
            m.submodules.reset_buf = Instance("DCCA", i_CLKI=src.rst, i_CE=1, o_CLKO=cd.rst)
        else:
            m.submodules.reset_sync = ResetSynchronizer(arst, domain="sync")
        m.submodules.core = core = self.core
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx.i), tx.o.eq(core.tx)]
        for n in range(len(core.leds)):
            try:
                led = platform.request("led", n, dir="-")
            except ResourceError:
                break
            m.submodules[f"led_buf{n}"] = buf = io.Buffer("o", led)
            m.d.comb += buf.o.eq(core.leds[n])
        return m
