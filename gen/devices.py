"""Device model: non-ideal RRAM cells as data (DESIGN.md §3 "Non-ideal cells").

A :class:`DeviceModel` turns a crossbar's ideal cell levels into a conductance map ``g``
(int ``[rows, cols]``, units of ``2**-g_frac_bits`` of one level, columns as the crossbar
stores them, the reference column last). The same map goes to the golden model
(``sim.golden.crossbar_mvm(..., conductances=g)``, ``run_plan(..., conductances=...)``) and
into the RTL (``gen.cells.CellArray.from_conductances`` -> the crossbar's cell contents), so
a faulty crossbar's outputs are predicted bit for bit.

Per cell, with ``F = g_frac_bits`` and ``n`` a standard normal draw:

* stuck-at-0: ``g = 0``; stuck-at-1: ``g = (2**cell_bits - 1) << F`` (the highest level);
* otherwise ``g = clamp(rint((level + sigma*n) * (t / 1 s)**(-nu) * 2**F), 0, 2**(cell_bits+F) - 1)``
  (programming variation ``sigma`` in levels, then drift; ``rint`` rounds half to even).

The draws (pinned, so that a seed means the same faults everywhere): crossbar ``index``
uses ``numpy.random.default_rng([seed, index])`` and draws, in this order, ``u =
rng.random((rows, cols))`` then ``n = rng.standard_normal((rows, cols))``, both row-major
over all cells (the reference column and unused cells included), whatever the rates --
so raising a rate only adds faults (a cell stuck at 1 % is stuck at 2 % too) and the
variation of a cell does not depend on the stuck-at rates. A cell is stuck-at-0 when
``u < stuck_at_0``, stuck-at-1 when ``stuck_at_0 <= u < stuck_at_0 + stuck_at_1``; stuck
cells override variation and drift. The reference column gets the same effects
(``ref_column=True``, DESIGN.md §3) or keeps its ideal level-1 cells (``ref_column=False``:
a reference built from characterised or digital cells) -- the draws are the same either way.

With ``g_frac_bits = 0`` and :attr:`DeviceModel.is_ideal` every map is the ideal one and
every result bit-identical to the ideal model's. Pure numpy: no ``hw``, ``sim``, ``flow``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gen.cells import ideal_conductances
from gen.config import CrossbarConfig
from gen.fault_aware import FREE, fault_aware_levels
from gen.params import NetworkParams

__all__ = ["DeviceModel", "conductance_map", "crossbar_conductances", "plan_conductances", "stuck_map"]


def _check_real(name: str, value, lo: float, hi: float | None = None, *, open_lo: bool = False) -> None:
    """Raise ``ValueError`` naming the field, its value and the allowed range."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > lo if open_lo else value >= lo) and (hi is None or value <= hi)
    if not ok:
        rng = (f"a number > {lo:g}" if open_lo else f"a number >= {lo:g}") if hi is None else f"a number in [{lo:g}, {hi:g}]"
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be {rng}")


@dataclass(frozen=True)
class DeviceModel:
    """How far real cells are from their programmed levels (see the module docstring).

    Attributes:
        stuck_at_0: fraction of cells stuck at conductance 0, in ``[0, 1]``.
        stuck_at_1: fraction of cells stuck at the highest level, in ``[0, 1]``
            (``stuck_at_0 + stuck_at_1 <= 1``).
        variation: programming variation sigma, in levels (``>= 0``).
        drift_nu: drift exponent nu (``>= 0``); conductances scale by ``(time / 1 s)**-nu``.
        time: seconds since programming (``> 0``; 1 s means no drift whatever ``drift_nu``).
        ref_column: whether the reference column's cells get the effects too (DESIGN.md §3: yes).
        seed: seed of the draws (an integer ``>= 0``).
    """

    stuck_at_0: float = 0.0
    stuck_at_1: float = 0.0
    variation: float = 0.0
    drift_nu: float = 0.0
    time: float = 1.0
    ref_column: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _check_real("stuck_at_0", self.stuck_at_0, 0.0, 1.0)
        _check_real("stuck_at_1", self.stuck_at_1, 0.0, 1.0)
        if self.stuck_at_0 + self.stuck_at_1 > 1.0:
            raise ValueError(f"stuck_at_0={self.stuck_at_0!r} + stuck_at_1={self.stuck_at_1!r} is not allowed: "
                             f"the two rates must add up to at most 1")
        _check_real("variation", self.variation, 0.0)
        _check_real("drift_nu", self.drift_nu, 0.0)
        _check_real("time", self.time, 0.0, open_lo=True)
        if not isinstance(self.ref_column, bool):
            raise ValueError(f"ref_column={self.ref_column!r} is not allowed: ref_column must be True or False")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r} is not allowed: seed must be an integer >= 0")

    @property
    def drift_factor(self) -> float:
        """``(time / 1 s)**(-drift_nu)``, the factor drift applies to every unstuck cell."""
        return float(self.time) ** (-float(self.drift_nu))

    @property
    def is_ideal(self) -> bool:
        """No stuck cells, no variation, no drift: the maps are ``level << g_frac_bits``."""
        return self.stuck_at_0 == 0 and self.stuck_at_1 == 0 and self.variation == 0 and self.drift_factor == 1.0

    def describe(self) -> str:
        """One line for reports."""
        parts = [f"stuck-at-0 {self.stuck_at_0:g}", f"stuck-at-1 {self.stuck_at_1:g}",
                 f"variation {self.variation:g}"]
        if self.drift_nu:
            parts.append(f"drift nu {self.drift_nu:g} at t {self.time:g} s")
        if not self.ref_column:
            parts.append("ideal reference column")
        return ", ".join(parts) + f", seed {self.seed}"


