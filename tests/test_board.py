"""The chip on a board (hw.board.BoardCore, below the pins): programmed from block RAM after
reset, images sent over the UART pin, classes and logits read back from the tx pin — every
one the golden model's. Plus the serial protocol's host side and the UART blocks alone.

Fast set: the tiny chip, and the UART loop in the Amaranth simulator. Slow set: the trained
digits chip on real digits images.
"""
import re

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from gen.config import ChipConfig
from flow.board import board_cells, image_bytes, parse_reply, run_board_check
from flow.chip_check import design_from_network
from hw.uart import UartRx, UartTx
from test_chip import tiny_design


def test_uart_loop_carries_every_byte():
    """UartTx -> UartRx at 5 clocks per bit: the bytes come out in order, none lost."""
    m = Module()
    m.submodules.tx = tx = UartTx(5)
    m.submodules.rx = rx = UartRx(5)
    m.d.comb += rx.rx.eq(tx.tx)
    data = [0x00, 0xFF, 0xA5, 0x5A, 0x01, 0x80]
    got = []
    sim = Simulator(m)
    sim.add_clock(1e-6)

    async def collect(ctx):
        ctx.set(rx.o.ready, 1)
        async for _ in ctx.tick():
            if ctx.get(rx.o.valid):
                got.append(ctx.get(rx.o.payload))
            if len(got) == len(data):
                break

    sim.add_testbench(collect)

    async def send(ctx):
        for b in data:
            ctx.set(tx.i.valid, 1)
            ctx.set(tx.i.payload, b)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    sim.add_testbench(send, background=True)
    sim.run_until(1e-6 * 5 * 11 * (len(data) + 2))
    assert got == data


def test_uart_refuses_too_few_clocks_per_bit():
    import gc
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")         # the refused component is never elaborated
        with pytest.raises(ValueError, match="clocks_per_bit=2 is not allowed"):
            UartRx(2)
        gc.collect()


