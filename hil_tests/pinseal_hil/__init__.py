"""Host side of pinseal's hardware-in-the-loop tests: drives the MicroPython VM under Node."""