def _draws(cfg: CrossbarConfig, model: DeviceModel, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Crossbar ``index``'s pinned draws (module docstring): ``u`` (stuck-at) then ``n`` (variation)."""
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ValueError(f"index={index!r} is not allowed: a crossbar index is an integer >= 0")
    rng = np.random.default_rng([model.seed, index])
    u = rng.random((cfg.rows, cfg.cols))                   # stuck-at draws, row-major
    n = rng.standard_normal((cfg.rows, cfg.cols))         # variation draws, row-major
    return u, n


def stuck_map(cfg: CrossbarConfig, model: DeviceModel, index: int = 0) -> np.ndarray:
    """Crossbar ``index``'s stuck cells as a test would measure them: int64 ``[rows, cols]``,
    ``gen.fault_aware.FREE`` (-1) for a cell that is not stuck, else the level it is stuck at
    (0, or ``2**cell_bits - 1``). The same draws as :func:`conductance_map`."""
    u, _ = _draws(cfg, model, index)
    out = np.full((cfg.rows, cfg.cols), FREE, dtype=np.int64)
    out[u < model.stuck_at_0] = 0
    out[(u >= model.stuck_at_0) & (u < model.stuck_at_0 + model.stuck_at_1)] = cfg.max_level
    if not model.ref_column:
        out[:, cfg.ref_col] = FREE
    return out


def conductance_map(levels, cfg: CrossbarConfig, model: DeviceModel, index: int = 0) -> np.ndarray:
    """The conductances ``g[rows, cols]`` (int64) of crossbar ``index`` whose ideal cell levels are
    ``levels[rows, cols]`` (integers in ``[0, 2**cell_bits - 1]``), under ``model``."""
    levels = np.asarray(levels)
    if levels.shape != (cfg.rows, cfg.cols) or not np.issubdtype(levels.dtype, np.integer) \
            or (levels.size and (levels.min() < 0 or levels.max() > cfg.max_level)):
        raise ValueError(f"levels must be integers in [0, {cfg.max_level}] of shape [rows, cols] = "
                         f"[{cfg.rows}, {cfg.cols}], got {levels.dtype} {levels.shape}")
    F = cfg.g_frac_bits
    u, n = _draws(cfg, model, index)
    analog = (levels.astype(np.float64) + model.variation * n) * model.drift_factor
    g = np.clip(np.rint(analog * (1 << F)), 0, cfg.g_max).astype(np.int64)
    g[u < model.stuck_at_0] = 0
    g[(u >= model.stuck_at_0) & (u < model.stuck_at_0 + model.stuck_at_1)] = cfg.max_level << F
    if not model.ref_column:
        g[:, cfg.ref_col] = 1 << F
    return g


def crossbar_conductances(weights, cfg: CrossbarConfig, model: DeviceModel, index: int = 0, *,
                          fault_aware: bool = False) -> np.ndarray:
    """:func:`conductance_map` of the crossbar holding weight block ``weights[n_rows, n_out]``
    (laid out as ``gen.cells.ideal_conductances`` lays it out); with ``fault_aware`` the levels
    are chosen around its measured stuck cells first (``gen.fault_aware``)."""
    if fault_aware:
        levels = fault_aware_levels(weights, cfg, stuck_map(cfg, model, index))
    else:
        levels = ideal_conductances(weights, cfg) >> cfg.g_frac_bits
    return conductance_map(levels, cfg, model, index)


def plan_conductances(plan, params, model: DeviceModel, *, fault_aware: bool = False) -> dict:
    """One conductance map per crossbar of a :class:`gen.mapping.MappingPlan`:
    ``{Placement: g[rows, cols]}``, what ``sim.golden.run_plan(..., conductances=...)`` takes.

    Crossbar ``index`` is the placement's position in ``plan.placements`` (layer order, then
    the layer's placements in order); its weights are ``params[layer].block(placement)``.
    ``fault_aware``: program around each crossbar's stuck cells (:func:`crossbar_conductances`).
    """
    params = NetworkParams.of(params)
    cfg = plan.chip.crossbar
    return {p: crossbar_conductances(params[p.layer].block(p), cfg, model, i, fault_aware=fault_aware)
            for i, p in enumerate(plan.placements)}
