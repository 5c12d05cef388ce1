"""Interconnect topologies, placement of a CNN communication graph, routing and link load.

Topologies (all built for any number of cores; nodes are integers ``0..n-1``):

* ``kpp`` — the *k Parallel Prism* in **pimgen's reconstruction** of Dazzi et al. 2019
  (papers.md §2): nodes stand on ``k`` parallel lines; node ``i`` sits on line ``i mod k``
  at position ``i div k`` and is linked to ``i+1 ... i+k-1``, so every ``k`` consecutive
  nodes form a complete graph ``K_k`` (the ``(k-1)``-th power of a path). ``k = 5`` is
  5PP; ``k = 3..8`` can be compared.
* ``mesh`` / ``torus`` — 2-D grid (near-square ``rows x cols`` with ``rows*cols >= n``),
  with wrap-around links for the torus.
* ``ring`` — a cycle.
* ``bus`` — fully connected (a crossbar bus): every pair of cores has its own link; the
  upper bound on connectivity, and so the lower bound on channel bandwidth.

A **channel** is one direction of a link. Placement puts core ``c`` on node
``node_of[c]``; each flow is routed deterministically (kPP: direct link, or greedy
largest strides when not one-hop; mesh: dimension order X then Y; torus: dimension
order, shortest direction per dimension, ties to +; ring: shortest direction, ties to
+; bus: direct) and the load of a channel is the sum of the flows crossing it.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import networkx as nx

from gen.commgraph import CommGraph, Flow

KINDS = ("5pp", "mesh", "torus", "ring", "bus")
GRID_DIRS = ("east", "west", "north", "south")  # a grid node's neighbour directions; north = y-1
_STEP = {"east": (1, 0), "west": (-1, 0), "north": (0, -1), "south": (0, 1)}


@dataclass
class Topology:
    """A physical fabric: an undirected graph on nodes ``0..n-1`` plus how to route on it."""

    kind: str
    n: int
    graph: nx.Graph
    params: dict[str, Any] = field(default_factory=dict)
    pos: dict[int, tuple[float, float]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.kind == "kpp":
            return f"{self.params['k']}pp"
        if self.kind in ("mesh", "torus"):
            return f"{self.kind} {self.params['rows']}x{self.params['cols']}"
        return self.kind

    @property
    def links(self) -> int:
        return self.graph.number_of_edges()

    @property
    def channels(self) -> int:
        return 2 * self.links

    @property
    def max_degree(self) -> int:
        return max((d for _, d in self.graph.degree()), default=0)

    @property
    def min_degree(self) -> int:
        return min((d for _, d in self.graph.degree()), default=0)

    @property
    def diameter(self) -> int:
        if self.n <= 1:
            return 0
        return nx.diameter(self.graph)

    def coord(self, v: int) -> tuple[int, int]:
        """(x, y) of a grid node (mesh/torus): ``v = y*cols + x``."""
        c = self.params["cols"]
        return v % c, v // c

    def node(self, x: int, y: int) -> int:
        return y * self.params["cols"] + x

    # --- grid (mesh / torus) steps: the one home of dimension-order routing ----------------
    def neighbour(self, v: int, d: str) -> int | None:
        """Mesh/torus: the node one step from ``v`` in direction ``d`` (one of
        :data:`GRID_DIRS`; ``north`` is ``y-1``), or None at a mesh edge. A torus dimension
        wraps when it is longer than 2; a 2-long one has a single link, reached the
        non-wrapping way, so its wrap direction is None too."""
        (x, y), rows, cols = self.coord(v), self.params["rows"], self.params["cols"]
        dx, dy = _STEP[d]
        nx, ny = x + dx, y + dy
        if 0 <= nx < cols and 0 <= ny < rows:
            return self.node(nx, ny)
        if self.kind == "torus" and (cols if dx else rows) > 2:
            return self.node(nx % cols, ny % rows)
        return None

    def direction(self, v: int, d: int) -> str:
        """Mesh/torus: the direction a beat at node ``v`` bound for node ``d`` leaves by —
        dimension order, X first; on a torus dimension longer than 2 the shorter way round,
        ties to ``+`` (east/south); ``"local"`` when ``v == d``."""
        (x, y), (tx, ty) = self.coord(v), self.coord(d)
        for cur, tgt, size, plus, minus in ((x, tx, self.params["cols"], "east", "west"),
                                            (y, ty, self.params["rows"], "south", "north")):
            if cur != tgt:
                if self.kind == "torus" and size > 2:
                    fwd = (tgt - cur) % size
                    return plus if fwd <= size - fwd else minus
                return plus if tgt > cur else minus
        return "local"

    # --- deterministic routing ----------------------------------------------------------
    def route(self, s: int, d: int) -> list[int]:
        """The node path a beat takes from node ``s`` to node ``d`` (both included)."""
        if s == d:
            return [s]
        k = self.kind
        if k == "bus":
            return [s, d]
        if k == "kpp":
            step = self.params["k"] - 1
            path, v = [s], s
            while v != d:
                v += max(-step, min(step, d - v))
                path.append(v)
            return path
        if k == "ring":
            n = self.n
            fwd = (d - s) % n
            sgn = 1 if fwd <= n - fwd else -1
            path, v = [s], s
            while v != d:
                v = (v + sgn) % n
                path.append(v)
            return path
        if k in ("mesh", "torus"):
            path, v = [s], s
            while v != d:
                v = self.neighbour(v, self.direction(v, d))
                path.append(v)
            return path
        raise ValueError(f"no routing for topology kind {k!r}")


# --- constructions ---------------------------------------------------------------------
def prism(n: int, k: int = 5) -> Topology:
    """k Parallel Prism (pimgen's reconstruction): node i linked to i+1 .. i+k-1."""
    if not 2 <= k <= 64:
        raise ValueError(f"k={k} is not allowed: the number of parallel lines must be in [2, 64]")
    _check_n(n)
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from((i, j) for i in range(n) for j in range(i + 1, min(n, i + k)))
    # drawn as the k parallel lines (rows), cores advancing along them helically
    pos = {i: (i // k + 0.2 * (i % k), -float(i % k)) for i in range(n)}
    return Topology("kpp", n, g, {"k": k}, pos)


def grid_shape(n: int) -> tuple[int, int]:
    """Near-square ``(rows, cols)`` with ``cols = ceil(sqrt(n))`` and ``rows*cols >= n``."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return max(1, math.ceil(n / cols)), cols


def mesh(n: int, shape: tuple[int, int] | None = None, torus: bool = False) -> Topology:
    _check_n(n)
    rows, cols = shape or grid_shape(n)
    if rows * cols < n:
        raise ValueError(f"a {rows}x{cols} grid has fewer than {n} nodes")
    g = nx.Graph()
    g.add_nodes_from(range(rows * cols))
    for y in range(rows):
        for x in range(cols):
            v = y * cols + x
            if x + 1 < cols:
                g.add_edge(v, v + 1)
            if y + 1 < rows:
                g.add_edge(v, v + cols)
            if torus:
                if cols > 2 and x == cols - 1:
                    g.add_edge(v, y * cols)
                if rows > 2 and y == rows - 1:
                    g.add_edge(v, x)
    pos = {y * cols + x: (float(x), float(-y)) for y in range(rows) for x in range(cols)}
    return Topology("torus" if torus else "mesh", rows * cols, g, {"rows": rows, "cols": cols}, pos)


def torus(n: int, shape: tuple[int, int] | None = None) -> Topology:
    return mesh(n, shape, torus=True)


def ring(n: int) -> Topology:
    _check_n(n)
    g = nx.cycle_graph(n) if n > 2 else nx.path_graph(n)
    pos = {i: (math.cos(2 * math.pi * i / n), math.sin(2 * math.pi * i / n)) for i in range(n)}
    return Topology("ring", n, g, {}, pos)


def bus(n: int) -> Topology:
    """Fully connected: the crossbar-bus upper bound."""
    _check_n(n)
    g = nx.complete_graph(n)
    pos = {i: (math.cos(2 * math.pi * i / n), math.sin(2 * math.pi * i / n)) for i in range(n)}
    return Topology("bus", n, g, {}, pos)


def build(kind: str, n: int, **kw) -> Topology:
    """``kind`` is ``5pp`` (or ``3pp`` ... ``8pp``, ``kpp`` with ``k=``), mesh, torus, ring or bus."""
    kind = kind.lower()
    if kind.endswith("pp"):
        k = kw.pop("k", None) or (int(kind[:-2]) if kind[:-2].isdigit() else 5)
        return prism(n, k)
    if kind == "mesh":
        return mesh(n, kw.get("shape"))
    if kind == "torus":
        return torus(n, kw.get("shape"))
    if kind == "ring":
        return ring(n)
    if kind in ("bus", "crossbar", "full"):
        return bus(n)
    raise ValueError(f"unknown topology {kind!r}; choose one of {', '.join(KINDS)} (or 3pp..8pp)")


def _check_n(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"number of cores must be an integer >= 1, got {n!r}")


# --- bandwidth-b ordering (the kPP homomorphism) ---------------------------------------
class PlacementError(ValueError):
    """A communication graph that cannot be placed one hop per edge; names the edge."""

    def __init__(self, msg: str, edge: tuple[int, int] | None = None, proven: bool = False):
        super().__init__(msg)
        self.edge = edge
        self.proven = proven


def max_span(order: Sequence[int], edges) -> tuple[int, tuple[int, int] | None]:
    pos = {c: i for i, c in enumerate(order)}
    best, worst = 0, None
    for u, v in edges:
        s = abs(pos[u] - pos[v])
        if s > best:
            best, worst = s, (u, v)
    return best, worst


def lower_bound_certificate(n: int, nbrs: list[set[int]], b: int) -> str | None:
    """A reason why no order of bandwidth <= b exists, or None when none is found.

    Uses the ball bound: the nodes within distance ``r`` of ``v`` must lie within
    ``r*b`` positions of ``v`` on either side, so ``|B(v, r)| - 1 <= 2*r*b`` (r = 1 is the
    degree bound ``deg(v) <= 2b``).
    """
    for v in range(n):
        seen, frontier = {v}, [v]
        for r in range(1, n):
            nxt = []
            for u in frontier:
                for w in nbrs[u]:
                    if w not in seen:
                        seen.add(w)
                        nxt.append(w)
            if not nxt:
                break
            frontier = nxt
            if len(seen) - 1 > 2 * r * b:
                if r == 1:
                    return f"core {v} has {len(nbrs[v])} neighbours but an order of span <= {b} allows at most {2 * b}"
                return (f"{len(seen) - 1} cores lie within {r} hops of core {v}, but an order of span <= {b} "
                        f"fits at most {2 * r * b}")
    return None


def bandwidth_order(n: int, edges, b: int, budget: int = 200_000,
                    prefer: Sequence[int] | None = None) -> tuple[list[int] | None, bool]:
    """Exact depth-first search for an order of nodes ``0..n-1`` in which no edge spans
    more than ``b`` positions.

    Returns ``(order, complete)``: ``order`` is None when none was found; ``complete`` says
    whether the search was exhaustive (so None is a proof) or ran out of ``budget``
    expansions. Nodes are tried in pipeline (``prefer``) order first, urgent ones (the
    neighbours of the oldest open node) before others; failed states
    ``(placed set, last b nodes)`` are memoised, which makes the search exact.
    """
    nbrs: list[set[int]] = [set() for _ in range(n)]
    for u, v in edges:
        if u != v:
            nbrs[u].add(v)
            nbrs[v].add(u)
    rank = {c: i for i, c in enumerate(prefer if prefer is not None else range(n))}
    if n == 0:
        return [], True
    failed: set = set()
    order: list[int] = []
    remaining = [len(nbrs[v]) for v in range(n)]  # unplaced neighbours
    state = {"exp": 0, "out": False}
    full = (1 << n) - 1

    def candidates(mask: int) -> list[int]:
        p = len(order)
        window = order[max(0, p - b):]
        urgent: list[int] = []
        seen = set()
        for w in window:  # oldest first
            for u in sorted(nbrs[w], key=rank.__getitem__):
                if not (mask >> u) & 1 and u not in seen:
                    seen.add(u)
                    urgent.append(u)
        if window and window[0] is not None and remaining[window[0]] > 0 and len(window) == b:
            # the oldest node leaves the window next: it must get its neighbour now
            return [u for u in urgent if u in nbrs[window[0]]]
        rest = sorted((u for u in range(n) if not (mask >> u) & 1 and u not in seen), key=rank.__getitem__)
        return urgent + rest

    def dfs(mask: int) -> bool:
        if mask == full:
            return True
        key = (mask, tuple(order[-b:]))
        if key in failed:
            return False
        state["exp"] += 1
        if state["exp"] > budget:
            state["out"] = True
            return False
        p = len(order)
        for v in candidates(mask):
            # place v at position p
            order.append(v)
            for u in nbrs[v]:
                remaining[u] -= 1
            ok = True
            if p - b >= 0 and remaining[order[p - b]] > 0:
                ok = False
            if ok:
                start = max(0, p - b + 1)
                for q in range(start, p + 1):
                    if remaining[order[q]] > q + b - p:
                        ok = False
                        break
            if ok and dfs(mask | (1 << v)):
                return True
            for u in nbrs[v]:
                remaining[u] += 1
            order.pop()
            if state["out"]:
                return False
        failed.add(key)
        return False

    import sys
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 4 * n + 1000))
    try:
        found = dfs(0)
    finally:
        sys.setrecursionlimit(old)
    return (list(order) if found else None), not state["out"]


def repair_order(n: int, edges, b: int, start: Sequence[int], iters: int = 2000) -> list[int]:
    """Local repair: move single nodes to reduce ``sum(max(0, span - b))`` (best effort)."""
    order = list(start)
    el = list(edges)

    def cost(o):
        pos = {c: i for i, c in enumerate(o)}
        return sum(max(0, abs(pos[u] - pos[v]) - b) for u, v in el), max(
            (abs(pos[u] - pos[v]) for u, v in el), default=0)

    best = cost(order)
    for _ in range(iters):
        if best[0] == 0:
            break
        improved = False
        pos = {c: i for i, c in enumerate(order)}
        bad = sorted(el, key=lambda e: -abs(pos[e[0]] - pos[e[1]]))[:4]
        for u, v in bad:
            for node in (u, v):
                i = pos[node]
                for j in range(max(0, i - 2 * b), min(n, i + 2 * b + 1)):
                    if j == i:
                        continue
                    o = order[:i] + order[i + 1:]
                    o.insert(j, node)
                    c = cost(o)
                    if c < best:
                        order, best, improved = o, c, True
                        break
                if improved:
                    break
            if improved:
                break
        if not improved:
            break
    return order


def one_hop_order(cg: CommGraph, k: int = 5, budget: int = 200_000) -> tuple[list[int], str]:
    """An order of ``cg``'s cores in which every flow spans at most ``k-1`` positions.

    Tries the pipeline order, then exact search; raises :class:`PlacementError` naming the
    offending flow when no order exists (proven) or none was found within ``budget``.
    """
    b = k - 1
    edges = [(f.src, f.dst) for f in cg.flows]
    ident = list(range(cg.n))
    span, _ = max_span(ident, edges)
    if span <= b:
        return ident, "pipeline order"
    nbrs = cg.neighbours()
    cert = lower_bound_certificate(cg.n, nbrs, b)
    order, complete = (None, True) if cert else bandwidth_order(cg.n, edges, b, budget)
    if order is not None:
        _verify(cg, order, b)
        return order, "exact search (pipeline-order first)"
    # name the offending flow: the longest one in the best order we can find
    best = repair_order(cg.n, edges, b, ident)
    if max_span(best, edges)[0] > span:
        best = ident
    s, (u, v) = max_span(best, edges)
    f = next(f for f in cg.flows if {f.src, f.dst} == {u, v})
    why = cert or ("exhaustive search found no order" if complete
                   else f"no order found within a search budget of {budget} states")
    raise PlacementError(
        f"{cg.name} does not map one hop onto {k}pp: flow {cg.flow_name(f)} spans {s} positions "
        f"> {b} (best order found); {why}", (f.src, f.dst), proven=bool(cert) or complete)


def _verify(cg: CommGraph, order: Sequence[int], b: int) -> None:
    """Check every flow of the homomorphism: each one lands on a topology link."""
    if sorted(order) != list(range(cg.n)):
        raise AssertionError("order is not a permutation of the cores")
    pos = {c: i for i, c in enumerate(order)}
    for f in cg.flows:
        if not 1 <= abs(pos[f.src] - pos[f.dst]) <= b:
            raise AssertionError(f"flow {cg.flow_name(f)} spans {abs(pos[f.src] - pos[f.dst])} > {b}")


# --- placement and link load -----------------------------------------------------------
@dataclass
class Placement:
    """Core ``c`` sits on node ``node_of[c]`` of ``topo``; routes and channel loads follow."""

    cg: CommGraph
    topo: Topology
    node_of: list[int]
    method: str

    def __post_init__(self) -> None:
        if len(set(self.node_of)) != len(self.node_of) or any(not 0 <= v < self.topo.n for v in self.node_of):
            raise ValueError("placement must put each core on a distinct node of the topology")
        self.paths = {f.id: self.topo.route(self.node_of[f.src], self.node_of[f.dst]) for f in self.cg.flows}

    def hops(self, f: Flow) -> int:
        return len(self.paths[f.id]) - 1

    @property
    def one_hop(self) -> bool:
        return all(self.hops(f) == 1 for f in self.cg.flows)

    def channel_flows(self) -> dict[tuple[int, int], list[int]]:
        """Directed channel ``(u, v)`` -> ids of the flows crossing it."""
        out: dict[tuple[int, int], list[int]] = {}
        for f in self.cg.flows:
            p = self.paths[f.id]
            for u, v in zip(p, p[1:]):
                out.setdefault((u, v), []).append(f.id)
        return out

    def channel_bits_per_image(self) -> dict[tuple[int, int], int]:
        bits = {f.id: f.bits_per_image for f in self.cg.flows}
        return {ch: sum(bits[i] for i in ids) for ch, ids in self.channel_flows().items()}

    def channel_bits_per_clock(self) -> dict[tuple[int, int], float]:
        r = self.cg.images_per_clock
        return {ch: float(b * r) for ch, b in self.channel_bits_per_image().items()}

    def stats(self) -> dict[str, Any]:
        t, cg = self.topo, self.cg
        load = self.channel_bits_per_clock()
        hops = Counter(self.hops(f) for f in cg.flows)
        tot = sum(f.bits_per_image for f in cg.flows)
        return {
            "topology": t.label, "kind": t.kind, "nodes": t.n, "cores": cg.n, "links": t.links,
            "channels": t.channels, "used_channels": len(load), "max_degree": t.max_degree,
            "diameter": t.diameter, "placement": self.method, "one_hop": self.one_hop,
            "max_bw": max(load.values(), default=0.0),
            "mean_bw_used": (sum(load.values()) / len(load)) if load else 0.0,
            "mean_bw_all": (sum(load.values()) / t.channels) if t.channels else 0.0,
            "hops": {int(h): c for h, c in sorted(hops.items())},
            "mean_hops_traffic": (sum(self.hops(f) * f.bits_per_image for f in cg.flows) / tot) if tot else 0.0,
        }


def fabric_kind(placement: Placement) -> str:
    """Which interconnect RTL carries ``placement`` (``hw.interconnect.build_fabric``):
    ``"point-to-point"`` (one FIFO link per flow) when every flow is one hop on a
    non-grid topology (kPP, bus), ``"routed"`` (a router per node) on mesh and torus.
    Raises ValueError for anything else (a multi-hop ring or kPP placement)."""
    kind = placement.topo.kind
    if kind in ("mesh", "torus"):
        return "routed"
    if placement.one_hop:
        return "point-to-point"
    far = next(f for f in placement.cg.flows if placement.hops(f) != 1)
    raise ValueError(f"{placement.cg.name} on {placement.topo.label} is not one-hop (flow {far.src} -> {far.dst} "
                     f"takes {placement.hops(far)} hops): only mesh and torus fabrics route")


def fabric_latency(placement: Placement, flow: Flow) -> int:
    """Zero-load clocks from the edge the fabric's ``tx`` accepts a beat of ``flow`` to the
    edge its ``rx`` can deliver it: one per FIFO passed (the link FIFO point-to-point;
    ``hops + 1`` router input FIFOs routed). ``hw.interconnect`` builds exactly this."""
    if placement.topo.kind in ("mesh", "torus"):
        return placement.hops(flow) + 1
    return 1


#: Clocks a beat spends in a routed flow's injection queue when its slot is free
#: (``hw.interconnect.SlottedFabric``: written on one edge, it can leave on the next).
INJECT_CLOCKS = 1


@dataclass(frozen=True)
class SlotTable:
    """A time-division injection schedule for a routed placement (``hw.interconnect.SlottedFabric``):
    flow ``f`` enters the routers only on the clocks ``t`` with ``t % period == slots[f]``
    (``t`` counted from the first image's first word). The slots are chosen so that no two
    flows ever want one router output (a channel, or a core's ejection) or one core's
    injection on the same clock: the flows share the links in time, and each beat crosses
    the routers in exactly ``hops + 1`` clocks (:func:`fabric_latency`), never waiting on
    another flow's."""
    period: int
    slots: tuple[int, ...]


def _slot_resources(placement: Placement, flow: Flow) -> list[tuple[tuple, int]]:
    """What a beat of ``flow`` holds, and when, counted from the clock it leaves its
    injection queue: the source router's local input (0), then each router's output on the
    path, channels then the destination's ejection (router ``k`` on clock ``1 + k``: one
    router input FIFO per hop)."""
    path = placement.paths[flow.id]
    res = [(("inject", path[0]), 0)]
    res += [(("channel", u, v), 1 + k) for k, (u, v) in enumerate(zip(path, path[1:]))]
    res.append((("eject", path[-1]), len(path)))
    return res


def slot_table(placement: Placement, max_period: int = 64, budget: int = 100_000) -> SlotTable:
    """The shortest-period :class:`SlotTable` for ``placement`` that a backtracking search
    finds, from the busiest resource's flow count up; a period whose search tries more than
    ``budget`` slots is given up for the next (so the period is the shortest only when no
    search ran out). A chain on a snake placement shares nothing: period 1, every clock a
    slot."""
    flows = placement.cg.flows
    res = {f.id: _slot_resources(placement, f) for f in flows}
    users = Counter(r for f in flows for r, _ in res[f.id])
    order = sorted((f.id for f in flows), key=lambda i: -max((users[r] for r, _ in res[i]), default=0))
    for period in range(max(users.values(), default=1), max_period + 1):
        taken: dict[tuple, set[int]] = {}
        slots: dict[int, int] = {}
        tries = [budget]

        def fits(k: int) -> bool:
            if k == len(order):
                return True
            f = order[k]
            for s in range(period):
                tries[0] -= 1
                if tries[0] < 0:
                    return False
                when = [(r, (s + t) % period) for r, t in res[f]]
                if any(w in taken.get(r, ()) for r, w in when):
                    continue
                for r, w in when:
                    taken.setdefault(r, set()).add(w)
                slots[f] = s
                if fits(k + 1):
                    return True
                for r, w in when:
                    taken[r].discard(w)
            return False

        if fits(0):
            return SlotTable(period, tuple(slots[f.id] for f in flows))
    raise ValueError(f"{placement.cg.name} on {placement.topo.label}: no time-division schedule of its flows "
                     f"within {max_period} clocks")


def slot_departure(visible: int, words: int, period: int, slot: int) -> int:
    """The clock the last of ``words`` beats leaves an injection queue whose slots are the
    clocks ``t % period == slot`` (:class:`SlotTable`), the first beat visible there on
    clock ``visible`` and each next one a clock later, the queue holding nothing else: the
    ``words``-th slot from ``visible`` on."""
    return visible + (slot - visible) % period + (words - 1) * period


def snake_order(rows: int, cols: int) -> list[int]:
    """Boustrophedon node order of a grid: row 0 left to right, row 1 right to left, ..."""
    out = []
    for y in range(rows):
        xs = range(cols) if y % 2 == 0 else range(cols - 1, -1, -1)
        out += [y * cols + x for x in xs]
    return out


def place(cg: CommGraph, topo: Topology, budget: int = 200_000) -> Placement:
    """Place ``cg`` on ``topo``.

    kPP: one-hop order from :func:`one_hop_order` (raises :class:`PlacementError` naming
    the offending flow when there is none). Mesh/torus: pipeline order along a snake
    (boustrophedon) path, so consecutive cores are neighbours. Ring and bus: pipeline
    order.
    """
    if cg.n > topo.n:
        raise ValueError(f"{cg.n} cores do not fit on {topo.label} with {topo.n} nodes")
    if topo.kind == "kpp":
        order, how = one_hop_order(cg, topo.params["k"], budget)
        node_of = [0] * cg.n
        for p, c in enumerate(order):
            node_of[c] = p
        return Placement(cg, topo, node_of, how)
    if topo.kind in ("mesh", "torus"):
        snake = snake_order(topo.params["rows"], topo.params["cols"])
        return Placement(cg, topo, snake[:cg.n], "pipeline order along a snake path")
    return Placement(cg, topo, list(range(cg.n)), "pipeline order")


def compare(cg: CommGraph, kinds: Sequence[str] = KINDS, budget: int = 200_000) -> list[dict[str, Any]]:
    """One :meth:`Placement.stats` row per topology kind (``5pp`` raises if it does not map)."""
    return [place(cg, build(k, cg.n), budget).stats() for k in kinds]
