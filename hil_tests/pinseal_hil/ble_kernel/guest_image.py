"""The guest's kernel and initramfs, built from Debian's packages and kept in build/ble-kernel/<kernel>/.

The kernel is the one Debian's `linux-image-amd64` depends on (`apt-get download`, then unpacked): it has
Bluetooth and `hci_vhci` as modules. The initramfs is busybox-static, the modules the guest loads (with
what they depend on, from the package's modules.dep) and `init`, which mounts the host's filesystem over 9p
(read-only), the run folder over it (writable), and runs `in_guest.py` chrooted there.
"""

from __future__ import annotations

import gzip
import io
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
BUILD = REPO / "build" / "ble-kernel"
MODULES = [
    "virtio_pci", "virtio_console", "9pnet_virtio", "9p",
    "af_alg", "algif_hash", "algif_skcipher", "ecb", "cmac",  # bluetoothd's and the kernel's LE crypto
    "crc16", "rfkill", "ecc", "ecdh_generic", "bluetooth", "hci_vhci",
]  # fmt: skip
RECIPE = "2"  # bump when the image's contents change

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in {modules}; do modprobe $m || echo "guest: modprobe $m failed"; done
ifconfig lo 127.0.0.1 up
run=$(sed -n 's/.*pinseal.run=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
cmd=$(sed -n 's/.*pinseal.cmd=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /host || echo "guest: no host root"
for d in run tmp var/lib/bluetooth; do mount -t tmpfs tmpfs /host/$d; done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 run /host$run || echo "guest: no run folder"
mkdir -p /dev/shm; mount -t tmpfs shm /dev/shm
mount --bind /dev /host/dev; mount -t proc proc /host/proc; mount -t sysfs sys /host/sys
echo "guest: up"
chroot /host /bin/sh -c "$run/$cmd"
echo "guest: done"
poweroff -f
"""


def kernel_package() -> str:
    """The versioned kernel package `linux-image-amd64` depends on (e.g. linux-image-6.1.0-57-amd64)."""
    out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True).stdout
    match = re.search(r"Depends: (linux-image-[0-9][^\s]*-amd64)", out)
    if match is None:
        raise RuntimeError("apt knows no linux-image-amd64 (run apt-get update?):\n" + out)
    return match.group(1)


def ensure(log: Path) -> tuple[Path, Path]:
    """(vmlinuz, initrd.gz), built once per kernel version and recipe."""
    package = kernel_package()
    version = package.removeprefix("linux-image-")
    out = BUILD / version
    kernel, initrd, stamp = out / "vmlinuz", out / "initrd.gz", out / "recipe"
    if kernel.exists() and initrd.exists() and stamp.exists() and stamp.read_text() == RECIPE:
        return kernel, initrd
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="pinseal-kernel-") as tmp:
        work = Path(tmp)
        with log.open("ab") as log_file:
            subprocess.run(
                ["apt-get", "download", package], cwd=work, check=True, stdout=log_file, stderr=log_file
            )
            deb = next(work.glob("linux-image-*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "root")], check=True)
            # modules.dep is made at install time, not shipped: depmod (kmod) makes it for this tree
            subprocess.run(
                ["depmod", "-b", str(work / "root"), version], check=True, stdout=log_file, stderr=log_file
            )
        shutil.copyfile(work / "root" / "boot" / f"vmlinuz-{version}", kernel)
        initrd.write_bytes(_initramfs(work / "root" / "lib" / "modules" / version, version))
    stamp.write_text(RECIPE)
    return kernel, initrd


def _initramfs(modules_dir: Path, version: str) -> bytes:
    """A gzipped newc cpio: busybox, the modules with their dependencies, modules.dep, init."""
    deps: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        name, _, rest = line.partition(":")
        deps[name] = rest.split()
    by_name = {Path(p).name.split(".ko")[0].replace("-", "_"): p for p in deps}
    needed: list[str] = []

    def add(path: str) -> None:
        if path not in needed:
            for dep in deps[path]:
                add(dep)
            needed.append(path)

    for module in MODULES:
        add(by_name[module])
    files: dict[str, tuple[bytes, int]] = {
        "bin/busybox": (Path(shutil.which("busybox") or "/bin/busybox").read_bytes(), 0o755),
        "init": (INIT.format(modules=" ".join(MODULES)).encode(), 0o755),
    }
    lib = f"lib/modules/{version}"
    dep_lines = []
    for path in needed:
        files[f"{lib}/{path}"] = ((modules_dir / path).read_bytes(), 0o644)
        dep_lines.append(f"{path}: {' '.join(deps[path])}".rstrip())
    files[f"{lib}/modules.dep"] = ("\n".join(dep_lines).encode() + b"\n", 0o644)
    dirs = {"bin", "dev", "proc", "sys", "host", "lib", "lib/modules", lib}
    for path in needed:
        parts = Path(lib, path).parent.parts
        dirs.update(str(Path(*parts[:i])) for i in range(1, len(parts) + 1))
    return gzip.compress(_cpio(sorted(dirs), files), compresslevel=1)


def _cpio(dirs: list[str], files: dict[str, tuple[bytes, int]]) -> bytes:
    """The newc format (what the kernel unpacks), written directly: no cpio tool needed."""
    out = io.BytesIO()
    ino = 1

    def entry(name: str, mode: int, data: bytes) -> None:
        nonlocal ino
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0")
        out.write(b"\0" * (-out.tell() % 4))
        out.write(data)
        out.write(b"\0" * (-out.tell() % 4))
        ino += 1

    for d in dirs:
        entry(d, 0o040755, b"")
    for name, (data, perm) in files.items():
        entry(name, 0o100000 | perm, data)
    entry("TRAILER!!!", 0, b"")
    return out.getvalue()
