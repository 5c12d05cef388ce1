"""The whole chip as a pipeline of stages, derived from a network and a hardware config.

``plan_chip(net, params, chip, mapping) -> ChipPlan`` lowers the network for the chip, maps
it (``gen.mapping.map_network``), schedules every weight layer (``gen.schedule``) and lists
the chip's **stages**: one layer engine per weight layer, in order, and between two engines
the **link** that carries the producer's output words into the consumer's input banks — a
max-pool unit (``MaxPool`` layers run on the link, in the stream) and then the
interconnect. The stages are the cores of a communication graph, placed on the chosen
fabric (``topology``: ``5pp`` by default, ``mesh`` or ``torus``; ``gen.topology.place``)
and every link is a flow over it (``hw.interconnect.build_fabric``: point-to-point link
FIFOs on 5PP, routers on mesh and torus). The cycle model of the chip
(``gen.perf.chip_timing``) and the RTL (``hw.chip.Chip``) read it.

Lowering: a ``Linear`` layer whose input is a ``C x H x W`` map with ``H*W > 1`` becomes the
``K = H`` convolution without padding over that map, with the same weights reshaped
(``w[o, c*H*W + y*W + x]`` is ``w'[o, c, y, x]``, the flatten order of ``Linear``): the same
dot products, and the engine reads its input pixel by pixel as it arrives. The chip's
numbers are checked against the golden model's walk of the *lowered* plan
(``sim.golden.run_plan(chip_plan.plan, chip_plan.params, x)``), which equals ``run_network``
on the original network whenever the ADC is lossless.

What the chip does not build yet is refused here, with the layer and the reason: layers
other than conv / linear / max-pool (global pools, residual adds, concat), a branch (a layer
that is not fed by the one before it), duplication, a layer over several tiles, a max-pool
with padding, overlap or a window that does not tile its input.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gen.commgraph import CommGraph, Core, Flow
from gen.config import ChipConfig
from gen.mapping import MappingPlan, map_network
from gen.network import INPUT, Conv2d, Linear, MaxPool, Network
from gen.params import NetworkParams, WeightParams
from gen.schedule import FMLayout, LayerSchedule, schedule_layer
from gen.topology import Placement, build, fabric_latency, place

__all__ = ["ChipPlan", "Link", "plan_chip", "lower_for_chip", "ChipError", "TOPOLOGIES", "programming_beats"]

#: Fabrics a chip is built on (``plan_chip(topology=...)``, ``pimgen build --topology``).
TOPOLOGIES = ("5pp", "mesh", "torus")


class ChipError(ValueError):
    """The network cannot be built as a chip (yet); the message names the layer and why."""


@dataclass(frozen=True)
class Link:
    """What carries stage ``producer``'s output words into stage ``producer + 1``.

    ``pool``: the ``k x k`` max-pool applied on the way (``None``: none). ``pixel``: the
    producer's output pixel layout (channels, ``h x w``) and ``out``: the consumer's input
    layout. ``fabric_clocks``: the interconnect's latency for this flow
    (``gen.topology.fabric_latency``: one per FIFO the word passes). ``delay``: clocks
    between the producer's last output word and the consumer's last input word: through a
    pool, one clock to assemble the pixel, one for the pool's register and ``out.wpp`` to
    send the pooled pixel word by word; then the fabric's latency."""
    producer: int
    pool: int | None
    pixel: FMLayout
    out: FMLayout
    fabric_clocks: int = 0

    @property
    def delay(self) -> int:
        return (0 if self.pool is None else 2 + self.out.wpp) + self.fabric_clocks


@dataclass(frozen=True)
class ChipPlan:
    """A network as a chip: the lowered network and params, its plan, one schedule per
    stage (weight layer, in order), the links between stages, and the crossbar ids."""
    network: Network
    params: NetworkParams
    plan: MappingPlan
    stages: tuple[LayerSchedule, ...]
    links: tuple[Link, ...]
    placement: Placement | None = None    # stages on the fabric; None for a one-stage chip
    topology: str = "5pp"

    @property
    def fabric_bits(self) -> int:
        """Data bits of one fabric beat: the widest consumer's input word."""
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

    @property
    def input_layout(self) -> FMLayout:
        return self.stages[0].fm

    @property
    def logits(self) -> int:
        """Raw int32 values the chip returns per image."""
        return self.stages[-1].cout

    def programming(self) -> list[tuple[int, int, list[int]]]:
        """The programming beats of the whole chip (:func:`programming_beats`)."""
        return programming_beats(self.plan.placements, lambda p: self.params[p.layer], self.chip.crossbar.outputs)

    def to_dict(self) -> dict:
        return {"network": self.network.name, "mapping": self.plan.mapping, "n_xbars": self.n_xbars,
                "stages": [{"name": s.name, "mapping": s.mapping, "kind": s.kind, "in_shape": list(s.in_shape),
                            "out_shape": list(s.out_shape), "schedule": s.to_dict()} for s in self.stages],
                "links": [{"producer": ln.producer, "pool": ln.pool, "delay": ln.delay,
                           "fabric_clocks": ln.fabric_clocks} for ln in self.links],
                "topology": None if self.placement is None else {
                    "kind": self.placement.topo.label, "node_of": list(self.placement.node_of),
                    "method": self.placement.method,
                    "hops": [self.placement.hops(f) for f in self.placement.cg.flows]}}


