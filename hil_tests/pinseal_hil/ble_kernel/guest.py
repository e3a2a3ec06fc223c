"""The QEMU guest: booted under TCG (KVM hangs in this nested setup), the host's root shared read-only
over 9p, the run folder writable, and a virtio-serial port whose host end is a unix socket: the HCI line
between the guest kernel's /dev/vhci and the board's bumble controller."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from pinseal_hil.ble_kernel import guest_image

MEMORY_MB = 1024


class Guest:
    """`with Guest(run_dir, command) as guest:` runs `run_dir/command` in the guest until it returns."""

    def __init__(self, run_dir: Path, command: str) -> None:
        self.run_dir = run_dir.resolve()
        self.command = command
        self.hci_socket = self.run_dir / "hci.sock"
        self.console = self.run_dir / "console.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Guest:
        qemu = shutil.which("qemu-system-x86_64")
        if qemu is None:
            raise RuntimeError("qemu-system-x86_64 missing: `make test-ble-kernel` installs qemu-system-x86")
        kernel, initrd = guest_image.ensure(self.run_dir / "image-build.log")
        self.hci_socket.unlink(missing_ok=True)
        append = f"console=ttyS0 panic=1 loglevel=1 pinseal.run={self.run_dir} pinseal.cmd={self.command}"
        root_share = "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap"
        cmd = [
            qemu, "-accel", "tcg", "-m", str(MEMORY_MB), "-nographic", "-no-reboot",
            "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", append,
            "-virtfs", root_share,
            "-virtfs", f"local,path={self.run_dir},mount_tag=run,security_model=passthrough",
            "-device", "virtio-serial",
            "-chardev", f"socket,id=hci,path={self.hci_socket},server=on,wait=off",
            "-device", "virtserialport,chardev=hci,name=hci",
        ]  # fmt: skip
        with self.console.open("ab") as console:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while not self.hci_socket.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"QEMU did not start; see {self.console}")
            time.sleep(0.1)
        return self

    def console_text(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def wait_output(self, marker: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while marker not in self.console_text():
            if time.monotonic() > deadline or (self.proc is not None and self.proc.poll() is not None):
                return marker in self.console_text()
            time.sleep(0.3)
        return True

    def stop(self, timeout_s: float = 60) -> None:
        """Ask the guest's run to end (a file it watches), then wait for the guest to power off."""
        (self.run_dir / "stop").touch()
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> Guest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
