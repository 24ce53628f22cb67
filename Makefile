# Phitsanulok transit edge firmware: host-side entry points.
#   make sim    run the simulated bus against a local Mosquitto (README's main command)
#   make test   run the whole test suite (sets itself up on a fresh machine)
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MPYLIB_STAMP := build/mpylib/.fetched
PYTEST_ARGS ?=

.PHONY: setup test sim bench clean mosquitto

setup: $(STAMP) $(MPYLIB_STAMP) mosquitto

$(STAMP): requirements.txt
	@test -x $(VPY) || { echo "setup: creating virtualenv in $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "setup: installing pinned Python packages"
	@$(VPY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

$(MPYLIB_STAMP): $(STAMP) lib/mpy-packages.json tools/fetch_mpy_packages.py
	@$(VPY) tools/fetch_mpy_packages.py
	@touch $@

mosquitto:
	@bash tools/ensure_mosquitto.sh

test: setup
	$(VPY) -m pytest host_tests $(PYTEST_ARGS)

sim: setup
	$(VPY) tools/sim.py $(SIM_ARGS)

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(VPY) $$b || exit 1; done

clean:
	rm -rf build .pytest_cache
