# _pinseal_ed25519 for make-based ports (unix, qemu, ...): `make USER_C_MODULES=<repo>/firmware/native`,
# the folder of modules that this one is in.
# The SUPERCOP ed25519/ref C files are not in the repository: tools/pinseal_build/fetch_ed25519_ref.py puts
# them in build/native/supercop-ref (pass PINSEAL_ED25519_REF_DIR=... to take them from elsewhere).
PINSEAL_NATIVE_DIR := $(USERMOD_DIR)
PINSEAL_ED25519_REF_DIR ?= $(abspath $(PINSEAL_NATIVE_DIR)/../../../build/native/supercop-ref)

ifeq ($(wildcard $(PINSEAL_ED25519_REF_DIR)/ge25519.c),)
$(error _pinseal_ed25519: no SUPERCOP ref sources in $(PINSEAL_ED25519_REF_DIR): run `python -m pinseal_build.fetch_ed25519_ref` first)
endif

# Our glue is scanned for qstrs; the third-party arithmetic is compiled as library code (not scanned).
SRC_USERMOD_C += $(PINSEAL_NATIVE_DIR)/pinseal_ed25519.c
PINSEAL_ED25519_REF_SRC := fe25519.c ge25519.c sc25519.c sha512-blocks.c
SRC_USERMOD_LIB_C += $(addprefix $(PINSEAL_ED25519_REF_DIR)/,$(PINSEAL_ED25519_REF_SRC))
CFLAGS_USERMOD += -I$(PINSEAL_ED25519_REF_DIR)

# The ports build with -Os, -Werror and -Wextra. The arithmetic is compiled for speed (PINSEAL_ED25519_COPT,
# after the port's own flags so it wins: -O2 signs ~2x faster than -Os for a few KB more code), and the
# 2008-era reference code's warnings (signed/unsigned comparisons, unused parameters) are relaxed for its
# objects only, never for our glue.
PINSEAL_ED25519_COPT ?= -O2
$(addprefix $(BUILD)/,$(addprefix $(PINSEAL_ED25519_REF_DIR)/,$(PINSEAL_ED25519_REF_SRC:.c=.o))): \
	CFLAGS += $(PINSEAL_ED25519_COPT) -Wno-sign-compare -Wno-unused-parameter -Wno-error
