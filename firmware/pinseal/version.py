# The firmware's version, reported at enrollment and in the device certificate.
FIRMWARE = "0.1.0"
