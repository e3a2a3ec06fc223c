"""A Mosquitto for virtual-board network tests: a plain and a TLS listener on free loopback ports.

The TLS listener uses a throwaway CA and server certificate made with `cryptography` (the server certificate
names `localhost` and 127.0.0.1, as a board would check them); private keys are written 0600. Starting and
stopping reuse the gateway's helpers (`pinseal_gateway.broker`), so there is one way tests run Mosquitto.
Anonymous clients are allowed: these tests exercise the board's network, not the gateway's ACLs.
"""

from __future__ import annotations

import datetime
import getpass
import ipaddress
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pinseal_gateway import broker


@dataclass
class Pki:
    """A CA and a server certificate it signed: DER for the board, PEM files for Mosquitto."""

    ca_der: bytes
    ca_pem: Path
    cert_pem: Path
    key_pem: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(
    out_dir: Path, *, ca_name: str = "pinseal test CA", hosts: tuple[str, ...] = ("localhost",)
) -> Pki:
    """A fresh CA (P-256) and a server certificate for `hosts` + 127.0.0.1, valid for a day."""
    out_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(ca_name))
        .issuer_name(_name(ca_name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(
        ca_der=ca.public_bytes(serialization.Encoding.DER),
        ca_pem=out_dir / "ca.pem",
        cert_pem=out_dir / "server.pem",
        key_pem=out_dir / "server.key",
    )
    pki.ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(
        pki.key_pem,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    return pki


@dataclass
class TestBroker:
    """A running Mosquitto: `port` plain MQTT, `tls_port` MQTT over TLS (None without TLS)."""

    __test__ = False  # not a pytest test class

    conf_dir: Path
    port: int
    tls_port: int | None
    pki: Pki | None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def stop(self) -> None:
        if self.proc is not None:
            broker.stop_mosquitto(self.proc)
            self.proc = None


def start_test_broker(conf_dir: Path, *, tls: bool = False) -> TestBroker:
    """Write mosquitto.conf into `conf_dir` (with a fresh PKI under conf_dir/pki when `tls`) and start it."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    port = broker.free_port()
    pki = make_pki(conf_dir / "pki") if tls else None
    tls_port = broker.free_port() if tls else None
    while tls_port == port:
        tls_port = broker.free_port()
    lines = [
        "per_listener_settings false",
        "allow_anonymous true",
        f"user {getpass.getuser()}",
        f"log_dest file {conf_dir / 'mosquitto.log'}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        f"listener {port} 127.0.0.1",
    ]
    if pki is not None:
        lines += [
            f"listener {tls_port} 127.0.0.1",
            f"cafile {pki.ca_pem}",
            f"certfile {pki.cert_pem}",
            f"keyfile {pki.key_pem}",
        ]
    (conf_dir / broker.CONF_NAME).write_text("\n".join(lines) + "\n")
    proc = broker.start_mosquitto(conf_dir, port)
    if tls_port is not None and not broker.wait_for_port("127.0.0.1", tls_port, 10.0):
        broker.stop_mosquitto(proc)
        raise RuntimeError(f"mosquitto's TLS listener on {tls_port} did not open")
    return TestBroker(conf_dir, port, tls_port, pki, proc)
