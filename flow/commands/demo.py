"""``pimgen demo``: the main job on built-in defaults."""
from __future__ import annotations

HELP = "run the built-in demo: generate and verify the default crossbar"


def add_arguments(p):
    p.add_argument("--sim", choices=["verilator", "icarus"], default="verilator", help="simulator [verilator]")


def run(args) -> int:
    from flow.commands import crossbar
    import argparse

    print("== pimgen demo: default crossbar, 32 random vectors, golden model + cycle model check")
    ns = argparse.Namespace(config=None, vectors=32, seed=0, sim=args.sim, backpressure=False,
                            reprogram=4, waves=False, json=False,
                            **{f: None for f in ("rows", "cols", "cell_bits", "w_bits", "a_bits", "dac_bits",
                                                 "adc_bits", "adc_shift", "cols_per_adc")})
    return crossbar.run(ns)
