"""Building the firmware on the host: file list, mpy-cross, ROMFS image, package.json, tables, type check."""
