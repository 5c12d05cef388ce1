"""Cycle model: the one place where clock counts are computed (DESIGN.md §5).

Every formula is named after the hardware step it times and is at clock granularity.
The RTL testbenches assert ``measured == predicted`` against these functions.
"""
from __future__ import annotations

from gen.config import CrossbarConfig

#: Pipeline registers a conversion passes through after its column is selected (see
#: ``hw.crossbar.Crossbar``): products, partial row sums, ADC code, routed/shifted term,
#: accumulator. The hardware's structure fixes this number; the tests check it.
CROSSBAR_PIPELINE_CLOCKS = 5


def crossbar_latency(cfg: CrossbarConfig) -> int:
    """Clocks from the edge a crossbar accepts an input vector to the edge its result can
    be taken: ``input_cycles * cols_per_adc`` conversions, one per clock per ADC, plus
    the ``CROSSBAR_PIPELINE_CLOCKS`` registers behind them. The crossbar takes its next
    vector on the edge it hands this one over, so this is also its initiation interval
    under no back-pressure."""
    return cfg.mvm_clocks + CROSSBAR_PIPELINE_CLOCKS


# =========================================================================================
# Layer and network cycle model (issue 3).  Everything below reads a ``MappingPlan``.
# =========================================================================================
from dataclasses import dataclass as _dataclass, field as _field

#: Width of a raw (not requantized) output value: the last layer's int32 accumulators.
RAW_OUTPUT_BITS = 32

#: Stage names of one step (one output pixel of every replica), in hardware order.
STAGES = ("gbus_in", "tbus_in", "pe_pass", "pbus_in", "mvm", "accumulate", "post", "gbus_out")

#: Report categories: which stages count as what.
CATEGORIES = {"interconnect": ("gbus_in", "gbus_out"), "buffer": ("tbus_in", "pe_pass", "pbus_in"),
              "mvm": ("mvm",), "accumulate": ("accumulate", "post")}


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def mvm_clocks(cfg: CrossbarConfig) -> int:
    """One subarray MVM, input vector in → dot products out: :func:`crossbar_latency`.
    It is also the crossbar's initiation interval, so it is the ``mvm`` stage of a step."""
    return crossbar_latency(cfg)


def transfer_clocks(bits: int, bus_bits: int) -> int:
    """Clocks to move ``bits`` over a bus of ``bus_bits`` bits per clock: ``ceil(bits / bus_bits)``."""
    return _cdiv(bits, bus_bits) if bits > 0 else 0


def adder_tree_clocks(addends: int) -> int:
    """Partial-sum adder tree, one registered level per clock: ``ceil(log2(addends))``."""
    return max(0, (addends - 1).bit_length())


@_dataclass
class LayerTiming:
    """Timing of one layer (all its replicas work in lockstep on their own output regions).

    ``step`` holds the clocks of each stage of a steady-state step (one output pixel per
    replica) and ``first`` those of a row-start step (novel: the whole window is loaded);
    ``interval``/``interval_first`` are the step initiation intervals; ``clocks`` the
    layer's latency. ``busy`` are the clocks each category is busy over the layer (they
    overlap, so they do not add up to ``clocks``). ``traffic`` is in bits.
    """
    name: str
    kind: str
    mapping: str
    clocks: int
    step: dict[str, int] = _field(default_factory=dict)
    first: dict[str, int] = _field(default_factory=dict)
    interval: int = 0
    interval_first: int = 0
    prologue: int = 0
    region: tuple[int, int] = (0, 0)
    busy: dict[str, int] = _field(default_factory=dict)
    traffic: dict[str, int] = _field(default_factory=dict)
    bound: str = ""
    subarrays: int = 0
    pes: int = 0
    tiles: int = 0
    duplication: int = 1
    utilization: dict[str, float] = _field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "mapping": self.mapping, "clocks": self.clocks,
                "interval": self.interval, "interval_first": self.interval_first, "prologue": self.prologue,
                "region": list(self.region), "step": dict(self.step), "first": dict(self.first),
                "busy": dict(self.busy), "traffic": dict(self.traffic), "bound": self.bound,
                "subarrays": self.subarrays, "pes": self.pes, "tiles": self.tiles,
                "duplication": self.duplication, "utilization": dict(self.utilization)}


