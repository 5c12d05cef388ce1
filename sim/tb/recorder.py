"""cocotb testbench for ``sim.recorder.tap_recorder`` (run through ``sim.runner`` by
``tests/test_sim_plumbing.py``), on a design whose taps are its inputs one clock late.

Arguments (``sim.runner.tb_args``): ``beats`` (per clock ``[valid bits, data per tap]``),
``tap_file``. On clock ``k`` the testbench drives beat ``k``; the design registers it, so it
is on the taps during clock ``k + 1``, and the recorder must have written, per tap, the data
of exactly the beats whose valid bit for that tap was set, in order. Reports ``taps`` (what
the file holds) and ``expected`` (worked out here from the beats driven).
"""
from __future__ import annotations

import cocotb

from sim.recorder import read_taps
from sim.testbench import TB


@cocotb.test()
async def recorder_writes_every_tap_word(dut):
    """Drive the beats, then compare the file with the beats whose valid bits were set."""
    tb = TB(dut)
    a = tb.args
    n_taps = len(a["beats"][0][1])
    await tb.start()
    for valid, data in a["beats"]:
        dut.v.value = valid
        for n, d in enumerate(data):
            getattr(dut, f"d{n}").value = d
        await tb.clocks(1)
    dut.v.value = 0
    await tb.clocks(3)
    taps = read_taps(a["tap_file"], n_taps)
    expected = [[data[n] for valid, data in a["beats"] if valid >> n & 1] for n in range(n_taps)]
    tb.report({"taps": taps, "expected": expected})
    assert taps == expected, f"recorded {taps}, driven {expected}"
