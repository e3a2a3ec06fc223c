"""A private PostgreSQL server for tests, benchmarks and `make run`: its own cluster in its own folder.

Never the machine's own cluster: `initdb` makes a new one in a fresh folder under /tmp, `pg_ctl` serves
it on a free loopback port (and a Unix socket in that folder), and `stop` removes it all. The binaries
are the ones `pg_config --bindir` names (Debian keeps them off PATH). PostgreSQL refuses to run as root,
so when we are root every server command runs as the `postgres` user through `runuser`, in a folder that
user owns (a pytest tmp_path under /tmp/pytest-of-root is closed to it, hence a folder of its own).
Connections are trusted on loopback only: the server listens nowhere else.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from pinseal_gateway.broker import free_port

SERVER_USER = "postgres"
SUPERUSER = "pinseal"
START_TIMEOUT_S = 60


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def bindir() -> Path:
    """Where initdb, pg_ctl and postgres are: `pg_config --bindir`, else Debian's newest version."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout
        path = Path(out.strip())
        if (path / "initdb").exists():
            return path
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if versions:
        return versions[-1].parent
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (pg_config --bindir): `make setup` installs them"
    )


class PostgresServer:
    """One throwaway cluster. `with PostgresServer() as pg: url = pg.create_database("x")`."""

    def __init__(self, *, port: int | None = None, settings: dict[str, Any] | None = None) -> None:
        self.bin = bindir()
        self.port = port or free_port()
        self.settings = {"max_connections": 200, "shared_buffers": "128MB", **(settings or {})}
        self.folder = Path(tempfile.mkdtemp(prefix="pinseal-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self._as_root = os.geteuid() == 0
        self._started = False

    def _command(self, *args: str) -> list[str]:
        return ["runuser", "-u", SERVER_USER, "--", *args] if self._as_root else list(args)

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        proc = subprocess.run(
            self._command(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}"
            )

    def start(self) -> PostgresServer:
        if self._as_root:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        self.folder.chmod(0o700)
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        options = [
            f"-c listen_addresses=127.0.0.1 -c port={self.port}",
            f"-c unix_socket_directories={self.folder}",
        ]
        options += [f"-c {name}={value}" for name, value in self.settings.items()]
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
            "-t", str(START_TIMEOUT_S), "-o", " ".join(options), "start",
        )  # fmt: skip
        self._started = True
        atexit.register(self.stop)
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database on this server; returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])

    def pids(self) -> list[int]:
        """The postmaster and every process it started (backends, writers): what the server costs."""
        root = self.postmaster_pid()
        found = [root]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == root:
                    found.append(int(entry.name))
        return found

    def stop(self) -> None:
        """Stop the server (fast: open transactions roll back) and remove its folder."""
        if self._started:
            self._started = False
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
