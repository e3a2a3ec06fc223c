"""The developer's stack on one machine: `make run`, the demo, and the host-side simulated device."""
