"""Mosquitto 2.0 configuration for a pinseal gateway, and a private Mosquitto for development and tests.

The broker is the first line of defence: no anonymous clients, one password per device (hashes in
Mosquitto's PBKDF2-SHA512 `$7$` format, generated from the registry, never the passwords), and an
ACL under which a device can publish only to its own up topic and read only its own ack topic, so a
device can never speak for another. Only the gateway's own user reads every up topic and writes acks.
A session belongs to a login, not to the client id a client claims (`use_username_as_clientid`): client
ids are public (a device's is its key id, the gateway's a fixed string), so otherwise any registered
device could take over another client's connection and discard the gateway's persistent session. It
follows that every client connected at the same time needs a user of its own.

Two flavours: `private` (tests, `make run`: everything under one directory, persistence included, the
broker runs as the current user) and `system` (files to install into /etc/mosquitto for the
distribution's service, whose main mosquitto.conf already sets persistence and the service user;
see docs/gateway.md "Running under the distribution's Mosquitto").
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pinseal_gateway.keys import write_secret

MOSQUITTO = "mosquitto"
CONF_NAME = "mosquitto.conf"
PASSWD_NAME = "pinseal.passwd"
ACL_NAME = "pinseal.acl"
SYSTEM_DIR = Path("/etc/mosquitto")

# The broker holds what the gateway has not PUBACKed yet: a wide in-flight window so the gateway can
# commit large groups, and a deep queue for a gateway restart under load, bounded in bytes as well
# (100,000 bundles of up to 2 KiB would be 200 MB on a small board; what does not fit stays on the
# devices, which keep every bundle until its ack and send it again).
MAX_INFLIGHT = 1000
MAX_QUEUED = 100000
MAX_QUEUED_BYTES = 64 * 1024 * 1024

# The largest MQTT packet the broker reads, from anyone, before or after authentication. Mosquitto
# otherwise allocates whatever a CONNECT's remaining length declares (up to 256 MB) and buffers it as it
# arrives. 64 KiB carries a bundle (at most 2,048 bytes) with its topic many times over, and Home
# Assistant's MQTT discovery payloads (a few KiB) if the same broker serves Home Assistant. Batches never
# travel through this broker (the gateway's MQTT uplink goes to the network's broker, not this one).
MAX_PACKET_SIZE = 64 * 1024
MQTT_HEADROOM = 1024  # fixed header and topic of a PUBLISH, at most
MESSAGE_SIZE_LIMIT = MAX_PACKET_SIZE - MQTT_HEADROOM  # larger payloads get a PUBACK error, not a drop

# Connections on the devices' listener: the design target is 1,000 devices per gateway (the benchmark
# runs 1,000) plus the gateway and a few tools; a LAN client opening sockets in a loop stops here
# instead of at the process's file limit, and with MAX_PACKET_SIZE bounds what they can make it buffer.
MAX_CONNECTIONS = 2000


@dataclass(frozen=True)
class BrokerUser:
    """A broker login: username, `$7$` password hash, and ACL lines of its own (beyond the patterns)."""

    username: str
    password_hash: str
    acl: tuple[str, ...] = ()


def gateway_user(username: str, password_hash: str) -> BrokerUser:
    """The gateway reads every device's up topic and writes every ack topic."""
    return BrokerUser(username, password_hash, ("topic read pinseal/v1/+/up", "topic write pinseal/v1/+/ack"))


def reader_user(username: str, password_hash: str) -> BrokerUser:
    """A read-only observer of every up topic (the benchmark's bare subscriber): never the gateway's own
    login, since one login is one session and the gateway's is persistent."""
    return BrokerUser(username, password_hash, ("topic read pinseal/v1/+/up",))


def ha_publisher_user(
    username: str, password_hash: str, discovery_prefix: str, state_prefix: str
) -> BrokerUser:
    """The gateway's Home Assistant publisher: writes discovery configs and the pinseal state topics,
    reads only Home Assistant's birth message. A login of its own, apart from the intake's (see above)."""
    return BrokerUser(
        username,
        password_hash,
        (
            f"topic write {discovery_prefix}/sensor/#",
            f"topic read {discovery_prefix}/status",
            f"topic write {state_prefix}/#",
        ),
    )


def homeassistant_user(
    username: str, password_hash: str, discovery_prefix: str, state_prefix: str
) -> BrokerUser:
    """Home Assistant itself: reads the discovery and state topics, announces itself on
    `<discovery_prefix>/status`, and nothing else (no device topic, no ack, no publishing state)."""
    return BrokerUser(
        username,
        password_hash,
        (
            f"topic read {discovery_prefix}/#",
            f"topic write {discovery_prefix}/status",
            f"topic read {state_prefix}/#",
        ),
    )


def add_users(out_dir: Path, users: Iterable[BrokerUser]) -> None:
    """Append users to the password file and ACL `write_broker_config` wrote into `out_dir` (start or
    reload the broker afterwards)."""
    users = list(users)
    out_dir = Path(out_dir)
    with (out_dir / PASSWD_NAME).open("a") as passwd:
        passwd.write(password_file_text(users))
    with (out_dir / ACL_NAME).open("a") as acl:
        for user in users:
            acl.write(f"\nuser {user.username}\n" + "".join(f"{line}\n" for line in user.acl))


