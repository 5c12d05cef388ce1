"""``pimgen crossbar``: generate one crossbar, simulate it against the golden model."""
from __future__ import annotations

HELP = "generate a crossbar, simulate it (cocotb) against the golden model, check clocks"
DESCRIPTION = (HELP + ". With device flags (--variation, --stuck-at, --stuck-at-1, --drift/--time) the crossbar's "
               "cells are a device model's conductance map (seeded by --seed; use --g-frac-bits F for sub-level "
               "conductances) and the golden model predicts the faulty crossbar's outputs bit for bit.")


def add_arguments(p):
    from flow.commands._common import add_crossbar_args, add_device_args
    add_crossbar_args(p)
    add_device_args(p)
    p.add_argument("--vectors", type=int, default=16, help="random input vectors to check [16]")
    p.add_argument("--seed", type=int, default=0, help="random seed for weights, vectors and device draws [0]")
    p.add_argument("--sim", choices=["verilator", "icarus"], default="verilator", help="simulator [verilator]")
    p.add_argument("--backpressure", action="store_true",
                   help="random gaps on the input and random ready on the output (clocks not checked)")
    p.add_argument("--reprogram", type=int, default=0, metavar="N",
                   help="re-program N random rows through the write port half-way [0]")
    p.add_argument("--waves", action="store_true", help="dump a waveform (FST/VCD) next to the sim log")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    from flow.commands._common import crossbar_from_args, device_from_args, print_json
    from flow.crossbar_check import CrossbarCheck, run_crossbar_check

    cfg = crossbar_from_args(args)
    device = device_from_args(args, args.seed)
    check = CrossbarCheck(cfg, vectors=args.vectors, seed=args.seed, sim=args.sim, waves=args.waves,
                          ready_prob=0.5 if args.backpressure else 1.0,
                          gap_prob=0.3 if args.backpressure else 0.0, reprogram_rows=args.reprogram,
                          device=device, fault_aware=args.fault_aware)
    rep = run_crossbar_check(check)
    if args.json:
        print_json(rep)
    else:
        print(f"crossbar {cfg.rows}x{cfg.cols}  cell_bits={cfg.cell_bits} dac_bits={cfg.dac_bits} "
              f"adc_bits={cfg.adc_resolution}{'' if cfg.adc_bits is not None else ' (lossless)'} "
              f"adc_shift={cfg.adc_shift} cols_per_adc={cfg.cols_per_adc}  "
              f"-> {cfg.outputs} outputs, {cfg.num_adcs} ADCs")
        if device is not None:
            print(f"device         {device.describe()}{', fault-aware cells' if args.fault_aware else ''}, "
                  f"g_frac_bits={cfg.g_frac_bits}: "
                  f"{rep['cells_off_ideal']} of {cfg.rows * cfg.cols} cells off their ideal conductance")
        print(f"simulator      {rep['sim']}  ({rep['wall_seconds']} s)")
        print(f"vectors        {rep['vectors']} sent, {rep['delivered']} delivered, {rep['mismatches']} mismatches")
        timing = "not checked (back-pressure)" if args.backpressure else (
            "match" if rep["latencies"] == [rep["predicted_clocks"]] else "MISMATCH")
        print(f"clocks         measured {rep['latencies']}  predicted {rep['predicted_clocks']}  {timing}")
        if rep.get("waves"):
            print(f"waves          {rep['waves']}")
        print("PASS" if rep["passed"] else f"FAIL  (log: {rep['log']})")
    return 0 if rep["passed"] else 1
