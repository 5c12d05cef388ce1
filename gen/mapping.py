"""Weight mapping: place every layer's weights onto subarrays, PEs and tiles (DESIGN.md §4).

``map_network(net, chip, mapping="conventional"|"novel", pipeline=False, duplication=None)``
returns a :class:`MappingPlan`: per layer the list of :class:`Placement` s (every weight
block of every replica on one subarray), the output region each replica computes, the
counts and the utilisation at each level. The golden model (``sim.golden.run_plan``) and
the cycle model (``gen.perf.estimate``) both read the plan.

Conventional (im2col)
    The layer's ``(K*K*Cin) x Cout`` matrix (rows in ``(kh, kw, cin)`` order, see
    ``sim.golden.im2col``) is cut into row-blocks of ``rows`` and column-blocks of
    ``outputs`` (one crossbar each), ordered column-block outer, row-block inner, and laid
    onto consecutive subarrays; ``subarrays_per_pe`` subarrays make a PE, ``pes_per_tile``
    PEs a tile. A layer starts on a fresh tile; each replica starts on a fresh PE.
    ``Placement.rows`` are rows of the unrolled matrix.

Novel (kernel split by spatial position, the seed paper's method)
    Kernel position ``(i, j)`` is a ``Cin x Cout`` matrix; it is cut into row-blocks of
    ``rows`` channels and column-blocks of ``outputs``. The blocks (column-block outer,
    row-block inner) are grouped ``subarrays_per_pe`` at a time; group ``g`` of every kernel
    position goes to tile ``g`` of the layer, kernel position ``(i, j)`` on PE ``i*K + j``,
    so a tile holds ``K*K`` PEs (one per kernel position) that all see the same input
    channels. ``Placement.rows`` are channel ranges of ``Cin``; the matrix row is
    ``(i*K + j)*Cin + channel``. Eligible: convolutions with ``K > 1``, ``K*K <=
    pes_per_tile`` and ``K*K*Cin > rows`` (a layer whose whole window fits in one subarray's
    rows gains nothing); every other layer (1×1, FC, small) falls back to conventional and
    ``LayerPlan.reason`` says why.

Duplication
    ``r`` replicas of a layer work on different output pixels: the ``Ho x Wo`` output is cut
    into a ``dr x dc`` grid of rectangles (``dr*dc = r <= requested``), one per replica,
    chosen to minimise the largest rectangle. ``duplication`` is ``None`` (1), an int for
    every layer, a ``{layer: int}`` dict, or ``"auto"``: NeuroSim's rule for the pipelined
    chip, ``bound = ceil(maxIFM / speedup)``, ``dup = ceil((IFM / bound)**2)`` for conv
    layers (``speedup`` capped at ``maxIFM / minIFM``), 1 for FC layers.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

from gen.config import ChipConfig, CrossbarConfig
from gen.network import Conv2d, Layer, Linear, Network

MAPPINGS = ("conventional", "novel")


class Placement(NamedTuple):
    """One weight block on one subarray.

    ``rows``/``cols`` are half-open ranges: rows of the unrolled ``(K*K*Cin) x Cout`` matrix
    for a conventional placement (``kpos is None``); input channels for a novel placement
    at kernel position ``kpos = (i, j)``. ``tile`` is the chip-wide tile index, ``pe`` the PE
    inside the tile, ``subarray`` the subarray inside the PE.
    """
    layer: str
    replica: int
    kpos: tuple[int, int] | None
    rows: tuple[int, int]
    cols: tuple[int, int]
    tile: int
    pe: int
    subarray: int

    def matrix_rows(self, cin: int, k: int) -> tuple[int, int]:
        """Rows of the unrolled matrix this block covers."""
        if self.kpos is None:
            return self.rows
        base = (self.kpos[0] * k + self.kpos[1]) * cin
        return (base + self.rows[0], base + self.rows[1])


@dataclass
class LayerPlan:
    """The mapping of one layer. Layers without weights (pooling, Add) have no placements."""
    name: str
    layer: Layer
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    mapping: str                         # "conventional" | "novel" | "none"
    reason: str = ""                     # why the layer fell back to conventional
    duplication: int = 1                 # replicas in use
    requested_duplication: int = 1
    grid: tuple[int, int] = (1, 1)       # (dr, dc) replica grid over the output
    regions: list[tuple[int, int, int, int]] = field(default_factory=list)  # per replica (y0, y1, x0, x1) it owns
    placements: list[Placement] = field(default_factory=list)
    tiles: list[int] = field(default_factory=list)
    n_pes: int = 0
    raw_output: bool = False

    @property
    def n_subarrays(self) -> int:
        return len(self.placements)

    def per_pe(self) -> dict[tuple[int, int], list]:
        """The placements per PE ``(tile, pe)``, each PE's in subarray order."""
        groups: dict[tuple[int, int], list] = {}
        for p in self.placements:
            groups.setdefault((p.tile, p.pe), []).append(p)
        return {key: sorted(pls, key=lambda p: p.subarray) for key, pls in sorted(groups.items())}

    def shape_only(self) -> "LayerPlan":
        """This plan without what an engine's datapath (``hw.layer.EngineDatapath``) does not
        depend on: the layer's and its placements' names, its inputs, its ReLU (a post-stage
        matter) and fallback reason, and where on the chip its tiles sit (renumbered from 0,
        in chip order). Layers of one shape mapped alike give equal plans, so one module."""
        tmap = {t: i for i, t in enumerate(sorted({p.tile for p in self.placements} | set(self.tiles)))}
        layer = replace(self.layer, name="engine", inputs=())
        if hasattr(layer, "relu"):
            layer = replace(layer, relu=True)
        return replace(self, name="engine", layer=layer, reason="", requested_duplication=self.duplication,
                       placements=[p._replace(layer="engine", tile=tmap[p.tile]) for p in self.placements],
                       tiles=[tmap[t] for t in self.tiles])

    @property
    def n_tiles(self) -> int:
        return len(self.tiles)

    @property
    def has_weights(self) -> bool:
        return self.layer.has_weights

    def weight_cells(self) -> int:
        """Signed weights placed (all replicas)."""
        return sum((p.rows[1] - p.rows[0]) * (p.cols[1] - p.cols[0]) for p in self.placements)

    def utilization(self, chip: ChipConfig) -> dict[str, float]:
        """Fraction used at each level: ``subarray`` (weights placed / capacity of the
        subarrays used), ``pe`` (subarrays used / subarray slots of the PEs used), ``tile``
        (PEs used / PE slots of the tiles used). 0 for layers without weights."""
        if not self.placements:
            return {"subarray": 0.0, "pe": 0.0, "tile": 0.0}
        return {
            "subarray": self.weight_cells() / (self.n_subarrays * chip.weights_per_subarray),
            "pe": self.n_subarrays / (self.n_pes * chip.subarrays_per_pe),
            "tile": self.n_pes / (self.n_tiles * chip.pes_per_tile),
        }

    @property
    def computed_regions(self) -> list[tuple[int, int, int, int]]:
        """Per replica, the rectangle its engine computes: its region, and for a novel layer
        that region widened leftwards to the widest region's width. Novel replicas share one
        step schedule (``hw.controller``), which needs equal widths; a grid that does not
        divide the output's width leaves its last column band narrower, and that band then
        recomputes the last columns of its neighbour, whose pixels they stay: ``regions`` is
        the partition of the output (which replica's value each pixel is, what the chip's
        raster reorder reads), ``computed_regions`` the work."""
        if self.mapping != "novel" or not self.regions:
            return list(self.regions)
        width = max(x1 - x0 for _, _, x0, x1 in self.regions)
        return [(y0, y1, x1 - width, x1) for y0, y1, _, x1 in self.regions]


