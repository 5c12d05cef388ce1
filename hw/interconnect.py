"""Interconnect fabric generated from a placement (``gen.topology.Placement``).

Every core ``c`` has one **transmit** port ``tx[c]`` (core -> fabric) and one **receive**
port ``rx[c]`` (fabric -> core), ``.array(n_cores)`` families of ``amaranth.lib.stream``
interfaces (Verilog ``tx__<c>__valid``, ...) whose payload is :func:`core_layout`: ``flow``
(the flow id of the communication graph, LSBs) then ``data`` (``width`` bits, the
activation word). A core that sends nothing never sees ``tx[c].ready``; one that receives
nothing never sees ``rx[c].valid``. The same port set is generated for every topology,
so one testbench drives them all.

* **Point-to-point** (:class:`PointToPointFabric`, one-hop placements such as 5PP): one
  link per flow — the flow's directed channel of the topology — with a
  :class:`StreamFIFO` of ``fifo_depth`` on it. ``tx[c]`` is demultiplexed by flow id onto
  the core's outgoing links; the links arriving at a core are merged into ``rx[c]`` by a
  round-robin :class:`StreamArbiter`. Zero-load latency: 1 clock (the link FIFO).
* **Routed** (:class:`RoutedFabric`, mesh and torus): one :class:`Router` per grid node.
  A flit is one beat: header (destination node ``x``, ``y`` and ``flow``) plus ``data``;
  the network interface at ``tx[c]`` looks the destination up from the flow id (the
  placement maps the flow's destination core to its node). Routers have an input FIFO per
  port, dimension-order routing from tables that ``gen.topology.Topology.direction``
  fills (X then Y; on the torus the shorter direction per dimension, ties to +), a round-robin
  arbiter per output port and back-pressure from the next input FIFO. Zero-load latency:
  ``hops + 1`` clocks (one FIFO per router passed). The torus has no virtual channels, so
  it is not deadlock-free in general (wrap-around cycles); the mesh is (XY routing).

* **Slotted** (:class:`SlottedFabric`, the chip's mesh and torus): a routed fabric with a
  port pair per flow, whose flows enter the routers only in their time slots
  (``gen.topology.slot_table``), so no beat ever waits on another's in the routers (no
  contention, hence no deadlock on the torus either) and the chip's cycle model stays exact.

``link_fire`` (one bit per entry of ``.links``, a directed channel ``(node_u, node_v)``)
pulses when a beat crosses that channel: the testbench counts it to measure link load.

Which fabric a placement gets, and whether it can have one, is decided in ``gen``
(``gen.topology.fabric_kind``); the components here take their arguments as given.
"""
from __future__ import annotations

from enum import IntEnum

from amaranth.hdl import Array, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from gen.topology import GRID_DIRS, fabric_kind, fabric_latency

__all__ = ["StreamFIFO", "StreamArbiter", "FlowLinks", "Router", "Dir", "PointToPointFabric", "RoutedFabric",
           "SlottedFabric", "core_layout", "flit_layout", "build_fabric", "model_latency"]


def _bits(n: int) -> int:
    return max(1, ceil_log2(max(2, n)))


def core_layout(width: int, n_flows: int) -> data.StructLayout:
    """Payload of a core port: ``flow`` id in the low bits, then ``data``."""
    return data.StructLayout({"flow": _bits(n_flows), "data": width})


class StreamFIFO(wiring.Component):
    """Synchronous stream FIFO of ``depth`` registers (a link buffer).

    ``i.ready`` is ``level < depth`` and ``o.valid`` is ``level > 0``, both from registers,
    so chaining FIFOs through arbiters makes no combinational loop. A beat written on an
    edge can leave on the next one (latency 1). Checked formally in ``formal/link_fifo.py``.
    """

    def __init__(self, width: int, depth: int = 2):
        self.width, self.depth = width, depth
        super().__init__(self.signature_of(width, depth))

    @staticmethod
    def signature_of(width: int, depth: int) -> wiring.Signature:
        """The ports of a FIFO of ``depth`` words of ``width`` bits."""
        return wiring.Signature({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width)),
                                 "level": Out(range(depth + 1))})

    @staticmethod
    def module_name(width: int, depth: int) -> str:
        """The Verilog module name of a shared FIFO (``hw.blackbox``)."""
        return f"pimgen_stream_fifo_{width}x{depth}"

    def elaborate(self, platform):
        m = Module()
        d = self.depth
        store = Array(Signal(self.width, name=f"slot{k}") for k in range(d))
        wp, rp = Signal(range(d)), Signal(range(d))
        level = Signal(range(d + 1))
        w_en = Signal()
        r_en = Signal()
        m.d.comb += [
            self.i.ready.eq(level != d),
            self.o.valid.eq(level != 0),
            self.o.payload.eq(store[rp]),
            w_en.eq(self.i.valid & self.i.ready),
            r_en.eq(self.o.valid & self.o.ready),
            self.level.eq(level),
        ]
        with m.If(w_en):
            m.d.sync += store[wp].eq(self.i.payload)
            m.d.sync += wp.eq(Mux(wp == d - 1, 0, wp + 1))
        with m.If(r_en):
            m.d.sync += rp.eq(Mux(rp == d - 1, 0, rp + 1))
        with m.If(w_en & ~r_en):
            m.d.sync += level.eq(level + 1)
        with m.Elif(~w_en & r_en):
            m.d.sync += level.eq(level - 1)
        return m


