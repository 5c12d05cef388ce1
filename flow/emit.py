"""Verilog emission from Amaranth components: one module per distinct configuration.

Components that parents instantiate through ``hw.blackbox.instantiate`` are converted once
each, under their module name, and appended to the top's Verilog (DESIGN.md §6), in the
order they were first instantiated.

Each conversion is Amaranth's netlist and RTLIL, then Yosys (``flow.yosys_wasm``: loaded
once per process, the same text as ``amaranth.back.verilog``), and independent of the
others, so ``jobs > 1`` converts them in forked processes: the top in this one, the blocks
in the ``jobs - 1`` workers and, once the top is done, here too. A block is converted by the
process that claims it first (a file created exclusively in a scratch folder), and every
process converts the blocks found inside a block it converted, since only that process holds
their components. The text is the same as a one-process conversion, byte for byte.
"""
from __future__ import annotations

import gc
import multiprocessing
import os
import queue
import tempfile
import warnings
from contextlib import contextmanager

from amaranth.hdl import Fragment, UnusedElaboratable

from flow import yosys_wasm
from gen.errors import ToolError
from hw import blackbox


def _uses() -> list[str]:
    """The blocks instantiated since ``blackbox.INSTANCES`` was cleared, first use first."""
    return list(dict.fromkeys(blackbox.INSTANCES))


def _convert(component, name: str) -> tuple[str, list[str]]:
    """The Verilog of ``component`` as module ``name``, and the blocks it instantiates."""
    blackbox.INSTANCES.clear()
    text = yosys_wasm.convert(component, name)
    return text, _uses()


def _definitions(parts: list[str]) -> list[str]:
    """Convert every black-boxed block recorded so far, and those they instantiate in turn."""
    done: set[str] = set()
    while len(done) < len(blackbox.DEFINITIONS):
        # a definition may itself instantiate black boxes: convert until none is new
        for module, comp in list(blackbox.DEFINITIONS.items()):
            if module not in done:
                done.add(module)
                parts.append(yosys_wasm.convert(comp, module))
    return parts


def _claimed(modules: list[str], claims: str) -> dict[str, tuple[str, list[str]]]:
    """Convert each of ``modules`` no other process has claimed, and, depth first, the blocks
    found inside those (claimed the same way)."""
    out: dict[str, tuple[str, list[str]]] = {}
    todo = list(modules)
    while todo:
        module = todo.pop(0)
        if module in out:
            continue
        try:
            os.close(os.open(os.path.join(claims, module), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        out[module] = _convert(blackbox.DEFINITIONS[module], module)
        todo[:0] = out[module][1]
    return out


def _worker(first: list[str], claims: str, results) -> None:
    """A forked process's share: every block of ``first`` it claims, and the blocks inside."""
    # the components of blocks the parent or another worker converts are built here but never
    # elaborated here (an interrupted conversion leaves more): Amaranth's warning is noise
    warnings.simplefilter("ignore", UnusedElaboratable)
    try:
        results.put(("ok", _claimed(first, claims)))
    except BaseException as e:          # the parent re-raises it
        results.put(("error", e if isinstance(e, Exception) else RuntimeError(repr(e))))


def _collect(results, workers) -> dict[str, tuple[str, list[str]]]:
    """One worker's blocks, waiting while the workers live; a dead worker is an error (a
    worker killed for memory would otherwise leave the parent waiting for ever)."""
    while True:
        try:
            kind, value = results.get(timeout=1.0)
        except queue.Empty:
            dead = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            if dead or all(w.exitcode is not None for w in workers):
                raise ToolError(f"a Verilog conversion process ended (exit code {dead[0] if dead else 0}) without "
                                f"its blocks (out of memory?); convert in one process with --jobs 1") from None
            continue
        if kind == "error":
            raise value
        return value


def _parallel(component, name: str, jobs: int) -> str:
    Fragment.get(component, None)       # records the blocks the top instantiates, for the workers
    first = _uses()
    ctx = multiprocessing.get_context("fork")   # the workers inherit the recorded components
    with tempfile.TemporaryDirectory(prefix="pimgen-emit-") as claims:
        results = ctx.Queue()
        workers = [ctx.Process(target=_worker, args=(first, claims, results), daemon=True) for _ in range(jobs - 1)]
        for w in workers:
            w.start()
        try:
            top, top_uses = _convert(component, name)
            blocks = _claimed(first, claims)
            for _ in workers:
                blocks.update(_collect(results, workers))
        finally:
            for w in workers:
                if w.is_alive():
                    w.terminate()
                w.join()
    order = list(top_uses)
    for module in order:                # grows while walked: the serial emitter's order
        order += [u for u in blocks[module][1] if u not in order]
    # the blocks other processes converted were built here but never elaborated here
    _forget_blocks()
    return "\n".join([top] + [blocks[m][0] for m in order])


def _forget_blocks() -> None:
    """Drop the recorded blocks, collecting those never converted here without Amaranth's
    warning for each: blocks other processes converted, or, after an interrupted or failed
    conversion, blocks nobody converted (left to the interpreter's exit, they would warn
    whatever the filters say)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        blackbox.DEFINITIONS.clear()
        blackbox.INSTANCES.clear()
        gc.collect()


def default_jobs() -> int:
    """Processes for :func:`to_verilog` when a command is not told: ``PIMGEN_JOBS``, else
    the cores this process may run on."""
    env = os.environ.get("PIMGEN_JOBS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


#: Python's cyclic collector thresholds while converting. Amaranth's netlist allocates millions
#: of small objects; at the default thresholds (700, 10, 10) the collector took 11.4 of the
#: 32.2 CPU seconds of ResNet-20's one-process conversion, 2.9 at these (44 collections instead
#: of 13 906; the cycles are still collected, later).
GC_THRESHOLDS = (200_000, 50, 100)


@contextmanager
def _collector_thresholds():
    old = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*old)


def to_verilog(component, name: str, jobs: int = 1) -> str:
    """Verilog text of ``component`` with top module ``name`` (ports from its signature),
    followed by one definition of every black-boxed block it instantiates. ``jobs > 1``
    converts the blocks in that many processes (the same text)."""
    blackbox.DEFINITIONS.clear()
    blackbox.INSTANCES.clear()
    try:
        with _collector_thresholds():
            if jobs > 1:
                return _parallel(component, name, jobs)
            return "\n".join(_definitions([yosys_wasm.convert(component, name)]))
    except BaseException:
        _forget_blocks()
        raise


def definitions_verilog(component) -> str:
    """One definition of every black-boxed block ``component`` instantiates, without
    ``component`` itself: for a flow that converts the top on its own (an FPGA platform's
    build), which then needs these modules as a Verilog file beside it."""
    blackbox.DEFINITIONS.clear()
    blackbox.INSTANCES.clear()
    try:
        with _collector_thresholds():
            Fragment.get(component, None)       # elaborates the whole hierarchy: records the black boxes
            return "\n".join(_definitions([]))
    except BaseException:
        _forget_blocks()
        raise