@dataclass
class MappingPlan:
    network: Network
    chip: ChipConfig
    mapping: str
    pipeline: bool
    layers: list[LayerPlan]

    def __getitem__(self, name: str) -> LayerPlan:
        for lp in self.layers:
            if lp.name == name:
                return lp
        raise KeyError(name)

    @property
    def weight_layers(self) -> list[LayerPlan]:
        return [lp for lp in self.layers if lp.has_weights]

    @property
    def placements(self) -> list[Placement]:
        return [p for lp in self.layers for p in lp.placements]

    @property
    def n_subarrays(self) -> int:
        return sum(lp.n_subarrays for lp in self.layers)

    @property
    def n_pes(self) -> int:
        return sum(lp.n_pes for lp in self.layers)

    @property
    def n_tiles(self) -> int:
        return sum(lp.n_tiles for lp in self.layers)

    @property
    def fits(self) -> bool:
        """True when the chip has enough tiles (always when ``chip.tiles`` is None)."""
        return self.chip.tiles is None or self.n_tiles <= self.chip.tiles

    def utilization(self) -> dict[str, float]:
        cells = sum(lp.weight_cells() for lp in self.layers)
        if not self.n_subarrays:
            return {"subarray": 0.0, "pe": 0.0, "tile": 0.0}
        return {"subarray": cells / (self.n_subarrays * self.chip.weights_per_subarray),
                "pe": self.n_subarrays / (self.n_pes * self.chip.subarrays_per_pe),
                "tile": self.n_pes / (self.n_tiles * self.chip.pes_per_tile)}


