# Frozen into pinseal's QEMU image: asyncio (the firmware's scheduler) and the board's flash support
# (_boot.py mounts the semihosting-backed littlefs). No pinseal code: `pinseal-provision deploy` puts the
# firmware on the flash, as on a user's board.
include("$(MPY_DIR)/extmod/asyncio")
freeze("$(BOARD_DIR)/modules", ("_boot.py", "qemu_flash.py"))
