"""cocotb testbenches. Each module is a cocotb test module run by ``sim.runner``."""
