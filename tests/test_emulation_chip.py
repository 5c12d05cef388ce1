"""The chip's emulation build (hw.decoupled.EmulatedChip: block-RAM crossbars behind a
target-clock enable) under cocotb: the same logits as the simulation build (hw.chip.Chip) and
the golden model, bit for bit, and the same per-image latency and interval in target clocks,
== gen.perf.chip_timing; the host clocks it took per target clock are reported.

Fast set: the tiny chip (test_chip.tiny), both mappings (banks of one crossbar, of two and
three with their own input rows), with and without back-pressure, and with duplicated
layers, and a residual chip on a mesh (time slots). Slow set: the
trained digits chip, both mappings, on real digits.
"""
import numpy as np
import pytest

from gen.config import ChipConfig
from gen.emulation import CHIP_PARALLEL_CYCLES
from gen.timing import crossbar_latency, emulated_crossbar_host_clocks
from flow.chip_check import design_from_network, run_chip_check
from test_chip import _check, tiny_design

SMALL = ChipConfig.preset("small")


def _same_as_simulation_build(design, x, sim_cache, **kw):
    sim = run_chip_check(design, x, cache_dir=sim_cache, **kw)
    emu = run_chip_check(design.emulation(), x, cache_dir=sim_cache, **kw)
    _check(sim, len(x))
    _check(emu, len(x))
    assert emu["logits"] == sim["logits"]
    assert (emu["measured_latency"], emu["measured_interval"]) == (sim["measured_latency"], sim["measured_interval"])
    return sim, emu


@pytest.mark.parametrize("mapping", ["novel", "conventional"])   # banks of 1 / of 2 and 3 crossbars
def test_tiny_emulation_build_equals_simulation_build(mapping, sim_cache):
    from hw.decoupled import bank_kinds
    d = tiny_design(mapping)
    x = np.random.default_rng(5).integers(0, 256, (3, 2, 6, 6))
    _, emu = _same_as_simulation_build(d, x, sim_cache, seed=1)
    # the emulated crossbars are slower than the target timing asks: some target clocks wait
    xb = d.chip.crossbar
    bank = max(n for n, _ in bank_kinds(d.cp))
    assert 1 < emu["host_per_target"] <= emulated_crossbar_host_clocks(
        xb, parallel_cycles=CHIP_PARALLEL_CYCLES, n_xbars=bank) / crossbar_latency(xb) + 1, emu
    # input gaps and output back-pressure on host clocks: nothing lost, duplicated or reordered
    _check(run_chip_check(d.emulation(), x, seed=2, ready_prob=0.3, gap_prob=0.4, cache_dir=sim_cache), 3)


def test_duplicated_emulation_build_equals_simulation_build(sim_cache):
    """Duplicated layers in the emulation build: the raster reorder advances with the target
    clock like every other block, so logits and target clocks equal the simulation build's."""
    from flow.chip_check import ChipDesign
    from test_chip import TINY_DUP, tiny, tiny_params
    d = ChipDesign(tiny(), tiny_params(), SMALL, "conventional", duplication=TINY_DUP)
    x = np.random.default_rng(8).integers(0, 256, (3, 2, 6, 6))
    _same_as_simulation_build(d, x, sim_cache, seed=1)


def test_routed_emulation_build_equals_simulation_build(sim_cache):
    """A residual chip on a mesh in the emulation build: the flows' time slots advance with
    the target clock (the slot counter starts on the first image's first word in target
    clocks), so logits and target clocks equal the simulation build's and gen.perf's."""
    from flow.chip_check import ChipDesign
    from gen.quantize import random_weights
    from test_chip import tiny_residual
    d = ChipDesign(tiny_residual(), random_weights(tiny_residual(), 0), SMALL, "novel", topology="mesh")
    assert d.cp.links[0].period == 2
    x = np.random.default_rng(7).integers(0, 256, (3, 2, 8, 8))
    _same_as_simulation_build(d, x, sim_cache, seed=1)


def test_emulation_build_verilog_has_one_module_per_bank_kind():
    """A PE's crossbars are one bank of emulated crossbars: one module per bank kind (size,
    shared input rows), instantiated once in the module of each PE kind that has that bank,
    and the PEs' banks hold every crossbar of the chip."""
    from hw.decoupled import TargetCrossbar, bank_kinds
    d = tiny_design("conventional").emulation()
    lines = d.verilog.splitlines()
    per_pe = {}
    for lp in d.cp.plan.layers:
        for p in lp.placements:
            per_pe.setdefault((lp.name, p.tile, p.pe), []).append(p.rows)
    kinds = {key: (len(rows), len(set(rows)) == 1) for key, rows in per_pe.items()}
    assert bank_kinds(d.cp) == tuple(sorted(set(kinds.values())))
    # each module's body: from its `module` line to `endmodule`
    bodies, name = {}, None
    for ln in lines:
        if ln.startswith("module "):
            name = ln[len("module "):].split("(")[0].strip()
            bodies[name] = []
        elif name is not None:
            bodies[name].append(ln)
    pes = [m for m in bodies if m.startswith("pimgen_pe_")]
    held = 0
    for kind in bank_kinds(d.cp):
        bank = TargetCrossbar.module_name(d.chip.crossbar, *kind)
        assert sum(ln.startswith(f"module {bank}(") for ln in lines) == 1
        with_bank = [pe for pe in pes if sum(ln.startswith(f"  {bank} ") for ln in bodies[pe]) == 1]
        instances = sum(ln.startswith(f"  {pe} ") for pe in with_bank for ln in lines)
        assert instances == sum(v == kind for v in kinds.values())
        held += kind[0] * instances
    assert held == d.cp.n_xbars


@pytest.mark.slow
@pytest.mark.parametrize("mapping", ["novel", "conventional"])
def test_digits_emulation_build_equals_simulation_build(mapping, sim_cache):
    from gen.models import digits_dataset
    d = design_from_network("digits", SMALL, mapping)
    x, labels = digits_dataset("test")
    sim, emu = _same_as_simulation_build(d, x[:4], sim_cache, labels=labels[:4], seed=1)
    assert emu["accuracy"] == sim["accuracy"]


def test_emulation_build_sums_and_requantizes_serially():
    """Every layer with crossbars sums its partial sums in one SerialAccumulate and every
    requantizing layer has one SerialPost (one multiplier), instantiated in that layer only;
    the simulation build has neither."""
    d = tiny_design("conventional")
    layers = [lp for lp in d.cp.plan.layers if lp.placements]
    requantizing = [lp for lp in layers if not lp.raw_output]
    emu = d.emulation().verilog.splitlines()
    acc_inst = [ln for ln in emu if ln.startswith("  pimgen_serial_acc_")]
    post_inst = [ln for ln in emu if ln.startswith("  pimgen_serial_post_")]
    assert len(acc_inst) == len(layers) and len(post_inst) == len(requantizing) < len(layers)
    assert "pimgen_serial_" not in d.verilog
