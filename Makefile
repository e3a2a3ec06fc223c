# pinseal: every task starts here. Each target sets up what it needs (through `setup`).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
PY          := $(VENV)/bin/python
PYTEST      := $(VENV)/bin/pytest
RUFF        := $(VENV)/bin/ruff
NODE        ?= node
BOARD       ?= esp32_devkitc
# JUnit XML and the hardening suite's summary (hardening-summary.txt), for CI to keep and print.
RESULTS     := build/test-results
# Debian packages the tests and `make run` need on the host.
DEB_PACKAGES := python3-venv mosquitto

.PHONY: help setup system-packages run demo-firmware test test-long lint typecheck-firmware compile-firmware bench bench-firmware bench-gateway bench-backlog bench-fleet vboard firmware-tables vectors clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'

setup: system-packages $(VENV)/.installed node_modules/.installed ## install everything (idempotent)

system-packages:
	@scripts/ensure-debian-packages.sh $(DEB_PACKAGES)
	@scripts/check-toolchain.sh

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

run: setup ## the main job: Mosquitto, gateway, network ingest and virtual boards running the firmware, provisioned with pinseal-provision
	$(PY) -m pinseal_devkit.run

demo-firmware: setup ## the firmware in the MicroPython VM seals readings; the host verifies each bundle
	$(PY) -m pinseal_devkit.demo --board $(BOARD)

test: setup ## every test: host, protocol vectors, firmware inside the MicroPython VM, hardening suite, compile, types, lint
	@mkdir -p $(RESULTS)
	$(PYTEST) -q --junitxml=$(RESULTS)/junit.xml
	$(MAKE) --no-print-directory compile-firmware typecheck-firmware lint

test-long: setup ## long soak, fleet and hardening runs (>= 10,000 malformed cases, >= 200 power cuts; not in CI's budget)
	@mkdir -p $(RESULTS)
	$(PYTEST) -q -m long --override-ini='addopts=-ra --strict-markers' --junitxml=$(RESULTS)/junit-long.xml

compile-firmware: setup ## every firmware file compiles with mpy-cross (as a board would load it)
	$(PY) -m pinseal_build.compile_firmware firmware

typecheck-firmware: setup ## the firmware type-checks against the ESP32 and RP2 MicroPython stubs
	$(PY) -m pinseal_build.typecheck_firmware

lint: setup ## ruff over all host code
	$(RUFF) check .
	$(RUFF) format --check .

bench: bench-firmware bench-gateway bench-backlog bench-fleet ## every benchmark; results in build/bench/ and docs/benchmarks.md

bench-firmware: setup ## Ed25519 and bundle sealing in the MicroPython VM vs a naive RFC 8032 signer
	$(PY) -m pinseal_bench.firmware --out build/bench/firmware.json --doc docs/benchmarks.md

bench-gateway: setup ## 1,000 devices through Mosquitto: accepted/s, latency, raw baselines, lost/duplicated
	$(PY) -m pinseal_bench.gateway --out build/bench/gateway.json --doc docs/benchmarks.md

bench-backlog: setup ## how fast a backlog of 1,000,000 readings drains to the network ingest after an outage
	$(PY) -m pinseal_bench.backlog --out build/bench/backlog.json --doc docs/benchmarks.md

bench-fleet: setup ## how many virtual boards run at once, RSS per board, boot time
	$(PY) -m pinseal_bench.fleet --out build/bench/fleet.json --doc docs/benchmarks.md

vboard: setup ## one virtual board on a pty: make vboard BOARD=esp32_devkitc [FLASH=dir] (prints serial: /dev/pts/N)
	$(VENV)/bin/pinseal-vboard --board $(BOARD) $(if $(FLASH),--flash $(FLASH)) --echo

firmware-tables: setup ## regenerate the firmware's constant tables (firmware/pinseal/crypto/comb_table.py)
	$(PY) -m pinseal_build.firmware_tables

vectors: setup ## regenerate protocol/vectors from the host codec (review the diff!)
	$(PY) -m pinseal_devkit.vectors protocol/vectors

clean: ## remove build output (keeps .venv and node_modules)
	rm -rf build .pytest_cache .ruff_cache .hypothesis
