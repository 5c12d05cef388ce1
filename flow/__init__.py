"""pimgen flow: the top layer — build/simulate/synth pipelines (Verilog emission, weight files,
manifests, FPGA tool driver, the crossbar/layer/interconnect build-and-check code) and the
``pimgen`` CLI (one module per sub-command in ``flow.commands``)."""
