"""The whole chip as a pipeline of stages, derived from a network and a hardware config.

``plan_chip(net, params, chip, mapping) -> ChipPlan`` lowers the network for the chip, maps
it (``gen.mapping.map_network``), schedules every weight layer (``gen.schedule``) and lists
the chip's **stages**: one layer engine per weight layer, each followed by its **tail**,
the stream units that work on its output pixels on the way out (:class:`TailOp`: a residual
add, a concat, a ``k x k`` max-pool, a global average pool, in network order), and the **links**
that carry a stage's output words (after its tail) to the stages that read them: into a
consumer engine's input banks (``port="in"``) or into the skip FIFO of a stage whose tail
adds or concatenates this tensor (``port="skip"``). A tensor read by several stages is sent to all of them
at once (a fork). The stages are the cores of a communication graph, placed on the chosen
fabric (``topology``: ``5pp`` by default, ``mesh`` or ``torus``; ``gen.topology.place``) and
every link is a flow over it (``hw.chip.Chip``: point-to-point link FIFOs on 5PP, routers
shared in time slots on mesh and torus, ``gen.topology.slot_table``). Stages are numbered in
a topological order of the links (a join comes after both of its producers). The cycle model of the chip
(``gen.perf.chip_timing``) and the RTL (``hw.chip.Chip``) read it.

Lowering: a ``Linear`` layer whose input is a ``C x H x W`` map with ``H*W > 1`` becomes the
``K = H`` convolution without padding over that map, with the same weights reshaped
(``w[o, c*H*W + y*W + x]`` is ``w'[o, c, y, x]``, the flatten order of ``Linear``): the same
dot products, and the engine reads its input pixel by pixel as it arrives. The chip's
numbers are checked against the golden model's walk of the *lowered* plan
(``sim.golden.run_plan(chip_plan.plan, chip_plan.params, x)``), which equals ``run_network``
on the original network whenever the ADC is lossless.

Skip FIFOs: a skip link's consumer holds :attr:`Link.slots` whole images of it — twice the
engines on the join's main path after the fork, plus one, so the skip side never limits the
interval — and the producer starts an image only while a slot is free (a credit, as for
an engine's two input banks), so back-pressure can never deadlock a branch. A stage with an
add starts an image only once that image's skip tensor is wholly in its FIFO, so the add
never waits on the skip side and the cycle model stays exact.

What the chip does not build yet is refused here, with the layer and the reason: a join of
more than two operands or of two from one stage, a pool whose last output would not leave on
its last input pixel (two windows clipped onto one pixel by the padding:
``gen.intops.streamed_pool_refusal``), a tail unit on a tensor that more than one layer reads, and on routed
fabrics (mesh and torus, whose flows share the routers in time slots:
``gen.topology.slot_table``) a stage of one replica whose pixels come faster than its flows'
slots take their words. A
layer over several tiles is built: partial sums meet in the engine's adder tree, and the
tiles its outputs leave from are joined into pixels on the way out (:meth:`ChipPlan.merged`).

Duplication (``plan_chip(duplication=...)``, as ``gen.mapping.map_network`` takes it): a
layer's replicas compute the rectangles of its ``gen.mapping.replica_grid`` in lockstep, one
output step each per step, so its engine hands on, per step, one pixel of every replica whose
rectangle still has one (rectangles may differ in size when the grid does not divide the
output: the step count is the largest's, and a tile whose replicas are done writes nothing;
a novel replica of a narrower last column band computes the width of the others, its
neighbour's last columns included, ``gen.mapping.LayerPlan.computed_regions``, because the
novel replicas share one step schedule).
A raster reorder (``hw.links.RasterReorder``) behind the engine holds the image (two halves,
so the next image goes on being written) and, once its last step is in, sends its pixels in
raster order, one every :meth:`ChipPlan.reorder_pace` clocks — the pace at which everything
behind it takes pixels, so nothing behind it ever waits and the clocks it adds are a
constant (``gen.timing.reorder_clocks``); it reads each pixel from the replica that owns it
(``gen.mapping.LayerPlan.regions``). A duplication whose reordering would outlast the
stage's own clocks per image is refused.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from gen.commgraph import CommGraph, Core, Flow
from gen.cells import ideal_conductances, pack_row
from gen.config import ChipConfig, CrossbarConfig
from gen.intops import streamed_pool_refusal
from gen.mapping import MappingPlan, map_network
from gen.network import INPUT, Conv2d, Linear, Network
from gen.params import NetworkParams, WeightParams
from gen.schedule import FMLayout, LayerSchedule, schedule_layer
from gen.timing import REORDER_LATENCY, reorder_clocks
from gen.topology import (INJECT_CLOCKS, Placement, build, fabric_kind, fabric_latency, place, slot_departure,
                          slot_table)

__all__ = ["ChipPlan", "Link", "TailOp", "plan_chip", "lower_for_chip", "ChipError", "TOPOLOGIES",
           "programming_beats", "ENGINE_BANKS"]

#: Fabrics a chip is built on (``plan_chip(topology=...)``, ``pimgen build --topology``).
TOPOLOGIES = ("5pp", "mesh", "torus")

#: Input banks of every chip engine: it fills one with the next image while it computes on the other.
ENGINE_BANKS = 2


class ChipError(ValueError):
    """The network cannot be built as a chip (yet); the message names the layer and why."""


@dataclass(frozen=True)
class TailOp:
    """A stream unit behind a stage's engine, one pixel register deep: ``kind`` ``"add"``
    (a residual join with the output of stage ``skip``; ``skip_first``: the skip is the
    layer's first operand), ``"concat"`` (channels joined with the output of stage ``skip``,
    in the layer's operand order), ``"maxpool"`` (``k x k``, ``stride``, ``pad``),
    ``"avgpool"`` (``k x k``, stride ``k``) or ``"gap"`` (global average pool). ``layer``: the
    network layer it computes (its params)."""
    kind: str
    layer: str
    k: int = 0
    skip: int | None = None
    skip_first: bool = False
    stride: int = 0
    pad: int = 0


def pixel_path_delay(n_ops: int, out: FMLayout) -> int:
    """Clocks a word path through words -> pixel -> ``n_ops`` tail units -> words adds after
    the last word in: one to assemble the pixel, one per unit, ``out.wpp`` to send it."""
    return 1 + n_ops + out.wpp


@dataclass(frozen=True)
class Link:
    """What carries stage ``producer``'s output words (after its tail, ``ops``) to stage
    ``consumer``: into its input banks (``port="in"``), its skip FIFO (``port="skip"``) or
    both (``port="in+skip"``: a tensor that a stage computes on and joins in its own tail).

    ``pixel``: the producer engine's output layout; ``out``: the words the link carries
    (the tensor after the tail). ``fabric_clocks``: the interconnect's latency for this
    flow (``gen.topology.fabric_latency``: one per FIFO the word passes). ``slots``: whole
    images the consumer side holds (``ENGINE_BANKS``, or the skip FIFO's images). ``merged``:
    the producer's outputs leave from several tiles, whose words are joined into pixels.
    ``delay``: clocks between the producer's last output word and the consumer's last input
    word: through a tail or a join, one clock to assemble the pixel, one per tail unit and
    ``out.wpp`` to send the last pixel word by word, with the producer's raster reorder
    (``reorder``) in front of the tail (``path_delay``); then, on a routed fabric, the
    flow's injection queue (``INJECT_CLOCKS``) and the fabric's latency — when the flow's
    slot is free (``period``, ``slot``: ``gen.topology.SlotTable``; ``period`` 0 on
    point-to-point links). :meth:`arrival` adds the wait for the slot."""
    producer: int
    consumer: int
    port: str
    ops: tuple[TailOp, ...]
    pixel: FMLayout
    out: FMLayout
    fabric_clocks: int = 0
    slots: int = ENGINE_BANKS
    merged: bool = False
    reorder: int = 0        # clocks the producer's raster reorder adds (gen.timing.reorder_clocks), 0 without
    period: int = 0
    slot: int = 0

    @property
    def path_delay(self) -> int:
        """Clocks from the producer's last output word to the link's last word (module docstring)."""
        path = self.ops or self.merged or self.reorder
        return (pixel_path_delay(len(self.ops), self.out) if path else 0) + self.reorder

    @property
    def burst(self) -> int:
        """Words the link takes back to back per pixel, one a clock (``out.wpp``): what a
        routed flow's injection queue holds (``hw.chip.Chip``), so a pixel never waits for room."""
        return self.out.wpp

    @property
    def delay(self) -> int:
        return self.path_delay + (INJECT_CLOCKS if self.period else 0) + self.fabric_clocks

    def arrival(self, done: int) -> int:
        """The clock the consumer holds the image's whole tensor (``gen.perf.chip_timing``'s
        ``A_l(n)`` or ``K_l(n)``) when the producer delivered its last output word on clock
        ``done``. On a routed fabric the image's last pixel, its :attr:`burst` of words one a
        clock, meets an empty injection queue (``plan_chip`` refuses pixels too close for the
        flow's slots) and leaves in the flow's slots (``gen.topology.slot_departure``)."""
        if not self.period:
            return done + self.delay + 1
        last = done + self.path_delay
        leave = slot_departure(last - self.burst + 1 + INJECT_CLOCKS, self.burst, self.period, self.slot)
        return leave + self.fabric_clocks + 1

    @property
    def pool(self) -> int | None:
        """The pool window on the way (max or average), or None."""
        return next((op.k for op in self.ops if op.kind in ("maxpool", "avgpool")), None)


@dataclass(frozen=True)
class ChipPlan:
    """A network as a chip: the lowered network and params, its plan, one schedule per
    stage (weight layer, in topological order), each stage's tail, the links between
    stages (``links[f]`` is flow ``f`` of the placement's graph), and the crossbar ids."""
    network: Network
    params: NetworkParams
    plan: MappingPlan
    stages: tuple[LayerSchedule, ...]
    links: tuple[Link, ...]
    placement: Placement | None = None    # stages on the fabric; None for a one-stage chip
    topology: str = "5pp"
    tails: tuple[tuple[TailOp, ...], ...] = ()
    paces: tuple[int, ...] = ()      # per stage: its raster reorder's pace, 0 for a stage of one replica

    @property
    def fabric_bits(self) -> int:
        """Data bits of one fabric beat: the widest link word."""
        return max((ln.out.word_bits for ln in self.links), default=1)

    @property
    def chip(self) -> ChipConfig:
        return self.plan.chip

    @property
    def n_xbars(self) -> int:
        return len(self.plan.placements)

    def xbar_base(self, stage: int) -> int:
        """The id of the first crossbar of ``stage`` (ids follow ``plan.placements``)."""
        name = self.stages[stage].name
        return next(n for n, p in enumerate(self.plan.placements) if p.layer == name)

    def tail(self, stage: int) -> tuple[TailOp, ...]:
        return self.tails[stage] if self.tails else ()

    def out_tiles(self, stage: int) -> list[int]:
        """The tiles of ``stage`` whose words carry outputs (a stage with several has its
        tiles' words joined into pixels: :meth:`merged`)."""
        return [t.index for t in self.stages[stage].tiles if t.out_words]

    def merged(self, stage: int) -> bool:
        return len(self.out_tiles(stage)) > 1

    def reordered(self, stage: int) -> bool:
        """``stage`` has several replicas: its pixels pass a raster reorder (module docstring)."""
        return len(self.stages[stage].replicas) > 1

    def reorder_pace(self, stage: int) -> int:
        """Clocks between the pixels ``stage``'s raster reorder sends (0 without one): the most
        words per pixel of any stream its pixels meet behind it — the words it sends on, the
        skip words its tail joins, the logits — each of which takes a pixel per ``wpp`` clocks."""
        return self.paces[stage] if self.paces else 0

    def reorder_clocks(self, stage: int) -> int:
        """Clocks ``stage``'s raster reorder adds to its pixel path (``gen.timing.reorder_clocks``)."""
        if not self.reordered(stage):
            return 0
        _, h, w = self.stages[stage].out_shape
        return reorder_clocks(h * w, self.reorder_pace(stage))

    def raster_order(self, stage: int) -> tuple[tuple[int, int], ...]:
        """Per output pixel of ``stage`` in raster order, ``(replica, step)``: the replica that
        owns it (``ReplicaSchedule.owned``) and the output step (its index, row-major, in the
        rectangle that replica computes, ``ReplicaSchedule.region``) that computes it — what
        ``hw.links.RasterReorder`` reads the pixel back with."""
        _, h, w = self.stages[stage].out_shape
        at = {}
        for rep in self.stages[stage].replicas:
            y0, _, x0, x1 = rep.region
            oy0, oy1, ox0, ox1 = rep.owned
            for y in range(oy0, oy1):
                for x in range(ox0, ox1):
                    at[(y, x)] = (rep.index, (y - y0) * (x1 - x0) + (x - x0))
        return tuple(at[(y, x)] for y in range(h) for x in range(w))

    def tap(self, stage: int) -> tuple[int, int]:
        """``(bits, words per image)`` of the words a trace tap sees leave ``stage``'s engine:
        its ``G``-bit output words, or for a merged or duplicated stage its joined pixels
        (``Cout`` values) in raster order."""
        sc = self.stages[stage]
        if self.merged(stage) or self.reordered(stage):
            return sc.cout * sc.a_out, sc.out_shape[1] * sc.out_shape[2]
        return sc.bus_bits, sc.out_words

    @property
    def logit_layout(self) -> FMLayout:
        """The logits as the ``o`` port sends them: per output pixel ``Cout`` raw values of
        ``a_out`` bits in ``G``-bit words."""
        sc = self.stages[-1]
        return FMLayout(sc.cout, sc.out_shape[1], sc.out_shape[2], sc.a_out, sc.bus_bits)

    @property
    def out_delay(self) -> int:
        """Clocks from the last engine's last output word to the last logit word: the join of
        a merged or duplicated last stage (assemble, reorder, then the pixel's words), else 0."""
        last = len(self.stages) - 1
        if not (self.merged(last) or self.reordered(last)):
            return 0
        return pixel_path_delay(0, self.logit_layout) + self.reorder_clocks(last)

    def in_link(self, stage: int) -> Link | None:
        """The link that fills ``stage``'s input banks (None for stage 0: the image input)."""
        return next((ln for ln in self.links if ln.consumer == stage and ln.port in ("in", "in+skip")), None)

    def skip_link(self, stage: int) -> Link | None:
        """The link into ``stage``'s skip FIFO, or None."""
        return next((ln for ln in self.links if ln.consumer == stage and ln.port in ("skip", "in+skip")), None)

    def out_links(self, stage: int) -> list[Link]:
        return [ln for ln in self.links if ln.producer == stage]

    @property
    def input_layout(self) -> FMLayout:
        return self.stages[0].fm

    @property
    def logits(self) -> int:
        """Raw int32 values the chip returns per image."""
        return self.stages[-1].cout

    def programming(self, conductances: dict | None = None) -> list[tuple[int, int, int]]:
        """The programming beats of the whole chip (:func:`programming_beats`); ``conductances``:
        ``None`` (ideal cells) or ``{Placement: g}`` from ``gen.devices.plan_conductances``."""
        return programming_beats(self.plan.placements, lambda p: self.params[p.layer], self.chip.crossbar,
                                 conductances)

    def to_dict(self) -> dict:
        return {"network": self.network.name, "mapping": self.plan.mapping, "n_xbars": self.n_xbars,
                "stages": [{"name": s.name, "mapping": s.mapping, "kind": s.kind, "in_shape": list(s.in_shape),
                            "out_shape": list(s.out_shape),
                            "tail": [{"kind": op.kind, "layer": op.layer, **({"k": op.k} if op.k else {}),
                                      **({"stride": op.stride, "pad": op.pad} if op.kind == "maxpool" else {}),
                                      **({"skip": op.skip} if op.skip is not None else {})}
                                     for op in self.tail(n)],
                            "schedule": s.to_dict()} for n, s in enumerate(self.stages)],
                "links": [{"producer": ln.producer, "consumer": ln.consumer, "port": ln.port, "pool": ln.pool,
                           "delay": ln.delay, "fabric_clocks": ln.fabric_clocks, "slots": ln.slots,
                           "period": ln.period, "slot": ln.slot}
                          for ln in self.links],
                "topology": None if self.placement is None else {
                    "kind": self.placement.topo.label, "node_of": list(self.placement.node_of),
                    "method": self.placement.method,
                    "hops": [self.placement.hops(f) for f in self.placement.cg.flows]}}


def programming_beats(placements, params_of, cfg: CrossbarConfig,
                      conductances: dict | None = None) -> list[tuple[int, int, int]]:
    """``(crossbar id, row, cells)`` for every row of every placed weight block, crossbar ``n``
    being ``placements[n]`` and ``cells`` the row's conductances packed as the write port takes
    them (``gen.cells.pack_row``): the ideal cells of the block, or the placement's map in
    ``conductances`` (a device model's, ``gen.devices.plan_conductances``). Rows beyond a
    block keep the crossbars' reset contents (``w = 0``); they get no input. ``params_of(p)``:
    placement ``p``'s layer's ``WeightParams``."""
    out = []
    for n, p in enumerate(placements):
        blk = params_of(p).block(p)
        g = ideal_conductances(blk, cfg) if conductances is None else conductances[p]
        out += [(n, r, pack_row(g[r], cfg)) for r in range(blk.shape[0])]
    return out


def lower_for_chip(net: Network, params: NetworkParams) -> tuple[Network, NetworkParams]:
    """``net`` with every ``Linear`` on a spatial map as the equivalent convolution (module
    docstring), and its params reshaped to match."""
    layers, new = [], {}
    for layer in net.layers:
        p = params[layer.name]
        c, h, w = net.in_shape(layer)
        if isinstance(layer, Linear) and h * w > 1:
            if h != w:
                raise ChipError(f"layer {layer.name!r}: a linear layer on a {c}x{h}x{w} map needs a square map on "
                                f"the chip (it becomes a {h}x{w} convolution)")
            layer = Conv2d(name=layer.name, inputs=layer.inputs, cin=c, cout=layer.out_features, k=h,
                           relu=layer.relu)
            p = WeightParams(np.asarray(p.w).reshape(layer.cout, c, h, w), p.bias, p.requant)
        layers.append(layer)
        new[layer.name] = p
    return Network(net.name, net.input_shape, layers, net.description), NetworkParams(new)


def _stage_graph(net: Network, plan: MappingPlan, chip: ChipConfig):
    """Stages (schedules, tails, the stage whose output fills their banks) in network order,
    and ``end[s]``: the tensor stage ``s`` sends out (its tail's last layer)."""
    readers = {name: [c.name for c in net.consumers(name)] for name in [INPUT] + [ly.name for ly in net.layers]}
    scheds, tails, src, end = [], [], [], []
    owner: dict[str, int] = {}         # tensor -> the stage that sends it (its tail end)
    for lp in plan.layers:
        layer = lp.layer
        kind = layer.kind
        if layer.has_weights:
            t = layer.inputs[0]
            if t == INPUT:
                if scheds:
                    raise ChipError(f"layer {layer.name!r}: only the first weight layer may read the network input "
                                    f"on the chip (the image enters one engine)")
            elif t not in owner:
                raise ChipError(f"layer {layer.name!r}: its input {t!r} is not a stage's output")
            sc = schedule_layer(lp, chip)
            refusal = sc.engine_refusal()
            if refusal:
                raise ChipError(refusal)
            if not scheds and readers[INPUT] != [layer.name]:
                raise ChipError(f"the network input is read by {', '.join(readers[INPUT])}; on the chip only the "
                                f"first weight layer reads it")
            owner[layer.name] = len(scheds)
            scheds.append(sc)
            tails.append([])
            src.append(None if t == INPUT else owner[t])
            end.append(layer.name)
            continue
        if kind not in ("maxpool", "avgpool", "gap", "add", "concat"):
            raise ChipError(f"layer {layer.name!r} ({type(layer).__name__}): not built on the chip yet (conv, "
                            f"linear, max-pool, average pool, global average pool, residual add and concat are)")
        ins = list(layer.inputs)
        if any(t == INPUT for t in ins):
            raise ChipError(f"layer {layer.name!r} ({type(layer).__name__}): on the chip a tail unit follows a "
                            f"weight layer, not the network input")

        def extendable(t):
            return t in owner and end[owner[t]] == t and readers[t] == [layer.name]

        if kind in ("add", "concat"):
            what = type(layer).__name__
            if len(ins) != 2:
                raise ChipError(f"layer {layer.name!r} ({what}): the chip joins two operands, got {len(ins)}")
            if not extendable(ins[0]) and extendable(ins[1]):
                main, other, skip_first = ins[1], ins[0], True
            else:
                main, other, skip_first = ins[0], ins[1], False
            if not extendable(main):
                raise ChipError(f"layer {layer.name!r} ({what}): one operand must be read by this layer alone (it "
                                f"joins the stream of the stage that computes it); {ins[0]!r} and {ins[1]!r} are "
                                f"read by more layers")
            if other not in owner or end[owner[other]] != other:
                raise ChipError(f"layer {layer.name!r} ({what}): its operand {other!r} is not a stage's output")
            if owner[other] == owner[main]:
                raise ChipError(f"layer {layer.name!r} ({what}): both operands come from one stage")
            op = TailOp(kind, layer.name, skip=owner[other], skip_first=skip_first)
        else:
            main = ins[0]
            if not extendable(main):
                raise ChipError(f"layer {layer.name!r} ({type(layer).__name__}): on the chip it runs in the tail of "
                                f"the weight layer before it, so its input {main!r} must be read by it alone")
            if kind == "maxpool":
                c, h, w = net.in_shape(layer)
                why = (streamed_pool_refusal(h, layer.k, layer.step, layer.pad)
                       or streamed_pool_refusal(w, layer.k, layer.step, layer.pad))
                if why:
                    raise ChipError(f"layer {layer.name!r} (MaxPool {layer.k}x{layer.k}, stride {layer.step}, pad "
                                    f"{layer.pad}) on its {h}x{w} input: the chip's pool emits each output on its "
                                    f"last pixel, and here {why}")
                op = TailOp("maxpool", layer.name, k=layer.k, stride=layer.step, pad=layer.pad)
            elif kind == "avgpool":      # k x k, stride k, tiling its input (gen.network checks it)
                op = TailOp("avgpool", layer.name, k=layer.k)
            else:
                op = TailOp("gap", layer.name)
        s = owner[main]
        tails[s].append(op)
        end[s] = layer.name
        owner[layer.name] = s
    if not scheds:
        raise ChipError("the network has no weight layer")
    return scheds, tails, src, end, readers, owner


def _topological(n: int, deps: list[set[int]]) -> list[int]:
    """Stages in an order where each comes after all of ``deps`` (ties: network order)."""
    done: list[int] = []
    left = list(range(n))
    while left:
        s = next(s for s in left if deps[s] <= set(done))
        done.append(s)
        left.remove(s)
    return done


def plan_chip(net: Network, params: NetworkParams, chip: ChipConfig, mapping: str = "novel",
              topology: str = "5pp", duplication=1) -> ChipPlan:
    """The chip for ``net`` with ``params`` on ``chip``, its stages placed on ``topology``, its
    layers duplicated as ``gen.mapping.map_network`` takes ``duplication`` (an int, a
    ``{layer: replicas}`` dict, ``"auto"`` or ``"balance"``; module docstring); raises
    :class:`ChipError` naming the layer for what the chip cannot build yet."""
    if topology not in TOPOLOGIES:
        raise ChipError(f"topology {topology!r} is not allowed: choose one of {', '.join(TOPOLOGIES)}")
    net, params = lower_for_chip(net, params)
    try:
        plan = map_network(net, chip, mapping=mapping, pipeline=True, duplication=duplication)
    except ValueError as e:
        raise ChipError(str(e)) from None
    scheds, tails, src, end, readers, owner = _stage_graph(net, plan, chip)
    n = len(scheds)
    last = owner.get(net.output)
    for s in range(n):
        if s != last and not readers[end[s]]:
            raise ChipError(f"layer {end[s]!r}: its output is read by no layer and is not the network's output")
    if last is None or end[last] != net.output:
        raise ChipError(f"the network's output {net.output!r} is not a weight layer's output; the chip's last "
                        f"stage must be a weight layer")
    if tails[last]:
        raise ChipError(f"the network ends in {end[last]!r} ({tails[last][-1].kind}); the chip's last stage must be "
                        f"a weight layer")
    # each stage after the stages that fill its banks and its skip FIFO
    deps = [({src[s]} if src[s] is not None else set()) | {op.skip for op in tails[s] if op.skip is not None}
            for s in range(n)]
    order = _topological(n, deps)
    if order[-1] != last:
        raise ChipError(f"the network's output {net.output!r} must be its last stage's output")
    new = {old: k for k, old in enumerate(order)}
    a, G = chip.crossbar.a_bits, chip.global_bus_bits

    def layout(t: str) -> FMLayout:
        return FMLayout(*net.out_shape(t), a, G)

    stages = tuple(scheds[s] for s in order)
    tail_t = tuple(tuple(dataclasses.replace(op, skip=None if op.skip is None else new[op.skip])
                         for op in tails[s]) for s in order)
    raw_links = []     # (producer, consumer, port) in new numbering
    for s in order:
        for r in readers[end[s]]:
            if net[r].has_weights:
                raw_links.append((new[s], new[owner[r]], "in"))
            else:       # an add or concat that joins this tensor as its skip
                raw_links.append((new[s], new[owner[r]], "skip"))
    # a tensor that fills a stage's banks and its skip FIFO crosses the fabric once
    both = {(p_, c) for p_, c, port in raw_links if port == "in"} & {(p_, c) for p_, c, port in raw_links
                                                                      if port == "skip"}
    raw_links = [(p_, c, "in+skip" if (p_, c) in both else port) for p_, c, port in raw_links
                 if not ((p_, c) in both and port == "skip")]
    in_src = {c: p_ for p_, c, port in raw_links if port != "skip"}

    def slots(p_: int, c: int, port: str) -> int:
        if port != "skip":      # banks (an in+skip link's skip FIFO frees with the bank)
            return ENGINE_BANKS
        up, stack = set(), [p_]     # the skip producer and everything upstream of it
        while stack:
            x = stack.pop()
            if x in up:
                continue
            up.add(x)
            stack += [q for q, cc, _ in raw_links if cc == x]
        k, x = 1, in_src[c]          # engines on the join's main path after the fork
        while x not in up:
            k, x = k + 1, in_src[x]
        return 2 * k + 1

    placement = None
    if raw_links:
        cores = [Core(k, s.name) for k, s in enumerate(stages)]
        flows = [Flow(p_, c, layout(end[order[p_]]).depth * layout(end[order[p_]]).word_bits,
                      kind="skip" if port == "skip" else "forward", id=f)
                 for f, (p_, c, port) in enumerate(raw_links)]
        cg = CommGraph(net.name, cores, flows,
                       payload_bits=max(layout(end[order[p_]]).word_bits for p_, _, _ in raw_links))
        placement = place(cg, build(topology, n))
    routed = placement is not None and fabric_kind(placement) == "routed"
    table = slot_table(placement) if routed else None
    period = table.period if table else 1
    # a duplicated stage's reorder sends a pixel every `pace` clocks: the slowest pixel
    # stream behind it (its own words out, the skip words its tail joins, the logits)
    paces = []
    for k, sc in enumerate(stages):
        if len(sc.replicas) == 1:
            paces.append(0)
            continue
        sends = any(p_ == k for p_, _, _ in raw_links)
        wpps = [layout(end[order[k]]).wpp * (period if sends else 1)]      # a routed flow takes a word per slot
        wpps += [layout(end[order[op.skip]]).wpp for op in tail_t[k] if op.skip is not None]
        paces.append(max(wpps))
        _, h, w = sc.out_shape
        if h * w * paces[-1] + REORDER_LATENCY > sc.clocks:
            raise ChipError(f"layer {sc.name!r}: its {len(sc.replicas)} replicas finish an image in {sc.clocks} "
                            f"clocks, less than the {h * w} x {paces[-1]} + {REORDER_LATENCY} clocks its pixels take "
                            f"to leave in raster order; choose a lower duplication")
    links = tuple(Link(p_, c, port, tail_t[p_], FMLayout(*stages[p_].out_shape, a, G), layout(end[order[p_]]),
                       fabric_latency(placement, placement.cg.flows[f]), slots(p_, c, port),
                       sum(1 for t in stages[p_].tiles if t.out_words) > 1,
                       reorder_clocks(stages[p_].out_shape[1] * stages[p_].out_shape[2], paces[p_]) if paces[p_] else 0,
                       period if routed else 0, table.slots[f] if routed else 0)
                  for f, (p_, c, port) in enumerate(raw_links))
    for ln in links:
        # a stage of one replica hands on a pixel per output step: its words must leave in
        # the flow's slots before the next pixel comes, or the engine would wait on the fabric
        sc = stages[ln.producer]
        if ln.period > 1 and not paces[ln.producer] and ln.period * ln.burst > sc.interval:
            raise ChipError(f"layer {sc.name!r}: on {topology} its flows share the routers in {ln.period} time "
                            f"slots, so a pixel of {ln.burst} words takes {ln.period * ln.burst} clocks to "
                            f"leave, more than the {sc.interval} clocks between its pixels: use --topology 5pp")
    return ChipPlan(net, params, plan, stages, links, placement, topology, tail_t, tuple(paces))
