// The board's serial console, as a USB-serial REPL behaves: boot.py and main.py at boot, the friendly REPL, the
// raw REPL and raw-paste mode that mpremote and the provisioning tool drive, Ctrl-C, and Ctrl-D soft reset.
//
// Why not all in the VM's own REPL: this port's replProcessChar hangs on raw-paste (Ctrl-E), only prints "OK"
// on a soft reset, and runs code synchronously, where neither the board-RAM model nor asyncio can step. So the
// friendly REPL (line editing, completion, compound statements) is the VM's own, while the raw REPL and boot
// are done here, running each unit of code as a top-level coroutine of the VM: `asyncio.run(main())` then blocks
// the unit (as on a board) while its tasks step one per return to JS, and Ctrl-C reaches the running task as
// KeyboardInterrupt. Synchronous code cannot be interrupted (the VM's thread is busy); the supervisor resets a
// board that stays busy (board_host.mjs).
const CTRL_A = 0x01;
const CTRL_B = 0x02;
const CTRL_C = 0x03;
const CTRL_D = 0x04;
const CTRL_E = 0x05;
// Raw-paste flow-control window (bytes); a board's is its stdin buffer.
const RAW_PASTE_WINDOW = 256;
const PYEXEC_FORCED_EXIT = 0x100;

// Installed in the VM: asyncio.run for this port (it has none) and the helpers the units run through.
export const REPL_PY = `
def _vb_repl_install():
    import sys, io, asyncio, vboard_repl
    from asyncio import core

    class _VBoardRunStarted(BaseException):
        pass

    def run(coro):
        # A board's asyncio.run blocks until coro ends; here the unit that called it unwinds and the
        # harness waits for this task instead, so everything runs as task steps.
        async def main():
            try:
                result = await coro
            except BaseException as e:
                buf = io.StringIO()
                sys.print_exception(e, buf)
                vboard_repl.main_done(buf.getvalue(), type(e).__name__)
                return
            vboard_repl.main_done("", "")
            return result

        vboard_repl.main_started(asyncio.create_task(main()))
        raise _VBoardRunStarted()

    asyncio.run = run

    async def vb_run(coro):
        # The top-level form: awaited by the unit itself (see rewriteTopLevelRun); Ctrl-C reaches it the same way.
        # A BaseException (KeyboardInterrupt) ends a board's loop and leaves asyncio.run; this port's scheduler
        # lets none escape a task, so it is carried out of the task and raised here.
        escaped = [None]

        async def guard():
            try:
                return await coro
            except BaseException as e:
                escaped[0] = e

        task = asyncio.create_task(guard())
        vboard_repl.main_started(task)
        try:
            result = await task
        finally:
            vboard_repl.main_started(None)
            core.new_event_loop()
        if escaped[0] is not None:
            raise escaped[0]
        return result

    asyncio._vb_run = vb_run

    def interrupt(task):
        # Ctrl-C: KeyboardInterrupt into the innermost task the main task waits on.
        if task.done():
            return False
        inner = task
        while isinstance(inner.data, core.Task):
            inner = inner.data
        if not inner.cancel():
            return False
        inner.data = KeyboardInterrupt()
        return True

    def run_file(name):
        g = {"__name__": "__main__", "__file__": name}
        with open(name) as f:
            source = f.read()
        exec(compile(source, name, "exec"), g)

    def read_file(name):
        with open(name) as f:
            return f.read()

    def stop_loop():
        core.new_event_loop()

    return interrupt, run_file, stop_loop, read_file


_vb_repl_interrupt, _vb_run_file, _vb_stop_loop, _vb_read_file = _vb_repl_install()
del _vb_repl_install
`;

