"""The service files in packaging/: the systemd unit passes `systemd-analyze verify` and scores at most
4.0 in `systemd-analyze security --offline=true`; the Mosquitto snippet is what `broker-config --system`
writes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pinseal_build.locations import CHECKOUT
from pinseal_gateway import broker

UNIT = CHECKOUT / "packaging" / "systemd" / "pinseal-gateway.service"
SNIPPET = CHECKOUT / "packaging" / "mosquitto" / "pinseal.conf"
INSTALLED_PROGRAM = "/usr/local/bin/pinseal-gateway"  # where docs/install-raspberry-pi.md puts the script
MAX_EXPOSURE = 4.0
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze missing: `make setup` installs Debian's systemd package"
)


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.fixture
def unit_here(tmp_path: Path) -> Path:
    """The unit with its program pointed at this environment's `pinseal-gateway`: `verify` checks that the
    program exists, and nothing may be written to /usr/local here. Everything else is byte for byte."""
    program = Path(sys.executable).parent / "pinseal-gateway"
    assert program.exists()
    text = UNIT.read_text()
    assert text.count(INSTALLED_PROGRAM) == 1  # ExecStart only
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={INSTALLED_PROGRAM}", f"ExecStart={program}"))
    return copy


def test_the_unit_runs_the_gateway_as_a_hardened_service():
    unit = directives(UNIT.read_text())
    assert unit["ExecStart"] == [f"{INSTALLED_PROGRAM} run --config /etc/pinseal/gateway.toml"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["User"] == ["pinseal"] and unit["StateDirectory"] == ["pinseal-gateway"]
    for key, value in {
        "Restart": "on-failure",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "UMask": "0077",
        "StateDirectoryMode": "0700",
    }.items():
        assert unit[key] == [value], key


@needs_systemd_analyze
def test_systemd_analyze_verify_passes(unit_here):
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit_here)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


@needs_systemd_analyze
def test_systemd_analyze_security_scores_at_most_4(unit_here):
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(unit_here)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout[-2000:] + proc.stderr
    exposure = float(match.group(1))
    print(f"systemd-analyze security --offline=true: exposure {exposure}")
    assert exposure <= MAX_EXPOSURE, proc.stdout


def test_the_mosquitto_snippet_is_what_broker_config_writes(tmp_path):
    paths = broker.write_broker_config(tmp_path, host="127.0.0.1", port=1883, users=[], system=True)
    generated = [ln for ln in paths["conf"].read_text().splitlines() if not ln.startswith("#")]
    committed = [ln for ln in SNIPPET.read_text().splitlines() if not ln.startswith("#")]
    assert committed == generated
