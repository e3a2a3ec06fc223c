# pinseal QEMU board: mount the flash before boot.py and main.py run (as a real port's _boot.py does).
import qemu_flash

qemu_flash.mount()
del qemu_flash
