"""cocotb testbench for ``hw.board.BoardCore`` (run through ``sim.runner`` by ``flow.board``).

Arguments (``sim.runner.tb_args``): ``clocks_per_bit``, ``images`` (per image, the bytes the
host sends), ``reply_bytes`` (bytes the board answers per image), ``program_clocks`` (a bound on the clocks programming takes) and
``reply_clocks`` (a bound on the clocks from an image's last byte to its reply's last byte).

It waits for the ready LED (LED 0; lit from reset, since the board's cells are block-RAM
initial contents, but a board that programmed itself would light it later), sends each image over the ``rx`` pin and reads the reply from
``tx`` before sending the next, and reports the replies' bytes (``flow.board.parse_reply``
reads them).
"""
from __future__ import annotations

import cocotb
from cocotb.triggers import ClockCycles

from sim.testbench import TB
from sim.uart import UartSink, UartSource


@cocotb.test()
async def board_replies(dut):
    """The ready LED, then images in and classes out over the serial line."""
    tb = TB(dut)
    a = tb.args
    n = a["clocks_per_bit"]
    src = UartSource(dut.clk, dut.rx, n)
    sink = UartSink(dut.clk, dut.tx, n)
    await tb.start()
    sink.start()
    waited = 0
    while not int(dut.leds.value) & 1 and waited < a["program_clocks"]:
        await ClockCycles(dut.clk, 256)
        waited += 256
    programmed_at = tb.now
    reply = a["reply_bytes"]
    replies = []
    for k, img in enumerate(a["images"]):
        await src.send(bytes(img))
        ok = await sink.wait_bytes((k + 1) * reply, a["reply_clocks"] + 12 * n * reply)
        if not ok:
            break
        replies.append(list(sink.received[k * reply:(k + 1) * reply]))
    await ClockCycles(dut.clk, 20 * n)      # nothing more may follow
    tb.report({"programmed": bool(int(dut.leds.value) & 1), "programming_clocks": programmed_at,
               "replies": replies, "bytes_received": len(sink.received),
               "framing_errors": sink.framing_errors, "overrun": bool(int(dut.leds.value) >> 2 & 1),
               "target_clocks": int(dut.cycles.value), "host_clocks": int(dut.host_cycles.value)})
    assert int(dut.leds.value) & 1, f"not programmed after {a['program_clocks']} clocks"
    assert len(replies) == len(a["images"]), f"{len(replies)} of {len(a['images'])} replies arrived"
    assert len(sink.received) == reply * len(a["images"]), "bytes beyond the replies arrived"