@_dataclass
class Estimate:
    """Whole-network result of :func:`estimate`.

    ``latency_clocks``: one image through every layer, layers one after another (both chips).
    ``interval_clocks``: clocks between images: the latency on a layer-by-layer chip, the
    slowest layer on a pipelined chip. ``total_clocks`` = ``interval_clocks`` (what ``fps``
    is computed from). ``fps = clock_hz / interval_clocks`` (float, for reporting only).
    """
    network: str
    mapping: str
    pipeline: bool
    overlap: bool
    clock_hz: int
    layers: list[LayerTiming]
    latency_clocks: int
    interval_clocks: int
    subarrays: int
    pes: int
    tiles: int
    utilization: dict[str, float]
    params: int = 0
    macs: int = 0

    @property
    def total_clocks(self) -> int:
        return self.interval_clocks

    @property
    def fps(self) -> float:
        return self.clock_hz / self.interval_clocks if self.interval_clocks else 0.0

    @property
    def latency_s(self) -> float:
        return self.latency_clocks / self.clock_hz

    def traffic(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for lt in self.layers:
            for k, v in lt.traffic.items():
                out[k] = out.get(k, 0) + v
        return out

    def busy(self) -> dict[str, int]:
        out = {c: 0 for c in CATEGORIES}
        for lt in self.layers:
            for k, v in lt.busy.items():
                out[k] = out.get(k, 0) + v
        return out

    def __getitem__(self, name: str) -> LayerTiming:
        for lt in self.layers:
            if lt.name == name:
                return lt
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"network": self.network, "mapping": self.mapping, "pipeline": self.pipeline,
                "overlap": self.overlap, "params": self.params, "macs": self.macs,
                "total_clocks": self.total_clocks, "latency_clocks": self.latency_clocks,
                "interval_clocks": self.interval_clocks, "fps": self.fps, "clock_hz": self.clock_hz,
                "subarrays": self.subarrays, "pes": self.pes, "tiles": self.tiles,
                "utilization": dict(self.utilization), "traffic_bits": self.traffic(), "busy_clocks": self.busy(),
                "layers": [lt.to_dict() for lt in self.layers]}


def _layer_geometry(lp):
    """Per-tile and per-PE input footprints of one weight layer, read from its placements.

    Returns ``(tile_rows, pe_rows, tile_out, addends, rep_tile_rows, rep_pe_rows, rep_out)``:
    ``tile_rows[t]`` = input rows (conventional: unrolled-matrix rows; novel: channels) tile
    ``t`` must receive per step, summed over the replicas it holds; ``pe_rows[(t, pe)]`` the
    same per PE; ``tile_out[t]`` output values leaving tile ``t`` per step (a column-block's
    sum leaves from the tile of its last block); ``addends`` the most partial sums added for
    one output; ``rep_*`` the same summed over replica 0 (for traffic totals).
    """
    k, cin = lp.layer.k, lp.layer.cin
    tile_sets: dict[tuple[int, int], set] = {}
    pe_sets: dict[tuple[int, int], set] = {}
    pe_rep: dict[tuple[int, int], int] = {}
    last: dict[tuple[int, tuple[int, int]], tuple[int, int]] = {}
    count: dict[tuple[int, tuple[int, int]], int] = {}
    for p in lp.placements:
        tile_sets.setdefault((p.tile, p.replica), set()).add(p.rows)
        pe_sets.setdefault((p.tile, p.pe), set()).add(p.rows)
        pe_rep[(p.tile, p.pe)] = p.replica
        key = (p.replica, p.cols)
        m0 = p.matrix_rows(cin, k)[0]
        if key not in last or m0 > last[key][0]:
            last[key] = (m0, p.tile)
        count[key] = count.get(key, 0) + 1
    tile_rows: dict[int, int] = {}
    rep_tile_rows = 0
    for (t, rep), s in tile_sets.items():
        n = sum(r1 - r0 for r0, r1 in s)
        tile_rows[t] = tile_rows.get(t, 0) + n
        if rep == 0:
            rep_tile_rows += n
    pe_rows = {key: sum(r1 - r0 for r0, r1 in s) for key, s in pe_sets.items()}
    rep_pe_rows = sum(n for key, n in pe_rows.items() if pe_rep[key] == 0)
    tile_out: dict[int, int] = {}
    rep_out = 0
    for (rep, cols), (_, t) in last.items():
        tile_out[t] = tile_out.get(t, 0) + cols[1] - cols[0]
        if rep == 0:
            rep_out += cols[1] - cols[0]
    return tile_rows, pe_rows, tile_out, max(count.values()), rep_tile_rows, rep_pe_rows, rep_out


