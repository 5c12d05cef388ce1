"""cocotb testbench for ``hw.crossbar.Crossbar`` (run through ``sim.runner``).

Arguments (``sim.runner.tb_args``): ``cfg`` (CrossbarConfig fields), ``weights``
``[rows][outputs]``, ``vectors`` ``[n][rows]``, ``reprogram`` (rows to re-write through
the write port half-way, with fresh weights), ``gap_prob``, ``ready_prob``, ``seed``,
``predicted_latency``, ``conductances`` (optional ``[rows][cols]``: the crossbar's non-ideal
cells, DESIGN.md §3, which it holds as initial contents; a re-programmed row becomes
ideal again). Every output is compared with ``sim.golden.crossbar_mvm`` using
the weights the crossbar holds at that moment; clocks are measured from the edge an
input vector is accepted to the edge its result is taken.
"""
from __future__ import annotations

import cocotb
import numpy as np

from gen.cells import ideal_conductances, pack_row
from gen.config import CrossbarConfig
from sim.golden import crossbar_mvm
from sim.stream import pack, unpack
from sim.testbench import TB


def _row_bits(cfg: CrossbarConfig) -> int:
    return max(1, (cfg.rows - 1).bit_length())


async def _run_batch(tb, cfg, driver, sink, vectors, timeout_clocks):
    n_before = len(sink.received)
    driver.send(pack(v, cfg.a_bits) for v in vectors)
    await tb.wait_for(lambda: len(sink.received) >= n_before + len(vectors), timeout_clocks)
    got = [unpack(p, cfg.dot_bits, cfg.outputs, signed=True) for _, p in sink.received[n_before:]]
    return np.array(got, dtype=np.int64).reshape(-1, cfg.outputs)


async def _program(tb, cfg, wdrv, rows_cells, timeout_clocks):
    """Program rows through the write port: one beat per ``(row, conductances of that row)``."""
    rb = _row_bits(cfg)
    n0 = len(wdrv.accepted)
    wdrv.send((r | (pack_row(g_row, cfg) << rb)) for r, g_row in rows_cells)
    await tb.wait_for(lambda: wdrv.idle and len(wdrv.accepted) >= n0 + len(rows_cells), timeout_clocks)
    await tb.clocks(1)


@cocotb.test()
async def crossbar_matches_golden(dut):
    """Random vectors, MVM results bit-exact vs the golden model, clocks vs the cycle model."""
    tb = TB(dut)
    a = tb.args
    cfg = CrossbarConfig.from_dict(a["cfg"])
    weights = np.array(a["weights"], dtype=np.int64)
    vectors = np.array(a["vectors"], dtype=np.int64)
    g = np.array(a["conductances"], dtype=np.int64) if a.get("conductances") is not None else None
    driver = tb.driver("i", rng=tb.rng)      # one generator for gaps and back-pressure
    sink = tb.sink("o", rng=tb.rng)
    wdrv = tb.driver("w", gap_prob=0.0)
    await tb.start()
    timeout = 50 * (len(vectors) + 4) * (a["predicted_latency"] + 4)

    half = len(vectors) // 2 if a.get("reprogram") else len(vectors)
    got = [await _run_batch(tb, cfg, driver, sink, vectors[:half], timeout)]
    expected = [crossbar_mvm(vectors[:half], weights, cfg, conductances=g)]
    if a.get("reprogram"):
        new = np.array(a["reprogram_weights"], dtype=np.int64)
        weights = weights.copy()
        weights[a["reprogram"]] = new
        ideal = ideal_conductances(weights, cfg)     # the rows are re-written with ideal cells
        await _program(tb, cfg, wdrv, [(r, ideal[r]) for r in a["reprogram"]], timeout)
        if g is not None:       # those rows lose their faults
            g = g.copy()
            g[a["reprogram"]] = ideal[a["reprogram"]]
        got.append(await _run_batch(tb, cfg, driver, sink, vectors[half:], timeout))
        expected.append(crossbar_mvm(vectors[half:], weights, cfg, conductances=g))
    got_all, exp_all = np.concatenate(got), np.concatenate(expected)

    n_in, n_out = len(driver.accepted), len(sink.received)
    latencies = [o[0] - i[0] for i, o in zip(driver.accepted, sink.received)]
    intervals = [b[0] - a_[0] for a_, b in zip(driver.accepted, driver.accepted[1:])]
    mismatches = int((got_all != exp_all).any(axis=1).sum()) if got_all.shape == exp_all.shape else len(vectors)
    tb.report({
        "vectors": len(vectors), "accepted": n_in, "delivered": n_out, "mismatches": mismatches,
        "latencies": latencies, "intervals": intervals, "predicted_clocks": a["predicted_latency"],
        "measured_clocks": max(latencies) if latencies else None,
        "first_mismatch": None if mismatches == 0 or got_all.shape != exp_all.shape else {
            "index": int(np.argmax((got_all != exp_all).any(axis=1))),
            "got": got_all[np.argmax((got_all != exp_all).any(axis=1))].tolist(),
            "expected": exp_all[np.argmax((got_all != exp_all).any(axis=1))].tolist()},
    })
    assert n_in == n_out == len(vectors), f"accepted {n_in}, delivered {n_out}, sent {len(vectors)}"
    assert mismatches == 0, f"{mismatches} of {len(vectors)} results differ from the golden model"
    if a.get("check_timing", True):
        assert set(latencies) == {a["predicted_latency"]}, (
            f"measured latencies {sorted(set(latencies))} != predicted {a['predicted_latency']}")
