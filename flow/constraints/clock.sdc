# Generic clock constraint of the pimgen FPGA top (port `clk`), 100 MHz, for SDC-reading
# tools (Quartus, Libero, nextpnr --sdc, OpenSTA). Scale -period to your target.
create_clock -name clk -period 10.000 [get_ports clk]
