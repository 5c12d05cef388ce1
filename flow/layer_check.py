"""Generate a layer engine, write its build folder, simulate it with cocotb and check it.

* :class:`LayerDesign` — a one-layer spec + chip + mapping (+ duplication, raw output,
  :class:`gen.params.WeightParams`, by default from ``gen.quantize.random_weights``): its
  plan, the engine, its Verilog and manifest.
* :func:`write_build` / :func:`load_build` — the ``build/<name>/`` folder:
  ``rtl/layer.v``, ``weights/params.json`` (:meth:`gen.params.NetworkParams.to_json`, the
  one layer ``"L"``), ``weights/program.hex`` (the programming beats of the ``prog`` port,
  one packed payload per line), ``manifest.json``. Written to a temporary folder and renamed at the end, so a
  failure never leaves a half-written build.
* :func:`run_layer_check` — random images through ``sim.tb.layer``; the report has
  ``passed``, ``measured_clocks``, ``predicted_clocks``, ``mismatches``, ``fm_reads``.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gen.config import ChipConfig
from gen.layerspec import LayerSpec, layer_plan
from gen.params import NetworkParams, WeightParams
from gen.quantize import random_weights
from flow.buildfolder import check_output, read_manifest, reading_build, write_folder
from gen.schedule import schedule_layer

MANIFEST_VERSION = 2   # 2: crossbars programmed through `prog` (weights/program.hex)
TOP = "layer"


@dataclass
class LayerDesign:
    spec: LayerSpec
    chip: ChipConfig
    mapping: str = "conventional"
    duplication: int = 1
    raw: bool = False
    seed: int = 0
    params: WeightParams | None = None
    _verilog: str | None = field(default=None, repr=False)

    def __post_init__(self):
        self.plan, self.lp = layer_plan(self.spec, self.chip, self.mapping, self.duplication, self.raw)
        if self.chip.tiles is not None and self.plan.n_tiles > self.chip.tiles:
            raise ValueError(f"layer {self.spec} does not fit the hardware: the {self.lp.mapping} mapping needs "
                             f"{self.plan.n_tiles} tiles ({self.lp.n_pes} PEs, {self.lp.n_subarrays} crossbars), "
                             f"the chip has {self.chip.tiles}")
        if self.params is None:
            self.params = random_weights(self.plan.network, self.seed, w_bits=self.chip.crossbar.w_bits,
                                         a_bits=self.chip.crossbar.a_bits)["L"]
        self.params.check_for(self.lp.layer, raw=self.raw, w_bits=self.chip.crossbar.w_bits)
        self.sched = schedule_layer(self.lp, self.chip)
        refusal = self.sched.engine_refusal()
        if refusal:
            raise ValueError(refusal)

    def engine(self, programmed: bool = False):
        """The RTL: weights as the crossbars' initial contents (what the FPGA flow synthesizes),
        or ``programmed`` through the ``prog`` port (what simulation builds: every crossbar is
        then one shared module, so the Verilog and its simulator build do not grow with the
        crossbar count or depend on the weights)."""
        from hw.layer import ConvLayerEngine
        return ConvLayerEngine(self.lp, self.chip, self.params, programmed=programmed)

    @property
    def verilog(self) -> str:
        if self._verilog is None:
            from flow.emit import to_verilog
            self._verilog = to_verilog(self.engine(programmed=True), TOP)
        return self._verilog

    def program_words(self) -> list[int]:
        """The programming beats of :attr:`verilog`'s ``prog`` port, packed."""
        from gen.chipplan import programming_beats
        from hw.pe import pack_program
        cfg = self.chip.crossbar
        return pack_program(programming_beats(self.lp.placements, lambda p: self.params, cfg), cfg,
                            len(self.lp.placements))

    @property
    def predicted_clocks(self) -> int:
        return self.sched.engine_clocks

    def manifest(self) -> dict:
        sc, lp, layer = self.sched, self.lp, self.lp.layer
        m = {
            "layer": {"name": lp.name, "kind": sc.kind, "cin": sc.cin, "cout": sc.cout, "k": sc.k,
                      "stride": sc.stride, "pad": sc.pad, "in_shape": list(sc.in_shape),
                      "out_shape": list(sc.out_shape)},
            "mapping": sc.mapping, "reason": lp.reason, "raw_output": sc.raw, "duplication": lp.duplication,
            "regions": [list(r.region) for r in sc.replicas], "tiles": [list(t.replicas) for t in sc.tiles],
            "subarrays": lp.n_subarrays, "pes": lp.n_pes,
            "ports": {
                "i": {"dir": "in", "kind": "stream", "bits": sc.fm.word_bits, "words_per_image": sc.load_words,
                      "words_per_pixel": sc.fm.wpp},
                "o": {"dir": "out", "kind": "stream", "array": len(sc.tiles), "bits": sc.bus_bits,
                      "words_per_step": [t.out_words for t in sc.tiles], "value_bits": sc.a_out, "signed": sc.raw},
                "busy": {"dir": "out", "bits": 1}, "done": {"dir": "out", "bits": 1},
                "cycles": {"dir": "out", "bits": 32}, "fm_reads": {"dir": "out", "bits": 32},
                "prog": {"dir": "in", "kind": "stream", "beats": len(self.program_words())},
            },
            "schedule": sc.to_dict(),
            "expected_fm_reads": sc.fm_reads,
        }
        m.update({"version": MANIFEST_VERSION, "top": TOP, "rtl": f"rtl/{TOP}.v", "spec": self.spec.to_dict(),
                  "spec_text": str(self.spec), "chip": self.chip.to_dict(), "requested_mapping": self.mapping,
                  "requested_duplication": self.duplication, "seed": self.seed,
                  "expected_clocks": self.predicted_clocks,
                  "weights": {"params": "weights/params.json", "program": "weights/program.hex"}})
        return m


