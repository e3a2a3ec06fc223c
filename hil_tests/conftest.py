# MicroPython test modules run inside the VM (through tests/test_firmware_in_vm.py), never under CPython.
collect_ignore_glob = ["firmware_tests/*", "vboard/*", "bench/*"]
