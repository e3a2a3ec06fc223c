# _pinseal_ed25519 for make-based ports (unix, qemu, ...): `make USER_C_MODULES=<repo>/firmware/native`,
# the folder of modules that this one is in.
# Monocypher 4.0.3 is not in the repository: the build extracts the snapshot pinned in
# micropython/builds/pins.json into build/sources/monocypher (`make firmware-images`, `make native-unix`, or
# `python -m pinseal_build.micropython_sources --for native-unix`); PINSEAL_MONOCYPHER_DIR=... points
# elsewhere (the folder holding src/).
PINSEAL_NATIVE_DIR := $(USERMOD_DIR)
PINSEAL_MONOCYPHER_DIR ?= $(abspath $(PINSEAL_NATIVE_DIR)/../../../build/sources/monocypher)

ifeq ($(wildcard $(PINSEAL_MONOCYPHER_DIR)/src/optional/monocypher-ed25519.c),)
$(error _pinseal_ed25519: no Monocypher sources in $(PINSEAL_MONOCYPHER_DIR): run `python -m pinseal_build.micropython_sources --for native-unix` first)
endif

# Our glue is scanned for qstrs; the arithmetic is compiled as library code (not scanned).
# pinseal_monocypher.c is monocypher.c (#included) plus one function of ours: monocypher.c is not listed.
SRC_USERMOD_C += $(PINSEAL_NATIVE_DIR)/pinseal_ed25519.c
PINSEAL_ED25519_LIB_SRC := $(PINSEAL_NATIVE_DIR)/pinseal_monocypher.c \
	$(PINSEAL_MONOCYPHER_DIR)/src/optional/monocypher-ed25519.c
SRC_USERMOD_LIB_C += $(PINSEAL_ED25519_LIB_SRC)
CFLAGS_USERMOD += -I$(PINSEAL_NATIVE_DIR) -I$(PINSEAL_MONOCYPHER_DIR)/src

# The ports build with -Os. The arithmetic is compiled for speed (PINSEAL_ED25519_COPT, after the port's
# own flags so it wins), as the RP2 port does for its own hot files.
PINSEAL_ED25519_COPT ?= -O2
$(addprefix $(BUILD)/,$(PINSEAL_ED25519_LIB_SRC:.c=.o)): CFLAGS += $(PINSEAL_ED25519_COPT)