def write_build(design: LayerDesign, out: str | Path, *, force: bool = False) -> Path:
    """Write ``out/`` (rtl, weights, manifest) atomically; returns the folder. An existing ``out``
    that is not a pimgen build is refused unless ``force`` (``flow.buildfolder``)."""
    out = check_output(out, force=force)
    verilog = design.verilog          # may raise: nothing written yet
    manifest = design.manifest()
    files = {f"rtl/{TOP}.v": verilog, "weights/params.json": NetworkParams({"L": design.params}).to_json(),
             "weights/program.hex": "".join(f"{v:x}\n" for v in design.program_words()),
             "manifest.json": json.dumps(manifest, indent=2)}
    return write_folder(out, files, force=force)


def load_build(folder: str | Path) -> tuple[LayerDesign, dict]:
    """Re-create the :class:`LayerDesign` of a build folder (Verilog from ``rtl/``). A folder that
    is not one, or a damaged one, is one ``ValueError`` line."""
    folder = Path(folder)
    manifest = read_manifest(folder, hint=f"`pimgen generate --layer ... -o {folder}` or `pimgen build`")
    mf = folder / "manifest.json"
    if manifest.get("top") != TOP:
        raise ValueError(f"{str(mf)!r} is not a layer-engine manifest (top {manifest.get('top')!r}, expected "
                         f"{TOP!r})")
    if manifest.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{str(folder)!r} was generated by another pimgen (manifest version "
                         f"{manifest.get('version')}, this pimgen reads {MANIFEST_VERSION}); generate it again")
    with reading_build(folder, "layer engine", "`pimgen generate`"):
        params = NetworkParams.from_json((folder / manifest["weights"]["params"]).read_text())["L"]
        d = LayerDesign(LayerSpec.from_dict(manifest["spec"]), ChipConfig.from_dict(manifest["chip"]),
                        manifest["requested_mapping"], manifest["requested_duplication"], manifest["raw_output"],
                        manifest["seed"], params)
        d._verilog = (folder / manifest["rtl"]).read_text()
    return d, manifest


_TRIGGER = re.compile(r"reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;")


def icarus_fixup(verilog: str) -> str:
    """Icarus 11 workaround: Yosys' Verilog back end makes every ``always @*`` block sensitive
    to a ``reg ... = 0`` trigger so that it runs once at time 0, but Icarus 11 raises no
    event for that initialiser, so a combinational block whose inputs keep their initial
    values (an FSM output in its reset state, a read enable that stays low) stays ``x``.
    Toggling each trigger at 1 ns evaluates every block once."""
    return _TRIGGER.sub(lambda m: f"{m.group(0)}\n  initial #1 {m.group(1)} = 1'h1;", verilog)