def _weight_layer_timing(lp, chip, overlap: bool) -> LayerTiming:
    xb = chip.crossbar
    a = xb.a_bits
    a_out = RAW_OUTPUT_BITS if lp.raw_output else a
    G, T, P = chip.global_bus_bits, chip.tile_bus_bits, chip.pe_bus_bits
    layer = lp.layer
    k, s = layer.k, layer.stride
    tile_rows, pe_rows, tile_out, addends, rep_rows, rep_pe_rows, rep_out = _layer_geometry(lp)
    max_tile = max(tile_rows.values())
    max_pe = max(pe_rows.values())
    novel = lp.mapping == "novel"
    # --- one step: every replica produces one output pixel -------------------------------
    step = dict.fromkeys(STAGES, 0)
    if novel:
        # each input pixel enters the tile once (s*s new pixels per output step, raster order)
        step["gbus_in"] = max(transfer_clocks(s * s * n * a, G) for n in tile_rows.values())
        # the entering s window columns (s*K pixels) go from the line buffers to the edge PEs
        step["tbus_in"] = max(transfer_clocks(s * k * n * a, T) for n in tile_rows.values())
        # the other K-s columns shift one PE over the neighbour links (all links in parallel)
        step["pe_pass"] = transfer_clocks(max_pe * a, P) if k > s else 0
    else:
        # the whole K*K*Cin window (this tile's rows of it) comes from the global buffer
        step["gbus_in"] = max(transfer_clocks(n * a, G) for n in tile_rows.values())
        step["tbus_in"] = max(transfer_clocks(n * a, T) for n in tile_rows.values())
    step["pbus_in"] = transfer_clocks(max_pe * a, P)
    step["mvm"] = mvm_clocks(xb)
    step["accumulate"] = adder_tree_clocks(addends)
    step["post"] = 1
    step["gbus_out"] = max(transfer_clocks(n * a_out, G) for n in tile_out.values())
    first = dict(step)
    if novel:  # a row-start step loads the whole K x K window from the line buffers
        first["tbus_in"] = max(transfer_clocks(k * k * n * a, T) for n in tile_rows.values())
    comb = max if overlap else sum
    interval, interval_first = comb(step.values()), comb(first.values())
    fill = sum(first.values())
    # --- the layer ------------------------------------------------------------------------
    y0, y1, x0, x1 = max(lp.regions, key=lambda r: (r[1] - r[0]) * (r[3] - r[2]))
    rows_r, cols_r = y1 - y0, x1 - x0
    _, h_in, w_in = lp.in_shape
    prologue = 0
    if novel:
        # before the first window: fill the K-1 line buffers (rows above the window's last row)
        pre_rows = max(0, k - 1 - min(layer.pad, k - 1))
        prologue = max(transfer_clocks(pre_rows * w_in * n * a, G) for n in tile_rows.values())
        clocks = prologue + fill + (rows_r - 1) * interval_first + rows_r * (cols_r - 1) * interval
        n_first = rows_r
    else:
        clocks = fill + (rows_r * cols_r - 1) * interval
        n_first = 1
    n_steps = rows_r * cols_r
    busy = {c: sum(step[st] for st in sts) * (n_steps - n_first) + sum(first[st] for st in sts) * n_first
            for c, sts in CATEGORIES.items()}
    busy["interconnect"] += prologue
    # --- traffic over all replicas (bits) --------------------------------------------------
    _, ho, wo = lp.out_shape
    npix = ho * wo
    if novel:
        n_row_starts = sum(r[1] - r[0] for r in lp.regions)
        g_in = npix * s * s * rep_rows * a + len(lp.regions) * pre_rows * w_in * rep_rows * a
        t_in = npix * s * k * rep_rows * a + n_row_starts * (k - s) * k * rep_rows * a
        pe_bits = npix * rep_pe_rows * a * (2 if k > s else 1)
    else:
        g_in = npix * rep_rows * a
        t_in = npix * rep_rows * a
        pe_bits = npix * rep_pe_rows * a
    traffic = {"global": g_in + npix * rep_out * a_out, "tile": t_in, "pe": pe_bits}
    bound = max(STAGES, key=lambda st: step[st])
    return LayerTiming(lp.name, lp.layer.kind, lp.mapping, clocks, step, first, interval, interval_first,
                       prologue, (rows_r, cols_r), busy, traffic, bound, lp.n_subarrays, lp.n_pes, lp.n_tiles,
                       lp.duplication, lp.utilization(chip))


