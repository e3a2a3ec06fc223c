// The board's ROMFS partition (MicroPython >= 1.25, `vfs.rom_ioctl`, docs.micropython.org "Working with ROMFS"):
// a read-only filesystem in memory-mapped flash whose .mpy modules execute in place, so their bytecode and
// constants take no heap. Its size is the profile's micropython.romfs_bytes (the partition of the MicroPython
// build pinseal ships; 0 = a build without ROMFS, and then this plugin does nothing).
//
// The partition lives in the VM's linear memory outside the GC heap (like flash outside a board's RAM), loaded
// from a host file (plugin arg) at boot and written back by the rom_ioctl write operations, so
// `mpremote romfs deploy` works unchanged. As on a board, a valid image is mounted at /rom at boot and /rom,
// /rom/lib are put on sys.path.
import fs from "node:fs";

const ROMFS_HEADER = [0xd2, 0xcd, 0x31];
const BLOCK_BYTES = 4096;

const ROMFS_PY = `
def _vb_romfs(addr, size, block):
    import sys, uctypes, vfs, vboard_romfs

    seg = uctypes.bytearray_at(addr, size)

    def mount():
        if bytes(seg[:3]) == b"\\xd2\\xcd\\x31":
            vfs.mount(vfs.VfsRom(memoryview(seg)), "/rom")
            at = 1 if sys.path and sys.path[0] == "" else 0
            for p in ("/rom/lib", "/rom"):
                if p not in sys.path:
                    sys.path.insert(at, p)

    def rom_ioctl(op, *args):
        if op == 1:  # number of segments
            return 1
        if args and args[0] != 0:
            return -19  # ENODEV: only segment 0
        if op == 2:  # the segment's memory
            return memoryview(seg)
        if op == 3:  # prepare (erase) (id, length) or (id, offset, length)
            offset, length = (0, args[1]) if len(args) == 2 else (args[1], args[2])
            if offset < 0 or length < 0 or offset + length > size:
                return -22
            vboard_romfs.erase(offset, length)
            return 4  # smallest write
        if op == 4:  # write (id, offset, buf)
            offset, buf = args[1], args[2]
            if offset < 0 or offset + len(buf) > size:
                return -22
            seg[offset : offset + len(buf)] = buf
            vboard_romfs.persist(offset, len(buf))
            return 0
        if op == 5:  # write complete
            return 0
        if op == 6:  # block size
            return block
        return -22

    # This port's vfs module is read-only and has no ROM partition of its own: the board's vfs is a stand-in
    # in sys.modules with the port's functions and this rom_ioctl (what "import vfs" then finds).
    class _BoardVfs:
        __name__ = "vfs"

    board_vfs = _BoardVfs()
    for name in dir(vfs):
        if not name.startswith("__"):
            setattr(board_vfs, name, getattr(vfs, name))
    board_vfs.rom_ioctl = rom_ioctl
    sys.modules["vfs"] = board_vfs
    mount()

`;

export async function install(mp, ctx) {
  const size = (ctx.board && ctx.board.micropython && ctx.board.micropython.romfs_bytes) || 0;
  if (!size) return;
  const file = ctx.arg;
  const M = mp._module;
  const addr = M._malloc(size);
  if (!addr) throw new Error("romfs: no memory for the partition");
  M.HEAPU8.fill(0xff, addr, addr + size);
  if (file && fs.existsSync(file)) {
    const image = fs.readFileSync(file);
    M.HEAPU8.set(image.subarray(0, size), addr);
  }
  const persist = (offset, length) => {
    if (!file) return;
    const fd = fs.openSync(file, fs.existsSync(file) ? "r+" : "w+", 0o600);
    try {
      fs.writeSync(fd, M.HEAPU8.subarray(addr + offset, addr + offset + length), 0, length, offset);
    } finally {
      fs.closeSync(fd);
    }
  };
  mp.registerJsModule("vboard_romfs", {
    erase: (offset, length) => {
      M.HEAPU8.fill(0xff, addr + offset, addr + offset + length);
      persist(offset, length);
    },
    persist,
  });
  mp.runPython(`${ROMFS_PY}_vb_romfs(${addr}, ${size}, ${BLOCK_BYTES})\ndel _vb_romfs\n`);
  return {
    control() {
      const head = Array.from(M.HEAPU8.subarray(addr, addr + 3));
      return { bytes: size, valid: head.every((b, i) => b === ROMFS_HEADER[i]) };
    },
  };
}
