"""Cycle model (DESIGN.md §5): clocks of every layer and of the whole network, from the plan.

Every weight layer's numbers come from its schedule (``gen.schedule.schedule_layer``): the
stage durations, steps, prologue and traffic are derived there, once; this module only
combines them into layer and network figures (and, with ``overlap=False``, evaluates the
same schedule with its stages added, as NeuroSim accounts). The RTL testbenches assert
``measured == predicted`` against these figures.
"""
from __future__ import annotations

from dataclasses import dataclass as _dataclass, field as _field

from gen.schedule import CATEGORIES, INPUT_STAGES, STAGES, LayerSchedule, layer_clocks, schedule_layer
from gen.timing import transfer_clocks

__all__ = ["LayerTiming", "Estimate", "layer_timing", "post_layer_clocks", "estimate", "CATEGORIES", "STAGES"]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@_dataclass
class LayerTiming:
    """Timing of one layer, as reports show it.

    ``step`` holds the clocks of each stage of a step, ``interval`` the step initiation
    interval, ``interval_warmup`` the interval after a novel warm-up step, ``steps`` and
    ``warmup`` the step counts, ``prologue`` the novel line-buffer fill, ``clocks`` the
    layer's latency and ``load`` the words a stand-alone engine streams into its buffer
    first (see :attr:`engine_clocks`); ``busy`` the clocks each category is busy (they
    overlap), ``traffic`` bits per bus. ``schedule`` is the layer's
    :class:`gen.schedule.LayerSchedule` (None for pooling and Add layers).
    """
    name: str
    kind: str
    mapping: str
    clocks: int
    step: dict[str, int] = _field(default_factory=dict)
    interval: int = 0
    interval_warmup: int = 0
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
    schedule: LayerSchedule | None = _field(default=None, repr=False, compare=False)

    @property
    def engine_clocks(self) -> int:
        """A stand-alone layer engine (``hw.layer.ConvLayerEngine``): its input feature map
        first streams into its buffer (``load`` words), then the layer runs (``clocks``)."""
        return self.load + self.clocks

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "mapping": self.mapping, "clocks": self.clocks,
                "steps": self.steps, "warmup": self.warmup, "load": self.load,
                "interval": self.interval, "interval_warmup": self.interval_warmup, "prologue": self.prologue,
                "region": list(self.region), "step": dict(self.step),
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


def _weight_layer_timing(lp, chip, overlap: bool) -> LayerTiming:
    ls = schedule_layer(lp, chip)
    if overlap:
        interval, interval_wu = ls.interval, ls.interval_warmup
    else:   # the stages of a step one after another
        interval = ls.fill
        interval_wu = sum(ls.stages[st] for st in INPUT_STAGES) if ls.warmup else interval
    clocks = layer_clocks(ls, interval, interval_wu)
    return LayerTiming(lp.name, lp.layer.kind, lp.mapping, clocks, dict(ls.stages), interval, interval_wu,
                       ls.prologue, (ls.rows, ls.cols), ls.busy, ls.traffic, ls.bound, lp.n_subarrays, lp.n_pes,
                       lp.n_tiles, lp.duplication, lp.utilization(chip), ls.steps, ls.warmup, ls.load_words, ls)


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
    return LayerTiming(lp.name, lp.layer.kind, "none", clocks, {"gbus_in": per}, per, per, 0,
                       (h, w), {"interconnect": clocks, "buffer": 0, "mvm": 0, "accumulate": 0},
                       {"global": bits, "global_in": bits, "global_out": 0, "tile": 0, "pe": 0}, "gbus_in", duplication=lp.duplication)


def layer_timing(lp, chip, overlap: bool = True) -> LayerTiming:
    """Timing of one :class:`gen.mapping.LayerPlan` (see :func:`estimate`)."""
    return _weight_layer_timing(lp, chip, overlap) if lp.has_weights else _post_layer_timing(lp, chip)