def post_layer_clocks(lp, chip) -> int:
    """Max-pool, global average pool and residual Add run in post-processing units, one
    input pixel vector (all channels of every input) per step, fed over the global bus; a
    layer has one unit per replica of its producer (``lp.duplication``), each taking an
    equal share of the pixels: ``ceil(H_in*W_in / dup) * ceil(n_inputs * C * a_bits / G)``."""
    c, h, w = lp.in_shape
    n_in = len(lp.layer.inputs)
    return _cdiv(h * w, lp.duplication) * transfer_clocks(n_in * c * chip.crossbar.a_bits, chip.global_bus_bits)


def _post_layer_timing(lp, chip) -> LayerTiming:
    c, h, w = lp.in_shape
    clocks = post_layer_clocks(lp, chip)
    bits = h * w * len(lp.layer.inputs) * c * chip.crossbar.a_bits
    per = transfer_clocks(len(lp.layer.inputs) * c * chip.crossbar.a_bits, chip.global_bus_bits)
    return LayerTiming(lp.name, lp.layer.kind, "none", clocks, {"gbus_in": per}, {"gbus_in": per}, per, per, 0,
                       (h, w), {"interconnect": clocks, "buffer": 0, "mvm": 0, "accumulate": 0},
                       {"global": bits, "tile": 0, "pe": 0}, "gbus_in", duplication=lp.duplication)


def layer_timing(lp, chip, overlap: bool = True) -> LayerTiming:
    """Timing of one :class:`gen.mapping.LayerPlan` (see :func:`estimate`)."""
    return _weight_layer_timing(lp, chip, overlap) if lp.has_weights else _post_layer_timing(lp, chip)


def estimate(plan, overlap: bool = True) -> Estimate:
    """Cycle model of a :class:`gen.mapping.MappingPlan`, at clock granularity.

    Hardware schedule of a weight layer. Every replica owns a rectangle of the output and
    all replicas advance in lockstep, one output pixel per *step*. A step is a chain of
    stages, each double-buffered (``overlap=True``), so consecutive steps overlap and the
    step interval is the slowest stage; ``overlap=False`` runs the stages back to back
    (NeuroSim-style accounting, for comparison). ``a`` = ``a_bits``; ``G``, ``T``, ``P`` =
    global, tile and PE bus bits per clock; ``n_t`` = input rows tile ``t`` needs per step
    (conventional: unrolled-matrix rows, novel: channels; summed over its replicas);
    ``n_pe`` = the most input rows one PE needs.

    ====================  ==========================================  =======================================
    stage                 conventional                                novel
    ====================  ==========================================  =======================================
    ``gbus_in``           ``max_t ceil(n_t*a / G)`` (whole window)    ``max_t ceil(s*s*n_t*a / G)`` (new pixels)
    ``tbus_in``           ``max_t ceil(n_t*a / T)``                   ``max_t ceil(s*K*n_t*a / T)`` entering
                                                                      columns; row start ``K*K*n_t*a``
    ``pe_pass``           0                                           ``ceil(n_pe*a / P)`` if ``K > s``
    ``pbus_in``           ``ceil(n_pe*a / P)``                        same
    ``mvm``               :func:`crossbar_latency`                    same
    ``accumulate``        ``ceil(log2(partial sums per output))``     same (``K*K`` × row-blocks addends)
    ``post``              1 (bias, scale, ReLU clamp)                 same
    ``gbus_out``          ``max_t ceil(outputs_t * a_out / G)``       same
    ====================  ==========================================  =======================================

    Layer latency (``R x C`` = the largest replica rectangle, ``fill`` = sum of the first
    step's stages, ``II`` = steady interval, ``II1`` = row-start interval):
    conventional ``fill + (R*C - 1)*II``; novel ``prologue + fill + (R-1)*II1 + R*(C-1)*II``
    with ``prologue = ceil((K-1-min(pad,K-1)) * W_in * n_t * a / G)`` (line-buffer fill).
    Pooling and Add layers: :func:`post_layer_clocks`.

    Network: latency = sum of layer clocks. Layer-by-layer chip: interval = latency.
    Pipelined chip (``plan.pipeline``): interval = the slowest layer. ``fps = clock / interval``.
    """
    chip = plan.chip
    layers = [layer_timing(lp, chip, overlap) for lp in plan.layers]
    latency = sum(lt.clocks for lt in layers)
    interval = max(lt.clocks for lt in layers) if plan.pipeline else latency
    net = plan.network
    return Estimate(net.name, plan.mapping, plan.pipeline, overlap, chip.clock_hz, layers, latency, interval,
                    plan.n_subarrays, plan.n_pes, plan.n_tiles, plan.utilization(), net.params, net.macs)
