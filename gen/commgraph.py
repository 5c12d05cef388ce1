"""CNN communication graph: compute cores and the activation flows between them.

This is the one structure that placement, routing, the bandwidth model and the
interconnect RTL generator consume (see ``gen/topology.py`` and ``hw/interconnect.py``).
It is deliberately small and explicit so it can be built by hand in tests, from a
layer list (:func:`from_layers`), or from a :class:`gen.mapping.MappingPlan`
(:func:`comm_graph`).

pimgen's core model (documented in ``docs/topology.md``):

* A **core** is a computational-memory unit that holds ``crossbars_per_core`` crossbars.
  A layer whose weights need ``N`` crossbars occupies ``ceil(N / crossbars_per_core)``
  cores; a core never holds two layers.
* A layer split over ``n`` cores is split by **row blocks** (the input side of its
  weight matrix). Every core of the layer receives the layer's whole input stream
  (rows are kernel-position-major, so a row block in general touches every input
  channel), computes partial sums for all outputs, and the partial sums are reduced
  along a **chain** ``c0 -> c1 -> ... -> c(n-1)``. The last core is the layer's
  **output core**: it adds bias, requantises, applies ReLU, pooling and the residual
  add, and sends the activations on.
* Flows (directed edges, all per image of a pipelined inference):

  - ``forward``: output core of a producer layer -> every core of a consumer layer,
    carrying the producer's output tensor (``C*H*W*a_bits`` bits);
  - ``skip``: output core of a skip source -> output core of the add layer
    (residual/shortcut edges that bypass layers);
  - ``reduce``: core ``c_j`` -> ``c_(j+1)`` of one layer, carrying partial sums
    (``Cout*Ho*Wo*psum_bits`` bits).

* Traffic in bits per clock is bits per image times the pipelined throughput
  ``images_per_clock`` (one image per pipeline initiation interval).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Iterable, Sequence

FLOW_KINDS = ("forward", "skip", "reduce")


@dataclass(frozen=True)
class Core:
    """One compute core: part ``part`` of ``nparts`` of layer ``layer``."""

    id: int
    layer: str
    part: int = 0
    nparts: int = 1

    @property
    def name(self) -> str:
        return self.layer if self.nparts == 1 else f"{self.layer}[{self.part}]"


@dataclass(frozen=True)
class Flow:
    """A directed activation (or partial-sum) flow between two cores."""

    src: int
    dst: int
    bits_per_image: int
    kind: str = "forward"
    id: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FLOW_KINDS:
            raise ValueError(f"flow kind {self.kind!r} is not one of {FLOW_KINDS}")
        if self.src == self.dst:
            raise ValueError(f"flow {self.id}: source and destination are both core {self.src}")
        if self.bits_per_image < 0:
            raise ValueError(f"flow {self.id}: bits_per_image must be >= 0")


@dataclass
class CommGraph:
    """Cores (ids ``0..n-1`` in pipeline order) and directed flows between them.

    ``images_per_clock`` is the pipelined throughput (1 / initiation interval); it turns
    bits per image into bits per clock. ``payload_bits`` is the width of one stream beat
    on the fabric (the RTL port width).
    """

    name: str
    cores: list[Core]
    flows: list[Flow]
    images_per_clock: Fraction = Fraction(1, 1)
    payload_bits: int = 8
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.images_per_clock = Fraction(self.images_per_clock)
        for i, c in enumerate(self.cores):
            if c.id != i:
                raise ValueError(f"core ids must be 0..n-1 in order; core #{i} has id {c.id}")
        n = len(self.cores)
        seen = set()
        for k, f in enumerate(self.flows):
            if f.id != k:
                raise ValueError(f"flow ids must be 0..m-1 in order; flow #{k} has id {f.id}")
            if not (0 <= f.src < n and 0 <= f.dst < n):
                raise ValueError(f"flow {f.id} ({f.src}->{f.dst}) names a core outside 0..{n - 1}")
            if (f.src, f.dst) in seen:
                raise ValueError(f"two flows from core {f.src} to core {f.dst}; merge them into one")
            seen.add((f.src, f.dst))
        if self.images_per_clock <= 0:
            raise ValueError("images_per_clock must be > 0")

    # --- queries ----------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.cores)

    def bits_per_clock(self, flow: Flow) -> float:
        return float(flow.bits_per_image * self.images_per_clock)

    def edges(self) -> list[tuple[int, int]]:
        return [(f.src, f.dst) for f in self.flows]

    def undirected_edges(self) -> set[frozenset]:
        return {frozenset((f.src, f.dst)) for f in self.flows}

    def neighbours(self) -> list[set[int]]:
        nb: list[set[int]] = [set() for _ in self.cores]
        for f in self.flows:
            nb[f.src].add(f.dst)
            nb[f.dst].add(f.src)
        return nb

    def flow_name(self, f: Flow) -> str:
        return f"{self.cores[f.src].name} -> {self.cores[f.dst].name} ({f.kind})"

    def head(self, n: int) -> "CommGraph":
        """The first ``n`` cores in pipeline order and the flows among them (flow ids renumbered)."""
        if not 1 <= n <= self.n:
            raise ValueError(f"head({n}): the graph has {self.n} cores")
        kept = [f for f in self.flows if f.src < n and f.dst < n]
        flows = [Flow(f.src, f.dst, f.bits_per_image, f.kind, i) for i, f in enumerate(kept)]
        return CommGraph(f"{self.name}[:{n}]", self.cores[:n], flows, self.images_per_clock, self.payload_bits,
                         dict(self.meta))

    def to_networkx(self):
        import networkx as nx
        g = nx.DiGraph(name=self.name)
        for c in self.cores:
            g.add_node(c.id, layer=c.layer, part=c.part, nparts=c.nparts, name=c.name)
        for f in self.flows:
            g.add_edge(f.src, f.dst, bits_per_image=f.bits_per_image, kind=f.kind, id=f.id,
                       bits_per_clock=self.bits_per_clock(f))
        return g

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name, "cores": self.n, "flows": len(self.flows),
            "images_per_clock": float(self.images_per_clock),
            "flows_by_kind": {k: sum(1 for f in self.flows if f.kind == k) for k in FLOW_KINDS},
            "bits_per_image_total": sum(f.bits_per_image for f in self.flows),
        }


# --- builders --------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerSpec:
    """What :func:`from_layers` needs to know about one layer (hand-built graphs).

    ``inputs``: names of the layers whose output this layer consumes through its weights
    (forward edges, each core of this layer receives the producer's ``out_bits``);
    ``skips``: names of layers whose output is added at this layer's output core
    (residual/shortcut edges); ``psum_bits``: bits of each reduction flow between the
    layer's consecutive cores.
    """

    name: str
    ncores: int
    out_bits: int
    psum_bits: int = 0
    inputs: tuple[str, ...] = ()
    skips: tuple[str, ...] = ()


def from_layers(name: str, layers: Sequence[LayerSpec], *, images_per_clock=Fraction(1),
                payload_bits: int = 8, meta: dict | None = None) -> CommGraph:
    """Build the graph of pimgen's core model from layers listed in pipeline order."""
    cores: list[Core] = []
    first: dict[str, list[int]] = {}
    by_name: dict[str, LayerSpec] = {}
    for L in layers:
        if L.name in by_name:
            raise ValueError(f"layer {L.name!r} is listed twice")
        if L.ncores < 1:
            raise ValueError(f"layer {L.name!r}: ncores must be >= 1")
        by_name[L.name] = L
        first[L.name] = list(range(len(cores), len(cores) + L.ncores))
        cores += [Core(len(cores) + j, L.name, j, L.ncores) for j in range(L.ncores)]
    pairs: dict[tuple[int, int], list] = {}

    def add(s: int, d: int, bits: int, kind: str) -> None:
        if (s, d) in pairs:  # same pair twice (e.g. forward and skip): one flow, summed
            pairs[(s, d)][0] += bits
        else:
            pairs[(s, d)] = [bits, kind]

    for L in layers:
        mine = first[L.name]
        for src in L.inputs:
            if src not in by_name:
                raise ValueError(f"layer {L.name!r} takes input from unknown layer {src!r}")
            s = first[src][-1]
            for c in mine:
                add(s, c, by_name[src].out_bits, "forward")
        for j in range(len(mine) - 1):
            add(mine[j], mine[j + 1], L.psum_bits, "reduce")
        for src in L.skips:
            if src not in by_name:
                raise ValueError(f"layer {L.name!r} takes a skip from unknown layer {src!r}")
            add(first[src][-1], mine[-1], by_name[src].out_bits, "skip")
    flows = [Flow(s, d, b, k, i) for i, ((s, d), (b, k)) in enumerate(sorted(pairs.items()))]
    return CommGraph(name, cores, flows, Fraction(images_per_clock), payload_bits, dict(meta or {}))


def chain(n: int, bits: int = 1024, name: str = "chain", **kw) -> CommGraph:
    """``n`` single-core layers in a line."""
    return from_layers(name, [LayerSpec(f"l{i}", 1, bits, inputs=(f"l{i - 1}",) if i else ())
                              for i in range(n)], **kw)


def resnet_like(blocks: int, ncores: Iterable[int] = (1, 1), bits: int = 1024, psum_bits: int = 4096,
                name: str = "resnet_like", **kw) -> CommGraph:
    """A stem layer then ``blocks`` basic residual blocks (two convs, identity skip)."""
    n1, n2 = tuple(ncores)
    layers = [LayerSpec("stem", 1, bits)]
    prev = "stem"
    for b in range(blocks):
        a, c = f"b{b}.conv1", f"b{b}.conv2"
        layers.append(LayerSpec(a, n1, bits, psum_bits, inputs=(prev,)))
        layers.append(LayerSpec(c, n2, bits, psum_bits, inputs=(a,), skips=(prev,)))
        prev = c
    return from_layers(name, layers, **kw)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def lcm_scale(values: Iterable[Fraction]) -> int:
    d = 1
    for v in values:
        d = d * Fraction(v).denominator // math.gcd(d, Fraction(v).denominator)
    return d


# --- from a network / mapping plan ---------------------------------------------------
DEFAULT_PSUM_BITS = 32  # row-block partial sums are added in int32 (DESIGN.md §3)


def conventional_crossbars(layer, cfg) -> int:
    """Crossbars of a weight layer under the conventional (im2col) mapping, DESIGN.md §4:
    ``ceil(K*K*Cin / rows) * ceil(Cout / outputs_per_crossbar)``."""
    return ceil_div(layer.weight_rows, cfg.rows) * ceil_div(layer.weight_cols, cfg.outputs)


def _resolve_hosts(net):
    """Map every layer name to the weight layer whose output core produces it.

    Pooling and global average pooling run on their producer's output core; an ``Add``
    runs on the output core of whichever of its two producers is later in the pipeline,
    and the other producer's tensor arrives there as a ``skip`` flow.
    Returns ``(host, skips)`` with ``skips`` a list of ``(src_tensor, add_host_layer)``.
    """
    order = {l.name: i for i, l in enumerate(net.layers)}
    host: dict[str, str | None] = {"input": None}
    skips: list[tuple[str, str]] = []
    for l in net.layers:
        if l.has_weights:
            host[l.name] = l.name
        elif l.kind == "add":
            a, b = l.inputs
            ha, hb = host[a], host[b]
            if ha is None and hb is None:
                raise ValueError(f"layer {l.name!r} adds two copies of the network input; nothing computes it")
            # the add runs where the later producer sits; the other tensor is a skip
            if hb is None or (ha is not None and order[ha] >= order[hb]):
                host[l.name], other = ha, b
            else:
                host[l.name], other = hb, a
            skips.append((other, host[l.name]))
        else:
            host[l.name] = host[l.inputs[0]]
    return host, skips


def pipeline_interval(net, cfg) -> int:
    """Clocks per image of the pipelined network without layer duplication: every layer
    computes one output pixel per crossbar MVM (all its crossbars in parallel), so the
    slowest layer, ``max(Ho*Wo) * crossbar_latency``, sets the interval."""
    from gen.timing import crossbar_latency
    worst = max(net.out_shape(l)[1] * net.out_shape(l)[2] for l in net.weight_layers)
    return worst * crossbar_latency(cfg)


def comm_graph(source, cfg=None, *, crossbars_per_core: int | None = None, psum_bits: int = DEFAULT_PSUM_BITS,
               images_per_clock=None, crossbars: dict[str, int] | None = None) -> CommGraph:
    """The communication graph of pimgen's core model for a network or mapping plan.

    ``source`` is a :class:`gen.network.Network`, a zoo name, or a ``MappingPlan`` (then
    its network, config and per-layer crossbar counts are used).
    ``crossbars_per_core``: crossbars one core holds; ``None`` = *auto*: half the largest
    layer's crossbars (rounded up), so the largest layer takes two cores and every other
    layer one or two. ``crossbars`` overrides the per-layer crossbar counts.
    ``images_per_clock``: pipelined throughput; default ``1 / interval`` from the plan's
    cycle model when available, else :func:`pipeline_interval`.
    """
    from gen.config import CrossbarConfig
    plan = None
    if isinstance(source, str):
        from gen.network import zoo
        net = zoo(source)
    elif hasattr(source, "layers") and hasattr(source, "shapes"):
        net = source
    else:
        plan = source
        net = plan.network
        cfg = cfg or plan.chip
    if cfg is None:
        cfg = _default_crossbar()
    if hasattr(cfg, "crossbar"):  # a ChipConfig
        cfg = cfg.crossbar
    counts = dict(crossbars or {})
    if plan is not None and not crossbars:
        counts = plan_crossbars(plan)
    for l in net.weight_layers:
        counts.setdefault(l.name, conventional_crossbars(l, cfg))
    if crossbars_per_core is None:
        crossbars_per_core = ceil_div(max(counts[l.name] for l in net.weight_layers), 2)
    if crossbars_per_core < 1:
        raise ValueError(f"crossbars_per_core={crossbars_per_core} must be >= 1")
    if images_per_clock is None:
        ii = plan_interval(plan) if plan is not None else None
        images_per_clock = Fraction(1, ii or pipeline_interval(net, cfg))
    host, skips = _resolve_hosts(net)

    def tensor_bits(name: str) -> int:
        c, h, w = net.shapes[name]
        return c * h * w * cfg.a_bits

    skip_of: dict[str, list[str]] = {}
    for tensor, add_host in skips:
        skip_of.setdefault(add_host, []).append(tensor)
    # flows are built per tensor (not per producer layer): a pooled tensor is smaller than
    # its producer's conv output
    cores: list[Core] = []
    first: dict[str, list[int]] = {}
    for l in net.weight_layers:
        n = ceil_div(counts[l.name], crossbars_per_core)
        first[l.name] = list(range(len(cores), len(cores) + n))
        cores += [Core(len(cores) + j, l.name, j, n) for j in range(n)]
    pairs: dict[tuple[int, int], list] = {}

    def add(s, d, bits, kind):
        if (s, d) in pairs:
            pairs[(s, d)][0] += bits
        else:
            pairs[(s, d)] = [bits, kind]

    for l in net.weight_layers:
        mine = first[l.name]
        src_tensor = l.inputs[0]
        if host[src_tensor] is not None:
            s = first[host[src_tensor]][-1]
            for c in mine:
                add(s, c, tensor_bits(src_tensor), "forward")
        _, ho, wo = net.out_shape(l)
        for j in range(len(mine) - 1):
            add(mine[j], mine[j + 1], l.weight_cols * ho * wo * psum_bits, "reduce")
        for tensor in skip_of.get(l.name, []):
            if host[tensor] is not None:
                add(first[host[tensor]][-1], mine[-1], tensor_bits(tensor), "skip")
    flows = [Flow(s, d, b, k, i) for i, ((s, d), (b, k)) in enumerate(sorted(pairs.items()))]
    meta = {"network": net.name, "crossbars_per_core": crossbars_per_core, "psum_bits": psum_bits,
            "crossbars": {l.name: counts[l.name] for l in net.weight_layers},
            "interval_clocks": float(1 / Fraction(images_per_clock)),
            "source": "mapping plan" if plan is not None else "network (conventional crossbar count)"}
    return CommGraph(net.name, cores, flows, Fraction(images_per_clock), cfg.a_bits, meta)


def plan_crossbars(plan) -> dict[str, int]:
    """Per-layer crossbar (subarray) counts of a ``gen.mapping.MappingPlan``, all replicas."""
    return {lp.name: lp.n_subarrays for lp in plan.weight_layers}


def plan_interval(plan) -> int | None:
    """Pipelined initiation interval (clocks per image) of a plan from the cycle model
    ``gen.perf.estimate``: its ``interval_clocks`` for a pipelined plan, else the slowest
    layer's clocks (what the same plan would achieve pipelined). None if unavailable."""
    try:
        from gen.perf import estimate
        est = estimate(plan)
    except Exception:  # noqa: BLE001 - no cycle model for this plan: fall back
        return None
    if getattr(plan, "pipeline", False):
        v = getattr(est, "interval_clocks", None)
    else:
        v = max((lt.clocks for lt in getattr(est, "layers", [])), default=None)
    return int(v) if isinstance(v, (int, float)) and v > 0 else None


def _default_crossbar():
    try:
        from gen.config import ChipConfig
        return ChipConfig().crossbar
    except ImportError:
        from gen.config import CrossbarConfig
        return CrossbarConfig()


def build_comm_graph(network, cfg=None, *, crossbars_per_core=None, psum_bits=DEFAULT_PSUM_BITS,
                     mapping: str = "conventional") -> CommGraph:
    """CLI entry: zoo name or Network -> CommGraph through ``gen.mapping.map_network``
    (pipelined plan, one replica per layer: per-layer subarray counts, and the interval of
    ``gen.perf.estimate``), or from the network IR
    with the conventional crossbar count when ``gen.mapping`` is not available.
    ``cfg`` is a ``ChipConfig`` or a ``CrossbarConfig`` (default: the ``ChipConfig`` defaults)."""
    from gen.network import zoo
    net = zoo(network) if isinstance(network, str) else network
    try:
        from gen.config import ChipConfig
        from gen.mapping import map_network
    except ImportError:
        if mapping != "conventional":
            raise ValueError(f"mapping {mapping!r} needs gen.mapping, which is not available") from None
        return comm_graph(net, cfg, crossbars_per_core=crossbars_per_core, psum_bits=psum_bits)
    if cfg is None:
        chip = ChipConfig()
    elif isinstance(cfg, ChipConfig):
        chip = cfg
    else:
        chip = ChipConfig(crossbar=cfg)
    plan = map_network(net, chip, mapping=mapping, pipeline=True, duplication=1)
    return comm_graph(plan, crossbars_per_core=crossbars_per_core, psum_bits=psum_bits)