def test_protocol_host_side():
    d = tiny_design("novel")
    x = np.random.default_rng(1).integers(0, 256, (2, 6, 6))
    b = image_bytes(d, x)
    nbytes = -(-d.cp.input_layout.word_bits // 8)
    assert len(b) == nbytes * d.cp.input_layout.depth
    words = [int.from_bytes(b[k:k + nbytes], "little") for k in range(0, len(b), nbytes)]
    assert words == list(d.cp.input_layout.pack(x))
    reply = bytes([3]) + b"".join(v.to_bytes(4, "little", signed=True) for v in [-5, 7, 2**31 - 1, -2**31])
    assert parse_reply(reply, 4) == (3, [-5, 7, 2**31 - 1, -2**31])
    with pytest.raises(ValueError, match="a reply of 16 bytes is not allowed"):
        parse_reply(reply[:16], 4)


def test_tiny_board_classifies_over_uart(sim_cache):
    d = tiny_design("novel")
    x = np.random.default_rng(0).integers(0, 256, (3, *d.network.input_shape))
    rep = run_board_check(d, x, cache_dir=sim_cache)
    assert rep["passed"], rep
    assert rep["classes"] == rep["expected_classes"] and rep["logits_match"], rep
    # the cells are the banks' initial contents: ready from reset, nothing to program
    assert rep["programming_clocks"] == 0 and rep["host_clocks"] > rep["target_clocks"], rep


@pytest.mark.slow
def test_digits_board_classifies_real_digits(sim_cache):
    from gen.models import digits_dataset
    d = design_from_network("digits", ChipConfig.preset("small"))
    x, labels = digits_dataset("test")
    rep = run_board_check(d, x[:5], labels=labels[:5], cache_dir=sim_cache)
    assert rep["passed"], rep
    assert rep["accuracy"] >= 0.8, rep


def test_synth_alias_takes_a_build_folder():
    from flow.commands.synth import alias
    assert alias(["synth", "build/digits", "--board", "ulx3s"]) == ["synth", "board", "build/digits", "--board", "ulx3s"]
    assert alias(["synth", "crossbar", "--rows", "4"]) == ["synth", "crossbar", "--rows", "4"]
    assert alias(["synth", "--help"]) == ["synth", "--help"]


def test_synth_board_refuses_a_chip_too_large_for_the_device(tmp_path, capsys):
    """The digits chip's emulation build has more flip-flops than the iCEBreaker's UP5K: refused
    in one line with the count, before the long synthesis, and nothing is left in the build
    folder."""
    from flow.cli import main
    d = tmp_path / "digits"
    assert main(["build", "digits", "-o", str(d)]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in d.iterdir())
    assert main(["synth", str(d), "--board", "icebreaker", "--images", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the digits chip does not fit the icebreaker (iCE40UP5K)" in err[0], err
    assert "flip-flop bits before synthesis against 5280 FF" in err[0], err
    assert sorted(p.name for p in d.iterdir()) == before


def test_synth_board_bad_flags(tmp_path, capsys):
    from flow.cli import main
    assert main(["synth", str(tmp_path / "none"), "--board", "ulx3s"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", str(tmp_path), "--board", "de10"])
    assert main(["synth", str(tmp_path), "--images", "-1"]) == 2
    assert "--images -1 is not allowed" in capsys.readouterr().err


def test_ulx3s_plan_has_the_pins_and_the_crossbar_module():
    """The board top on amaranth-boards' ULX3S platform, up to the build plan (no tools run):
    the FTDI UART's pins and the 25 MHz clock in the constraints, the crossbar bank modules added as
    a Verilog file for Yosys, the flip-flop count the fit check reads."""
    pytest.importorskip("amaranth_boards")
    from flow.board import BOARDS, _clocks_per_bit, blocks_verilog
    from hw.board import BoardCore, PinTop
    from hw.decoupled import TargetCrossbar, bank_kinds
    d = tiny_design("novel")
    b = BOARDS["ulx3s"]
    platform = b.platform_class()()
    assert _clocks_per_bit(platform.default_clk_frequency) == 217          # 25 MHz / 115 200 baud
    xb = d.chip.crossbar
    platform.add_file("pimgen_blocks.v", blocks_verilog(d))
    plan = platform.build(PinTop(BoardCore(d.cp, board_cells(d), 217), b.reset), name="ulx3s", do_build=False)
    lpf = plan.files["ulx3s.lpf"]
    for pin in ('SITE "M1"', 'SITE "L4"', 'SITE "G2"', 'SITE "D6"', 'SITE "B2"'):   # rx, tx, clk25, pwr button, led0
        assert pin in lpf, pin
    assert "FREQUENCY PORT" in lpf and "25000000" in lpf
    assert "read_verilog" in plan.files["ulx3s.ys"] and "pimgen_blocks.v" in plan.files["ulx3s.ys"]
    # no programming port on the board: every PE's bank holds its own cells, one module each
    n_pes = sum(len(lp.per_pe()) for lp in d.cp.plan.layers)
    assert plan.files["pimgen_blocks.v"].count("module pimgen_target_crossbar") == n_pes
    assert not any(f"module {TargetCrossbar.module_name(xb, *kind)}(" in plan.files["pimgen_blocks.v"]
                   for kind in bank_kinds(d.cp))


@pytest.mark.parametrize("mhz", [20, 18.75, 33.3, 50, 12.5, 21.875, 100])
def test_ecp5_pll_matches_ecppll(mhz, tmp_path):
    """The PLL setting reaches the frequency Project Trellis' ecppll computes for the same
    request, with a VCO in the device's range (the oracle: yowasp-ecppll's report)."""
    import subprocess
    from flow.fpga import find_tool
    from hw.board import Ecp5Pll
    try:
        tool = find_tool("yowasp-ecppll")
    except Exception:
        pytest.skip("yowasp-ecppll is not installed (pip install pimgen[fpga])")
    out = subprocess.run([tool, "-i", "25", "-o", str(mhz), "-f", str(tmp_path / "pll.v")], capture_output=True,
                         text=True, check=True).stdout
    want = float(re.search(r"clkout0 frequency: ([\d.]+) MHz", out).group(1))
    p = Ecp5Pll.for_frequency(25_000_000, mhz * 1e6)
    assert float(p.f_out_hz) / 1e6 == pytest.approx(want, rel=1e-5)
    assert 400e6 <= p.vco_hz <= 800e6 and 3.125e6 <= 25e6 / p.refclk_div


def test_ecp5_pll_refuses_what_it_cannot_reach():
    from hw.board import Ecp5Pll
    with pytest.raises(ValueError, match=r"a 12 MHz clock is not allowed .* within 1 % \(the closest is 12.5 MHz\)"):
        Ecp5Pll.for_frequency(25_000_000, 12e6)


def test_ulx3s_plan_with_a_pll_clock(tmp_path, capsys):
    """``--clock-mhz 20`` on the ULX3S (its default): an EHXPLLL from the oscillator (25 MHz x 4 / 5, VCO
    600 MHz, as ecppll sets it) clocks the design, and the UART divides 20 MHz (174 clocks
    per bit); a clock the PLL cannot make, or a PLL clock on the iCEBreaker, is refused in one
    line before anything runs."""
    pytest.importorskip("amaranth_boards")
    from flow.board import BOARDS, board_clock, _clocks_per_bit, blocks_verilog
    from flow.cli import main
    from hw.board import BoardCore, PinTop
    d = tiny_design("novel")
    b = BOARDS["ulx3s"]
    platform = b.platform_class()()
    hz, pll = board_clock(b, platform, 20)
    assert hz == 20_000_000 and (pll.refclk_div, pll.feedback_div, pll.output_div) == (5, 4, 30)
    assert board_clock(b, platform, 25) == (25_000_000, None)
    assert board_clock(b, platform, None) == (hz, pll)      # the ULX3S default
    assert _clocks_per_bit(hz) == 174
    platform.add_file("pimgen_blocks.v", blocks_verilog(d))
    plan = platform.build(PinTop(BoardCore(d.cp, board_cells(d), 174), b.reset, pll), name="ulx3s",
                          do_build=False)
    il = plan.files["ulx3s.il"]
    assert "cell \\EHXPLLL" in il
    for param, v in (("CLKI_DIV", 5), ("CLKFB_DIV", 4), ("CLKOP_DIV", 30), ("CLKOP_CPHASE", 15)):
        assert re.search(rf"parameter \\{param} {v}\b", il), param
    assert 'attribute \\FREQUENCY_PIN_CLKOP "20"' in il
    for argv, msg in ((["--clock-mhz", "12"], "a 12 MHz clock is not allowed from the 25 MHz oscillator"),
                      (["--clock-mhz", "0"], "--clock-mhz 0 is not allowed"),
                      (["--board", "icebreaker", "--clock-mhz", "20"], "--clock-mhz 20 is not allowed on the "
                                                                        "icebreaker")):
        assert main(["synth", str(tmp_path), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err


def test_ulx3s_reset_goes_through_a_global_buffer():
    """On the ULX3S the synchronized reset reaches the design through a DCCA (a global line),
    and the design's reset is that buffer's output, not the synchronizer's."""
    pytest.importorskip("amaranth_boards")
    from flow.board import BOARDS, board_clock, blocks_verilog
    from hw.board import BoardCore, PinTop
    d = tiny_design("novel")
    b = BOARDS["ulx3s"]
    assert b.reset_on_global
    platform = b.platform_class()()
    _, pll = board_clock(b, platform, None)
    platform.add_file("pimgen_blocks.v", blocks_verilog(d))
    plan = platform.build(PinTop(BoardCore(d.cp, board_cells(d), 174), b.reset, pll, reset_on_global=True),
                          name="ulx3s", do_build=False)
    il = plan.files["ulx3s.il"]
    cell = re.search(r"cell \\DCCA \S+\n(.*?)\n\s*end", il, re.S)
    assert cell, "no DCCA"
    clko = re.search(r"connect \\CLKO (\S+)", cell.group(1)).group(1)
    core = re.search(r"cell \\ulx3s\.core \S+\n(.*?)\n\s*end", il, re.S)
    assert core and re.search(rf"connect \\rst {re.escape(clko)}( \[0\])?\n", core.group(1) + "\n"), \
        "the core's reset is not the DCCA's output"
