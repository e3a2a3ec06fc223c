"""The hardware-in-the-loop test harness: scenario runner, its report, a TLS broker for network tests."""