class StreamArbiter(wiring.Component):
    """Round-robin merge of the ``n`` streams ``i[0..n-1]`` into ``o``.

    The grant is held while the output is valid and not taken (stream rule: valid and
    payload stay until ready); after a transfer the priority moves past the winner.
    """

    def __init__(self, width: int, n: int):
        self.width, self.n = width, n
        super().__init__({"i": In(stream.Signature(width)).array(n), "o": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        n, ins = self.n, self.i
        if n == 1:
            wiring.connect(m, wiring.flipped(ins[0]), wiring.flipped(self.o))
            return m
        grant, last, prio = Signal(range(n)), Signal(range(n)), Signal(range(n))
        locked = Signal()
        with m.If(locked):
            m.d.comb += grant.eq(last)
        with m.Else():
            with m.Switch(prio):
                for p in range(n):
                    with m.Case(p):
                        order = [(p + 1 + o) % n for o in range(n)]
                        for idx in reversed(order):  # the last assignment wins: first in order
                            with m.If(ins[idx].valid):
                                m.d.comb += grant.eq(idx)
        valids = Array(x.valid for x in ins)
        payloads = Array(x.payload for x in ins)
        m.d.comb += [self.o.valid.eq(valids[grant]), self.o.payload.eq(payloads[grant])]
        for k, x in enumerate(ins):
            m.d.comb += x.ready.eq(self.o.ready & (grant == k))
        m.d.sync += [locked.eq(self.o.valid & ~self.o.ready), last.eq(grant)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += prio.eq(grant)
        return m


# --- point-to-point fabric -------------------------------------------------------------------
class _FabricBase(wiring.Component):
    """The core ports every fabric has: ``tx``/``rx`` families over all cores of ``cg``."""

    def __init__(self, placement, width: int, fifo_depth: int, members: dict):
        cg = placement.cg
        self.placement, self.cg, self.width, self.fifo_depth = placement, cg, width, fifo_depth
        self.layout = core_layout(width, max(1, len(cg.flows)))
        self.tx_cores = sorted({f.src for f in cg.flows})
        self.rx_cores = sorted({f.dst for f in cg.flows})
        super().__init__({"tx": In(stream.Signature(self.layout)).array(cg.n),
                          "rx": Out(stream.Signature(self.layout)).array(cg.n), **members})


class PointToPointFabric(_FabricBase):
    """One FIFO link per flow (one-hop placements, see ``gen.topology.fabric_kind``).
    ``links[k]`` is flow ``k``'s channel."""

    def __init__(self, placement, width: int = 8, fifo_depth: int = 2):
        flows = placement.cg.flows
        self.links = [(placement.node_of[f.src], placement.node_of[f.dst]) for f in flows]
        self.link_flow = [f.id for f in flows]
        super().__init__(placement, width, fifo_depth, {"link_fire": Out(max(1, len(self.links)))})

    def elaborate(self, platform):
        m = Module()
        cg = self.cg
        fifos = []
        for f in cg.flows:
            q = StreamFIFO(self.layout.size, self.fifo_depth)
            m.submodules[f"link{f.id}_c{f.src}_c{f.dst}"] = q
            fifos.append(q)
            m.d.comb += self.link_fire[f.id].eq(q.i.valid & q.i.ready)
        # transmit side: demultiplex by flow id
        for c in self.tx_cores:
            tx = self.tx[c]
            mine = [f for f in cg.flows if f.src == c]
            with m.Switch(tx.payload.flow):
                for f in mine:
                    with m.Case(f.id):
                        m.d.comb += tx.ready.eq(fifos[f.id].i.ready)
            for f in mine:
                m.d.comb += [fifos[f.id].i.payload.eq(tx.payload),
                             fifos[f.id].i.valid.eq(tx.valid & (tx.payload.flow == f.id))]
        # receive side: round-robin merge of the incoming links
        for c in self.rx_cores:
            inc = [f for f in cg.flows if f.dst == c]
            arb = StreamArbiter(self.layout.size, len(inc))
            m.submodules[f"merge_c{c}"] = arb
            for k, f in enumerate(inc):
                wiring.connect(m, fifos[f.id].o, arb.i[k])
            m.d.comb += [self.rx[c].valid.eq(arb.o.valid), self.rx[c].payload.eq(arb.o.payload),
                         arb.o.ready.eq(self.rx[c].ready)]
        return m


class FlowLinks(wiring.Component):
    """Point-to-point links with a port pair per flow: ``i[f]`` into flow ``f``'s link
    FIFO (:class:`StreamFIFO` of ``fifo_depth``), ``o[f]`` out of it; ``data`` only, no flow
    id. For a one-hop placement whose cores send to and receive from several flows at once
    (a fork to several stages, a stage fed by its input and its skip): every flow has its
    own channel, so no flow waits on another at a shared core port. Zero-load latency:
    1 clock, as :class:`PointToPointFabric`. ``link_fire[f]`` pulses when a beat enters
    flow ``f``."""

    def __init__(self, placement, width: int, fifo_depth: int = 2):
        flows = placement.cg.flows
        self.placement, self.width, self.fifo_depth = placement, width, fifo_depth
        self.links = [(placement.node_of[f.src], placement.node_of[f.dst]) for f in flows]
        super().__init__({"i": In(stream.Signature(width)).array(len(flows)),
                          "o": Out(stream.Signature(width)).array(len(flows)),
                          "link_fire": Out(max(1, len(flows)))})

    def elaborate(self, platform):
        m = Module()
        for k, f in enumerate(self.placement.cg.flows):
            q = StreamFIFO(self.width, self.fifo_depth)
            m.submodules[f"link{k}_c{f.src}_c{f.dst}"] = q
            wiring.connect(m, wiring.flipped(self.i[k]), q.i)
            wiring.connect(m, q.o, wiring.flipped(self.o[k]))
            m.d.comb += self.link_fire[k].eq(q.i.valid & q.i.ready)
        return m


# --- routed fabric (mesh / torus) -------------------------------------------------------------
class Dir(IntEnum):
    """A router port: index into :class:`Router`'s ``i``/``o`` families."""
    LOCAL = 0
    EAST = 1
    WEST = 2
    NORTH = 3   # y - 1
    SOUTH = 4   # y + 1

    @classmethod
    def named(cls, name: str) -> "Dir":
        """The port of a ``gen.topology`` direction name (``"local"``, ``"east"``, ...)."""
        return cls[name.upper()]


def flit_layout(width: int, n_flows: int, rows: int, cols: int) -> data.StructLayout:
    return data.StructLayout({"flow": _bits(n_flows), "data": width, "x": _bits(cols), "y": _bits(rows)})


class Router(wiring.Component):
    """A grid router at ``(x, y)``: an input FIFO per port, dimension-order routing, a
    round-robin arbiter per output port, back-pressure from the next input FIFO.

    Ports: ``i[d]`` (in) and ``o[d]`` (out) for every :class:`Dir` ``d``; only the ports
    in ``ports`` (``LOCAL`` and the directions that have a neighbour) are built, the
    others stay idle (``i[d].ready`` and ``o[d].valid`` low). Routing tables, filled by
    ``gen.topology.Topology.direction``: ``route_x[tx]`` is the port a flit for column
    ``tx != x`` leaves by, ``route_y[ty]`` the one for row ``ty != y`` once ``x`` matches.
    """

    def __init__(self, layout, x: int, y: int, ports, route_x: dict[int, Dir], route_y: dict[int, Dir],
                 fifo_depth: int = 2):
        self.layout, self.x, self.y, self.fifo_depth = layout, x, y, fifo_depth
        self.ports = sorted({Dir.LOCAL, *ports})
        self.route_x, self.route_y = route_x, route_y
        super().__init__({"i": In(stream.Signature(layout)).array(len(Dir)),
                          "o": Out(stream.Signature(layout)).array(len(Dir))})

    def _decide(self, m, coord, table, want, valid):
        with m.Switch(coord):
            for tgt, o in table.items():
                if o in self.ports:
                    with m.Case(tgt):
                        m.d.comb += want[o].eq(valid)

    def elaborate(self, platform):
        m = Module()
        width, ports = self.layout.size, self.ports
        fifos = {}
        for d in ports:
            q = StreamFIFO(width, self.fifo_depth)
            m.submodules[f"fifo_{d.name.lower()}"] = q
            fifos[d] = q
            wiring.connect(m, wiring.flipped(self.i[d]), q.i)
        # routing decision of every input head: one-hot over output ports
        want = {d: {o: Signal(name=f"{d.name.lower()}_to_{o.name.lower()}") for o in ports} for d in ports}
        for d in ports:
            head = data.View(self.layout, fifos[d].o.payload)
            with m.If(head.x != self.x):        # X first ...
                self._decide(m, head.x, self.route_x, want[d], fifos[d].o.valid)
            with m.Elif(head.y != self.y):      # ... then Y ...
                self._decide(m, head.y, self.route_y, want[d], fifos[d].o.valid)
            with m.Else():                      # ... then the local core
                m.d.comb += want[d][Dir.LOCAL].eq(fifos[d].o.valid)
        grants = {d: [] for d in ports}
        for o in ports:
            srcs = [d for d in ports if d != o or o == Dir.LOCAL]
            arb = StreamArbiter(width, len(srcs))
            m.submodules[f"arb_{o.name.lower()}"] = arb
            for k, d in enumerate(srcs):
                m.d.comb += [arb.i[k].valid.eq(want[d][o]), arb.i[k].payload.eq(fifos[d].o.payload)]
                grants[d].append(arb.i[k].ready & want[d][o])  # ready alone may be high for an idle port
            wiring.connect(m, arb.o, wiring.flipped(self.o[o]))
        for d in ports:
            r = Const(0)
            for g in grants[d]:
                r = r | g
            m.d.comb += fifos[d].o.ready.eq(r)
        return m


class RoutedFabric(_FabricBase):
    """A mesh or torus of :class:`Router` s with network interfaces at the core ports."""

    def __init__(self, placement, width: int = 8, fifo_depth: int = 2):
        topo = placement.topo
        self.topo = topo
        self.rows, self.cols = topo.params["rows"], topo.params["cols"]
        self.flit = flit_layout(width, max(1, len(placement.cg.flows)), self.rows, self.cols)
        self.links = sorted((u, v) for a, b in topo.graph.edges() for u, v in ((a, b), (b, a)))
        super().__init__(placement, width, fifo_depth, {"link_fire": Out(max(1, len(self.links)))})

    def _router(self, v: int) -> Router:
        topo = self.topo
        x, y = topo.coord(v)
        ports = [Dir.named(d) for d in GRID_DIRS if topo.neighbour(v, d) is not None]
        route_x = {tx: Dir.named(topo.direction(v, topo.node(tx, y))) for tx in range(self.cols) if tx != x}
        route_y = {ty: Dir.named(topo.direction(v, topo.node(x, ty))) for ty in range(self.rows) if ty != y}
        return Router(self.flit, x, y, ports, route_x, route_y, self.fifo_depth)

    def elaborate(self, platform):
        m = Module()
        cg, topo = self.cg, self.topo
        routers = {}
        for v in range(topo.n):
            r = routers[v] = self._router(v)
            m.submodules[f"router_{r.x}_{r.y}"] = r
        opposite = {Dir.EAST: Dir.WEST, Dir.WEST: Dir.EAST, Dir.NORTH: Dir.SOUTH, Dir.SOUTH: Dir.NORTH}
        link_index = {ch: k for k, ch in enumerate(self.links)}
        for v, r in routers.items():
            for d in r.ports:
                if d == Dir.LOCAL:
                    continue
                w = topo.neighbour(v, d.name.lower())
                out = r.o[d]
                wiring.connect(m, out, routers[w].i[opposite[d]])
                m.d.comb += self.link_fire[link_index[(v, w)]].eq(out.valid & out.ready)
        core_at = {node: c for c, node in enumerate(self.placement.node_of)}
        for v, r in routers.items():
            c = core_at.get(v)
            inj, ej = r.i[Dir.LOCAL], r.o[Dir.LOCAL]
            if c in self.tx_cores:
                tx = self.tx[c]
                flit = data.View(self.flit, inj.payload)
                m.d.comb += [inj.valid.eq(tx.valid), tx.ready.eq(inj.ready),
                             flit.flow.eq(tx.payload.flow), flit.data.eq(tx.payload.data)]
                with m.Switch(tx.payload.flow):  # network interface: flow id -> destination node
                    for f in cg.flows:
                        if f.src == c:
                            with m.Case(f.id):
                                dx, dy = topo.coord(self.placement.node_of[f.dst])
                                m.d.comb += [flit.x.eq(dx), flit.y.eq(dy)]
            if c in self.rx_cores:
                rx = self.rx[c]
                flit = data.View(self.flit, ej.payload)
                m.d.comb += [rx.valid.eq(ej.valid), ej.ready.eq(rx.ready),
                             rx.payload.flow.eq(flit.flow), rx.payload.data.eq(flit.data)]
            else:
                m.d.comb += ej.ready.eq(1)
        return m


class SlottedFabric(wiring.Component):
    """A routed fabric (:class:`RoutedFabric`) with a port pair per flow, as
    :class:`FlowLinks` has, whose flows share its links in time.

    Every flow ``f`` has an injection queue (a :class:`StreamFIFO` of ``depths[f]``) in
    front of its source core's router, and leaves it only on its slots, the clocks ``t``
    with ``t % period == slots[f]`` (``gen.topology.SlotTable``); the clocks count from
    ``start``, high on the clock the first image's first word enters the chip. The slots are
    chosen so that no two flows want one router output or one injection port on the same
    clock, so no beat waits on another flow's in the routers and each crosses them in
    ``hops + 1`` clocks; a beat with a free slot spends ``gen.topology.INJECT_CLOCKS`` in its
    queue. At the destination core the beats go to their flows' ``o`` ports by flow id.
    Valid/ready holds throughout (a flow whose consumer is not ready holds the core's
    ejection port, as in :class:`RoutedFabric`). ``link_fire``: the routed fabric's, one
    bit per directed channel of ``links``.
    """

    def __init__(self, placement, width: int, period: int, slots, depths, fifo_depth: int = 2):
        flows = placement.cg.flows
        self.placement, self.width, self.period = placement, width, period
        self.slots, self.depths, self.fifo_depth = tuple(slots), tuple(depths), fifo_depth
        self.routed = RoutedFabric(placement, width, fifo_depth)
        self.links = self.routed.links
        super().__init__({"i": In(stream.Signature(width)).array(len(flows)),
                          "o": Out(stream.Signature(width)).array(len(flows)),
                          "start": In(1),
                          "link_fire": Out(max(1, len(self.links)))})

    def elaborate(self, platform):
        m = Module()
        flows, p = self.placement.cg.flows, self.period
        m.submodules.routed = fab = self.routed
        m.d.comb += self.link_fire.eq(fab.link_fire)
        slot = Signal(range(max(2, p)))
        seen = Signal()
        going = seen | self.start
        m.d.sync += seen.eq(going)
        with m.If(going):
            m.d.sync += slot.eq(Mux(slot == p - 1, 0, slot + 1))
        queues = []
        for f in flows:
            q = StreamFIFO(self.width, max(2, self.depths[f.id]))
            m.submodules[f"inject{f.id}_c{f.src}"] = q
            wiring.connect(m, wiring.flipped(self.i[f.id]), q.i)
            queues.append(q)
        for c in fab.tx_cores:       # a core's flows take turns at its router, each in its slots
            tx = fab.tx[c]
            for f in flows:
                if f.src != c:
                    continue
                q = queues[f.id]
                with m.If((slot == self.slots[f.id]) if p > 1 else Const(1)):
                    m.d.comb += [tx.valid.eq(q.o.valid), tx.payload.flow.eq(f.id), tx.payload.data.eq(q.o.payload),
                                 q.o.ready.eq(tx.ready)]
        for c in fab.rx_cores:       # ejection: each beat to its flow's port
            rx = fab.rx[c]
            for f in flows:
                if f.dst != c:
                    continue
                mine = rx.payload.flow == f.id
                m.d.comb += [self.o[f.id].valid.eq(rx.valid & mine), self.o[f.id].payload.eq(rx.payload.data)]
                with m.If(mine):
                    m.d.comb += rx.ready.eq(self.o[f.id].ready)
        return m


def build_fabric(placement, width: int | None = None, fifo_depth: int = 2):
    """The fabric for a placement, as ``gen.topology.fabric_kind`` decides (which raises
    ValueError for a placement no fabric carries): point-to-point when every flow is one
    hop (kPP, bus), routed on mesh/torus. ``width`` defaults to the graph's
    ``payload_bits`` (``a_bits``)."""
    kind = fabric_kind(placement)
    width = width or placement.cg.payload_bits
    return (PointToPointFabric if kind == "point-to-point" else RoutedFabric)(placement, width, fifo_depth)


#: The fabric's zero-load latency; its home is ``gen.topology`` (the chip's cycle model reads it too).
model_latency = fabric_latency
