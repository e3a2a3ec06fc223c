"""Run a command in a private user, mount and PID namespace whose own binfmt_misc runs arm64 binaries.

Why a namespace: the host's binfmt_misc is not mounted here (and registering qemu there would change how
the whole machine runs foreign binaries). Since Linux 6.7 binfmt_misc is per user namespace, so a process
that makes its own user namespace can mount a private instance and register qemu-aarch64 in it; everything
it starts (the chroot into the arm64 tree included) then runs arm64 ELF files through qemu, and nothing
outside sees the registration. It ends with the namespace.

Why not `unshare --user --map-root-user`: that maps only uid 0, and dpkg in the arm64 tree chowns files to
system users (mosquitto, _apt), which fail with EINVAL when unmapped; `unshare --map-users` needs
newuidmap and /etc/subuid entries. Real root may write any mapping for a child's namespace, so the parent
here maps every id to itself: root inside is root's files outside, nothing else changes hands.

The `F` flag makes the kernel open qemu-aarch64-static at registration, so the interpreter need not exist
inside the chroot.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
PR_SET_PDEATHSIG = 1

QEMU_AARCH64 = "/usr/bin/qemu-aarch64-static"
# The ELF header of an arm64 executable and its mask, as Debian's qemu-user-static registers it
# (/usr/lib/binfmt.d/qemu-aarch64.conf).
AARCH64_MAGIC = r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
AARCH64_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
BINFMT_RULE = f":qemu-aarch64:M::{AARCH64_MAGIC}:{AARCH64_MASK}:{QEMU_AARCH64}:F"
# Identity maps: every uid and gid stands for itself (4294967295 ids from 0, the whole range).
IDENTITY_MAP = b"0 0 4294967295\n"


class NamespaceError(RuntimeError):
    """The private namespace could not be made: the message says what is missing."""


def check_host() -> None:
    """Fail early, with what to install or run, instead of deep inside a chroot."""
    if os.geteuid() != 0:
        raise NamespaceError("make hil-arm64 runs as root (it maps every uid into its namespace)")
    if not Path(QEMU_AARCH64).exists():
        raise NamespaceError(f"{QEMU_AARCH64} is missing: apt-get install qemu-user-static")
    if shutil.which("unshare") is None:
        raise NamespaceError("unshare (util-linux) is missing")


def launcher() -> list[str]:
    """The command prefix that runs what follows it through run_in_namespace (as a process of its own)."""
    return [sys.executable, "-m", "pinseal_hil.arm64.namespace"]


def run_in_namespace(argv: list[str]) -> int:
    """Run argv (as root of a new user namespace, in new mount and PID namespaces) and return its status.

    argv runs after binfmt_misc is mounted and qemu-aarch64 registered, with a fresh /proc for its PID
    namespace; the mounts it makes vanish with it.
    """
    check_host()
    libc = ctypes.CDLL(None, use_errno=True)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: unshare, wait for its maps, then become the namespace's first command
        os.close(ready_r)
        os.close(go_w)
        # the namespace dies with this process: SIGKILL to the child if the caller goes, and unshare's
        # --kill-child takes the namespace's PID 1 (and so every process in it) when unshare goes
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
            os.write(2, f"unshare: {os.strerror(ctypes.get_errno())}\n".encode())
            os._exit(125)
        os.write(ready_w, b"1")
        os.read(go_r, 1)
        # sh stays the namespace's PID 1 (no exec): it reaps the orphans a test leaves, which a Python as
        # PID 1 would keep as zombies, and SIGTERM reaches its command, which PID 1 would ignore.
        script = (
            "set -e; mount --make-rprivate /; "
            "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; "
            'printf "%s" "$BINFMT_RULE" > /proc/sys/fs/binfmt_misc/register; '
            '"$@"'
        )
        os.environ["BINFMT_RULE"] = BINFMT_RULE
        cmd = [
            "unshare",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "sh",
            "-c",
            script,
            "pinseal-arm64",
            *argv,
        ]
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    os.close(ready_w)
    os.close(go_r)
    if os.read(ready_r, 1) != b"1":
        os.waitpid(pid, 0)
        raise NamespaceError("the child could not make a user namespace (kernel.unprivileged_userns?)")
    for name in ("uid_map", "gid_map"):
        Path(f"/proc/{pid}/{name}").write_bytes(IDENTITY_MAP)
    os.write(go_w, b"1")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    # started by launcher(): the namespace also goes when whoever started it goes
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    sys.exit(run_in_namespace(sys.argv[1:]))
