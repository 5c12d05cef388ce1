"""Layer engine generator: one conv (or linear) layer in RTL, built from its ``MappingPlan`` entry.

``ConvLayerEngine(lp, chip, params)`` instantiates, for ``lp.mapping`` ``"conventional"``
or ``"novel"`` and every replica of ``lp``:

* a :class:`hw.buffers.FeatureMapBuffer` (``lib.memory.Memory``) that the input stream
  ``i`` fills, one global-bus word per beat, with one read port per tile;
* per tile, the fetch stage: :class:`hw.buffers.WindowGenerator` (conventional: the
  ``K*K*Cin`` im2col window, every pixel re-read for every window it belongs to) or
  :class:`hw.buffers.InputDistributor` (novel: each input pixel read once, line buffers,
  pixels passed between the ``K x K`` PEs);
* the PEs of the plan (:class:`hw.pe.PE`, one crossbar per placement, weights as initial
  cell contents), the partial-sum adder tree (:class:`hw.pe.AdderTree`), the post stage
  (bias + requantization + ReLU clamp as in ``hw.post.requant_expr``, pipelined over three
  registers, or ``acc + bias`` for a raw last layer) and the output stage, which writes the tile's output words, ``G`` bits
  per clock, into a FIFO drained by the output stream ``o<t>``;
* the :class:`hw.controller.LayerController` and the stage timers.

Schedule (the cycle model ``gen.perf.layer_timing`` computes every number used here):
load ``lt.load`` words; novel: the line-buffer prologue ``lt.prologue``; then ``lt.steps``
steps started every ``lt.interval`` clocks, each passing the stages of ``gen.perf.STAGES``
with durations ``lt.step[stage]``. From the first input word accepted to the last output
word delivered: ``lt.load + lt.clocks`` clocks, with no back-pressure.

Back-pressure: when any output FIFO is full, the whole engine (crossbars included) holds
its state for that clock (``EnableInserter``), so nothing is lost, duplicated or reordered.

Output words of tile ``t`` per step: the tile's replicas in replica order, each ``Cout``
values of ``a_out`` bits (``a_bits`` unsigned, or 32-bit signed for a raw layer), flattened,
cut into ``G``-bit words (the last one zero-padded). A step in which none of the tile's
replicas has an output pixel (novel warm-up steps, or a replica's region exhausted) writes
nothing (warm-up steps never reach the output stage); a replica without a pixel in a
written step contributes don't-care values.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Elaboratable, EnableInserter, Module, Mux, Signal, signed, unsigned
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from gen.config import ChipConfig
import gen.perf as perf
from hw.buffers import FeatureMapBuffer, FMGeometry, InputDistributor, WindowGenerator
from hw.controller import LayerController, StageTimer
from hw.pe import PE, AdderTree, PEBlock
from hw.post import _check_ms, clamp_unsigned, round_shift, sext

__all__ = ["ConvLayerEngine", "EngineInfo", "engine_info"]

OUT_FIFO_DEPTH = 4


class EngineInfo:
    """What a layer engine looks like from outside: ports, word layouts, schedule."""

    def __init__(self, lp, chip: ChipConfig):
        layer = lp.layer
        xb = chip.crossbar
        self.lp, self.chip = lp, chip
        if not lp.has_weights:
            raise ValueError(f"layer {lp.name!r} ({layer.kind}) has no weights: the layer engine builds conv and "
                             f"linear layers only (use the post-processing units)")
        self.kind = layer.kind
        self.k = layer.k
        self.stride = layer.stride
        self.pad = layer.pad
        self.cin, self.cout = layer.cin, layer.cout
        c, h, w = lp.in_shape
        if self.kind == "fc":
            if (h, w) != (1, 1):
                raise ValueError(f"layer {lp.name!r}: a linear layer engine needs a 1x1 input "
                                 f"(got {c}x{h}x{w}); flatten the input to {c * h * w}x1x1")
        self.h, self.w = h, w
        _, self.ho, self.wo = lp.out_shape
        self.mapping = lp.mapping
        self.raw = bool(lp.raw_output)
        self.a_bits = xb.a_bits
        self.a_out = perf.RAW_OUTPUT_BITS if self.raw else xb.a_bits
        self.g = chip.global_bus_bits
        self.geom = FMGeometry(self.cin, h, w, xb.a_bits, self.g)
        self.timing = lt = perf.layer_timing(lp, chip)
        self.regions = list(lp.regions)
        # tiles and their replicas
        rep_tiles: dict[int, set] = {}
        for p in lp.placements:
            rep_tiles.setdefault(p.replica, set()).add(p.tile)
        for r, ts in rep_tiles.items():
            if len(ts) > 1:
                raise ValueError(
                    f"layer {lp.name!r}: replica {r} spans {len(ts)} tiles; the layer engine supports one tile per "
                    f"replica (use larger crossbars, more subarrays per PE or more PEs per tile)")
        tiles = sorted({p.tile for p in lp.placements})
        self.tiles = [sorted(r for r, ts in rep_tiles.items() if t in ts) for t in tiles]
        self.tile_ids = tiles
        if self.mapping == "novel" and any(len(rs) != 1 for rs in self.tiles):
            raise ValueError(f"layer {lp.name!r}: novel mapping with several replicas in one tile is not supported")
        self.wu = lt.warmup
        if self.mapping == "novel" and len({x1 - x0 for (_, _, x0, x1) in self.regions}) > 1:
            raise ValueError(f"layer {lp.name!r}: novel replicas must have output regions of equal width (they "
                             f"share one step schedule); got widths "
                             f"{sorted({x1 - x0 for (_, _, x0, x1) in self.regions})} — choose a duplication that "
                             f"splits the rows")
        self.steps_per_rep = []
        for (y0, y1, x0, x1) in self.regions:
            cols = (x1 - x0) + (self.wu if self.mapping == "novel" else 0)
            self.steps_per_rep.append((y1 - y0) * cols)
        if max(self.steps_per_rep) != lt.steps:
            raise ValueError(f"internal: the cycle model counts {lt.steps} steps, the engine "
                             f"{max(self.steps_per_rep)}")
        self.out_steps = max((y1 - y0) * (x1 - x0) for (y0, y1, x0, x1) in self.regions)
        self.out_words = [-(-(len(rs) * self.cout * self.a_out) // self.g) for rs in self.tiles]
        self.in_words = self.geom.depth

    def step_outputs(self, tile: int, j: int) -> list[tuple[int, int, int] | None]:
        """For output step ``j`` (warm-up steps not counted): per replica of ``tile``, its
        output pixel ``(replica, y, x)`` or None (region exhausted)."""
        out = []
        for r in self.tiles[tile]:
            y0, y1, x0, x1 = self.regions[r]
            if j >= (y1 - y0) * (x1 - x0):
                out.append(None)
                continue
            yy, t = divmod(j, x1 - x0)
            out.append((r, y0 + yy, x0 + t))
        return out

    def expected_reads(self) -> int:
        """Feature-map words one image reads (exactly what the fetch stages do)."""
        g, k, s, pad = self.geom, self.k, self.stride, self.pad
        total = 0
        for r, (y0, y1, x0, x1) in enumerate(self.regions):
            if self.mapping == "conventional":
                for y in range(y0, y1):
                    for x in range(x0, x1):
                        for i in range(k):
                            for j in range(k):
                                iy, ix = y * s + i - pad, x * s + j - pad
                                total += g.wpp if (0 <= iy < g.h and 0 <= ix < g.w) else 0
            else:
                rows = {yy for yy in range(y0 * s - pad, (y1 - 1) * s - pad + k) if 0 <= yy < g.h}
                cols = {xx for xx in range(x0 * s - pad, (x1 - 1) * s - pad + k) if 0 <= xx < g.w}
                total += len(rows) * len(cols) * g.wpp
        return total

    def manifest(self) -> dict:
        lt = self.timing
        return {
            "layer": {"name": self.lp.name, "kind": self.kind, "cin": self.cin, "cout": self.cout, "k": self.k,
                      "stride": self.stride, "pad": self.pad, "in_shape": list(self.lp.in_shape),
                      "out_shape": list(self.lp.out_shape)},
            "mapping": self.mapping, "reason": self.lp.reason, "raw_output": self.raw,
            "duplication": self.lp.duplication, "regions": [list(r) for r in self.regions],
            "tiles": self.tiles, "subarrays": self.lp.n_subarrays, "pes": self.lp.n_pes,
            "ports": {
                "i": {"dir": "in", "kind": "stream", "bits": self.geom.word_bits,
                      "words_per_image": self.in_words, "words_per_pixel": self.geom.wpp},
                **{f"o{t}": {"dir": "out", "kind": "stream", "bits": self.g, "words_per_step": self.out_words[t],
                             "replicas": self.tiles[t], "value_bits": self.a_out, "signed": self.raw}
                   for t in range(len(self.tiles))},
                "busy": {"dir": "out", "bits": 1}, "done": {"dir": "out", "bits": 1},
                "cycles": {"dir": "out", "bits": 32}, "fm_reads": {"dir": "out", "bits": 32},
            },
            "schedule": {"load": lt.load, "prologue": lt.prologue, "steps": lt.steps, "warmup": lt.warmup,
                         "interval": lt.interval, "stages": dict(lt.step), "layer_clocks": lt.clocks,
                         "expected_clocks": lt.load + lt.clocks},
            "expected_fm_reads": self.expected_reads(),
        }


def engine_info(lp, chip: ChipConfig) -> EngineInfo:
    return EngineInfo(lp, chip)


def _weights(info: EngineInfo, params: dict) -> np.ndarray:
    w = np.asarray(params["w"], dtype=np.int64)
    if info.kind == "fc":
        if w.shape != (info.cout, info.cin):
            raise ValueError(f"weights of shape {w.shape}, expected {(info.cout, info.cin)}")
        w = w.reshape(info.cout, info.cin, 1, 1)
    elif w.shape != (info.cout, info.cin, info.k, info.k):
        raise ValueError(f"weights of shape {w.shape}, expected {(info.cout, info.cin, info.k, info.k)}")
    return w


class _Core(Elaboratable):
    """Everything but the output FIFOs; runs under the engine's global enable."""

    def __init__(self, info: EngineInfo, params: dict):
        self.info = info
        self.params = params
        i = info
        self.in_valid = Signal()
        self.in_payload = Signal(i.geom.word_bits)
        self.in_ready = Signal()
        self.out_we = [Signal(name=f"out_we{t}") for t in range(len(i.tiles))]
        self.out_data = [Signal(i.g, name=f"out_data{t}") for t in range(len(i.tiles))]
        self.busy = Signal()
        self.done = Signal()
        self.cycles = Signal(32)
        self.fm_reads = Signal(32)

    def elaborate(self, platform):
        m = Module()
        info, lt, lp = self.info, self.info.timing, self.info.lp
        xb = info.chip.crossbar
        k, s, pad = info.k, info.stride, info.pad
        g = info.geom
        d = lt.step
        novel = info.mapping == "novel"
        n_t = len(info.tiles)

        # --- feature-map buffer and controller ------------------------------------------
        m.submodules.fmbuf = fm = FeatureMapBuffer(g, n_read=n_t)
        rows, cols = lt.region
        if any(x1 - x0 != cols for (_, _, x0, x1) in info.regions) and novel:
            raise ValueError("internal: novel replicas of unequal widths")
        m.submodules.ctrl = ctrl = LayerController(
            load_words=g.depth, rows=rows, cols=cols, interval=lt.interval, warmup=info.wu,
            interval_warmup=lt.interval_first, has_prologue=lt.prologue > 0)
        if ctrl.n_steps != lt.steps:
            raise ValueError(f"internal: controller runs {ctrl.n_steps} steps, the cycle model {lt.steps}")
        beat = self.in_valid & ctrl.loading
        m.d.comb += [self.in_ready.eq(ctrl.loading), ctrl.load_beat.eq(beat), fm.w.valid.eq(beat),
                     fm.w.payload.eq(self.in_payload), self.busy.eq(ctrl.busy), self.done.eq(ctrl.done),
                     self.cycles.eq(ctrl.cycles), self.fm_reads.eq(fm.reads)]
        if lt.prologue:
            pro = StageTimer(m, ctrl.pro_go, lt.prologue, "prologue")
            m.d.comb += ctrl.pro_done.eq(pro.done)

        # --- per-replica step positions (advance with every step) ------------------------
        n_rep = len(info.regions)
        pos = []
        for r, (y0, y1, x0, x1) in enumerate(info.regions):
            cols = (x1 - x0) + (info.wu if novel else 0)
            py = Signal(range(max(2, info.ho + 1)), name=f"py{r}", init=y0)
            pc = Signal(range(max(2, cols + 1)), name=f"pc{r}")
            with m.If(ctrl.loading):
                m.d.sync += [py.eq(y0), pc.eq(0)]
            with m.Elif(ctrl.step_go):
                with m.If(pc == cols - 1):
                    m.d.sync += [pc.eq(0), py.eq(py + 1)]
                with m.Else():
                    m.d.sync += pc.eq(pc + 1)
            act = ctrl.step < info.steps_per_rep[r]
            pos.append((py, pc, act, x0))

        # --- fetch stage(s), one per tile ----------------------------------------------
        fetch_done = None
        fetch_done_next = None   # high the clock before fetch_done
        pe_inputs = {}     # (replica, kpos or None) -> Value (the PE input vector)
        for t, reps in enumerate(info.tiles):
            if novel:
                r = reps[0]
                y0, y1, x0, x1 = info.regions[r]
                dist = InputDistributor(g, k, s, pad, x0, y0, info.ho, info.wo, d["tbus_in"], d["pe_pass"])
                if dist.duration != d["gbus_in"] or dist.wu != info.wu:
                    raise ValueError("internal: the input distributor disagrees with the cycle model "
                                     f"(gbus_in {dist.duration} vs {d['gbus_in']})")
                m.submodules[f"dist{t}"] = dist
                py, pc, act, _ = pos[r]
                m.d.comb += [dist.go.eq(ctrl.step_go), dist.pro_go.eq(ctrl.pro_go), dist.y.eq(py), dist.t.eq(pc),
                             dist.act.eq(act)]
                rd = dist
                done = dist.done & dist.real
                done_next = dist.real_next
                for i in range(k):
                    for j in range(k):
                        q = i * k + j
                        pe_inputs[(r, (i, j))] = dist.grid[q * g.pix_bits:(q + 1) * g.pix_bits]
            else:
                wg = WindowGenerator(g, k, s, pad, len(reps), info.ho, info.wo)
                if wg.duration != d["gbus_in"]:
                    raise ValueError(f"internal: the window generator takes {wg.duration} clocks, the cycle model "
                                     f"{d['gbus_in']}")
                m.submodules[f"wgen{t}"] = wg
                m.d.comb += wg.go.eq(ctrl.step_go)
                for n, r in enumerate(reps):
                    py, pc, act, x0 = pos[r]
                    m.d.comb += [getattr(wg, f"y{n}").eq(py), getattr(wg, f"x{n}").eq(pc + x0),
                                 getattr(wg, f"act{n}").eq(act)]
                # tile bus: the window moves into the tile's PE-side register
                tb = StageTimer(m, wg.done, d["tbus_in"], f"tbus{t}")
                win = Signal(len(wg.window), name=f"win{t}")
                with m.If(tb.last):
                    m.d.sync += win.eq(wg.window)
                rd, done, done_next = wg, tb.done, tb.last
                wbits = k * k * g.pix_bits
                for n, r in enumerate(reps):
                    pe_inputs[(r, None)] = win[n * wbits:(n + 1) * wbits]
            m.d.comb += [getattr(fm, f"rd{t}_addr").eq(rd.rd_addr), getattr(fm, f"rd{t}_en").eq(rd.rd_en),
                         rd.rd_data.eq(getattr(fm, f"rd{t}_data"))]
            if fetch_done is None:
                fetch_done, fetch_done_next = done, done_next

        # --- PEs -----------------------------------------------------------------------
        w = _weights(info, self.params)
        wmat = w.transpose(2, 3, 1, 0).reshape(-1, info.cout)   # (kh, kw, cin) x cout
        groups: dict[tuple[int, int], list] = {}
        for p in lp.placements:
            groups.setdefault((p.tile, p.pe), []).append(p)
        pbus = StageTimer(m, fetch_done, d["pbus_in"], "pbus")
        pbus_last_next = fetch_done_next if d["pbus_in"] == 1 else pbus.run & (pbus.idx == d["pbus_in"] - 2)
        mvm = StageTimer(m, pbus.done, d["mvm"], "mvm")
        if d["mvm"] < 2:
            raise ValueError("internal: an MVM takes at least 2 clocks")
        mvm_last_next = mvm.run & (mvm.idx == d["mvm"] - 2)
        psums: dict[tuple[int, tuple[int, int]], list] = {}    # (replica, cols) -> [[value per output]]
        for (tile, pe_i), pls in sorted(groups.items()):
            pls = sorted(pls, key=lambda p: p.subarray)
            kpos = pls[0].kpos
            rep = pls[0].replica
            if any(p.kpos != kpos or p.replica != rep for p in pls):
                raise ValueError(f"layer {lp.name!r}: PE {pe_i} of tile {tile} mixes replicas or kernel positions")
            blocks = []
            for p in pls:
                (r0, r1), (c0, c1) = p.rows, p.cols
                if kpos is None:
                    blocks.append(PEBlock(r0, wmat[r0:r1, c0:c1]))
                else:
                    blocks.append(PEBlock(r0, w[c0:c1, r0:r1, kpos[0], kpos[1]].T))
            src = pe_inputs[(rep, kpos)]
            n_in = len(src) // xb.a_bits
            pe = PE(xb, n_in, blocks)
            m.submodules[f"pe_t{tile}_{pe_i}"] = pe
            cap = Signal(len(pe.o.payload), name=f"psum_t{tile}_{pe_i}")
            # the PE bus delivers on the stage's last clock; a register per PE (set the clock
            # before) drives the crossbars' input enable, so no single net fans out to them all
            pv = Signal(name=f"pvalid_t{tile}_{pe_i}")
            m.d.sync += pv.eq(pbus_last_next)
            po = Signal(name=f"pready_t{tile}_{pe_i}")     # likewise the result handshake
            m.d.sync += po.eq(mvm_last_next)
            m.d.comb += [pe.i.payload.eq(src), pe.i.valid.eq(pv), pe.o.ready.eq(po)]
            with m.If(mvm.last):
                m.d.sync += cap.eq(pe.o.payload)
            for b, p in enumerate(pls):
                vals = []
                for o in range(p.cols[1] - p.cols[0]):
                    off = (b * xb.outputs + o) * xb.dot_bits
                    vals.append(cap[off:off + xb.dot_bits].as_signed())
                psums.setdefault((p.replica, p.cols), []).append(vals)

        # --- accumulate: adder tree over the partial sums of each column block -------------
        levels = d["accumulate"]
        acc_bits = xb.dot_bits + levels + 1
        accs: dict[int, list] = {r: [None] * info.cout for r in range(n_rep)}
        for (r, (c0, c1)), parts in sorted(psums.items()):
            for o in range(c1 - c0):
                tree = AdderTree(m, [pv[o] for pv in parts], acc_bits, levels, name=f"acc_r{r}_c{c0 + o}")
                accs[r][c0 + o] = tree.out
        acc_t = StageTimer(m, mvm.done, levels, "accumulate")

        # --- post: bias + requantization + ReLU (or raw acc + bias), three registers --------
        #   1: v = acc + bias    2: p = v * M    3: clamp((p + 2**(s-1)) >> s)  (raw: v)
        post = StageTimer(m, acc_t.done, d["post"], "post")
        if d["post"] != perf.POST_CLOCKS or perf.POST_CLOCKS != 3:
            raise ValueError(f"internal: the post stage is 3 clocks, the cycle model says {d['post']}")
        bias = np.asarray(self.params.get("bias", np.zeros(info.cout)), dtype=np.int64).reshape(-1)
        a_out = info.a_out
        post_out = {r: [Signal(a_out, name=f"y_r{r}_{c}") for c in range(info.cout)] for r in range(n_rep)}
        mul = int(self.params.get("m", 1))
        sh = int(self.params.get("s", 0))
        if not info.raw:
            _check_ms(mul, sh)
        for r in range(n_rep):
            for c in range(info.cout):
                v = accs[r][c].as_signed() + int(bias[c])
                v1 = Signal(signed(len(v) + 1), name=f"pv_r{r}_{c}")
                m.d.sync += v1.eq(v)
                if info.raw:
                    v2 = Signal.like(v1, name=f"pp_r{r}_{c}")
                    m.d.sync += v2.eq(v1)
                    val = sext(v2, a_out)
                else:
                    prod = v1 * Const(mul, unsigned(17)).as_signed()
                    v2 = Signal(signed(len(prod)), name=f"pp_r{r}_{c}")
                    m.d.sync += v2.eq(prod)
                    val = clamp_unsigned(round_shift(v2, sh), info.a_bits)
                with m.If(post.last):
                    m.d.sync += post_out[r][c].eq(val)

        # --- output: the tile's words, G bits per clock, into its FIFO ----------------------
        last_done = None
        for t, reps in enumerate(info.tiles):
            nw = info.out_words[t]
            if nw != d["gbus_out"] and nw > d["gbus_out"]:
                raise ValueError(f"internal: tile {t} writes {nw} words, the cycle model allows {d['gbus_out']}")
            ot = StageTimer(m, post.done, d["gbus_out"], f"out{t}")
            vec = Cat(*[post_out[r][c] for r in reps for c in range(info.cout)])
            words = [vec[q * info.g:(q + 1) * info.g] for q in range(nw)]
            # which replicas of this tile have an output pixel in this step
            any_valid = Signal(name=f"out_valid{t}")
            any_l = Signal(name=f"out_valid_l{t}")
            terms = []
            jr = Signal(range(info.out_steps + 2), name=f"oj{t}")
            with m.If(ctrl.loading):
                m.d.sync += jr.eq(0)
            with m.Elif(ot.go):
                m.d.sync += jr.eq(jr + 1)
            for r in reps:
                y0, y1, x0, x1 = info.regions[r]
                terms.append(jr < (y1 - y0) * (x1 - x0))
            v = terms[0]
            for x_ in terms[1:]:
                v = v | x_
            m.d.comb += any_valid.eq(Mux(ot.go, v, any_l))
            with m.If(ot.go):
                m.d.sync += any_l.eq(v)
            with m.If(ot.run):
                for q in range(nw):
                    with m.If(ot.idx == q):
                        m.d.comb += [self.out_data[t].eq(words[q]), self.out_we[t].eq(any_valid)]
            if last_done is None:
                last_done = ot.done
        m.d.comb += ctrl.last_done.eq(last_done)
        return m


