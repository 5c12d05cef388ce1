"""Cycle model: the one place where clock counts are computed (DESIGN.md §5).

Every formula is named after the hardware step it times and is at clock granularity.
The RTL testbenches assert ``measured == predicted`` against these functions.
"""
from __future__ import annotations

from gen.config import CrossbarConfig
from gen.timing import (CROSSBAR_PIPELINE_CLOCKS, FM_READ_LATENCY, POST_CLOCKS, RAW_OUTPUT_BITS,
                        adder_tree_clocks, crossbar_latency, transfer_clocks)
from dataclasses import dataclass as _dataclass, field as _field

#: Stage names of one step (one output pixel of every replica), in hardware order.
STAGES = ("gbus_in", "tbus_in", "pe_pass", "pbus_in", "mvm", "accumulate", "post", "gbus_out")

#: The stages a novel-mapping warm-up step uses (it brings window columns in, no MVM).
INPUT_STAGES = ("gbus_in", "tbus_in", "pe_pass")

#: Report categories: which stages count as what.
CATEGORIES = {"interconnect": ("gbus_in", "gbus_out"), "buffer": ("tbus_in", "pe_pass", "pbus_in"),
              "mvm": ("mvm",), "accumulate": ("accumulate", "post")}


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@_dataclass
class LayerTiming:
    """Timing of one layer (all its replicas work in lockstep on their own output regions).

    ``step`` holds the clocks of each stage of a step (one output pixel per replica; the
    novel mapping's warm-up steps take the same time); ``first`` is the same dict and
    ``interval_first`` the same interval (kept for compatibility: since every step is
    alike there is no separate row-start step); ``interval`` is the step initiation
    interval, ``steps`` the number of steps, ``warmup`` the novel mapping's warm-up steps
    per output row, ``prologue`` the novel line-buffer fill, ``clocks`` the layer's
    latency and ``load`` the clocks a stand-alone engine spends streaming its input
    feature map into its buffer (not part of ``clocks``, see :attr:`engine_clocks`). ``busy`` are the clocks each category is busy over the layer (they
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
    steps: int = 0
    warmup: int = 0
    load: int = 0

    @property
    def engine_clocks(self) -> int:
        """A stand-alone layer engine (``hw.layer.ConvLayerEngine``): its input feature map
        first streams into its buffer (``load`` words), then the layer runs (``clocks``)."""
        return self.load + self.clocks

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "mapping": self.mapping, "clocks": self.clocks,
                "steps": self.steps, "warmup": self.warmup, "load": self.load,
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



def pixel_words(channels: int, a_bits: int, bus_bits: int) -> int:
    """Global-bus words of one pixel's ``channels`` activations: ``ceil(channels*a_bits / G)``.
    The feature-map buffer stores every pixel in whole words (``hw.buffers.FMGeometry``)."""
    return transfer_clocks(channels * a_bits, bus_bits)


def novel_warmup(k: int, stride: int) -> int:
    """Warm-up steps per output row of the novel mapping: ``ceil((K - s) / s)``. A row
    starts with an empty window; each step brings ``s`` new columns, so ``K - s`` columns
    must enter before the first output of the row."""
    return _cdiv(k - stride, stride) if k > stride else 0


def _tile_words(lp, chip) -> dict[int, int]:
    """Per tile: global-bus words per pixel position, summed over the tile's replicas —
    conventional: ``sum_(replica, kernel position) ceil(channels * a / G)`` over the
    window rows the tile holds; novel: ``sum_replica ceil(channels * a / G)``."""
    layer = lp.layer
    a, G = chip.crossbar.a_bits, chip.global_bus_bits
    cin = layer.cin
    rows: dict[tuple[int, int], set] = {}
    for p in lp.placements:
        rows.setdefault((p.tile, p.replica), set()).update(range(*p.rows))
    out: dict[int, int] = {}
    for (t, _), rs in rows.items():
        if lp.mapping == "novel":
            n = pixel_words(len(rs), a, G)
        else:
            per_k: dict[int, int] = {}
            for r in rs:
                per_k[r // cin] = per_k.get(r // cin, 0) + 1
            n = sum(pixel_words(c, a, G) for c in per_k.values())
        out[t] = out.get(t, 0) + n
    return out


def _prologue_reads(lp, chip) -> dict[int, int]:
    """Novel: per tile, the words read to fill the line buffers before the first step —
    the real input rows among the ``K - s`` window rows above the first output row's new
    rows (``[y0*s - pad, y0*s - pad + K - s)``), all ``W_in`` columns, per replica."""
    layer = lp.layer
    k, s, pad = layer.k, layer.stride, layer.pad
    _, h_in, w_in = lp.in_shape
    a, G = chip.crossbar.a_bits, chip.global_bus_bits
    chans: dict[tuple[int, int], set] = {}
    for p in lp.placements:
        chans.setdefault((p.tile, p.replica), set()).update(range(*p.rows))
    out: dict[int, int] = {}
    for (t, rep), cs in chans.items():
        y0 = lp.regions[rep][0]
        rows = sum(1 for yy in range(y0 * s - pad, y0 * s - pad + max(0, k - s)) if 0 <= yy < h_in)
        out[t] = out.get(t, 0) + rows * w_in * pixel_words(len(cs), a, G)
    return out


def _weight_layer_timing(lp, chip, overlap: bool) -> LayerTiming:
    xb = chip.crossbar
    a = xb.a_bits
    a_out = RAW_OUTPUT_BITS if lp.raw_output else a
    G, T, P = chip.global_bus_bits, chip.tile_bus_bits, chip.pe_bus_bits
    layer = lp.layer
    k, s = layer.k, layer.stride
    tile_rows, pe_rows, tile_out, addends, rep_rows, rep_pe_rows, rep_out = _layer_geometry(lp)
    max_pe = max(pe_rows.values())
    words = _tile_words(lp, chip)
    novel = lp.mapping == "novel"
    # --- one step: every replica produces (at most) one output pixel --------------------------
    step = dict.fromkeys(STAGES, 0)
    if novel:
        # the s*s new pixels of the step, each read from the feature-map buffer once
        step["gbus_in"] = max(s * s * n for n in words.values()) + FM_READ_LATENCY
        # the entering s window columns (s*K pixels) go from the line buffers to the edge PEs
        step["tbus_in"] = max(transfer_clocks(s * k * n * a, T) for n in tile_rows.values())
        # the other K-s columns shift s PEs over the neighbour links (all links in parallel)
        step["pe_pass"] = transfer_clocks(max_pe * a, P) if k > s else 0
    else:
        # the whole K*K*Cin window (this tile's rows of it), pixel by pixel, from the FM buffer
        step["gbus_in"] = max(words.values()) + FM_READ_LATENCY
        step["tbus_in"] = max(transfer_clocks(n * a, T) for n in tile_rows.values())
    step["pbus_in"] = transfer_clocks(max_pe * a, P)
    step["mvm"] = crossbar_latency(xb)
    step["accumulate"] = adder_tree_clocks(addends)
    step["post"] = POST_CLOCKS
    step["gbus_out"] = max(transfer_clocks(n * a_out, G) for n in tile_out.values())
    first = dict(step)
    comb = max if overlap else sum
    fill = sum(step.values())
    interval = comb(step.values())
    # a warm-up step (novel) only uses the input stages
    interval_wu = comb(step[st] for st in INPUT_STAGES)
    # --- the layer ----------------------------------------------------------------------------
    wu = novel_warmup(k, s) if novel else 0
    y0, y1, x0, x1 = max(lp.regions, key=lambda r: (r[1] - r[0]) * (r[3] - r[2]))
    rows_r, cols_r = y1 - y0, x1 - x0
    n_steps = rows_r * (cols_r + wu)
    c_in, h_in, w_in = lp.in_shape
    prologue = 0
    if novel:
        pro = max(_prologue_reads(lp, chip).values())
        prologue = pro + FM_READ_LATENCY if pro else 0
    clocks = prologue + fill + rows_r * wu * interval_wu + (rows_r * cols_r - 1) * interval
    busy = {c: sum(step[st] for st in sts) * rows_r * cols_r
            + sum(step[st] for st in sts if st in INPUT_STAGES) * rows_r * wu for c, sts in CATEGORIES.items()}
    busy["interconnect"] += prologue
    # --- traffic over all replicas (bits) --------------------------------------------------------
    _, ho, wo = lp.out_shape
    npix = ho * wo
    if novel:
        all_steps = sum((r[1] - r[0]) * (r[3] - r[2] + wu) for r in lp.regions)
        pre_rows = max(0, k - s - min(layer.pad, k - s))
        g_in = npix * s * s * rep_rows * a + len(lp.regions) * pre_rows * w_in * rep_rows * a
        t_in = all_steps * s * k * rep_rows * a
        pe_bits = all_steps * rep_pe_rows * a * (2 if k > s else 1)
    else:
        g_in = npix * rep_rows * a
        t_in = npix * rep_rows * a
        pe_bits = npix * rep_pe_rows * a
    traffic = {"global": g_in + npix * rep_out * a_out, "tile": t_in, "pe": pe_bits}
    bound = max(STAGES, key=lambda st: step[st])
    load = h_in * w_in * pixel_words(c_in, a, G)
    return LayerTiming(lp.name, lp.layer.kind, lp.mapping, clocks, step, first, interval, interval_wu if wu else interval,
                       prologue, (rows_r, cols_r), busy, traffic, bound, lp.n_subarrays, lp.n_pes, lp.n_tiles,
                       lp.duplication, lp.utilization(chip), n_steps, wu, load)


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

    Hardware schedule of a weight layer — exactly what ``hw.layer.ConvLayerEngine`` does
    (its testbench asserts ``measured == load + clocks``). Every replica owns a rectangle of
    the output and all replicas advance in lockstep, one output pixel per *step*. A step
    is a chain of stages with fixed durations ``d``; each stage hands its result over in
    its own register (double-buffered), so with ``overlap=True`` stage ``i`` starts step
    ``j`` exactly when stage ``i-1`` has finished it and a new step starts every ``II =
    max(d)`` clocks: the last step leaves the chain ``sum(d) + (n-1)*II`` after the first
    one started. ``overlap=False`` runs the stages back to back (``II = sum(d)``,
    NeuroSim-style accounting, for comparison). ``a`` = ``a_bits``; ``G``, ``T``, ``P`` =
    global, tile and PE bus bits per clock; ``w_t`` = global-bus words tile ``t`` reads
    per pixel position (``sum ceil(channels*a / G)`` over its replicas and, conventional,
    kernel positions: the feature-map buffer holds every pixel in whole words); ``n_t`` =
    input rows tile ``t`` needs per step (conventional: unrolled-matrix rows, novel:
    channels; summed over its replicas); ``n_pe`` = the most input rows one PE needs.

    ====================  ==========================================  =======================================
    stage                 conventional                                novel
    ====================  ==========================================  =======================================
    ``gbus_in``           ``max_t w_t + 1`` (whole window, read       ``s*s*max_t w_t + 1`` (the new pixels,
                          latency 1)                                  each read once)
    ``tbus_in``           ``max_t ceil(n_t*a / T)``                   ``max_t ceil(s*K*n_t*a / T)`` (entering
                                                                      columns)
    ``pe_pass``           0                                           ``ceil(n_pe*a / P)`` if ``K > s``
    ``pbus_in``           ``ceil(n_pe*a / P)``                        same
    ``mvm``               :func:`crossbar_latency`                    same
    ``accumulate``        ``ceil(log2(partial sums per output))``     same (``K*K`` × row-blocks addends)
    ``post``              ``POST_CLOCKS`` = 3 (bias, scale, clamp)    same
    ``gbus_out``          ``max_t ceil(outputs_t * a_out / G)``       same
    ====================  ==========================================  =======================================

    Layer latency (``R x C`` = the largest replica rectangle, ``fill = sum(d)``):
    conventional ``fill + (R*C - 1)*II``; novel
    ``prologue + fill + R*wu*II_wu + (R*C - 1)*II``. The novel mapping's window starts
    every output row empty: ``wu = ceil((K-s)/s)`` *warm-up* steps bring its first
    ``K-s`` columns in; they use only the input stages (``gbus_in``, ``tbus_in``,
    ``pe_pass``), so the next step follows after ``II_wu = max`` of those
    (``interval_first``). ``prologue = max_t (reads_t + 1)``, ``reads_t`` = the words
    that fill the line buffers with the real input rows among the ``K-s`` rows above the
    first output row's new rows (0 when there are none). A stand-alone engine first
    streams its input feature map into its buffer: ``load = H*W*ceil(Cin*a/G)`` words
    (``LayerTiming.engine_clocks = load + clocks``; not part of the network figures, where
    the producer writes the buffer).
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
