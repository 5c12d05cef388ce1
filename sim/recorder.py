"""A trace recorder compiled into the simulation, beside the design.

A chip's trace taps hand on a word on hundreds of clocks per image. A cocotb monitor pays
two trigger wakes and two value reads in Python for each of them: a sixth of a digits chip
run's time (docs/architecture.md, "Simulation speed"). :func:`tap_recorder` instead wraps the design's top module in
a Verilog module with the same ports that writes every tap word to a file from inside the
simulator, as it happens (``$fwrite`` on the rising edge, plain Verilog-2001 that Verilator
and Icarus both run); the testbench reads the file once, at the end (:func:`read_taps`).

The file is flushed on every edge that wrote to it, so it is complete whenever the testbench
reads it, whatever the order in which a simulator applies the testbench's writes and runs its
own processes on an edge.
"""
from __future__ import annotations

from pathlib import Path

from sim.runner import module_ports

__all__ = ["tap_recorder", "read_taps"]


def tap_recorder(verilog: str, top: str, valid: str, data: list[str], path: str) -> tuple[str, str]:
    """``(text, name)``: Verilog of a module ``name`` with ``top``'s ports (of ``verilog``)
    that instantiates ``top`` and, on every rising edge of ``clk`` at which bit ``n`` of port
    ``valid`` is high, writes the line ``n <hex of port data[n]>`` to the file ``path``
    (relative to the simulator's working folder)."""
    ports = module_ports(verilog, top)
    names = {p for _, _, p in ports}
    missing = [p for p in ("clk", valid, *data) if p not in names]
    if missing:
        raise ValueError(f"module {top} has no port {', '.join(missing)}")
    name = f"{top}_rec"
    decls = "".join(f"  {d} {r + ' ' if r else ''}{p};\n" for d, r, p in ports)
    conns = ",\n".join(f"    .{p}({p})" for _, _, p in ports)
    writes = "".join(f'    if ({valid}[{n}]) $fwrite(log, "{n} %h\\n", {d});\n' for n, d in enumerate(data))
    writes += f"    if (|{valid}) $fflush(log);\n"
    text = (f"module {name}({', '.join(p for _, _, p in ports)});\n"
            f"{decls}"
            f"  integer log;\n"
            f'  initial log = $fopen("{path}", "w");\n'
            f"  {top} dut (\n{conns}\n  );\n"
            f"  always @(posedge clk) begin\n{writes}"
            f"  end\n"
            f"endmodule\n")
    return text, name


def read_taps(path: str | Path, n_taps: int) -> list[list[int]]:
    """The words a :func:`tap_recorder` wrote to ``path``, per tap, in the order recorded."""
    taps: list[list[int]] = [[] for _ in range(n_taps)]
    for line in Path(path).read_text().splitlines():
        n, word = line.split()
        taps[int(n)].append(int(word, 16))
    return taps
