"""pimgen simulation: numpy golden model, cocotb testbenches and the simulator runner."""
