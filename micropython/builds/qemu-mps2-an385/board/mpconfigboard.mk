# pinseal's QEMU board: the stock MPS2_AN385 (Cortex-M3) plus what the firmware needs on a board
# (micropython/builds/README.md). The heap (MICROPY_HEAP_SIZE) comes from the build script: it follows the
# esp32_devkitc profile's RAM, so the emulated board runs out of memory where the real one would.
include boards/MPS2_AN385/mpconfigboard.mk

MICROPY_VFS_LFS2 = 1
SRC_C += $(BOARD_DIR)/pinseal_semihost.c
CFLAGS += -DMICROPY_PY_OS_URANDOM=1 -DMICROPY_PY_ASYNCIO=1 -DMICROPY_QEMU_RUN_BOOT_SCRIPTS=1
FROZEN_MANIFEST = $(BOARD_DIR)/manifest.py
