# pimgen: every target sets itself up from nothing (venv, Python packages, Icarus).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
JOBS ?= 2

.PHONY: all demo test test-slow test-all bench lint clean tools venv

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(STAMP)

# Icarus Verilog from Debian when missing and we are root; otherwise the Icarus tests
# skip with a reason that says how to install it.
tools:
	@if ! command -v iverilog >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing iverilog (apt)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog >/dev/null) \
	      || echo "warning: could not install iverilog; Icarus tests will be skipped"; \
	  else echo "note: iverilog missing and not root; Icarus tests will be skipped (apt-get install iverilog)"; fi; \
	fi
	@if [ ! -e /usr/include/lz4.h ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing liblz4-dev (apt), for FST waves"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq liblz4-dev >/dev/null) \
	      || echo "warning: could not install liblz4-dev; Verilator waves will be VCD"; \
	  else echo "note: liblz4-dev missing and not root; Verilator waves will be VCD (apt-get install liblz4-dev)"; fi; \
	fi

demo: $(STAMP) tools
	$(VENV)/bin/pimgen demo

test: $(STAMP) tools
	$(PY) -m pytest -n $(JOBS)

test-slow: $(STAMP) tools
	$(PY) -m pytest -n $(JOBS) -m slow

test-all: $(STAMP) tools
	$(PY) -m pytest -n $(JOBS) -m 'slow or not slow'

bench: $(STAMP) tools
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build sim_build .pytest_cache
