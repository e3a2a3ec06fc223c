// The board's flash filesystem, kept in a host folder (plugin arg) and written through.
//
// The VM has only an in-memory filesystem (MEMFS). At boot the folder is copied in at "/" (where a board
// mounts its flash); afterwards every change the firmware makes (each write() call, open with truncation,
// truncate, unlink, rename, mkdir, rmdir) is applied to the folder at once, synchronously, so that killing the
// process (SIGKILL, a "power cut") keeps exactly what the firmware had written so far, and no more.
// A real board's littlefs/FAT may lose an unflushed tail; here nothing written is ever buffered, which makes
// "what was closed or flushed survives" hold, and a torn last write is produced on purpose: arming the tear
// (tearWrite in the shared state, from the supervisor) makes the next write land only a prefix of its bytes
// on the host and then halts this thread until the supervisor cuts the power.
import fs from "node:fs";
import path from "node:path";

// Paths of the VM's own filesystem that are not the board's flash.
const NOT_FLASH = ["/_vboard", "/dev", "/proc", "/tmp", "/home"];
const O_TRUNC = 0o1000;
// The flash holds the device's private key: on the host it is readable by its owner only.
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
const O_CREAT = 0o100;

// Shared Int32Array slots (the supervisor arms the tear; the worker reports it happened).
export const FLASH = { tearArmed: 0, tornWrites: 1, writes: 2 };
export const FLASH_SLOTS = 3;

function isFlashPath(p) {
  return p.startsWith("/") && !NOT_FLASH.some((n) => p === n || p.startsWith(n + "/"));
}

function copyIn(FS, hostDir, vmDir) {
  for (const entry of fs.readdirSync(hostDir, { withFileTypes: true })) {
    const src = path.join(hostDir, entry.name);
    const dst = (vmDir === "/" ? "" : vmDir) + "/" + entry.name;
    if (!isFlashPath(dst)) continue;
    if (entry.isDirectory()) {
      try {
        FS.mkdir(dst);
      } catch {
        /* exists */
      }
      copyIn(FS, src, dst);
    } else if (entry.isFile()) FS.writeFile(dst, fs.readFileSync(src));
  }
}

// Remove the VM filesystem's own top-level folders a board does not have (best effort).
function hideNonFlash(FS) {
  for (const dir of ["/tmp", "/home/web_user", "/home"]) {
    try {
      FS.rmdir(dir);
    } catch {
      /* not empty or absent: leave it */
    }
  }
}

// Python side: the root listing hides the VM's own folders; statvfs reports the board's filesystem, whose used
// blocks are counted from the files (4 KB blocks, as littlefs on these boards). And filesystem errors carry the
// errno a board gives: this port raises the WASI numbers of its C library (ENOENT is 44, not 2, while its own
// errno module says 2), which breaks every tool that tells "no such file" from other errors (mpremote does).
const FLASH_VIEW_PY = `
def _vb_flash_view():
    import builtins, os
    hidden = ("_vboard", "dev", "proc", "tmp", "home")
    # WASI errno -> MicroPython's (py/mperrno.h, the Linux values)
    wasi = {44: 2, 20: 17, 54: 20, 31: 21, 28: 22, 2: 13, 55: 39, 8: 9, 51: 28, 29: 5, 63: 1, 10: 16, 75: 18, 37: 36}

    def board_errno(fn):
        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except OSError as e:
                code = e.args[0] if e.args else None
                if code in wasi:
                    raise OSError(wasi[code]) from None
                raise

        return call

    for name in ("stat", "listdir", "ilistdir", "remove", "rename", "mkdir", "rmdir", "chdir", "unlink"):
        if hasattr(os, name):
            setattr(os, name, board_errno(getattr(os, name)))
    builtins.open = board_errno(builtins.open)
    ilistdir, listdir, stat = os.ilistdir, os.listdir, os.stat

    def at_root(path):
        return path in ("/", "") and os.getcwd() == "/" or path == "/"

    def vb_ilistdir(path=""):
        # A board's entries are (name, type, inode, size); this port's carry no size.
        base = path.rstrip("/") + "/" if path else ""
        for entry in ilistdir(path):
            if at_root(path) and entry[0] in hidden:
                continue
            size = stat(base + entry[0])[6] if entry[1] == 0x8000 else 0
            yield (entry[0], entry[1], 0, size)

    def vb_listdir(path=""):
        return [n for n in listdir(path) if not (at_root(path) and n in hidden)]

    def used_blocks(path):
        n = 1
        for entry in ilistdir(path):
            if path == "/" and entry[0] in hidden:
                continue
            full = (path.rstrip("/") + "/" + entry[0])
            if entry[1] == 0x4000:
                n += used_blocks(full)
            else:
                n += 1 + stat(full)[6] // 4096
        return n

    def statvfs(path="/"):
        used = used_blocks("/")
        free = max(0, FS_BLOCKS - used)
        return (4096, 4096, FS_BLOCKS, free, free, 0, 0, 0, 0, 255)

    os.ilistdir = vb_ilistdir
    os.listdir = vb_listdir
    os.statvfs = statvfs

_vb_flash_view()
del _vb_flash_view
`;