# --- helpers -------------------------------------------------------------------------------
def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def novel_reason(layer: Layer, chip: ChipConfig) -> str:
    """Why ``layer`` cannot use the novel mapping ("" when it can)."""
    if isinstance(layer, Linear):
        return "FC layer"
    if not isinstance(layer, Conv2d):
        return "no weights"
    if layer.k == 1:
        return "1x1 kernel"
    if layer.k * layer.k > chip.pes_per_tile:
        return f"{layer.k}x{layer.k} kernel needs {layer.k * layer.k} PEs, a tile has {chip.pes_per_tile}"
    if layer.k * layer.k * layer.cin <= chip.crossbar.rows:
        return f"K*K*Cin={layer.k * layer.k * layer.cin} fits one subarray's {chip.crossbar.rows} rows"
    return ""


def replica_grid(ho: int, wo: int, dup: int) -> tuple[int, int]:
    """``(dr, dc)`` with ``dr <= ho``, ``dc <= wo``, ``dr*dc <= dup`` minimising the largest
    rectangle ``ceil(ho/dr) * ceil(wo/dc)``; ties go to fewer replicas, then to more rows."""
    best = None
    for dr in range(1, min(dup, ho) + 1):
        hy = _cdiv(ho, dr)
        if _cdiv(ho, hy) != dr:
            continue  # a band would be empty: fewer rows give the same rectangles
        for dc in range(1, min(dup // dr, wo) + 1):
            wx = _cdiv(wo, dc)
            if _cdiv(wo, wx) != dc:
                continue
            key = (hy * wx, dr * dc, -dr)
            if best is None or key < best[0]:
                best = (key, (dr, dc))
    return best[1]


def _regions(ho: int, wo: int, dr: int, dc: int) -> list[tuple[int, int, int, int]]:
    """Row-major grid of output rectangles, bands of ``ceil(ho/dr)`` rows and ``ceil(wo/dc)`` cols."""
    hy, wx = _cdiv(ho, dr), _cdiv(wo, dc)
    out = []
    for a in range(dr):
        for b in range(dc):
            y0, x0 = a * hy, b * wx
            out.append((y0, min(ho, y0 + hy), x0, min(wo, x0 + wx)))
    # a coarse grid can leave empty trailing bands (e.g. ho=5, dr=4 -> bands of 2); drop them
    return [r for r in out if r[1] > r[0] and r[3] > r[2]]


def neurosim_duplication(net: Network, speedup: int | None = None) -> dict[str, int]:
    """NeuroSim's pipelined-chip duplication: ``bound = ceil(maxIFM / d)``, conv layer ``l``
    gets ``ceil((IFM_l / bound)**2)`` replicas (``IFM`` = input rows), FC layers 1; ``d``
    (``speedup``) defaults to and is capped at ``maxIFM / minIFM`` over the conv layers."""
    convs = [l for l in net.weight_layers if isinstance(l, Conv2d)]
    if not convs:
        return {l.name: 1 for l in net.weight_layers}
    ifm = {l.name: net.in_shape(l)[1] for l in convs}
    cap = max(1, max(ifm.values()) // min(ifm.values()))
    d = cap if speedup is None else max(1, min(int(speedup), cap))
    bound = _cdiv(max(ifm.values()), d)
    out = {l.name: 1 for l in net.weight_layers}
    for name, v in ifm.items():
        out[name] = _cdiv(v * v, bound * bound)
    return out


def balanced_duplication(net: Network, chip: ChipConfig, mapping: str, speedup: int | None = 8) -> dict[str, int]:
    """Duplication from the cycle model (``duplication="balance"``): with every layer mapped
    once, the target stage time is ``T = ceil(max_l clocks_l / speedup)`` and weight layer
    ``l`` gets ``ceil(clocks_l / T)`` replicas (``speedup`` None = 8)."""
    from gen.perf import estimate
    est = estimate(map_network(net, chip, mapping=mapping, duplication=1))
    d = 8 if speedup is None else max(1, int(speedup))
    target = _cdiv(max(lt.clocks for lt in est.layers), d)
    return {lt.name: max(1, _cdiv(lt.clocks, target)) for lt in est.layers if net[lt.name].has_weights}


def _requested_dup(net: Network, duplication, pipeline: bool, speedup: int | None) -> dict[str, int]:
    names = [l.name for l in net.weight_layers]
    if duplication is None:
        duplication = "auto" if pipeline else 1
    if duplication == "auto":
        return neurosim_duplication(net, speedup)
    if duplication == "balance":
        return None  # resolved in map_network from the cycle model
    if isinstance(duplication, int) and not isinstance(duplication, bool):
        if duplication < 1:
            raise ValueError(f"duplication={duplication} is not allowed: must be >= 1")
        return {n: duplication for n in names}
    if isinstance(duplication, dict):
        unknown = sorted(set(duplication) - set(names))
        if unknown:
            raise ValueError(f"duplication names unknown weight layer(s) {unknown}")
        for k, v in duplication.items():
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"duplication[{k!r}]={v!r} is not allowed: must be an integer >= 1")
        return {n: duplication.get(n, 1) for n in names}
    raise ValueError(f"duplication={duplication!r} is not allowed: use None, an int >= 1, a dict, 'auto' or "
                     f"'balance'")


# --- the two mappings -------------------------------------------------------------------
def _place_conventional(lp: LayerPlan, chip: ChipConfig, tile0: int) -> int:
    xb: CrossbarConfig = chip.crossbar
    layer = lp.layer
    nr, nc = layer.weight_rows, layer.weight_cols
    blocks = [((r0, min(nr, r0 + xb.rows)), (c0, min(nc, c0 + xb.outputs)))
              for c0 in range(0, nc, xb.outputs) for r0 in range(0, nr, xb.rows)]
    spp, ppt = chip.subarrays_per_pe, chip.pes_per_tile
    pe_g = 0  # PE counter inside the layer
    for rep in range(lp.duplication):
        for n, (rows, cols) in enumerate(blocks):
            pe = pe_g + n // spp
            lp.placements.append(Placement(lp.name, rep, None, rows, cols, tile0 + pe // ppt, pe % ppt, n % spp))
        pe_g += _cdiv(len(blocks), spp)
    lp.n_pes = pe_g
    n_tiles = _cdiv(pe_g, ppt)
    lp.tiles = list(range(tile0, tile0 + n_tiles))
    return tile0 + n_tiles


def _place_novel(lp: LayerPlan, chip: ChipConfig, tile0: int) -> int:
    xb: CrossbarConfig = chip.crossbar
    layer = lp.layer
    k, cin, cout = layer.k, layer.cin, layer.cout
    blocks = [((r0, min(cin, r0 + xb.rows)), (c0, min(cout, c0 + xb.outputs)))
              for c0 in range(0, cout, xb.outputs) for r0 in range(0, cin, xb.rows)]
    spp = chip.subarrays_per_pe
    groups = [blocks[g:g + spp] for g in range(0, len(blocks), spp)]
    tile = tile0
    for rep in range(lp.duplication):
        for grp in groups:
            for i in range(k):
                for j in range(k):
                    for s, (rows, cols) in enumerate(grp):
                        lp.placements.append(Placement(lp.name, rep, (i, j), rows, cols, tile, i * k + j, s))
            tile += 1
    lp.tiles = list(range(tile0, tile))
    lp.n_pes = len(lp.tiles) * k * k
    return tile


def map_network(net: Network, chip: ChipConfig | None = None, mapping: str = "conventional",
                pipeline: bool = False, duplication=None, speedup: int | None = 8) -> MappingPlan:
    """Map ``net`` onto ``chip`` (default: the ``paper`` preset values).

    Args:
        mapping: ``"conventional"`` or ``"novel"`` (ineligible layers fall back, see module doc).
        pipeline: plan a layer-pipelined chip (every layer busy on a different image);
            the cycle model then reports the pipeline's initiation interval.
        duplication: ``None`` (1, or ``"auto"`` when ``pipeline``), an int, a
            ``{layer: replicas}`` dict, ``"auto"`` (NeuroSim's rule with ``speedup``) or
            ``"balance"`` (replicas in proportion to each layer's clocks).
        speedup: NeuroSim's speed-up degree ``d`` for ``"auto"`` (default 8, NeuroSim's ``speedUpDegree``; None = the maximum).
    """
    chip = chip or ChipConfig()
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping={mapping!r} is not allowed: use one of {', '.join(MAPPINGS)}")
    req = _requested_dup(net, duplication, pipeline, speedup)
    if req is None:
        req = balanced_duplication(net, chip, mapping, speedup)
    layers: list[LayerPlan] = []
    lp_by: dict[str, LayerPlan] = {}
    tile = 0
    for layer in net.layers:
        lp = LayerPlan(layer.name, layer, net.in_shape(layer), net.out_shape(layer), "none",
                       raw_output=net.is_raw_output(layer))
        layers.append(lp)
        if not layer.has_weights:
            # pooling / Add units are replicated with their (first, main-path) producer
            src = lp_by.get(layer.inputs[0])
            lp.duplication = lp.requested_duplication = src.duplication if src else 1
            lp_by[layer.name] = lp
            continue
        lp_by[layer.name] = lp
        if mapping == "novel":
            lp.reason = novel_reason(layer, chip)
            lp.mapping = "conventional" if lp.reason else "novel"
        else:
            lp.mapping = "conventional"
        _, ho, wo = lp.out_shape
        lp.requested_duplication = req[layer.name]
        lp.grid = replica_grid(ho, wo, lp.requested_duplication)
        lp.regions = _regions(ho, wo, *lp.grid)
        lp.duplication = len(lp.regions)
        tile = (_place_novel if lp.mapping == "novel" else _place_conventional)(lp, chip, tile)
    return MappingPlan(net, chip, mapping, pipeline, layers)
