"""Generate the interconnect for a placement, drive its flows with cocotb, compare with the model."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from flow.emit import to_verilog
from hw.interconnect import build_fabric, model_latency
from sim.runner import run_testbench


def scaled_beats(cg, total: int) -> dict[int, int]:
    """Beats per flow proportional to its bits per image, ``total`` beats in all (>= 1 each)."""
    tot_bits = sum(f.bits_per_image for f in cg.flows) or 1
    return {f.id: max(1, round(total * f.bits_per_image / tot_bits)) for f in cg.flows}


def model_link_beats(placement, fabric, beats: dict[int, int]) -> list[int]:
    """The item-4 model's per-channel load, in beats of this run: the beats of every flow
    whose route crosses the channel."""
    load = {}
    for ch, ids in placement.channel_flows().items():
        load[ch] = sum(beats[i] for i in ids)
    if hasattr(fabric, "link_flow"):  # point-to-point: link k is flow k's own channel
        return [beats[fid] for fid in fabric.link_flow]
    return [load.get(tuple(ch), 0) for ch in fabric.links]


def run_interconnect_check(placement, *, total_beats: int = 600, width: int = 8, fifo_depth: int = 2,
                           gap_prob: float = 0.2, ready_prob: float = 0.6, seed: int = 0,
                           sim: str = "verilator", waves: bool = False, cache_dir: Path | None = None
                           ) -> dict[str, Any]:
    t0 = time.perf_counter()
    cg = placement.cg
    fab = build_fabric(placement, width, fifo_depth)
    verilog = to_verilog(fab, "fabric")
    t_gen = time.perf_counter() - t0
    beats = scaled_beats(cg, total_beats)
    args = {"flows": [{"id": f.id, "src": f.src, "dst": f.dst, "beats": beats[f.id]} for f in cg.flows],
            "tx": fab.tx_cores, "rx": fab.rx_cores, "flow_bits": fab.layout["flow"].width,
            "width": width, "n_links": len(fab.links), "gap_prob": gap_prob, "ready_prob": ready_prob,
            "seed": seed, "timeout": 100 * total_beats + 10_000}
    res = run_testbench(verilog, "fabric", "sim.tb.interconnect", args, sim=sim, waves=waves,
                        cache_dir=cache_dir, seed=seed)
    d = res.data
    model_beats = model_link_beats(placement, fab, beats)
    model_lat = {f.id: model_latency(placement, f) for f in cg.flows}
    cycles = d.get("cycles") or 1
    return {
        "passed": res.passed, "fabric": type(fab).__name__, "topology": placement.topo.label,
        "cores": cg.n, "flows": len(cg.flows), "links": len(fab.links), "sent": d.get("sent"),
        "delivered": d.get("delivered"), "errors": d.get("errors"),
        "link_beats": d.get("link_beats"), "model_link_beats": model_beats,
        "link_utilisation": [b / cycles for b in d.get("link_beats", [])],
        "probe_latency": {int(k): v for k, v in d.get("probe_latency", {}).items()},
        "model_latency": model_lat,
        "latency": {int(k): v for k, v in d.get("latency", {}).items()},
        "cycles": d.get("cycles"), "generate_seconds": round(t_gen, 2),
        "wall_seconds": round(time.perf_counter() - t0, 2), "verilog_lines": verilog.count("\n"),
        "log": str(res.log) if res.log else None,
    }