def password_file_text(users: Iterable[BrokerUser]) -> str:
    lines = []
    for user in users:
        if ":" in user.username or "\n" in user.username:
            raise ValueError(f"bad MQTT username {user.username!r}")
        lines.append(f"{user.username}:{user.password_hash}\n")
    return "".join(lines)


def acl_text(users: Iterable[BrokerUser]) -> str:
    """Patterns for every device (%u = the username = the device's key id hex), then per-user grants."""
    parts = [
        "# generated by pinseal-gateway broker-config; regenerate instead of editing\n",
        "# every device: publish only as itself, read only its own acks\n",
        "pattern write pinseal/v1/%u/up\n",
        "pattern read pinseal/v1/%u/ack\n",
    ]
    for user in users:
        if user.acl:
            parts.append(f"\nuser {user.username}\n")
            parts.extend(f"{line}\n" for line in user.acl)
    return "".join(parts)


def conf_text(
    *,
    host: str,
    port: int,
    password_file: Path,
    acl_file: Path,
    persistence_dir: Path | None,
    run_as: str | None,
    log_file: Path | None,
) -> str:
    lines = [
        "# generated by pinseal-gateway broker-config",
        "per_listener_settings false",
        f"listener {port} {host}",
        "use_username_as_clientid true",
        f"max_connections {MAX_CONNECTIONS}",
        "allow_anonymous false",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
        f"max_inflight_messages {MAX_INFLIGHT}",
        f"max_queued_messages {MAX_QUEUED}",
        f"max_queued_bytes {MAX_QUEUED_BYTES}",
        f"max_packet_size {MAX_PACKET_SIZE}",
        f"message_size_limit {MESSAGE_SIZE_LIMIT}",
        "set_tcp_nodelay true",
    ]
    if persistence_dir is not None:
        lines += ["persistence true", f"persistence_location {persistence_dir}/", "autosave_interval 60"]
    if run_as is not None:
        lines.append(f"user {run_as}")
    if log_file is not None:
        lines += [f"log_dest file {log_file}", "log_type error", "log_type warning", "log_type notice"]
    return "\n".join(lines) + "\n"


def write_broker_config(
    out_dir: Path,
    *,
    host: str,
    port: int,
    users: Sequence[BrokerUser],
    system: bool = False,
) -> dict[str, Path]:
    """Write mosquitto.conf, the password file (0600) and the ACL into `out_dir`; returns their paths.

    `system`: the conf names the files at their installed place under /etc/mosquitto and leaves
    persistence and the service user to the distribution's main config.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"conf": out_dir / CONF_NAME, "passwd": out_dir / PASSWD_NAME, "acl": out_dir / ACL_NAME}
    for path in paths.values():
        path.unlink(missing_ok=True)
    write_secret(paths["passwd"], password_file_text(users).encode())
    paths["acl"].write_text(acl_text(users))
    if system:
        conf = conf_text(
            host=host,
            port=port,
            password_file=SYSTEM_DIR / PASSWD_NAME,
            acl_file=SYSTEM_DIR / ACL_NAME,
            persistence_dir=None,
            run_as=None,
            log_file=None,
        )
    else:
        persistence = out_dir / "data"
        persistence.mkdir(exist_ok=True, mode=0o700)  # queued bundles: readings
        conf = conf_text(
            host=host,
            port=port,
            password_file=paths["passwd"],
            acl_file=paths["acl"],
            persistence_dir=persistence,
            run_as=getpass.getuser(),
            log_file=out_dir / "mosquitto.log",
        )
    paths["conf"].write_text(conf)
    return paths


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port on `host` (never 1883: the OS picks from the ephemeral range)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def start_mosquitto(
    conf_dir: Path, port: int, *, host: str = "127.0.0.1", timeout: float = 30.0
) -> subprocess.Popen:
    """Start `mosquitto -c conf_dir/mosquitto.conf` and wait until it accepts connections.

    A broker that exits fails at once; one still starting is given 30 s: on a loaded 2-core machine (load
    14 during a clean-clone CI run) it once took over 10 s to listen, and the test it served failed."""
    exe = shutil.which(MOSQUITTO) or "/usr/sbin/mosquitto"
    conf = Path(conf_dir) / CONF_NAME
    proc = subprocess.Popen(
        [exe, "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ},
    )
    deadline = time.monotonic() + timeout
    while not wait_for_port(host, port, 1.0):
        if proc.poll() is not None or time.monotonic() > deadline:
            break
    if proc.poll() is not None or not wait_for_port(host, port, 0.1):
        proc.kill()
        _, err = proc.communicate(timeout=5)
        raise RuntimeError(
            f"mosquitto did not start on {host}:{port}: {err.decode(errors='replace')[-2000:]}"
        )
    return proc


def stop_mosquitto(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM (Mosquitto saves its persistence file), SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    if proc.stderr is not None:
        proc.stderr.close()
