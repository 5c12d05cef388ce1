"""The whole chip as a pipeline of stages, derived from a network and a hardware config.

``plan_chip(net, params, chip, mapping) -> ChipPlan`` lowers the network for the chip, maps
it (``gen.mapping.map_network``), schedules every weight layer (``gen.schedule``) and lists
the chip's **stages**: one layer engine per weight layer, in order, and between two engines
the **link** that carries the producer's output words into the consumer's input banks — a
plain wire, or a max-pool unit (``MaxPool`` layers run on the link, in the stream). The
cycle model of the chip (``gen.perf.chip_timing``) and the RTL (``hw.chip.Chip``) read it.

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

from gen.config import ChipConfig
from gen.mapping import MappingPlan, map_network
from gen.network import INPUT, Conv2d, Linear, MaxPool, Network
from gen.params import NetworkParams, WeightParams
from gen.schedule import FMLayout, LayerSchedule, schedule_layer

__all__ = ["ChipPlan", "Link", "plan_chip", "lower_for_chip", "ChipError"]


class ChipError(ValueError):
    """The network cannot be built as a chip (yet); the message names the layer and why."""


@dataclass(frozen=True)
class Link:
    """What carries stage ``producer``'s output words into stage ``producer + 1``.

    ``pool``: the ``k x k`` max-pool applied on the way (``None``: a plain wire). ``pixel``:
    the producer's output pixel layout (channels, ``h x w``) and ``out``: the consumer's input
    layout. ``delay``: clocks between the producer's last output word and the consumer's
    last input word: 0 through a wire; through a pool, one clock to assemble the pixel, one
    for the pool's register and ``out.wpp`` to send the pooled pixel word by word."""
    producer: int
    pool: int | None
    pixel: FMLayout
    out: FMLayout

    @property
    def delay(self) -> int:
        return 0 if self.pool is None else 2 + self.out.wpp


@dataclass(frozen=True)
class ChipPlan:
    """A network as a chip: the lowered network and params, its plan, one schedule per
    stage (weight layer, in order), the links between stages, and the crossbar ids."""
    network: Network
    params: NetworkParams
    plan: MappingPlan
    stages: tuple[LayerSchedule, ...]
    links: tuple[Link, ...]

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
        """The programming beats: ``(crossbar id, row, weights of that row)`` for every row
        of every placed weight block, in crossbar order (rows beyond a block stay at the
        crossbars' reset weights, 0)."""
        out = []
        outputs = self.chip.crossbar.outputs
        for n, p in enumerate(self.plan.placements):
            blk = self.params[p.layer].block(p)
            for r in range(blk.shape[0]):
                row = [int(v) for v in blk[r]] + [0] * (outputs - blk.shape[1])
                out.append((n, r, row))
        return out

    def to_dict(self) -> dict:
        return {"network": self.network.name, "mapping": self.plan.mapping, "n_xbars": self.n_xbars,
                "stages": [{"name": s.name, "mapping": s.mapping, "kind": s.kind, "in_shape": list(s.in_shape),
                            "out_shape": list(s.out_shape), "schedule": s.to_dict()} for s in self.stages],
                "links": [{"producer": ln.producer, "pool": ln.pool, "delay": ln.delay} for ln in self.links]}


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


def plan_chip(net: Network, params: NetworkParams, chip: ChipConfig, mapping: str = "novel") -> ChipPlan:
    """The chip for ``net`` with ``params`` on ``chip`` (module docstring); raises
    :class:`ChipError` naming the layer for what the chip cannot build yet."""
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
    links = []
    a = chip.crossbar.a_bits
    for n, pool in enumerate(pools):
        s, nxt = stages[n], stages[n + 1]
        c, h, w = s.out_shape
        links.append(Link(n, pool, FMLayout(c, h, w, a, s.bus_bits), nxt.fm))
    return ChipPlan(net, params, plan, tuple(stages), tuple(links))
