"""The chip on an FPGA board: the board core's RTL, its serial protocol, and its cocotb check.

* :func:`board_core` — ``hw.board.BoardCore`` for a :class:`flow.chip_check.ChipDesign`: the
  chip's emulation build, programmed from block RAM with the design's programming beats.
* :func:`image_bytes` / :func:`parse_reply` — the host side of the serial protocol
  (``hw.board``'s docstring).
* :func:`run_board_check` — images through ``sim.tb.board`` over the UART pins; every class
  and logit against the golden model (``sim.golden.run_plan`` on the chip's plan).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from flow.chip_check import ChipDesign, golden, shared_blocks

TOP = "board"

#: UART clocks per bit in simulation: fast, and still sampled mid-bit.
SIM_CLOCKS_PER_BIT = 8


def board_core(design: ChipDesign, clocks_per_bit: int):
    """The ``hw.board.BoardCore`` of ``design`` (its cells: the design's programming beats)."""
    from hw.board import BoardCore
    return BoardCore(design.cp, design.program_words(), clocks_per_bit)


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
    from gen.emulation import EmulatedGeometry
    xb = design.chip.crossbar
    write_clocks = len(EmulatedGeometry(xb).column_order) + 4
    t = design.timing(1)
    args = {"clocks_per_bit": clocks_per_bit, "images": [list(image_bytes(design, xi)) for xi in x],
            "n_logits": design.cp.logits,
            "program_clocks": 2 * write_clocks * len(design.program_words()) + 1000,
            "reply_clocks": 20 * (t.latency[0] + 1000)}
    t0 = time.perf_counter()
    res = run_testbench(board_verilog(design, clocks_per_bit), TOP, "sim.tb.board", args, cache_dir=cache_dir,
                        hier_blocks=shared_blocks(xb, emulated=True), progress=progress)
    d = res.data
    report = {
        "passed": bool(res.passed and d.get("classes") == want_classes and d.get("logits") == want_logits
                       and d.get("framing_errors") == 0 and not d.get("overrun")),
        "images": len(x), "classes": d.get("classes"), "expected_classes": want_classes,
        "logits_match": d.get("logits") == want_logits, "programming_clocks": d.get("programming_clocks"),
        "target_clocks": d.get("target_clocks"), "host_clocks": d.get("host_clocks"),
        "framing_errors": d.get("framing_errors"), "overrun": d.get("overrun"),
        "wall_seconds": round(time.perf_counter() - t0, 2), "log": str(res.log) if res.log else None,
        "accuracy": None,
    }
    if labels is not None and d.get("classes"):
        report["accuracy"] = float(np.mean(np.asarray(d["classes"]) == np.asarray(labels)[:len(d["classes"])]))
    return report
