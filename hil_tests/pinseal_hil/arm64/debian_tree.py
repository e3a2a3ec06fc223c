"""An arm64 Debian tree, as a Raspberry Pi OS (64-bit) gateway has: built once, reused while its recipe holds.

debootstrap runs in two stages because the second runs the tree's own (arm64) maintainer scripts: the first
only downloads and unpacks, on the host as real root (it also makes the tree's device nodes, which a user
namespace may not); the second runs inside the private namespace of `namespace.py`, where qemu-aarch64
executes every arm64 binary. `container=lxc` tells debootstrap not to mknod a test node there.

The recipe (suite, mirror, packages) is stamped in the tree; a different recipe rebuilds it from scratch,
so a tree is never half of one and half of another.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from pinseal_hil.arm64 import namespace

SUITE = "bookworm"  # Raspberry Pi OS (64-bit) is Debian bookworm on arm64
# What the gateway needs of the system (Python 3.11, venv, Mosquitto, systemd and procps's /bin/kill for
# its unit, as Raspberry Pi OS has them) and what its tests call (systemd-analyze; unshare, nsenter and
# mount come with minbase's util-linux and mount).
PACKAGES = ("python3", "python3-venv", "mosquitto", "ca-certificates", "systemd", "procps")
STAMP = ".pinseal-tree.json"
# The host's name resolution and trust store, copied in before each command: pip in the tree then reaches
# PyPI as the host does, a TLS-inspecting proxy's CA included (the tree's own bundle lacks such a CA).
HOST_CA_BUNDLE = "etc/ssl/certs/pinseal-host-ca-certificates.crt"
HOST_FILES = {
    Path("/etc/resolv.conf"): "etc/resolv.conf",
    Path("/etc/hosts"): "etc/hosts",
    Path("/etc/ssl/certs/ca-certificates.crt"): HOST_CA_BUNDLE,
}
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy")
FALLBACK_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "PINSEAL_ARM64_MIRROR"
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))


def host_mirror() -> str:
    """The Debian mirror this machine's apt uses ($PINSEAL_ARM64_MIRROR overrides): it serves arm64 too."""
    override = os.environ.get(MIRROR_ENV)
    if override:
        return override
    for sources in APT_SOURCES:
        if not sources.is_file():
            continue
        text = sources.read_text(errors="replace")
        # deb822 ("URIs: http://...") or one-line ("deb [opts] http://... bookworm main") form
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.MULTILINE):
            uri = match.group(1)
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return FALLBACK_MIRROR


def recipe(mirror: str) -> dict[str, object]:
    return {"suite": SUITE, "arch": "arm64", "mirror": mirror, "packages": list(PACKAGES)}


def is_current(root: Path, mirror: str) -> bool:
    stamp = root / STAMP
    try:
        return json.loads(stamp.read_text()) == recipe(mirror)
    except (OSError, ValueError):
        return False


def ensure(root: Path, log: Path) -> Path:
    """The tree at root, built (about 4 minutes here, most of it emulated dpkg) unless it is current."""
    mirror = host_mirror()
    if is_current(root, mirror):
        return root
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    first = [
        "debootstrap",
        "--arch=arm64",
        "--foreign",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(root),
        mirror,
    ]
    run_logged(first, log, "debootstrap, first stage (download and unpack on the host)")
    second = in_tree_command(root, ["/debootstrap/debootstrap", "--second-stage"], env={"container": "lxc"})
    run_logged(second, log, "debootstrap, second stage (arm64 dpkg under qemu)")
    (root / STAMP).write_text(json.dumps(recipe(mirror), indent=1) + "\n")
    return root


def in_tree_command(root: Path, argv: list[str], env: dict[str, str] | None = None) -> list[str]:
    """A command that runs argv chrooted in the tree, inside the private namespace, with a fresh /proc,
    the host's /dev, a private /tmp and the host's name resolution (for apt and pip)."""
    for host_file, in_tree in HOST_FILES.items():
        if host_file.is_file() and (root / in_tree).parent.is_dir():
            shutil.copyfile(host_file, root / in_tree)
    tree = shlex.quote(str(root))
    environment = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "PIP_CERT": f"/{HOST_CA_BUNDLE}",
        **{k: v for k, v in os.environ.items() if k.lower() in PROXY_VARIABLES},
        **(env or {}),
    }
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in environment.items())
    script = (
        f"mount --bind {tree} {tree} && "  # the chroot's / a mount point, as `unshare -m` in a test needs
        f"mount -t proc proc {tree}/proc && mount --rbind /dev {tree}/dev && "
        f"mount -t tmpfs -o mode=1777 tmpfs {tree}/tmp && "
        f"exec chroot {tree} /usr/bin/env -i {assignments} {shlex.join(argv)}"
    )
    return [*namespace.launcher(), "sh", "-c", script]


def run_logged(cmd: list[str], log: Path, what: str) -> None:
    """Run cmd with its output appended to log; on failure, an error that names the log."""
    print(f"hil-arm64: {what}", flush=True)
    with log.open("ab") as out:
        out.write(f"\n$ {shlex.join(cmd)}\n".encode())
        out.flush()
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}); its output is in {log}")
