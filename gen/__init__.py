"""pimgen front end: configs, networks, mapping, cycle model, Verilog emission and CLI."""
