"""A first energy and area model (issue 15): per-event energies and per-block areas from a
TOML table (``gen/presets/energy.toml``, every default with its source: ISAAC, 32 nm),
multiplied by the events the schedule and the plan count.

Events per weight layer and image (the plan's placements and regions, the schedule's traffic):

* crossbar MVMs: every placement once per output pixel of the rectangle its replica computes
  (``gen.mapping.LayerPlan.computed_regions``);
* per MVM and input cycle: one DAC drive per active row, one cell read per cell on an active
  row (all ``cols`` columns), ``num_adcs * cols_per_adc`` ADC conversions (the RTL converts
  every physical column it multiplexes) and as many shift-and-adds;
* partial-sum additions: per output value, one fewer than the blocks that add into it;
* buffer bits: the schedule's traffic on the global, tile and PE buses, each bit read once
  from a buffer and carried once over its bus; global-bus bits also pass one router.

Pooling and Add layers: their global-bus traffic (buffer + bus + router per bit).

Area: subarrays (cells scaled from 128x128), per subarray one ADC per ``cols_per_adc``
columns, one DAC per row and ``outputs + 1`` shift-and-add accumulators (the RTL's), buffers
(global + per tile + per PE, KiB), buses (global + per tile + per PE, bits of width) and one
router per tile. Leakage, control and clock are not modelled. ``TOPS/W`` counts 2 ops per MAC.
Pure: no ``hw``/``sim``/``flow``.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EnergyModel", "LayerEnergy", "EnergyReport", "energy_report", "KINDS"]

PRESET = Path(__file__).parent / "presets" / "energy.toml"

#: Block kinds energies and areas are reported by.
KINDS = ("cells", "dac", "adc", "shift_add", "accumulate", "buffer", "bus", "router")


def _table_lookup(table: dict[int, float], bits: int, scale_exp: bool = True) -> float:
    if bits in table:
        return table[bits]
    near = min(table, key=lambda b: abs(b - bits))
    return table[near] * (2.0 ** (bits - near) if scale_exp else 1.0)


@dataclass(frozen=True)
class EnergyModel:
    """Per-event energies (pJ) and per-block areas (um2). Load with :meth:`from_toml`."""
    energy_pj: dict[str, float]
    adc_energy_pj: dict[int, float]
    adc_area_um2: dict[int, float]
    area_um2: dict[str, float]
    source: str = str(PRESET)

    _ENERGY = ("dac_drive", "cell_read", "shift_add", "psum_add", "buffer_bit", "bus_bit", "router_bit")
    _AREA = ("subarray_128x128", "dac", "shift_add", "buffer_kib", "bus_bit", "router")

    @classmethod
    def from_toml(cls, path=None) -> "EnergyModel":
        """The table in ``path`` (default: the shipped ISAAC-based preset); missing or unknown
        keys are a ``ValueError`` naming them."""
        p = Path(path) if path else PRESET
        try:
            d = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ValueError(f"energy table {str(p)!r} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"energy table {str(p)!r} is not valid TOML: {e}") from None
        for sect, keys in (("energy_pj", cls._ENERGY), ("area_um2", cls._AREA)):
            got = set(d.get(sect, {}))
            if got != set(keys):
                raise ValueError(f"energy table {str(p)!r} [{sect}]: missing {sorted(set(keys) - got)}, "
                                 f"unknown {sorted(got - set(keys))}")
        for sect in ("adc_energy_pj", "adc_area_um2"):
            if not d.get(sect):
                raise ValueError(f"energy table {str(p)!r}: [{sect}] is missing or empty")
        return cls({k: float(v) for k, v in d["energy_pj"].items()},
                   {int(k): float(v) for k, v in d["adc_energy_pj"].items()},
                   {int(k): float(v) for k, v in d["adc_area_um2"].items()},
                   {k: float(v) for k, v in d["area_um2"].items()}, str(p))

    def adc_pj(self, bits: int) -> float:
        return _table_lookup(self.adc_energy_pj, bits)

    def adc_um2(self, bits: int) -> float:
        return _table_lookup(self.adc_area_um2, bits)


@dataclass
class LayerEnergy:
    """One layer's events and energy (pJ per image, by block kind)."""
    name: str
    events: dict[str, int] = field(default_factory=dict)
    energy_pj: dict[str, float] = field(default_factory=dict)

    @property
    def total_pj(self) -> float:
        return sum(self.energy_pj.values())

    def to_dict(self) -> dict:
        return {"name": self.name, "events": dict(self.events), "energy_pj": dict(self.energy_pj),
                "total_pj": self.total_pj}