def estimate(plan, overlap: bool = True) -> Estimate:
    """Cycle model of a :class:`gen.mapping.MappingPlan`, at clock granularity.

    Weight layers: :func:`gen.schedule.layer_clocks` of the layer's schedule (stages
    overlapped, as ``hw.layer.ConvLayerEngine`` runs them; its testbench asserts
    ``measured == load + clocks``), or with ``overlap=False`` the same schedule with the
    stages of a step run back to back (``interval = sum of the stages``, NeuroSim-style
    accounting, for comparison). The stage table is in :mod:`gen.schedule`.
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


@_dataclass
class ChipTiming:
    """Per-image timing of a chip (``hw.chip.Chip``) streaming ``len(first_word)`` images
    back to back: ``first_word[n]`` the clock its first input word is accepted,
    ``last_logit[n]`` the clock its last output word is delivered (clocks counted from the
    first image's first word), ``latency[n] = last_logit[n] - first_word[n]``,
    ``interval[n] = first_word[n+1] - first_word[n]``; ``steady_interval`` the interval once
    the pipeline is full, ``bound`` the stage that sets it."""
    first_word: list[int]
    last_logit: list[int]
    starts: list[list[int]]
    steady_interval: int | float
    bound: str

    @property
    def latency(self) -> list[int]:
        return [o - i for i, o in zip(self.first_word, self.last_logit)]

    @property
    def interval(self) -> list[int]:
        return [b - a for a, b in zip(self.first_word, self.first_word[1:])]

    def to_dict(self) -> dict:
        return {"first_word": self.first_word, "last_logit": self.last_logit, "latency": self.latency,
                "interval": self.interval, "steady_interval": self.steady_interval, "bound": self.bound}


def chip_timing(cp, images: int) -> ChipTiming:
    """Cycle model of a :class:`gen.chipplan.ChipPlan`: a max-plus recurrence over stages
    ``l`` (in the plan's topological order) and images ``n``, exactly the chip's handshakes
    (no back-pressure on the logits).

    Stage 0's input bank for image ``n`` is free once the stage released image ``n-2``, and
    it takes one input word per clock: ``I(n) = max(I(n-1) + load_0, Rel_0(n-2))``; the bank
    is full at ``A_0(n) = I(n) + load_0``. Stage ``l`` starts image ``n`` at
    ``S_l(n) = max(A_l(n), Rel_l(n-1), Rel_c(n - slots) + 1 for every link l -> c, K_l(n))``
    — its input is in, it is idle, every consumer has room (a credit: the consumer's release
    is seen a clock later; ``gen.chipplan.Link.slots``) and, for a stage with a residual
    add, the image's whole skip tensor is in its FIFO (``K_l(n)``) — delivers its last
    output word at ``O_l(n) = S_l(n) + clocks_l`` (``LayerSchedule.clocks``) and releases
    its bank at ``Rel_l(n) = O_l(n) + 1``. A link ``p -> l`` fills the consumer's bank, or
    its skip FIFO, at ``A_l(n)`` or ``K_l(n) = O_p(n) + delay + 1``
    (``gen.chipplan.Link.arrival``; on a routed fabric plus the wait for the flow's slot).
    The last logit leaves ``ChipPlan.out_delay`` clocks after ``O_{L-1}(n)``.

    ``steady_interval`` is the mean interval once the recurrence is periodic (run over
    enough images; with joins and credits the intervals can alternate, e.g. 4491, 4489),
    ``bound`` the stage with the most busy clocks per image.
    """
    first, last, starts = _recurrence(cp, images)
    st = cp.stages
    busy = [s.clocks + 1 for s in st]
    load0 = st[0].load_words
    bound = st[busy.index(max(busy))].name if max(busy) >= load0 else "input"
    return ChipTiming(first, last, starts, _steady_interval(cp), bound)


def _steady_interval(cp) -> int | float:
    """The mean interval over the recurrence's final period (see :func:`chip_timing`): run
    long enough to be periodic, then find the shortest period."""
    n = 8 * len(cp.stages) + 32
    first = _recurrence(cp, n)[0]
    iv = [b - a for a, b in zip(first, first[1:])]
    tail = iv[len(iv) // 2:]
    for p in range(1, 9):
        if all(tail[k] == tail[k + p] for k in range(len(tail) - p)):
            mean = sum(tail[-p:]) / p
            return int(mean) if mean == int(mean) else mean
    return sum(tail) / len(tail)        # not periodic within 8 images: the tail's mean


def _recurrence(cp, images: int):
    """``(first word, last logit, starts)`` per image: the max-plus recurrence of :func:`chip_timing`."""
    st = cp.stages
    L = len(st)
    load0 = st[0].load_words
    clocks = [s.clocks for s in st]
    outs = [cp.out_links(l) for l in range(L)]
    feeds = [(cp.in_link(l), cp.skip_link(l)) for l in range(L)]
    out_delay = cp.out_delay
    neg = -(1 << 60)
    rel = [[neg] * L for _ in range(images)]
    done = [[neg] * L for _ in range(images)]
    starts = [[0] * L for _ in range(images)]
    first, last = [], []
    for n in range(images):
        i_n = 0 if n == 0 else max(first[n - 1] + load0, rel[n - 2][0] if n >= 2 else neg)
        first.append(i_n)
        for l in range(L):
            inl, skip = feeds[l]
            s = i_n + load0 if inl is None else inl.arrival(done[n][inl.producer])
            if skip is not None:
                s = max(s, skip.arrival(done[n][skip.producer]))
            if n >= 1:
                s = max(s, rel[n - 1][l])
            for ln in outs[l]:
                if n >= ln.slots:
                    s = max(s, rel[n - ln.slots][ln.consumer] + 1)
            starts[n][l] = s
            done[n][l] = s + clocks[l]
            rel[n][l] = done[n][l] + 1
        last.append(done[n][L - 1] + out_delay)
    return first, last, starts
