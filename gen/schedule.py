"""The layer schedule: how a weight layer runs, derived once from its plan entry.

``schedule_layer(lp, chip) -> LayerSchedule`` is the one home of every number about a
layer's execution: the feature-map word layout, the tiles and the replicas they hold, each
replica's output region, steps, warm-up steps and the input rows and columns it reads, the
novel mapping's line-buffer prologue, the stage durations of a step, the step intervals,
the load and output words, the exact feature-map read count and the traffic on every bus.
The cycle model (``gen.perf``), the layer-engine generator (``hw.layer``), the golden
model's plan walk, the testbench arguments, the manifest and the reports all read it.

A step (one output pixel of every replica) passes the stages of :data:`STAGES`, each with a
fixed duration; every stage hands its result over in its own register, so a new step can
start every ``interval = max(durations)`` clocks. The novel mapping starts every output row
with an empty ``K x K`` window: ``warmup = ceil((K - s) / s)`` warm-up steps bring its first
columns in through the input stages only (the next step follows ``interval_warmup`` clocks
later). Feature-map reads take ``FM_READ_LATENCY`` clocks; padding pixels are never read.

Stage durations (``a`` = ``a_bits``; ``G``, ``T``, ``P`` = global, tile and PE bus bits per
clock; ``w_t`` = feature-map words tile ``t`` reads per pixel position, summed over its
replicas and, conventional, kernel positions; ``n_t`` = input values tile ``t`` takes per
step (conventional: unrolled-matrix rows, novel: channels); ``n_pe`` = the most input
values one PE takes):

====================  ==========================================  =======================================
stage                 conventional                                novel
====================  ==========================================  =======================================
``gbus_in``           ``max_t w_t + FM_READ_LATENCY`` (whole      ``s*s*max_t w_t + FM_READ_LATENCY``
                      window)                                     (the new pixels, each read once)
``tbus_in``           ``max_t ceil(n_t*a / T)``                   ``max_t ceil(s*K*n_t*a / T)`` (entering
                                                                  columns)
``pe_pass``           0                                           ``ceil(n_pe*a / P)`` if ``K > s``
``pbus_in``           ``ceil(n_pe*a / P)``                        same
``mvm``               ``crossbar_latency``                        same
``accumulate``        ``adder_tree_clocks(partial sums/output)``  same (``K*K`` x row-blocks addends)
``post``              ``POST_CLOCKS``                             same
``gbus_out``          ``max_t ceil(outputs_t * a_out / G)``       same
====================  ==========================================  =======================================

Layer latency: :func:`layer_clocks`. The novel prologue fills the line buffers with the real
rows among the ``K - s`` rows above the first output row's new rows, over the replica's
input columns only: ``max_t (reads_t + FM_READ_LATENCY)`` (0 with nothing to read).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from gen.config import ChipConfig
from gen import timing
from gen.timing import RAW_OUTPUT_BITS, adder_tree_clocks, crossbar_latency, transfer_clocks

__all__ = ["STAGES", "INPUT_STAGES", "CATEGORIES", "FMLayout", "ReplicaSchedule", "TileSchedule",
           "LayerSchedule", "schedule_layer", "novel_warmup", "layer_clocks"]

#: Stage names of one step, in hardware order.
STAGES = ("gbus_in", "tbus_in", "pe_pass", "pbus_in", "mvm", "accumulate", "post", "gbus_out")

#: The stages a novel-mapping warm-up step uses (it brings window columns in, no MVM).
INPUT_STAGES = ("gbus_in", "tbus_in", "pe_pass")

#: Report categories: which stages count as what.
CATEGORIES = {"interconnect": ("gbus_in", "gbus_out"), "buffer": ("tbus_in", "pe_pass", "pbus_in"),
              "mvm": ("mvm",), "accumulate": ("accumulate", "post")}


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class FMLayout:
    """Feature-map buffer words: ``channels`` values of ``a_bits`` per pixel, ``h x w``
    pixels in raster order, each pixel as ``wpp`` words of ``word_bits = min(G, C*a)``
    bits (channel ``c`` at bits ``[c*a, (c+1)*a)`` of the pixel's concatenated words; the
    last word's spare bits are zero). Word address of pixel ``(y, x)`` word ``k``:
    ``(y*w + x)*wpp + k``. One word crosses the global bus per clock."""
    channels: int
    h: int
    w: int
    a_bits: int
    bus_bits: int

    @property
    def pix_bits(self) -> int:
        return self.channels * self.a_bits

    @property
    def word_bits(self) -> int:
        return min(self.bus_bits, self.pix_bits)

    @property
    def wpp(self) -> int:
        """Words per pixel."""
        return _cdiv(self.pix_bits, self.word_bits)

    @property
    def depth(self) -> int:
        """Words of the whole map (the load of a stand-alone engine)."""
        return self.h * self.w * self.wpp

    def channel_word_list(self, ranges) -> tuple[int, ...]:
        """The words of one pixel (indices, ascending) that hold any channel of the
        half-open ``ranges``: what a fetch of those channels reads."""
        a, wb = self.a_bits, self.word_bits
        return tuple(sorted({w for c0, c1 in ranges for w in range(c0 * a // wb, ((c1 - 1) * a + a - 1) // wb + 1)
                             if c1 > c0}))

    def channel_words(self, ranges) -> int:
        """How many words of one pixel a fetch of the channels ``ranges`` reads."""
        return len(self.channel_word_list(ranges))

    def pixel_words(self, values) -> list[int]:
        """The ``wpp`` words of one pixel (``channels`` unsigned values)."""
        word = 0
        for c, v in enumerate(values):
            word |= (int(v) & ((1 << self.a_bits) - 1)) << (c * self.a_bits)
        mask = (1 << self.word_bits) - 1
        return [(word >> (i * self.word_bits)) & mask for i in range(self.wpp)]

    def pack(self, x) -> list[int]:
        """All words of a ``[C, H, W]`` map, in buffer (address) order."""
        out = []
        for yy in range(self.h):
            for xx in range(self.w):
                out += self.pixel_words([x[c][yy][xx] for c in range(self.channels)])
        return out


@dataclass(frozen=True)
class ReplicaSchedule:
    """One replica: the output rectangle it computes, ``region = (y0, y1, x0, x1)``
    (``gen.mapping.LayerPlan.computed_regions``), and the one whose pixels are its value,
    ``owned`` (``LayerPlan.regions``: the same rectangle, or for a novel replica widened to
    its neighbours' width a narrower one at its right edge), its ``steps``
    (warm-up steps included) and ``out_steps``, the input rows ``[in_rows)`` and columns
    ``[in_cols)`` it reads (real pixels only), ``row_steps`` per output row, the novel line-buffer prologue rows, the
    words it reads from the feature-map buffer per image (``fm_reads``, prologue included),
    the input values its tiles take per step (``in_values``) and its PEs' inputs summed
    (``pe_values``)."""
    index: int
    tile: int
    region: tuple[int, int, int, int]
    row_steps: int
    out_steps: int
    in_rows: tuple[int, int]
    in_cols: tuple[int, int]
    prologue_rows: tuple[int, ...]
    prologue_reads: int
    fm_reads: int
    in_values: int
    pe_values: int
    owned: tuple[int, int, int, int]

    @property
    def steps(self) -> int:
        """Steps of the replica: ``row_steps`` per output row (warm-up steps included)."""
        return (self.region[1] - self.region[0]) * self.row_steps


@dataclass(frozen=True)
class TileSchedule:
    """One tile of the layer (``index`` inside the layer, ``chip_tile`` chip-wide): the
    replicas it holds, the feature-map words it reads per pixel position (``reads``: per
    ``(replica, kernel position)`` — conventional: ``i*K + j``, novel: ``None``, every new
    pixel — the word indices of the pixel that hold the tile's channels; ``pixel_words``
    their count), the input values it takes per step (``in_values``), the output values it
    sends per step (``out_cols``: ``(replica, c0, c1)`` column blocks whose sums leave from
    this tile, in send order; ``out_values`` their count) and the ``out_words`` (``G`` bits
    each) they make, ``written_steps`` per image, and (novel) the words its line-buffer
    prologue reads (``prologue_reads``)."""
    index: int
    chip_tile: int
    replicas: tuple[int, ...]
    reads: tuple[tuple[int, int | None, tuple[int, ...]], ...]
    in_values: int
    out_cols: tuple[tuple[int, int, int], ...]
    out_words: int
    written_steps: int
    prologue_reads: int = 0

    @property
    def pixel_words(self) -> int:
        return sum(len(w) for *_, w in self.reads)

    @property
    def out_values(self) -> int:
        return sum(c1 - c0 for _, c0, c1 in self.out_cols)


@dataclass(frozen=True)
class LayerSchedule:
    """Everything about how one weight layer runs (module docstring). Built by :func:`schedule_layer`."""
    name: str
    kind: str
    mapping: str
    k: int
    stride: int
    pad: int
    cin: int
    cout: int
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    raw: bool
    a_bits: int
    a_out: int
    bus_bits: int
    fm: FMLayout
    tiles: tuple[TileSchedule, ...]
    replicas: tuple[ReplicaSchedule, ...]
    rows: int
    cols: int
    warmup: int
    addends: int
    pe_values: int
    stages: MappingProxyType
    prologue: int

    # --- derived -------------------------------------------------------------------
    @property
    def novel(self) -> bool:
        return self.mapping == "novel"

    @property
    def row_steps(self) -> int:
        """Steps per output row the controller issues: ``cols + warmup``."""
        return self.cols + self.warmup

    @property
    def steps(self) -> int:
        """Steps the controller issues: ``rows * row_steps``."""
        return self.rows * self.row_steps

    @property
    def out_steps(self) -> int:
        return self.rows * self.cols

    @property
    def interval(self) -> int:
        """Clocks between the starts of consecutive steps (stages overlap)."""
        return max(self.stages.values())

    @property
    def interval_warmup(self) -> int:
        """Clocks from a warm-up step to the next step (only the input stages are used);
        equals :attr:`interval` when there are no warm-up steps."""
        return max(self.stages[st] for st in INPUT_STAGES) if self.warmup else self.interval

    @property
    def fill(self) -> int:
        """Clocks one step takes through every stage."""
        return sum(self.stages.values())

    @property
    def clocks(self) -> int:
        """The layer's latency once its input is in the buffer: :func:`layer_clocks`."""
        return layer_clocks(self, self.interval, self.interval_warmup)

    @property
    def load_words(self) -> int:
        """Words a stand-alone engine takes in before it starts (its whole input map)."""
        return self.fm.depth

    @property
    def engine_clocks(self) -> int:
        """A stand-alone engine, first input word accepted to last output word delivered."""
        return self.load_words + self.clocks

    @property
    def fm_reads(self) -> int:
        """Feature-map words read per image, all tiles and replicas (the engine's counter)."""
        return sum(r.fm_reads for r in self.replicas)

    @property
    def out_words(self) -> int:
        """Output words per image, all tiles."""
        return sum(t.out_words * t.written_steps for t in self.tiles)

    @property
    def bound(self) -> str:
        """The stage that sets the interval."""
        return max(STAGES, key=lambda st: self.stages[st])

    @property
    def traffic(self) -> dict[str, int]:
        """Bits per image on each bus: ``global_in`` the feature-map words read (word bits
        each), ``global_out`` the output words (``G`` bits each), ``global`` their sum,
        ``tile`` the step inputs over the tile buses (novel: the entering window columns of
        every step, warm-up included), ``pe`` the PE inputs over the PE buses plus (novel)
        the pixels passed between neighbouring PEs."""
        a, k, s = self.a_bits, self.k, self.stride
        g_in = self.fm_reads * self.fm.word_bits
        g_out = self.out_words * self.bus_bits
        tile = pe = 0
        for r in self.replicas:
            rows, pe_rows = r.in_values, r.pe_values
            if self.novel:
                tile += r.steps * s * k * rows * a
                pe += r.steps * pe_rows * a * (2 if k > s else 1)
            else:
                tile += r.out_steps * rows * a
                pe += r.out_steps * pe_rows * a
        return {"global": g_in + g_out, "global_in": g_in, "global_out": g_out, "tile": tile, "pe": pe}

    @property
    def busy(self) -> dict[str, int]:
        """Clocks each report category is busy over the layer (they overlap)."""
        d, n_out, n_wu = self.stages, self.out_steps, self.rows * self.warmup
        busy = {c: sum(d[st] for st in sts) * n_out + sum(d[st] for st in sts if st in INPUT_STAGES) * n_wu
                for c, sts in CATEGORIES.items()}
        busy["interconnect"] += self.prologue
        return busy

    def step_outputs(self, tile: int, j: int) -> list[tuple[int, int, int] | None]:
        """For output step ``j`` (warm-up steps not counted): per replica of ``tile``, its
        output pixel ``(replica, y, x)``, or None when its region is exhausted or the pixel is
        another replica's (``ReplicaSchedule.owned``)."""
        out = []
        for r in self.tiles[tile].replicas:
            rep = self.replicas[r]
            y0, y1, x0, x1 = rep.region
            if j >= (y1 - y0) * (x1 - x0):
                out.append(None)
                continue
            yy, t = divmod(j, x1 - x0)
            oy0, oy1, ox0, ox1 = rep.owned
            y, x = y0 + yy, x0 + t
            out.append((r, y, x) if oy0 <= y < oy1 and ox0 <= x < ox1 else None)
        return out

    def engine_refusal(self) -> str | None:
        """Why ``hw.layer.ConvLayerEngine`` cannot build this layer, or None when it can."""
        if self.kind == "fc" and self.in_shape[1:] != (1, 1):
            c, h, w = self.in_shape
            return (f"layer {self.name!r}: a linear layer engine needs a 1x1 input (got {c}x{h}x{w}); "
                    f"flatten the input to {c * h * w}x1x1")
        if self.novel and any(len(t.replicas) != 1 for t in self.tiles):
            return f"layer {self.name!r}: novel mapping with several replicas in one tile is not supported"
        return None

    def to_dict(self) -> dict:
        """The schedule as plain data (the manifest's ``schedule`` entry)."""
        return {"mapping": self.mapping, "load_words": self.load_words, "prologue": self.prologue,
                "steps": self.steps, "out_steps": self.out_steps, "warmup": self.warmup, "rows": self.rows,
                "cols": self.cols, "interval": self.interval, "interval_warmup": self.interval_warmup,
                "stages": dict(self.stages), "layer_clocks": self.clocks, "engine_clocks": self.engine_clocks,
                "fm_reads": self.fm_reads, "out_words": self.out_words, "traffic_bits": self.traffic,
                "fm": {"word_bits": self.fm.word_bits, "words_per_pixel": self.fm.wpp, "depth": self.fm.depth},
                "tiles": [{"replicas": list(t.replicas), "out_words": t.out_words, "written_steps": t.written_steps}
                          for t in self.tiles],
                "replicas": [{"region": list(r.region), "owned": list(r.owned), "steps": r.steps, "fm_reads": r.fm_reads,
                              "in_rows": list(r.in_rows), "in_cols": list(r.in_cols),
                              "prologue_reads": r.prologue_reads} for r in self.replicas]}


def novel_warmup(k: int, stride: int) -> int:
    """Warm-up steps per output row of the novel mapping: ``ceil((K - s) / s)``. A row
    starts with an empty window; each step brings ``s`` new columns, so ``K - s`` columns
    must enter before the first output of the row."""
    return _cdiv(k - stride, stride) if k > stride else 0


def layer_clocks(ls: LayerSchedule, interval: int, interval_warmup: int) -> int:
    """A layer's latency with the given step intervals: ``prologue + fill +
    rows*warmup*interval_warmup + (rows*cols - 1)*interval`` (the last output step leaves
    the last stage ``fill`` clocks after it started). The hardware overlaps its stages
    (:attr:`LayerSchedule.interval`); ``gen.perf`` also evaluates it with the stages added
    (NeuroSim-style accounting)."""
    return ls.prologue + ls.fill + ls.rows * ls.warmup * interval_warmup + (ls.rows * ls.cols - 1) * interval


def _real(lo: int, hi: int, n: int) -> tuple[int, int]:
    """``[lo, hi)`` clipped to ``[0, n)``."""
    lo, hi = max(0, lo), min(n, hi)
    return (lo, max(lo, hi))


def _count_real(start: int, stop: int, stride: int, off: int, n: int) -> int:
    """``#{y in [start, stop): 0 <= y*stride + off < n}``."""
    return sum(1 for y in range(start, stop) if 0 <= y * stride + off < n)


def _size(ranges) -> int:
    return sum(r1 - r0 for r0, r1 in ranges)


def schedule_layer(lp, chip: ChipConfig) -> LayerSchedule:
    """The schedule of one weight layer ``lp`` (a :class:`gen.mapping.LayerPlan`) on ``chip``."""
    if not lp.has_weights:
        raise ValueError(f"layer {lp.name!r} ({lp.layer.kind}) has no weights and no step schedule")
    layer, xb = lp.layer, chip.crossbar
    a = xb.a_bits
    raw = bool(lp.raw_output)
    a_out = RAW_OUTPUT_BITS if raw else a
    G, T, P = chip.global_bus_bits, chip.tile_bus_bits, chip.pe_bus_bits
    fc = layer.kind == "fc"
    k, s, pad = (1, 1, 0) if fc else (layer.k, layer.stride, layer.pad)
    cin = layer.weight_rows if fc else layer.cin
    c_in, h, w = lp.in_shape
    fm = FMLayout(c_in, h, w, a, G)
    novel = lp.mapping == "novel"
    wu = novel_warmup(k, s) if novel else 0

    # --- tiles, replicas and the input rows each holds -------------------------------------
    tile_ids = sorted({p.tile for p in lp.placements})
    t_index = {t: n for n, t in enumerate(tile_ids)}
    # input rows as half-open ranges (matrix rows / channels); row-blocks never overlap partially
    rows_of: dict[tuple[int, int], set] = {}       # (tile, replica) -> row ranges
    pe_rows: dict[tuple[int, int], set] = {}       # (tile, pe) -> row ranges
    pe_rep: dict[tuple[int, int], int] = {}
    last: dict[tuple[int, tuple[int, int]], tuple[int, int]] = {}   # (replica, cols) -> (top row, tile)
    count: dict[tuple[int, tuple[int, int]], int] = {}
    for p in lp.placements:
        rows_of.setdefault((p.tile, p.replica), set()).add(p.rows)
        pe_rows.setdefault((p.tile, p.pe), set()).add(p.rows)
        pe_rep[(p.tile, p.pe)] = p.replica
        key = (p.replica, p.cols)
        m0 = p.matrix_rows(cin, k)[0]
        if key not in last or m0 > last[key][0]:
            last[key] = (m0, p.tile)         # a column block's sum leaves from the tile of its last rows
        count[key] = count.get(key, 0) + 1

    tile_reads: dict[int, list] = {}

    def words_of(tile: int, rep: int) -> tuple[int, dict[int, int]]:
        """Feature-map words per pixel position the replica's part on ``tile`` reads, and
        (conventional) per kernel position; recorded in ``tile_reads``."""
        rs = rows_of[(tile, rep)]
        if novel:
            wl = fm.channel_word_list(rs)
            tile_reads.setdefault(tile, []).append((rep, None, wl))
            return len(wl), {}
        per_k: dict[int, list] = {}
        for r0, r1 in rs:
            for kp in range(r0 // cin, (r1 - 1) // cin + 1):
                per_k.setdefault(kp, []).append((max(r0, kp * cin) - kp * cin, min(r1, (kp + 1) * cin) - kp * cin))
        wk = {}
        for kp in sorted(per_k):
            wl = fm.channel_word_list(per_k[kp])
            tile_reads.setdefault(tile, []).append((rep, kp, wl))
            wk[kp] = len(wl)
        return sum(wk.values()), wk

    regions = lp.computed_regions
    big = max(regions, key=lambda r: (r[1] - r[0]) * (r[3] - r[2]))
    n_rows, n_cols = big[1] - big[0], big[3] - big[2]

    replicas: list[ReplicaSchedule] = []
    tile_words: dict[int, int] = {}
    tile_pro: dict[int, int] = {}     # per tile: prologue reads of its replicas
    for rep, (y0, y1, x0, x1) in enumerate(regions):
        in_rows = _real(y0 * s - pad, (y1 - 1) * s - pad + k, h)
        in_cols = _real(x0 * s - pad, (x1 - 1) * s - pad + k, w)
        lb_rows = tuple(yy for yy in range(y0 * s - pad, y0 * s - pad + max(0, k - s)) if 0 <= yy < h) \
            if novel else ()
        reads = pro = 0
        rep_tiles = sorted(t for (t, r_) in rows_of if r_ == rep)
        for t in rep_tiles:
            n, per_k = words_of(t, rep)
            tile_words[t] = tile_words.get(t, 0) + n
            if novel:
                ncols = in_cols[1] - in_cols[0]
                reads += (in_rows[1] - in_rows[0]) * ncols * n
                p_reads = len(lb_rows) * ncols * n
                pro += p_reads
                tile_pro[t] = tile_pro.get(t, 0) + p_reads
            else:
                for kp, nw in per_k.items():
                    i, j = divmod(kp, k)
                    reads += _count_real(y0, y1, s, i - pad, h) * _count_real(x0, x1, s, j - pad, w) * nw
        replicas.append(ReplicaSchedule(rep, t_index[rep_tiles[0]], (y0, y1, x0, x1),
                                        (x1 - x0) + wu, (y1 - y0) * (x1 - x0),
                                        in_rows, in_cols, lb_rows, pro, reads,
                                        sum(_size(rows_of[(t, rep)]) for t in rep_tiles),
                                        sum(_size(v) for key, v in pe_rows.items() if pe_rep[key] == rep),
                                        tuple(lp.regions[rep])))

    tiles: list[TileSchedule] = []
    tile_in: dict[int, int] = {}
    for (t, rep), rs in rows_of.items():
        tile_in[t] = tile_in.get(t, 0) + _size(rs)
    tile_out: dict[int, list] = {}
    for (rep, cols), (_, t) in last.items():
        tile_out.setdefault(t, []).append((rep, cols[0], cols[1]))
    for t in tile_ids:
        reps = tuple(sorted({r_ for (t_, r_) in rows_of if t_ == t}))
        oc = tuple(sorted(tile_out.get(t, [])))
        ow = transfer_clocks(sum(c1 - c0 for _, c0, c1 in oc) * a_out, G)
        written = max(replicas[r].out_steps for r in reps) if ow else 0
        tiles.append(TileSchedule(t_index[t], t, reps, tuple(tile_reads[t]), tile_in[t], oc, ow, written,
                                  tile_pro.get(t, 0)))

    # --- one step: stage durations ----------------------------------------------------------
    max_pe = max(_size(v) for v in pe_rows.values())
    st = dict.fromkeys(STAGES, 0)
    if novel:
        # the s*s new pixels of the step, each read once; the entering s columns (s*K pixels)
        # from the line buffers to the edge PEs; the other K-s columns shift s PEs over
        st["gbus_in"] = s * s * max(tile_words.values()) + timing.FM_READ_LATENCY
        st["tbus_in"] = max(transfer_clocks(s * k * n * a, T) for n in tile_in.values())
        st["pe_pass"] = transfer_clocks(max_pe * a, P) if k > s else 0
    else:
        # the whole K*K*Cin window (this tile's rows of it), word by word
        st["gbus_in"] = max(tile_words.values()) + timing.FM_READ_LATENCY
        st["tbus_in"] = max(transfer_clocks(n * a, T) for n in tile_in.values())
    st["pbus_in"] = transfer_clocks(max_pe * a, P)
    st["mvm"] = crossbar_latency(xb)
    addends = max(count.values())
    st["accumulate"] = adder_tree_clocks(addends)
    st["post"] = timing.POST_CLOCKS
    st["gbus_out"] = max(t.out_words for t in tiles)
    pro = max(tile_pro.values()) if tile_pro else 0     # all tiles wait for the slowest fill
    return LayerSchedule(
        name=lp.name, kind=layer.kind, mapping=lp.mapping, k=k, stride=s, pad=pad, cin=cin, cout=layer.weight_cols,
        in_shape=tuple(lp.in_shape), out_shape=tuple(lp.out_shape), raw=raw, a_bits=a, a_out=a_out, bus_bits=G,
        fm=fm, tiles=tuple(tiles), replicas=tuple(replicas), rows=n_rows, cols=n_cols, warmup=wu,
        addends=addends, pe_values=max_pe, stages=MappingProxyType(st),
        prologue=pro + timing.FM_READ_LATENCY if pro else 0)
