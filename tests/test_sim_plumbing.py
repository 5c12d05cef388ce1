"""The simulation plumbing around a chip: its registered reset (``hw.reset``), the port list
the Verilator build makes public (``sim.runner.module_ports``) and the tap recorder compiled
into the simulation (``sim.recorder``), each checked on a small design against values worked
out by hand."""
import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from flow.emit import to_verilog
from hw.reset import RegisteredReset
from sim.recorder import read_taps, tap_recorder
from sim.runner import module_ports, run_testbench

from conftest import requires_icarus, run_amaranth


class Counter(wiring.Component):
    """Counts clocks since reset; ``en`` is passed through, so the wrapper's ports are tested
    in both directions."""
    count: Out(8)
    en: In(1)
    en_seen: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.count.eq(self.count + 1)
        m.d.comb += self.en_seen.eq(self.en)
        return m


def _counts(dut, rst_edges: int, edges: int) -> list[int]:
    """``count`` after each of ``edges`` clock edges, ``rst`` high over the first ``rst_edges``."""
    m = Module()
    m.domains.sync = cd = ClockDomain("sync")
    m.submodules.dut = dut
    seen = []

    async def bench(ctx):
        ctx.set(dut.en, 1)
        for k in range(edges):
            ctx.set(cd.rst, int(k < rst_edges))
            await ctx.tick()
            seen.append(ctx.get(dut.count))
        assert ctx.get(dut.en_seen) == 1

    run_amaranth(m, bench, timeout_clocks=100)
    return seen


def test_registered_reset_releases_one_clock_later():
    # By hand: a counter reset over edges 0 and 1 counts 0, 0, 1, 2, ...; behind the
    # registered reset the core still sees the reset on edge 2 (the register takes the
    # released pin on that edge), so it counts one clock later: 0, 0, 0, 1, 2.
    assert _counts(Counter(), 2, 5) == [0, 0, 1, 2, 3]
    assert _counts(RegisteredReset(Counter()), 2, 5) == [0, 0, 0, 1, 2]


def test_registered_reset_holds_the_core_from_power_up():
    # never reset from outside: the register starts high, so the first edge is a reset edge
    assert _counts(Counter(), 0, 3) == [1, 2, 3]
    assert _counts(RegisteredReset(Counter()), 0, 3) == [0, 1, 2]


def test_module_ports_reads_directions_and_widths():
    v = to_verilog(Counter(), "counter")
    assert sorted(module_ports(v, "counter"), key=lambda p: p[2]) == [
        ("input", "", "clk"), ("output", "[7:0]", "count"), ("input", "", "en"),
        ("output", "", "en_seen"), ("input", "", "rst")]
    assert module_ports(v, "no_such_module") == []


def test_tap_recorder_wraps_the_top_with_its_ports():
    v = to_verilog(Counter(), "counter")
    text, name = tap_recorder(v, "counter", "en_seen", ["count"], "taps.txt")
    assert name == "counter_rec"
    assert module_ports(text, name) == module_ports(v, "counter")
    assert 'if (en_seen[0]) $fwrite(log, "0 %h\\n", count);' in text
    with pytest.raises(ValueError, match="module counter has no port tap_valid, tap_data__s0"):
        tap_recorder(v, "counter", "tap_valid", ["tap_data__s0"], "taps.txt")


def test_read_taps_splits_by_tap(tmp_path):
    (tmp_path / "taps.txt").write_text("1 0a\n0 ff\n1 0000000b\n")
    assert read_taps(tmp_path / "taps.txt", 3) == [[255], [10, 11], []]


class Taps(wiring.Component):
    """Two trace taps that show the inputs one clock late: ``tap_valid`` = ``v``, ``tap_data__s<n>``
    = ``d<n>`` (12 bits: more than a hex digit's multiple of 4 would hide)."""
    v: In(2)
    d0: In(12)
    d1: In(12)
    tap_valid: Out(2)
    tap_data__s0: Out(12)
    tap_data__s1: Out(12)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [self.tap_valid.eq(self.v), self.tap_data__s0.eq(self.d0), self.tap_data__s1.eq(self.d1)]
        return m


@pytest.mark.parametrize("sim", ["verilator", pytest.param("icarus", marks=requires_icarus)])
def test_tap_recorder_records_every_word_in_order(sim, sim_cache):
    """Random valid bits and data over 60 clocks: the file holds, per tap, exactly the data of
    the clocks whose valid bit was set, in order (expected values from the stimulus)."""
    rng = random.Random(7)
    beats = [[rng.randrange(4), [rng.randrange(1 << 12), rng.randrange(1 << 12)]] for _ in range(60)]
    v = to_verilog(Taps(), "taps")
    rec, top = tap_recorder(v, "taps", "tap_valid", ["tap_data__s0", "tap_data__s1"], "taps.txt")
    res = run_testbench(v + "\n" + rec, top, "sim.tb.recorder", {"beats": beats, "tap_file": "taps.txt"},
                        sim=sim, cache_dir=sim_cache)
    assert res.passed, res.data
    assert res.data["taps"] == res.data["expected"] and sum(map(len, res.data["taps"])) > 40
