"""`make run`'s pipeline end to end: the firmware in the VM seals, the host codec verifies every bundle."""

from __future__ import annotations

from pinseal_devkit import demo


def test_demo_device_bundles_verify_on_the_host(capsys) -> None:
    assert demo.main(["--count", "2", "--per-bundle", "2", "--interval-ms", "50"]) == 0
    out = capsys.readouterr().out
    assert "key created on the device" in out
    assert "REJECTED" not in out
    assert out.count("signature verified (cryptography)") == 2
    assert "pinseal: 2 bundles verified" in out