class ConvLayerEngine(wiring.Component):
    """One conv / linear layer as RTL, from its plan entry ``lp`` on ``chip``.

    Args:
        lp: a :class:`gen.mapping.LayerPlan` of a ``Conv2d`` or ``Linear`` layer.
        chip: the :class:`gen.config.ChipConfig` of the plan.
        params: ``{"w": weights, "bias": [Cout], "m": M, "s": s}`` (``sim.golden`` layout;
            ``m``/``s`` unused for a raw layer).

    Ports:
        i: stream in, the input feature map, ``lt.load`` words of ``min(G, Cin*a_bits)`` bits
           (see :class:`hw.buffers.FMGeometry`).
        o0 .. o{T-1}: stream out, one per tile, ``G``-bit output words (module docstring).
        busy, done: an image is in flight / pulse when its last step has left the engine.
        cycles: clocks of the current/last image (first input word .. done).
        fm_reads: feature-map buffer words read since reset (all read ports).

    Raises ``ValueError`` for plans it does not support (a replica on several tiles, novel
    replicas sharing a tile, a multi-pixel input to a linear layer).
    """

    def __init__(self, lp, chip: ChipConfig, params: dict):
        self._MustUse__silence = True     # refused, not forgotten, if a check below fails
        self.info = info = EngineInfo(lp, chip)
        _weights(info, params)
        if not info.raw:
            for key in ("m", "s"):
                if key not in params:
                    raise ValueError(f"params need {key!r} (requantization) for a non-final layer")
            _check_ms(int(params["m"]), int(params["s"]))
        self._MustUse__silence = False
        self.params = params
        ports = {"i": In(stream.Signature(unsigned(info.geom.word_bits))),
                 "busy": Out(1), "done": Out(1), "cycles": Out(32), "fm_reads": Out(32)}
        for t in range(len(info.tiles)):
            ports[f"o{t}"] = Out(stream.Signature(unsigned(info.g)))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        info = self.info
        core = _Core(info, self.params)
        en = Signal()
        m.submodules.core = EnableInserter(en)(core)
        rdy = []
        for t in range(len(info.tiles)):
            q = fifo.SyncFIFO(width=info.g, depth=OUT_FIFO_DEPTH)
            m.submodules[f"ofifo{t}"] = q
            o = getattr(self, f"o{t}")
            m.d.comb += [q.w_data.eq(core.out_data[t]), q.w_en.eq(core.out_we[t] & en),
                         o.payload.eq(q.r_data), o.valid.eq(q.r_rdy), q.r_en.eq(o.ready)]
            rdy.append(q.w_rdy)
        e = 1
        for r in rdy:
            e = e & r
        m.d.comb += en.eq(e)
        m.d.comb += [core.in_valid.eq(self.i.valid), core.in_payload.eq(self.i.payload),
                     self.i.ready.eq(core.in_ready & en),
                     self.busy.eq(core.busy), self.done.eq(core.done), self.cycles.eq(core.cycles),
                     self.fm_reads.eq(core.fm_reads)]
        return m