// ctx.arg: the host folder. ctx.opts.flashState: optional SharedArrayBuffer of FLASH_SLOTS int32.
export async function install(mp, ctx) {
  const hostDir = path.resolve(ctx.arg);
  fs.mkdirSync(hostDir, { recursive: true, mode: DIR_MODE });
  const FS = mp.FS;
  const state = new Int32Array(ctx.opts.flashState || new SharedArrayBuffer(FLASH_SLOTS * 4));
  const host = (p) => path.join(hostDir, p);
  hideNonFlash(FS);
  copyIn(FS, hostDir, "/");

  const orig = {
    open: FS.open,
    write: FS.write,
    truncate: FS.truncate,
    ftruncate: FS.ftruncate,
    unlink: FS.unlink,
    rename: FS.rename,
    mkdir: FS.mkdir,
    rmdir: FS.rmdir,
  };
  // A write's bytes at the offset they landed at in the VM file.
  function mirrorWrite(vmPath, bytes, position) {
    const fd = fs.openSync(host(vmPath), fs.existsSync(host(vmPath)) ? "r+" : "w+", FILE_MODE);
    try {
      let n = bytes.length;
      const tearing = Atomics.load(state, FLASH.tearArmed) !== 0 && n > 0;
      if (tearing) n = Math.floor(Math.random() * n); // a prefix, possibly empty
      fs.writeSync(fd, bytes, 0, n, position);
      Atomics.add(state, FLASH.writes, 1);
      if (tearing) {
        fs.fsyncSync(fd);
        Atomics.add(state, FLASH.tornWrites, 1);
        Atomics.notify(state, FLASH.tornWrites);
        // The power is going: nothing after this write may reach the flash. Wait to be terminated.
        if (ctx.opts.beforeHalt) ctx.opts.beforeHalt();
        for (;;) Atomics.wait(state, FLASH.tearArmed, Atomics.load(state, FLASH.tearArmed));
      }
    } finally {
      fs.closeSync(fd);
    }
  }

  FS.open = function (p, flags, mode) {
    const stream = orig.open.call(FS, p, flags, mode);
    if (typeof flags === "number" && stream && isFlashPath(stream.path)) {
      if (flags & O_TRUNC) fs.writeFileSync(host(stream.path), "", { mode: FILE_MODE });
      else if (flags & O_CREAT && !fs.existsSync(host(stream.path))) fs.writeFileSync(host(stream.path), "", { mode: FILE_MODE });
    }
    return stream;
  };
  FS.write = function (stream, buffer, offset, length, position, canOwn) {
    const at = typeof position === "number" ? position : stream.position;
    const n = orig.write.call(FS, stream, buffer, offset, length, position, canOwn);
    if (isFlashPath(stream.path) && n > 0) {
      // O_APPEND writes land at the end: read back where the VM put them.
      const landed = stream.flags & 0o2000 ? stream.node.usedBytes - n : at;
      mirrorWrite(stream.path, Buffer.from(buffer.subarray(offset, offset + n)), landed);
    }
    return n;
  };
  FS.truncate = function (p, len) {
    orig.truncate.call(FS, p, len);
    const node = typeof p === "string" ? p : null;
    if (node && isFlashPath(node)) fs.truncateSync(host(node), len);
  };
  FS.ftruncate = function (fd, len) {
    orig.ftruncate.call(FS, fd, len);
    const stream = FS.getStream(fd);
    if (stream && isFlashPath(stream.path)) fs.truncateSync(host(stream.path), len);
  };
  FS.unlink = function (p) {
    orig.unlink.call(FS, p);
    if (isFlashPath(p)) fs.rmSync(host(p), { force: true });
  };
  FS.rename = function (a, b) {
    orig.rename.call(FS, a, b);
    if (isFlashPath(a) && isFlashPath(b)) fs.renameSync(host(a), host(b));
  };
  FS.mkdir = function (p, mode) {
    const r = orig.mkdir.call(FS, p, mode);
    if (isFlashPath(p)) fs.mkdirSync(host(p), { recursive: true, mode: DIR_MODE });
    return r;
  };
  FS.rmdir = function (p) {
    orig.rmdir.call(FS, p);
    if (isFlashPath(p)) fs.rmSync(host(p), { recursive: true, force: true });
  };
  // The flash as the firmware and the tools see it: only its own files at "/", and its size (mpremote df).
  const fsBytes = (ctx.board && ctx.board.flash && ctx.board.flash.filesystem_bytes) || 2 * 1024 * 1024;
  mp.runPython(FLASH_VIEW_PY.replaceAll("FS_BLOCKS", String(Math.floor(fsBytes / 4096))));
  return {
    control(msg) {
      if (msg.tear) Atomics.store(state, FLASH.tearArmed, 1);
      return { writes: Atomics.load(state, FLASH.writes), torn: Atomics.load(state, FLASH.tornWrites) };
    },
  };
}
