"""Seconds per image of the golden model: plain integer (``run_network``) vs crossbar-exact
(``run_plan``), and the crossbar-exact speed-up over the previous implementation
(``bench/golden_old.py``, the element-by-element int64 model this replaced).

Paper preset (``ChipConfig.preset("paper")``: 128x128 subarrays, 1-bit cells, bit-serial
inputs) with a lossy 5-bit ADC, random weights (``gen.quantize.random_weights``), random
input codes; digits, resnet20 (CIFAR 32x32) and resnet34 (224x224). Every crossbar-exact
result is also checked bit for bit against the previous implementation where that runs.
Goal (issue 15): resnet34 crossbar-exact <= 30 s per image on the 2-core machine.

    python bench/golden_speed.py [--nets digits,resnet20,resnet34] [--mapping conventional]
                                 [--images N] [--old | --no-old]

``--old`` runs the previous implementation on every network (resnet34: ~15 minutes);
by default it runs on digits and resnet20 only. The load average is printed because the
machine is shared: a busy machine slows every column alike.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import golden_old  # noqa: E402

from gen.config import ChipConfig  # noqa: E402
from gen.mapping import map_network  # noqa: E402
from gen.network import zoo  # noqa: E402
from gen.quantize import random_weights  # noqa: E402
from sim import golden  # noqa: E402


def _timed(fn, xs):
    t = time.perf_counter()
    ys = [fn(x) for x in xs]
    return (time.perf_counter() - t) / len(xs), ys


def _old_run_plan(plan, params, x):
    saved = golden.plan_layer_acc
    golden.plan_layer_acc = lambda lp, p, x, cfg, conductances=None: golden_old.plan_layer_acc(lp, p, x, cfg)
    try:
        return golden.run_plan(plan, params, x)
    finally:
        golden.plan_layer_acc = saved


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="digits,resnet20,resnet34")
    ap.add_argument("--mapping", default="conventional", choices=["conventional", "novel"])
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--old", dest="old", action="store_true", default=None)
    ap.add_argument("--no-old", dest="old", action="store_false")
    a = ap.parse_args(argv)
    chip = ChipConfig.preset("paper")
    chip = dataclasses.replace(chip, crossbar=dataclasses.replace(chip.crossbar, adc_bits=5))
    print(f"paper preset, lossy 5-bit ADC, {a.mapping} mapping, {a.images} image(s), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"{'network':<10} {'integer s/img':>14} {'xbar-exact s/img':>17} {'previous s/img':>15} "
          f"{'speed-up':>9}  bit-identical")
    for name in a.nets.split(","):
        net = zoo(name)
        params = random_weights(net, seed=1)
        plan = map_network(net, chip, mapping=a.mapping)
        rng = np.random.default_rng(0)
        xs = [rng.integers(0, 256, net.input_shape) for _ in range(a.images)]
        t_int, _ = _timed(lambda x: golden.run_network(net, params, x), xs)
        t_new, ys = _timed(lambda x: golden.run_plan(plan, params, x), xs)
        run_old = a.old if a.old is not None else name != "resnet34"
        if run_old:
            t_old, zs = _timed(lambda x: _old_run_plan(plan, params, x), xs[:1])
            same = "yes" if all(np.array_equal(y, z) for y, z in zip(ys, zs)) else "NO"
            old, speed = f"{t_old:15.2f}", f"{t_old / t_new:8.1f}x"
        else:
            old, speed, same = f"{'(--old)':>15}", f"{'':>9}", "-"
        print(f"{name:<10} {t_int:14.3f} {t_new:17.3f} {old} {speed}  {same}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
