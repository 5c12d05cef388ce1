"""FPGA flow: report parsing, constraints, the scan-chain top wrapper (Amaranth simulation),
Yosys alone on a tiny crossbar, and (slow) full place & route through the CLI and the API."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from flow import fpga
from flow.cli import main as cli_main
from gen.config import CrossbarConfig
from flow.emit import to_verilog
from hw.crossbar import Crossbar
from hw.fpga_top import ScanTop, VerilogBlackBox, port_bits


# components built only to test argument checking are never elaborated
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

TINY = CrossbarConfig(rows=4, cols=8, cell_bits=2, cols_per_adc=4)


# --- report parsing (hand-written samples) ----------------------------------------------
SAMPLE_REPORT = {
    "utilization": {
        "TRELLIS_COMB": {"used": 1234, "available": 83640},
        "TRELLIS_FF": {"used": 567, "available": 83640},
        "DP16KD": {"used": 2, "available": 208},
        "MULT18X18D": {"used": 3, "available": 156},
        "TRELLIS_IO": {"used": 5, "available": 365},
    },
    "fmax": {
        "$glbnet$clk$TRELLIS_IO_IN": {"achieved": 87.5, "constraint": 100.0},
        "$glbnet$other_clk": {"achieved": 300.0, "constraint": 12.0},
    },
    "critical_paths": [
        {"from": "posedge $glbnet$other_clk", "to": "posedge $glbnet$other_clk",
         "path": [{"type": "clk-to-q", "delay": 0.5, "from": {"cell": "x", "port": "Q"}, "to": {"cell": "x", "port": "Q"}}]},
        {"from": "posedge $glbnet$clk$TRELLIS_IO_IN", "to": "posedge $glbnet$clk$TRELLIS_IO_IN", "path": [
            {"type": "clk-to-q", "delay": 0.5, "from": {"cell": "dut.mux_FF", "port": "Q"},
             "to": {"cell": "dut.mux_FF", "port": "Q"}},
            {"type": "routing", "delay": 2.0, "net": "n1", "from": {"cell": "dut.mux_FF", "port": "Q"},
             "to": {"cell": "lut_a", "port": "A"}},
            {"type": "logic", "delay": 0.25, "from": {"cell": "lut_a", "port": "A"}, "to": {"cell": "lut_a", "port": "F"}},
            {"type": "routing", "delay": 1.0, "net": "n2", "from": {"cell": "lut_a", "port": "F"},
             "to": {"cell": "ccu", "port": "A0"}},
            {"type": "logic", "delay": 0.45, "from": {"cell": "ccu", "port": "A0"}, "to": {"cell": "ccu", "port": "S0"}},
            {"type": "setup", "delay": 0.1, "from": {"cell": "dut.q0_FF", "port": "DI"}, "to": {"cell": "dut.q0_FF", "port": "DI"}},
        ]},
    ],
}


def test_parse_nextpnr_report_picks_the_clk_clock_and_its_path():
    r = fpga.parse_nextpnr_report(SAMPLE_REPORT)
    assert r["clock_net"] == "$glbnet$clk$TRELLIS_IO_IN"
    assert r["fmax_mhz"] == 87.5 and r["constraint_mhz"] == 100.0
    assert r["utilisation"]["TRELLIS_COMB"] == (1234, 83640)
    cp = r["critical_path"]
    assert cp.start == "dut.mux_FF" and cp.end == "dut.q0_FF.DI"
    assert cp.delay_ns == pytest.approx(4.3) and cp.logic_ns == pytest.approx(0.7) and cp.routing_ns == pytest.approx(3.0)
    assert cp.logic_levels == 2 and len(cp.steps) == 6
    assert "dut.mux_FF -> dut.q0_FF.DI: 4.30 ns" in cp.describe()


def test_parse_nextpnr_report_without_timing():
    r = fpga.parse_nextpnr_report({"utilization": {"ICESTORM_LC": {"used": 10, "available": 5280}}})
    assert r["fmax_mhz"] is None and r["critical_path"] is None
    assert r["utilisation"] == {"ICESTORM_LC": (10, 5280)}


def test_parse_nextpnr_report_falls_back_to_slowest_clock():
    rep = {"fmax": {"a": {"achieved": 50.0, "constraint": 10.0}, "b": {"achieved": 40.0, "constraint": 10.0}}}
    assert fpga.parse_nextpnr_report(rep)["fmax_mhz"] == 40.0


def test_parse_yosys_stat_and_counts():
    stat = {"modules": {"\\fpga_top": {"num_cells_by_type": {"SB_LUT4": 100, "SB_DFF": 7, "SB_DFFE": 3, "SB_DFFESR": 2,
                                                            "SB_CARRY": 9, "SB_RAM40_4K": 1, "SB_MAC16": 2}}},
            "design": {"num_cells_by_type": {"SB_LUT4": 100}}}
    cells = fpga.parse_yosys_stat(stat, "fpga_top")
    assert cells["SB_DFFE"] == 3
    c = fpga.resource_counts(fpga.TARGETS["ice40"], {"ICESTORM_LC": (110, 5280)}, cells)
    assert c == {"lut4": 100, "ff": 12, "bram": 1, "dsp": 2}
    c = fpga.resource_counts(fpga.TARGETS["ecp5"], fpga.parse_nextpnr_report(SAMPLE_REPORT)["utilisation"], {})
    assert c == {"lut4": 1234, "ff": 567, "bram": 2, "dsp": 3}
    # without a nextpnr report, ECP5 LUT4s come from Yosys: LUT4 + 2 per CCU2C
    c = fpga.resource_counts(fpga.TARGETS["ecp5"], {}, {"LUT4": 10, "CCU2C": 4, "TRELLIS_FF": 6, "PFUMX": 3})
    assert c == {"lut4": 18, "ff": 6, "bram": 0, "dsp": 0}


def test_parse_utilisation_log_finds_overuse():
    log = ("Info: Device utilisation:\n"
           "Info: \t         ICESTORM_LC:  7312/  5280   138%\n"
           "Info: \t        ICESTORM_RAM:     0/    30     0%\n"
           "Info: \t               SB_IO:     5/    96     5%\n")
    util = fpga.parse_utilisation_log(log)
    assert util == {"ICESTORM_LC": (7312, 5280), "ICESTORM_RAM": (0, 30), "SB_IO": (5, 96)}


# --- constraints ----------------------------------------------------------------------
@pytest.mark.parametrize("target", sorted(fpga.TARGETS))
def test_constraints_cover_the_wrapper_pins_and_the_clock(target):
    text, freq = fpga.constraint_text(target)
    assert freq == 100.0
    if target == "ecp5":
        pins = set(re.findall(r'LOCATE\s+COMP\s+"(\w+)"', text))
    else:
        pins = set(re.findall(r"^\s*set_io\s+(?:-\S+\s+)*(\w+)\s+\d+", text, re.M))
    assert pins == {"clk", "rst", "sin", "sen", "sout"}
    text2, freq2 = fpga.constraint_text(target, 62.5)
    assert freq2 == 62.5 and "62.5" in text2 and text2 != text
    with pytest.raises(ValueError, match="freq"):
        fpga.constraint_text(target, 0)


def test_generic_clock_constraints_exist():
    for f in ("clock.sdc", "clock.xdc"):
        assert "create_clock" in (fpga.CONSTRAINTS_DIR / f).read_text()


# --- the wrapper ------------------------------------------------------------------------
class _Toy(wiring.Component):
    """Registers its inputs: ``y = a ^ b``, ``z = c`` one clock later."""

    def __init__(self):
        super().__init__({"a": In(5), "b": In(5), "c": In(3), "y": Out(5), "z": Out(3)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [self.y.eq(self.a ^ self.b), self.z.eq(self.c)]
        return m


def test_wrapper_has_five_pins_and_covers_every_crossbar_port():
    top = ScanTop(Crossbar(TINY))
    names_in = [n for n, _ in top.inputs]
    names_out = [n for n, _ in top.outputs]
    assert names_in == ["i.payload", "i.valid", "o.ready", "w.payload", "w.valid"]
    assert names_out == ["i.ready", "o.payload", "o.valid", "w.ready", "busy"]
    ins, outs = port_bits(top.dut)
    assert top.scan_bits == sum(len(v) for _, v in ins) == TINY.rows * TINY.a_bits + 1 + 1 + 2 + TINY.cols * TINY.g_bits + 1
    assert top.out_bits == sum(len(v) for _, v in outs)
    v = to_verilog(top, "fpga_top")
    ports = re.search(r"module fpga_top\(([^)]*)\)", v).group(1)
    assert sorted(p.strip() for p in ports.split(",")) == ["clk", "rst", "sen", "sin", "sout"]


def test_wrapper_refuses_components_without_outputs():
    class NoOut(wiring.Component):
        def __init__(self):
            super().__init__({"a": In(2)})

        def elaborate(self, platform):
            return Module()

    with pytest.raises(ValueError, match="no output"):
        ScanTop(NoOut())


def test_scan_chain_loads_the_crossbar_ports():
    """Shift a known word in; every DUT input port then carries its slice of it."""
    top = ScanTop(Crossbar(TINY))
    dut = top.dut
    want = {
        "i.payload": 0xA5C3_0F96,            # 4 rows x 8 bits
        "i.valid": 0, "o.ready": 1, "w.valid": 0,
        "w.payload": 0x2B5,                  # row 1 (bits 0-1), cells 0xAD (bits 2-17, 2 bits per column)
    }
    word = top.scan_word(want)
    seq = top.shift_sequence(word)
    assert len(seq) == top.scan_bits

    async def bench(ctx):
        for bit in seq:
            ctx.set(top.sen, 1)
            ctx.set(top.sin, bit)
            await ctx.tick()
        ctx.set(top.sen, 0)
        ctx.set(top.sin, 1)                  # ignored while sen is low
        await ctx.tick().repeat(3)
        assert ctx.get(dut.i.payload.as_value()) == want["i.payload"]
        assert ctx.get(dut.w.payload.as_value()) == want["w.payload"]
        assert ctx.get(dut.w.payload.row) == 1 and ctx.get(dut.w.payload.cells.as_value()) == 0xAD
        assert [ctx.get(dut.w.payload.cells[c]) for c in range(4)] == [1, 3, 2, 2]     # 0xAD = 10 10 11 01
        assert (ctx.get(dut.i.valid), ctx.get(dut.o.ready), ctx.get(dut.w.valid)) == (0, 1, 0)

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_scan_word_refuses_unknown_ports():
    top = ScanTop(_Toy())
    with pytest.raises(ValueError, match="not a DUT input"):
        top.scan_word({"y": 1})


def test_xor_fold_reaches_sout():
    """sout is the parity of all DUT output bits, fold_stages clocks after they settle."""
    top = ScanTop(_Toy(), fold_arity=2)
    dut = top.dut
    assert top.out_bits == 8 and top.fold_stages == 4     # 8 -> 4 -> 2 -> 1, plus the output register
    assert top.scan_bits == 13 and top.wrapper_ffs == 13 + 8 + 4 + 2 + 1

    async def bench(ctx):
        import random
        rng = random.Random(1)
        for _ in range(6):
            vals = {"a": rng.randrange(32), "b": rng.randrange(32), "c": rng.randrange(8)}
            for bit in top.shift_sequence(top.scan_word(vals)):
                ctx.set(top.sen, 1)
                ctx.set(top.sin, bit)
                await ctx.tick()
            ctx.set(top.sen, 0)
            await ctx.tick()                               # DUT registers its outputs
            y, z = ctx.get(dut.y), ctx.get(dut.z)
            assert y == vals["a"] ^ vals["b"] and z == vals["c"]
            await ctx.tick().repeat(top.fold_stages)
            assert ctx.get(top.sout) == (bin(y).count("1") + bin(z).count("1")) % 2

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_verilog_black_box_wraps_a_module_by_its_ports():
    bb = VerilogBlackBox("mac", {"clk": ("input", 1), "rst": ("input", 1), "a": ("input", 8), "q": ("output", 16)})
    top = ScanTop(bb)
    assert [n for n, _ in top.inputs] == ["a"] and [n for n, _ in top.outputs] == ["q"]
    v = to_verilog(top, "fpga_top")
    assert re.search(r"\bmac\s+dut\s*\(", v) and ".clk(clk)" in v.replace(" ", "")
    with pytest.raises(ValueError, match="inout"):
        VerilogBlackBox("m", {"io": ("inout", 1)})


# --- errors and the CLI (no tools run) ---------------------------------------------------
def test_missing_tool_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(fpga.shutil, "which", lambda name: None)
    monkeypatch.setattr(fpga, "sys", type("S", (), {"executable": str(tmp_path / "python")}))
    with pytest.raises(fpga.ToolMissing, match=re.escape("pip install pimgen[fpga]")):
        fpga.synthesize(_Toy(), "ecp5", build_root=tmp_path)


def test_bad_arguments_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="target 'xilinx' is not supported"):
        fpga.synthesize(_Toy(), "xilinx", build_root=tmp_path)
    with pytest.raises(ValueError, match="seed"):
        fpga.synthesize(_Toy(), "ecp5", seed=-1, build_root=tmp_path)


def test_cli_refuses_unknown_block_with_the_allowed_list(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["synth", "layer"])
    assert e.value.code == 2
    assert "choose from 'crossbar', 'board'" in capsys.readouterr().err


def test_cli_bad_crossbar_config_is_one_line_exit_2(capsys):
    assert cli_main(["synth", "crossbar", "--rows", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "rows=1 is not allowed" in err


# --- Yosys alone (fast after the first WASM compile) -------------------------------------
@pytest.mark.fpga
def test_yosys_keeps_the_weight_cells_as_registers(tmp_path):
    top = ScanTop(Crossbar(TINY))
    cells, secs = fpga.synth_yosys(to_verilog(top, "fpga_top"), "fpga_top", "ecp5", tmp_path / "y")
    ff = cells.get("TRELLIS_FF", 0)
    weight_bits = TINY.rows * TINY.cols * TINY.cell_bits
    # cells (64) + scan chain (45) + fold (32) + crossbar control/pipeline: all kept
    assert ff >= weight_bits + top.scan_bits + top.out_bits
    assert cells.get("LUT4", 0) > 50
    assert (tmp_path / "y" / "fpga_top.json").exists() and (tmp_path / "y" / "yosys.log").exists()


@pytest.mark.fpga
def test_failed_synthesis_shows_the_log_and_leaves_no_result(tmp_path):
    bad = "module broken(input clk, output q);\n  assign q = ;\nendmodule\n"
    with pytest.raises(fpga.SynthesisError) as e:
        fpga.synthesize(bad, "ecp5", top="broken", wrap=False, build_root=tmp_path)
    assert "ERROR" in str(e.value) and e.value.log.name == "yosys.log"
    build = tmp_path / "broken-ecp5"
    assert (build / "error.txt").exists() and not (build / "result.json").exists()


# --- full place & route (slow) ------------------------------------------------------------
@pytest.mark.fpga
@pytest.mark.slow
@pytest.mark.parametrize("target", ["ecp5", "ice40"])
def test_place_and_route_tiny_crossbar(target, tmp_path):
    r = fpga.synthesize(Crossbar(TINY), target, name="tiny", build_root=tmp_path)
    assert r.target == target and r.lut4 > 50 and r.ff >= TINY.rows * TINY.cols * TINY.cell_bits + r.scan_bits
    assert r.bram == 0 and r.dsp == 0 and r.fmax_mhz > 10 and r.freq_mhz == 100.0
    assert r.timing_met == (r.fmax_mhz >= 100.0)
    assert r.critical_path is not None and r.critical_path.delay_ns > 0
    for f in ("design.v", "yosys.log", "nextpnr.log", "report.json", "result.json", fpga.TARGETS[target].constraint):
        assert (r.build_dir / f).exists(), f
    assert json.loads((r.build_dir / "result.json").read_text())["lut4"] == r.lut4
    if r.bitstream is None:
        assert any("bitstream" in n for n in r.notes)
    else:
        assert r.bitstream.stat().st_size > 1000


@pytest.mark.fpga
@pytest.mark.slow
def test_cli_synth_json(capsys, tmp_path):
    rc = cli_main(["synth", "crossbar", "--rows", "4", "--cols", "8", "--cols-per-adc", "4", "--target", "ecp5",
                   "--freq", "50", "--seed", "3", "--no-bitstream", "--build-dir", str(tmp_path), "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    for k in ("lut4", "ff", "bram", "dsp", "fmax_mhz", "target", "device"):
        assert k in d
    assert d["target"] == "ecp5" and d["device"] == "LFE5U-85F-CABGA381" and d["freq_mhz"] == 50
    lpf = next(Path(d["build_dir"]).glob("*.lpf")).read_text()
    assert re.search(r'FREQUENCY PORT "clk" 50 MHZ', lpf)


@pytest.mark.fpga
@pytest.mark.slow
def test_ice40_too_big_is_a_clear_fit_error(capsys, tmp_path):
    """A 48x48 crossbar needs about twice the UP5K's 5280 LCs (32x32 needs 110%): one clear
    line, exit 1."""
    rc = cli_main(["synth", "crossbar", "--rows", "48", "--cols", "48", "--target", "ice40", "--no-bitstream",
                   "--build-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "does not fit iCE40UP5K" in err and "ICESTORM_LC" in err
    build = next(tmp_path.iterdir())
    assert (build / "error.txt").exists() and not (build / "result.json").exists()


@pytest.mark.fpga
@pytest.mark.slow
def test_verilog_text_is_wrapped_by_its_ports(tmp_path):
    text = ("module acc8(input clk, input rst, input [7:0] a, input en, output reg [11:0] q);\n"
            "  always @(posedge clk) if (rst) q <= 0; else if (en) q <= q + a;\n"
            "endmodule\n")
    assert fpga.verilog_ports(text, "acc8") == {"clk": ("input", 1), "rst": ("input", 1), "a": ("input", 8),
                                                "en": ("input", 1), "q": ("output", 12)}
    r = fpga.synthesize(text, "ecp5", top="acc8", build_root=tmp_path, bitstream=False)
    assert r.scan_bits == 9 and r.out_bits == 12 and r.ff >= 12 + 9 and r.fmax_mhz > 50
