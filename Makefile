# Phitsanulok transit edge firmware: host-side entry points.
#   make sim    run the simulated bus against a local Mosquitto (README's main command);
#               make sim CITY=1 also starts the city bridge and prints the live page's address
#   make test   run the whole test suite (sets itself up on a fresh machine) on TEST_JOBS
#               pytest-xdist workers (2); make test TEST_JOBS=0 runs it in one process
#   make mp32   build (or find in ~/.cache/phs-transit) the 32-bit MicroPython with the firmware frozen
#               (source: ../shared/micropython/ beside the checkout, or MP32_SRC=<clone of v1.28.0>)
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MPYLIB_STAMP := build/mpylib/.fetched
PYTEST_ARGS ?=
TEST_JOBS ?= 2
TESTS ?= host_tests

.PHONY: setup test sim bench clean mosquitto chromium flash doctor provision revoke vboard release mp32 cmd

setup: $(STAMP) $(MPYLIB_STAMP) mosquitto chromium

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

chromium:
	@bash tools/ensure_chromium.sh

mp32: $(MPYLIB_STAMP)
	@bash tools/ensure_multilib.sh
	@$(VPY) tools/mp32.py

test: setup mp32
	$(VPY) -m pytest $(TESTS) -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

sim: setup
	$(VPY) tools/sim.py $(if $(CITY),--bridge) $(SIM_ARGS)

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(VPY) $$b || exit 1; done

clean:
	rm -rf build .pytest_cache

# Technician tools (docs/technician.md). PORT: /dev/ttyUSB0, COM3 or socket://127.0.0.1:PORT (virtual board).
PORT ?=
DEVICE ?=
FLASH_ARGS ?=
flash: setup
	@test -n "$(PORT)" -a -n "$(DEVICE)" || { echo "flash: give PORT=<serial port> and DEVICE=<device id>, e.g. make flash PORT=/dev/ttyUSB0 DEVICE=bus-0107"; exit 2; }
	$(VPY) tools/deploy.py --port $(PORT) --device $(DEVICE) $(FLASH_ARGS)

doctor: setup
	@test -n "$(PORT)" || { echo "doctor: give PORT=<serial port>, e.g. make doctor PORT=/dev/ttyUSB0"; exit 2; }
	$(VPY) tools/doctor.py --port $(PORT) $(DOCTOR_ARGS)

provision: setup
	$(VPY) tools/provision.py $(PROVISION_ARGS)

# A stolen or lost board: remove its credentials and ACL lines and reload the broker (docs/technician.md).
revoke: setup
	@test -n "$(DEVICE)" || { echo "revoke: give DEVICE=<device id>, e.g. make revoke DEVICE=bus-0301"; exit 2; }
	$(VPY) tools/provision.py --revoke $(DEVICE) $(PROVISION_ARGS)

# A command to boards, answers printed (docs/technician.md): make cmd DEVICES="bus-0107 bus-0108" CMD="get bus.route"
DEVICES ?= $(DEVICE)
CMD ?=
CREDS ?= build/fleet/broker/operator.json
cmd: setup
	@test -n "$(DEVICES)" -a -n "$(CMD)" || { echo 'cmd: give DEVICES="<device ids>" and CMD="<command>", e.g. make cmd DEVICES=bus-0107 CMD="set status_period_s 600"'; exit 2; }
	$(VPY) tools/command.py --creds $(CREDS) $(CMD_ARGS) $(DEVICES) $(CMD)

vboard: setup
	$(VPY) tools/vboard.py --fs build/vboard $(VBOARD_ARGS)

# Over-the-air releases (docs/ota.md): RELEASE_ARGS="--image fw.bin", "--init-key", "--version 0.2.0" ...
RELEASE_ARGS ?=
release: setup
	$(VPY) tools/release.py $(RELEASE_ARGS)