@dataclass
class EnergyReport:
    """Energy per image and area of a plan (see the module doc)."""
    network: str
    mapping: str
    layers: list[LayerEnergy]
    area_um2: dict[str, float]
    macs: int
    interval_s: float | None = None

    @property
    def energy_pj(self) -> float:
        return sum(le.total_pj for le in self.layers)

    @property
    def energy_j(self) -> float:
        return self.energy_pj * 1e-12

    def by_kind(self) -> dict[str, float]:
        out = {k: 0.0 for k in KINDS}
        for le in self.layers:
            for k, v in le.energy_pj.items():
                out[k] += v
        return out

    @property
    def tops_per_w(self) -> float:
        """``2 * MACs / energy`` in TOPS/W (= tera-operations per joule)."""
        return 2 * self.macs / self.energy_j / 1e12 if self.energy_pj else 0.0

    @property
    def area_mm2(self) -> float:
        return sum(self.area_um2.values()) * 1e-6

    def to_dict(self) -> dict:
        return {"network": self.network, "mapping": self.mapping, "energy_uj_per_image": self.energy_pj * 1e-6,
                "tops_per_w": self.tops_per_w, "area_mm2": self.area_mm2,
                "energy_pj_by_kind": self.by_kind(), "area_um2_by_kind": dict(self.area_um2),
                "layers": [le.to_dict() for le in self.layers]}


def _weight_layer_events(lp, chip) -> dict[str, int]:
    from gen.schedule import schedule_layer
    xb = chip.crossbar
    # every pixel a replica computes, its neighbour's too when it was widened (computed_regions)
    pix = {r: (y1 - y0) * (x1 - x0) for r, (y0, y1, x0, x1) in enumerate(lp.computed_regions)}
    T = xb.input_cycles
    conv_per_mvm = T * xb.num_adcs * xb.cols_per_adc
    mvms = rows_driven = 0
    blocks_per_col: dict[tuple, int] = {}
    for p in lp.placements:
        n = pix[p.replica]
        mvms += n
        rows_driven += n * (p.rows[1] - p.rows[0])
        blocks_per_col[(p.replica, p.cols)] = blocks_per_col.get((p.replica, p.cols), 0) + 1
    adds = sum(pix[rep] * (c1 - c0) * (nb - 1) for (rep, (c0, c1)), nb in blocks_per_col.items())
    tr = schedule_layer(lp, chip).traffic
    return {"mvms": mvms, "dac_drives": rows_driven * T, "cell_reads": rows_driven * T * xb.cols,
            "conversions": mvms * conv_per_mvm, "shift_adds": mvms * conv_per_mvm, "psum_adds": adds,
            "global_bits": tr["global"], "tile_bits": tr["tile"], "pe_bits": tr["pe"]}


def _post_layer_events(lp, chip) -> dict[str, int]:
    c, h, w = lp.in_shape
    bits = h * w * len(lp.layer.inputs) * c * chip.crossbar.a_bits
    return {"global_bits": bits}


def _energy(ev: dict[str, int], m: EnergyModel, adc_bits: int) -> dict[str, float]:
    e = m.energy_pj
    bits = ev.get("global_bits", 0) + ev.get("tile_bits", 0) + ev.get("pe_bits", 0)
    return {"cells": ev.get("cell_reads", 0) * e["cell_read"], "dac": ev.get("dac_drives", 0) * e["dac_drive"],
            "adc": ev.get("conversions", 0) * m.adc_pj(adc_bits), "shift_add": ev.get("shift_adds", 0) * e["shift_add"],
            "accumulate": ev.get("psum_adds", 0) * e["psum_add"], "buffer": bits * e["buffer_bit"],
            "bus": bits * e["bus_bit"], "router": ev.get("global_bits", 0) * e["router_bit"]}


def _area(plan, m: EnergyModel) -> dict[str, float]:
    chip = plan.chip
    xb = chip.crossbar
    a = m.area_um2
    n_sub, n_pe, n_tile = plan.n_subarrays, plan.n_pes, plan.n_tiles
    return {"cells": n_sub * a["subarray_128x128"] * xb.rows * xb.cols / (128 * 128),
            "dac": n_sub * xb.rows * a["dac"] * (2 ** (xb.dac_bits - 1)),
            "adc": n_sub * xb.num_adcs * m.adc_um2(xb.adc_resolution),
            "shift_add": n_sub * (xb.outputs + 1) * a["shift_add"],
            "accumulate": 0.0,
            "buffer": (chip.global_buffer_kib + n_tile * chip.tile_buffer_kib + n_pe * chip.pe_buffer_kib)
            * a["buffer_kib"],
            "bus": (chip.global_bus_bits + n_tile * chip.tile_bus_bits + n_pe * chip.pe_bus_bits) * a["bus_bit"],
            "router": n_tile * a["router"]}


def energy_report(plan, model: EnergyModel | None = None, interval_clocks: int | None = None) -> EnergyReport:
    """Energy per image (by layer and block kind), TOPS/W and area of a :class:`gen.mapping.MappingPlan`."""
    m = model or EnergyModel.from_toml()
    chip = plan.chip
    layers = []
    for lp in plan.layers:
        ev = _weight_layer_events(lp, chip) if lp.has_weights else _post_layer_events(lp, chip)
        layers.append(LayerEnergy(lp.name, ev, _energy(ev, m, chip.crossbar.adc_resolution)))
    interval = interval_clocks / chip.clock_hz if interval_clocks else None
    return EnergyReport(plan.network.name, plan.mapping, layers, _area(plan, m), plan.network.macs, interval)