def programming_beats(placements, params_of, outputs: int) -> list[tuple[int, int, list[int]]]:
    """``(crossbar id, row, weights of that row)`` for every row of every placed weight block,
    crossbar ``n`` being ``placements[n]`` (rows beyond a block stay at the crossbars' reset
    weights, 0). ``params_of(placement)``: that placement's layer's ``WeightParams``."""
    out = []
    for n, p in enumerate(placements):
        blk = params_of(p).block(p)
        for r in range(blk.shape[0]):
            out.append((n, r, [int(v) for v in blk[r]] + [0] * (outputs - blk.shape[1])))
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


def plan_chip(net: Network, params: NetworkParams, chip: ChipConfig, mapping: str = "novel",
              topology: str = "5pp") -> ChipPlan:
    """The chip for ``net`` with ``params`` on ``chip``, its stages placed on ``topology``
    (module docstring); raises :class:`ChipError` naming the layer for what the chip cannot
    build yet."""
    if topology not in TOPOLOGIES:
        raise ChipError(f"topology {topology!r} is not allowed: choose one of {', '.join(TOPOLOGIES)}")
    net, params = lower_for_chip(net, params)
    plan = map_network(net, chip, mapping=mapping, pipeline=True, duplication=1)
    stages: list[LayerSchedule] = []
    pools: list[int | None] = []
    prev = INPUT
    pending_pool = None
    for lp in plan.layers:
        layer = lp.layer
        src = layer.inputs[0] if layer.inputs else prev
        if len(layer.inputs) > 1 or src != prev:
            raise ChipError(f"layer {layer.name!r} ({type(layer).__name__}): the chip builds a chain of layers, each "
                            f"fed by the one before; branches and joins are not built yet")
        if isinstance(layer, MaxPool):
            c, h, w = lp.in_shape
            if pending_pool is not None or not stages:
                raise ChipError(f"layer {layer.name!r} (MaxPool): a max-pool runs between two weight layers on "
                                f"the chip")
            if layer.pad or layer.step != layer.k or h % layer.k or w % layer.k:
                raise ChipError(f"layer {layer.name!r} (MaxPool): the chip's pool takes k x k windows with stride "
                                f"k that tile the {h}x{w} input, no padding (got k={layer.k}, stride={layer.step}, "
                                f"pad={layer.pad})")
            pending_pool = layer.k
        elif layer.has_weights:
            sc = schedule_layer(lp, chip)
            refusal = sc.engine_refusal()
            if refusal:
                raise ChipError(refusal)
            if len(sc.tiles) > 1 or len(sc.replicas) > 1:
                raise ChipError(f"layer {layer.name!r}: the chip takes one tile and one replica per layer so far "
                                f"(the {lp.mapping} mapping needs {len(sc.tiles)} tiles, {len(sc.replicas)} "
                                f"replicas); use larger crossbars, more subarrays per PE or more PEs per tile")
            if stages:
                pools.append(pending_pool)
            pending_pool = None
            stages.append(sc)
        else:
            raise ChipError(f"layer {layer.name!r} ({type(layer).__name__}): not built on the chip yet (conv, linear "
                            f"and max-pool are)")
        prev = layer.name
    if pending_pool is not None:
        raise ChipError("the network ends in a max-pool; the chip's last stage must be a weight layer")
    if not stages:
        raise ChipError("the network has no weight layer")
    a = chip.crossbar.a_bits
    layouts = [(n, pool, FMLayout(*stages[n].out_shape, a, stages[n].bus_bits), stages[n + 1].fm)
               for n, pool in enumerate(pools)]
    placement = None
    if layouts:
        cores = [Core(n, s.name) for n, s in enumerate(stages)]
        flows = [Flow(n, n + 1, out.depth * out.word_bits, id=n) for n, _, _, out in layouts]
        cg = CommGraph(net.name, cores, flows, payload_bits=max(out.word_bits for *_, out in layouts))
        placement = place(cg, build(topology, len(stages)))
    links = tuple(Link(n, pool, px, out, fabric_latency(placement, placement.cg.flows[n]))
                  for n, pool, px, out in layouts)
    return ChipPlan(net, params, plan, tuple(stages), links, placement, topology)
