# pinseal QEMU board: the flash, a littlefs block device on a host file reached through ARM semihosting.
# QEMU is started with `-append "flash=/path/to/flash.img"` (optionally `flash_bytes=N`, default 2 MiB as
# the esp32_devkitc profile's filesystem); without flash= the board has no filesystem, like a board whose
# flash was never set up. Every write is a host write(2) before writeblocks returns: a SIGKILL of QEMU is a
# power cut, and littlefs's copy-on-write keeps the filesystem consistent across it.
import vfs
import _semihost

BLOCK = 4096


class HostFlash:
    """Erase is a no-op (littlefs needs no erased value); bytes past the host file's end read as 0xff."""

    def __init__(self, path, size):
        self.fd = _semihost.flash_open(path)
        self.blocks = size // BLOCK

    def readblocks(self, block, buf, off=0):
        _semihost.pread(self.fd, buf, block * BLOCK + off)

    def writeblocks(self, block, buf, off=0):
        _semihost.pwrite(self.fd, buf, block * BLOCK + off)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.blocks
        if op == 5:  # block size
            return BLOCK
        if op == 6:  # erase
            return 0
        return None


def options():
    """The key=value words of QEMU's -append line (the first word is the kernel's file name)."""
    opts = {}
    for word in _semihost.cmdline().split():
        if "=" in word:
            key, value = word.split("=", 1)
            opts[key] = value
    return opts


def mount():
    """Mount the flash at /, formatting it first if it holds no littlefs (a new board)."""
    opts = options()
    path = opts.get("flash")
    if not path:
        return None
    dev = HostFlash(path, int(opts.get("flash_bytes", 2097152)))
    try:
        vfs.mount(vfs.VfsLfs2(dev), "/")
    except OSError:
        vfs.VfsLfs2.mkfs(dev)
        vfs.mount(vfs.VfsLfs2(dev), "/")
    return dev