// `asyncio.run(...)` written at the top level of a unit (not inside a def or class) becomes
// `await asyncio._vb_run(...)`: the unit runs as a top-level coroutine here, so it can really wait, and the code
// after it runs as on a board. A call from inside a function still uses the unwinding asyncio.run above.
export function rewriteTopLevelRun(source) {
  const lines = source.split("\n");
  const blocks = []; // indents of enclosing def/class blocks
  let changed = false;
  let continuation = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const body = line.trimStart();
    if (!continuation && body && !body.startsWith("#")) {
      const indent = line.length - body.length;
      while (blocks.length && indent <= blocks[blocks.length - 1]) blocks.pop();
      if (/^(async\s+def|def|class)\s/.test(body) || /^@/.test(body)) {
        if (!/^@/.test(body)) blocks.push(indent);
      } else if (blocks.length === 0 && /\basyncio\.run\(/.test(body) && !/["']/.test(body.split("asyncio.run(")[0])) {
        lines[i] = line.replace(/\basyncio\.run\(/, "await asyncio._vb_run(");
        changed = true;
      }
    }
    continuation = /\\$/.test(line);
  }
  return changed ? lines.join("\n") : null;
}

export class SerialRepl {
  // mp: the VM; out(Uint8Array): bytes to the serial line; onSoftReset({raw}): restart the VM keeping flash;
  // log(text): harness log.
  constructor(mp, { out, onSoftReset, log, flush }) {
    this.mp = mp;
    this.out = out;
    this.onSoftReset = onSoftReset;
    this.log = log;
    this.flush = flush || (() => {});
    this.input = [];
    this.mode = "boot"; // boot | running | friendly | raw | paste | reset
    this.rawBuf = [];
    this.pasteCount = 0;
    this.busy = false;
    this.mainTask = null;
    this.mainDone = null;
    mp.registerJsModule("vboard_repl", {
      main_started: (task) => {
        this.mainTask = task ?? null;
      },
      main_done: (trace, kind) => {
        const done = this.mainDone;
        this.mainDone = null;
        if (done) done({ trace: String(trace), kind: String(kind) });
      },
    });
    mp.runPython(REPL_PY);
    this.interruptFn = mp.globals.get("_vb_repl_interrupt");
    this.runFileFn = mp.globals.get("_vb_run_file");
    this.stopLoopFn = mp.globals.get("_vb_stop_loop");
    this.readFileFn = mp.globals.get("_vb_read_file");
  }

  write(text) {
    this.out(Buffer.from(text, "utf8"));
  }

  // Boot: boot.py, then main.py unless the soft reset came from the raw REPL (as on a board), then a REPL.
  async boot({ raw = false } = {}) {
    const exists = (p) => {
      try {
        this.mp.FS.stat(p);
        return true;
      } catch {
        return false;
      }
    };
    this.mode = "running";
    if (exists("/boot.py")) await this.runUnit(this.fileRunner("boot.py"), "boot.py", false);
    if (!raw && exists("/main.py") && this.mode === "running") {
      await this.runUnit(this.fileRunner("main.py"), "main.py", false);
    }
    if (this.mode === "reset") return;
    if (raw) this.enterRaw();
    else this.enterFriendly();
    this.pump();
  }

  // A file runs under its own name unless it calls asyncio.run at its top level (then as a top-level coroutine).
  fileRunner(name) {
    return () => {
      let rewritten = null;
      try {
        rewritten = rewriteTopLevelRun(this.readFileFn(name));
      } catch {
        /* unreadable: let run_file raise the board's error */
      }
      return rewritten ? this.mp.runPythonAsync(rewritten) : this.runFileFn(name);
    };
  }

  enterFriendly() {
    this.mode = "friendly";
    this.mp.replInit();
  }

  enterRaw() {
    this.mode = "raw";
    this.rawBuf = [];
    this.write("raw REPL; CTRL-B to exit\r\n>");
  }

  // Run one unit of code (a file at boot, or raw REPL source) as the VM's top-level coroutine; wait for the
  // asyncio.run task it may start. Returns the error text ("" when none). toConsole: print errors as a board
  // prints them at boot (on the serial line) instead of returning them.
  async runUnit(run, label, returnError = true) {
    this.busy = true;
    this.mainTask = null;
    let error = "";
    try {
      await run();
    } catch (e) {
      if (e && e.name === "PythonError") {
        if (e.type !== "_VBoardRunStarted") error = e.message;
      } else throw e;
    }
    if (this.mainTask !== null && !error) {
      const outcome = await new Promise((resolve) => {
        this.mainDone = resolve;
        if (this.pendingInterrupt) this.interrupt();
      });
      this.mainTask = null;
      this.stopLoopFn();
      error = outcome.trace;
      if (error) this.log(`${label}: asyncio.run ended with ${outcome.kind}`);
    }
    this.pendingInterrupt = false;
    this.flush();
    this.busy = false;
    if (error && !returnError) {
      this.write(error.replace(/\r?\n/g, "\r\n"));
      this.log(`${label} raised:\n${error}`);
    }
    return error;
  }

  interrupt() {
    if (this.mainTask !== null) {
      try {
        this.interruptFn(this.mainTask);
      } catch (e) {
        this.log(`Ctrl-C: could not interrupt the main task: ${e && e.message ? e.message : e}`);
      }
    } else this.pendingInterrupt = true;
  }

  // Bytes from the serial line.
  feed(bytes) {
    for (const b of bytes) {
      // Ctrl-C while code runs interrupts it; other input waits, as in a board's input buffer.
      if (this.busy && b === CTRL_C && this.mode !== "paste") {
        this.interrupt();
        continue;
      }
      this.input.push(b);
    }
    if (!this.busy) this.pump();
  }

  pump() {
    while (this.input.length && !this.busy && this.mode !== "reset" && this.mode !== "running") {
      const b = this.input.shift();
      if (this.mode === "friendly") this.friendlyChar(b);
      else if (this.mode === "raw") this.rawChar(b);
      else if (this.mode === "paste") this.pasteChar(b);
    }
  }

  friendlyChar(b) {
    if (b === CTRL_A) {
      this.write("\r\n");
      this.enterRaw();
      return;
    }
    const ret = this.mp.replProcessChar(b);
    this.flush();
    if (ret === PYEXEC_FORCED_EXIT) this.softReset(false);
  }

  rawChar(b) {
    if (b === CTRL_B) {
      this.write("\r\n");
      this.enterFriendly();
    } else if (b === CTRL_C) {
      this.rawBuf = [];
    } else if (b === CTRL_A) {
      // As MicroPython's raw REPL: Ctrl-A resets it (the line so far is dropped, the banner printed again),
      // so a tool's repeated "Ctrl-C, Ctrl-A" to get in leaves no stray input behind.
      this.enterRaw();
    } else if (b === CTRL_E && this.rawBuf.length === 0) {
      this.pasteHeader = [];
      this.mode = "paste-header";
      this.mode = "paste";
      this.pasteCount = -2; // expect "A", Ctrl-A
    } else if (b === CTRL_D) {
      if (this.rawBuf.length === 0) {
        this.write("OK\r\n");
        this.softReset(true);
        return;
      }
      const source = Buffer.from(this.rawBuf).toString("utf8");
      this.rawBuf = [];
      this.write("OK");
      this.execRaw(source);
    } else this.rawBuf.push(b);
  }

  pasteChar(b) {
    if (this.pasteCount === -2) {
      this.pasteCount = b === 0x41 ? -1 : -3; // "A"
      if (this.pasteCount === -3) this.mode = "raw";
      return;
    }
    if (this.pasteCount === -1) {
      if (b !== CTRL_A) {
        this.mode = "raw";
        return;
      }
      this.pasteCount = 0;
      this.rawBuf = [];
      const hdr = Buffer.from([0x52, 0x01, RAW_PASTE_WINDOW & 0xff, RAW_PASTE_WINDOW >> 8]); // "R\x01" + window
      this.out(hdr);
      return;
    }
    if (b === CTRL_D) {
      this.out(Buffer.from([CTRL_D]));
      this.mode = "raw";
      const source = Buffer.from(this.rawBuf).toString("utf8");
      this.rawBuf = [];
      this.execRaw(source);
      return;
    }
    this.rawBuf.push(b);
    if (++this.pasteCount % RAW_PASTE_WINDOW === 0) this.out(Buffer.from([0x01]));
  }

  // Execute raw REPL source: output, \x04, error output, \x04, then the ">" prompt.
  async execRaw(source) {
    const code = rewriteTopLevelRun(source) || source;
    const error = await this.runUnit(() => this.mp.runPythonAsync(code), "raw REPL");
    if (this.mode === "reset") return;
    this.write("\x04");
    if (error) this.write(error.replace(/\r?\n/g, "\r\n"));
    this.write("\x04>");
    this.pump();
  }

  softReset(raw) {
    this.mode = "reset";
    this.write("MPY: soft reboot\r\n");
    this.onSoftReset({ raw });
  }
}
