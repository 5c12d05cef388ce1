"""``flow.emit``: one Verilog module per distinct block, converted in one process or in
several (``jobs``), the text the same either way."""
from __future__ import annotations

import gc
import os
import re
import signal
import subprocess

import pytest

import flow.emit
from gen.errors import ToolError
from gen.quantize import random_weights
from flow.chip_check import ChipDesign
from flow.emit import to_verilog
from hw.chip import Chip

from test_chip import SMALL, tiny_design, tiny_residual
from test_cli import PIMGEN


def test_jobs_give_the_serial_text():
    """A residual chip: datapaths, tiles inside them, PEs inside tiles, the crossbar inside PEs,
    post channels, an add lane, skip FIFOs. Converted by three processes, every block is in the
    Verilog once, in the order of its first instance: byte for byte what one process writes."""
    n = tiny_residual()
    cp = ChipDesign(n, random_weights(n, 0), SMALL, "novel").cp
    serial = to_verilog(Chip(cp), "chip")
    assert to_verilog(Chip(cp), "chip", jobs=3) == serial
    kinds = [b.rsplit("_", 1)[0] for b in re.findall(r"^module (\S+)\(", serial, re.M)]
    assert {"pimgen_engine", "pimgen_tile", "pimgen_pe", "pimgen_crossbar", "pimgen_post", "pimgen_add_lane",
            "pimgen_image_fifo"} <= set(kinds)


def test_a_killed_worker_is_an_error_not_a_hang(monkeypatch):
    """A worker the kernel kills (out of memory) leaves no blocks: the conversion says so and
    how to avoid it, instead of waiting for ever."""
    monkeypatch.setattr(flow.emit, "_worker", lambda *args: os.kill(os.getpid(), signal.SIGKILL))
    cp = tiny_design("novel").cp
    before = gc.get_threshold()
    with pytest.raises(ToolError, match=r"exit code -9.*--jobs 1"):
        to_verilog(Chip(cp), "chip", jobs=2)
    assert gc.get_threshold() == before     # the conversion's collector thresholds are undone


def test_build_refuses_zero_jobs(tmp_path):
    out = tmp_path / "d"
    r = subprocess.run(PIMGEN + ["build", "digits", "-o", str(out), "--jobs", "0"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and r.stderr == "pimgen build: error: --jobs 0 is not allowed: it must be >= 1\n"
    assert not out.exists()


def _components():
    """A few blocks of different kinds: a crossbar (wide registers, adder trees), a stream FIFO,
    a tiled memory (memories, and RAM macros inline)."""
    from hw.crossbar import Crossbar
    from hw.interconnect import StreamFIFO
    from hw.sram import TiledMemory
    return [(Crossbar(SMALL.crossbar), "xb"), (StreamFIFO(12, 4), "fifo"),
            (TiledMemory(16, 3000, 2, shared=False), "mem")]


def test_yosys_server_gives_amaranths_text():
    """Each component's Verilog from the once-loaded Yosys equals Amaranth's own conversion
    (a new Yosys process each time), byte for byte, also converted one after another in the
    same server."""
    from amaranth.back import verilog
    from flow import yosys_wasm
    for comp, name in _components():
        assert yosys_wasm.convert(comp, name) == verilog.convert(comp, name=name, emit_src=False)


def test_yosys_server_in_a_forked_child():
    """A process forked after its parent used the server converts with a server of its own
    (sharing its parent's pipes would mix their answers) and gets the same text."""
    import multiprocessing
    from flow import yosys_wasm
    from hw.interconnect import StreamFIFO
    comp, name = StreamFIFO(12, 4), "fifo"
    want = yosys_wasm.convert(comp, name)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=lambda: q.put(yosys_wasm.convert(comp, name)))
    p.start()
    got = q.get(timeout=120)
    p.join(timeout=60)
    assert p.exitcode == 0 and got == want


def test_yosys_failure_is_a_tool_error():
    from flow import yosys_wasm
    with pytest.raises(ToolError, match=r"^Yosys could not convert broken to Verilog: ERROR: No such command: "
                                        r"no_such_pass"):
        yosys_wasm.run_script("no_such_pass\n", "broken")
    # the server answers the next request
    assert "module m(" in yosys_wasm.run_script("read_rtlil <<rtlil\nmodule \\m\nend\nrtlil\nwrite_verilog\n", "m")


def test_yosys_server_ends_quietly_when_its_caller_goes():
    """A build interrupted with Ctrl-C: the server ignores the SIGINT the process group gets,
    and when its caller is gone before the answer (its end of the pipe closed) it exits 0,
    writing nothing to the standard error the build shares (no traceback, no "Exception
    ignored")."""
    import struct
    import sys
    from flow import yosys_wasm
    proc = subprocess.Popen([sys.executable, yosys_wasm.__file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout.read(1) == b"R"
    proc.send_signal(signal.SIGINT)
    script = b"read_rtlil <<rtlil\nmodule \\m\nend\nrtlil\nwrite_verilog\n"
    proc.stdout.close()                 # the caller is gone before the answer
    proc.stdin.write(struct.pack("<Q", len(script)) + script)
    proc.stdin.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0 and err == b"", err.decode()
