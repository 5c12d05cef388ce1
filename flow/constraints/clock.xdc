# Xilinx Vivado clock constraint of the pimgen FPGA top (port `clk`), 100 MHz.
create_clock -name clk -period 10.000 [get_ports clk]