def tb_arguments(design: LayerDesign, images: np.ndarray, *, seed: int = 0, ready_prob: float = 1.0,
                 gap_prob: float = 0.0) -> dict[str, Any]:
    sc = design.sched
    tiles = []
    for t, tile in enumerate(sc.tiles):
        steps = []
        for j in range(tile.written_steps):
            steps.append([None if o is None else [o[1], o[2]] for o in sc.step_outputs(t, j)])
        slot = {r: n for n, r in enumerate(tile.replicas)}
        tiles.append({"words": tile.out_words, "steps": steps,
                      "cols": [[slot[r], c0, c1] for r, c0, c1 in tile.out_cols]})
    imgs = [np.asarray(x).reshape(sc.in_shape) for x in images]
    return {
        "spec": design.spec.to_dict(), "chip": design.chip.to_dict(), "mapping": design.mapping,
        "duplication": design.duplication, "raw": design.raw, "params": design.params.to_dict(),
        "images": [x.tolist() for x in imgs], "in_words": [sc.fm.pack(x) for x in imgs],
        "tiles": tiles, "g": sc.bus_bits, "value_bits": sc.a_out, "signed": sc.raw,
        "predicted_clocks": design.predicted_clocks, "expected_reads": sc.fm_reads,
        "prog": design.program_words(),
        "seed": seed, "ready_prob": ready_prob, "gap_prob": gap_prob,
        "check_timing": ready_prob >= 1.0 and gap_prob == 0.0,
    }


def random_images(design: LayerDesign, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 7919)
    a = design.chip.crossbar.a_bits
    return rng.integers(0, 1 << a, (n,) + tuple(design.sched.in_shape))


def run_layer_check(design: LayerDesign, *, images: int | np.ndarray = 1, seed: int = 0, sim: str = "verilator",
                    waves: bool = False, ready_prob: float = 1.0, gap_prob: float = 0.0,
                    cache_dir: Path | None = None, waves_dir: Path | None = None, progress=None,
                    hierarchical: bool = True) -> dict[str, Any]:
    """Simulate ``design`` on random (or given ``[n, Cin, H, W]``) images; return the report.
    ``hierarchical``: Verilator compiles the shared crossbar module once, apart (``sim.runner``).
    ``progress``: an optional stage-line callable (``flow.progress.Progress``).
    With ``waves``, the waveform goes to ``waves_dir`` (the build folder, say; see ``sim.runner``)."""
    from sim.runner import run_testbench
    if not 0 < ready_prob <= 1:
        raise ValueError(f"ready_prob={ready_prob} is not allowed: it must be in (0, 1]")
    if not 0 <= gap_prob < 1:
        raise ValueError(f"gap_prob={gap_prob} is not allowed: it must be in [0, 1)")
    if isinstance(images, int):
        if images < 1:
            raise ValueError(f"images={images} is not allowed: it must be >= 1")
        imgs = random_images(design, images, seed)
    else:
        imgs = np.asarray(images)
    args = tb_arguments(design, imgs, seed=seed, ready_prob=ready_prob, gap_prob=gap_prob)
    t0 = time.perf_counter()
    verilog = icarus_fixup(design.verilog) if sim == "icarus" else design.verilog
    from flow.chip_check import shared_blocks
    res = run_testbench(verilog, TOP, "sim.tb.layer", args, sim=sim, waves=waves, cache_dir=cache_dir, seed=seed,
                        waves_dir=waves_dir, progress=progress,
                        hier_blocks=shared_blocks(design.chip.crossbar) if hierarchical else ())
    d = res.data
    timing_ok = (not args["check_timing"]) or (
        bool(d.get("measured_per_image")) and all(c == args["predicted_clocks"] for c in d["measured_per_image"]))
    report = {
        "passed": bool(res.passed and d.get("mismatches", 1) == 0 and timing_ok
                       and d.get("fm_reads") == d.get("expected_fm_reads")),
        "sim": sim, "layer": str(design.spec), "mapping": design.lp.mapping,
        "requested_mapping": design.mapping, "duplication": design.lp.duplication,
        "images": len(imgs), "measured_clocks": d.get("measured_clocks"),
        "measured_per_image": d.get("measured_per_image"), "predicted_clocks": args["predicted_clocks"],
        "timing_checked": args["check_timing"], "mismatches": d.get("mismatches"),
        "pixels_checked": d.get("pixels_checked"), "fm_reads": d.get("fm_reads"),
        "expected_fm_reads": d.get("expected_fm_reads"),
        "input_pixels": design.sched.in_shape[1] * design.sched.in_shape[2] * len(imgs),
        "wall_seconds": round(time.perf_counter() - t0, 2),
        "log": str(res.log) if res.log else None, "waves": str(res.waves) if res.waves else None,
    }
    if d.get("first_mismatch"):
        report["first_mismatch"] = d["first_mismatch"]
    return report
