// Virtual board plugin: the network a board has on Wi-Fi: TCP and TLS client connections bridged to the host
// (Node `net` / `tls`), the Wi-Fi station (network.WLAN), NTP (ntptime), and faults to inject at runtime.
//
//   run_vm.mjs --plugin hil_tests/vboard/net.mjs[=SETTINGS.json] ...
//
// SETTINGS.json (optional; every key optional, see net/settings.mjs for the defaults):
//   {"port": "esp32"|"rp2", "networks": [{"ssid": ..., "password": ...}], "connect_ms": 1500, "wifi": "up",
//    "allow_hosts": ["127.0.0.1", "localhost"], "refuse": false, "delay_ms": 0, "block_host": [],
//    "connect_timeout_ms": 20000, "ifconfig": [ip, mask, gw, dns], "ntp": {"offset_s": 0, "fail": false}}
// Controls (vboard_control.send("net", json) in the VM, or the board host): any settings key, plus
//   {"drop": true}  reset every open connection now (the peer gets a TCP RST, the board ECONNRESET)
//   {"status": true} (or {}) returns the state: settings, open connections, Wi-Fi status.
// A bad control throws (an Error naming the key); called from the VM through vboard_control, that ends the VM.
//
// MicroPython side (hil_tests/vboard/mpy/): _vb_streams.py (asyncio.open_connection and its streams; installed
// into the asyncio package by this plugin at install time), network.py, ntptime.py, tls.py, ssl.py. They call the
// JS module `vboard_net` registered here. Blocking waits are Promises the asyncio task awaits; data and state are
// read by synchronous calls after the wait, as a board's stream.py polls the socket and then reads it, so a
// cancelled wait (asyncio.wait_for) never loses data. Bytes cross the boundary as hex.
//
// Error strings returned to Python: "!<ERRNO NAME>" (OSError(errno.<NAME>)), "!EAI" (getaddrinfo failure),
// "!V<text>" (certificate verification failed: ValueError(text), as modtls_mbedtls.c raises in an asynchronous
// handshake), "!T<code>|<text>" (other mbedTLS error: OSError(code, text)), "!W<text>" (OSError(text)).
import fs from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { DEFAULTS, applyPatch, checkPatch, isIPv4Literal, portFromBoard } from "./net/settings.mjs";
import { MBEDTLS, certsToPem, keyToPem, nodeTlsOptions, verifyPeer } from "./net/tls_util.mjs";
import { STATUS, createWifi, macFor } from "./net/wifi.mjs";

// lwIP's TCP send buffer on the ESP32 port (TCP_SND_BUF = 4 x MSS): drain() waits until this little is queued.
export const SNDBUF_BYTES = 5744;
// At most this much is handed to the board per read (a few TCP segments, as lwIP hands over pbufs): keeps the
// hex strings crossing into the VM small, so no large allocation happens inside the JS bridge.
export const RECV_MAX_BYTES = 4096;
// Received bytes buffered for the board before the host socket is paused (TCP flow control does the rest).
export const RCVBUF_BYTES = 16 * 1024;

const INSTALL_PY = `
def _vb_net_install():
    import sys
    sys.path.insert(0, "/_vboard")
    try:
        import _vb_streams
        _vb_streams.install()
    finally:
        sys.path.pop(0)

_vb_net_install()
del _vb_net_install
`;

function loadSettings(arg) {
  const settings = JSON.parse(JSON.stringify(DEFAULTS));
  if (!arg) return settings;
  let text;
  try {
    text = fs.readFileSync(arg, "utf8");
  } catch (e) {
    throw new Error(`vboard net: cannot read settings file ${arg}: ${e.message}`);
  }
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new Error(`vboard net: settings file ${arg} is not valid JSON: ${e.message}`);
  }
  const patch = checkPatch(parsed, `settings file ${arg}`);
  if ("drop" in patch) delete patch.drop;
  applyPatch(settings, patch);
  return settings;
}

const nodeErrno = (e) => {
  const code = e && e.code;
  if (code === "ECONNREFUSED" || code === "ETIMEDOUT" || code === "EHOSTUNREACH" || code === "ECONNABORTED") return code;
  if (code === "ENETUNREACH") return "EHOSTUNREACH";
  return "ECONNRESET"; // EPIPE, ECONNRESET and the rest: the connection is gone
};

export async function install(mp, ctx) {
  const settings = loadSettings(ctx.arg);
  const clock = ctx.clock;
  const portOf = () => settings.port || portFromBoard(ctx.board) || "esp32";
  const conns = new Map();
  let nextId = 1;
  const stats = { opened: 0, refused: 0, dropped: 0, bytesOut: 0, bytesIn: 0 };

  const hostBlocked = (host) => settings.block_host.includes(host);

  class Conn {
    constructor(host, port, tlsOpts) {
      this.id = nextId++;
      this.host = host;
      this.port = port;
      this.tls = tlsOpts;
      this.state = "connecting"; // connecting | open | failed | closed
      this.err = null; // error string for Python ("!...")
      this.rbuf = [];
      this.rlen = 0;
      this.eof = false;
      this.inQ = []; // delayed arrivals: {due, data} | {due, eof} | {due, err}
      this.outQ = []; // delayed departures: {due, data}
      this.outLen = 0;
      this.lastInDue = 0;
      this.lastOutDue = 0;
      this.timer = null;
      this.waiters = [];
      this.sock = null;
      this.paused = false;
      conns.set(this.id, this);
    }

    // --- waiting (Promises the Python side awaits); the host socket keeps Node alive only while awaited ---
    wait(ready) {
      if (ready()) return Promise.resolve("");
      return new Promise((resolve) => {
        this.waiters.push({ ready, resolve });
        this.refresh();
      });
    }
    wake() {
      this.waiters = this.waiters.filter((w) => {
        if (!w.ready()) return true;
        w.resolve("");
        return false;
      });
      this.refresh();
    }
    refresh() {
      if (!this.sock) return;
      if (this.waiters.length || this.outQ.length) this.sock.ref();
      else this.sock.unref();
    }
    readable() {
      return this.rlen > 0 || this.eof || this.err !== null || this.state === "closed";
    }
    writable() {
      const queued = this.outLen + (this.sock ? this.sock.writableLength : 0);
      return this.state !== "connecting" && (queued <= SNDBUF_BYTES || this.err !== null || this.state === "closed");
    }

    // --- delayed delivery, in order, per direction ---
    due(last) {
      return Math.max(performance.now() + settings.delay_ms, last);
    }
    arrive(item) {
      if (settings.delay_ms <= 0 && !this.inQ.length && !hostBlocked(this.host)) return this.deliver(item);
      this.lastInDue = item.due = this.due(this.lastInDue);
      this.inQ.push(item);
      this.schedule();
    }
    deliver(item) {
      if (item.data) {
        this.rbuf.push(item.data);
        this.rlen += item.data.length;
        stats.bytesIn += item.data.length;
        if (this.rlen >= RCVBUF_BYTES && this.sock && !this.paused) {
          this.paused = true;
          this.sock.pause();
        }
      } else if (item.eof) this.eof = true;
      else if (item.err && this.err === null) this.fail(item.err);
      this.wake();
    }
    depart(data) {
      if (settings.delay_ms <= 0 && !this.outQ.length && !hostBlocked(this.host)) return this.push(data);
      this.lastOutDue = this.due(this.lastOutDue);
      this.outQ.push({ due: this.lastOutDue, data });
      this.outLen += data.length;
      this.schedule();
      this.refresh();
    }
    push(data) {
      stats.bytesOut += data.length;
      this.sock.write(data, () => this.wake());
    }
    schedule() {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      if (hostBlocked(this.host)) return; // stalled: packets dropped until unblocked
      const next = Math.min(this.inQ.length ? this.inQ[0].due : Infinity, this.outQ.length ? this.outQ[0].due : Infinity);
      if (next === Infinity) return;
      this.timer = setTimeout(() => this.flush(), Math.max(0, next - performance.now()));
    }
    flush() {
      this.timer = null;
      if (hostBlocked(this.host)) return;
      const now = performance.now();
      while (this.outQ.length && this.outQ[0].due <= now && this.sock && this.state === "open") {
        const { data } = this.outQ.shift();
        this.outLen -= data.length;
        this.push(data);
      }
      while (this.inQ.length && this.inQ[0].due <= now) this.deliver(this.inQ.shift());
      this.schedule();
      this.wake();
    }

    // --- life cycle ---
    fail(err) {
      if (this.err === null) this.err = err;
      if (this.state !== "closed") this.state = "failed";
      this.inQ = [];
      this.outQ = [];
      this.outLen = 0;
      this.wake();
    }
    // A fault: the board's side fails with `err`; the host peer gets a RST (reset) or nothing at all (silent:
    // the link vanished; the peer notices only by its own timeouts, as a broker's keepalive does).
    abort(err, { reset }) {
      if (this.state === "closed" || this.err !== null) return;
      stats.dropped++;
      this.fail(err);
      if (this.sock) {
        if (reset && typeof this.sock.resetAndDestroy === "function" && !this.tls) this.sock.resetAndDestroy();
        else if (reset) this.sock.destroy();
        else {
          this.sock.pause();
          this.sock.unref(); // left to the peer's timeout; never keeps the VM alive
          this.sock.removeAllListeners("data");
          this.sock.on("error", () => {});
          this.sock.on("end", () => this.sock.destroy());
        }
      }
    }
    close() {
      if (this.state === "closed") return;
      this.state = "closed";
      if (this.timer) clearTimeout(this.timer);
      this.inQ = [];
      this.outQ = [];
      this.outLen = 0;
      if (this.sock && !this.sock.destroyed) this.sock.end(() => this.sock.destroy());
      if (this.sock) this.sock.unref();
      conns.delete(this.id);
      this.wake();
    }

    start() {
      const rtt = 2 * settings.delay_ms;
      if (hostBlocked(this.host)) {
        const t = setTimeout(() => this.connectFailed("!ETIMEDOUT"), settings.connect_timeout_ms);
        this.blockTimer = t;
        return;
      }
      if (settings.refuse) {
        stats.refused++;
        setTimeout(() => this.connectFailed("!ECONNREFUSED"), rtt);
        return;
      }
      const opts = { host: this.host, port: this.port, allowHalfOpen: true };
      const sock = this.tls ? tls.connect({ ...opts, ...nodeTlsOptions(this.tls) }) : net.connect(opts);
      this.sock = sock;
      sock.setNoDelay(true);
      this.refresh();
      const onOpen = () => {
        if (this.tls) {
          const bad = verifyPeer(sock, this.tls);
          if (bad) {
            // mbedTLS sends its alert and drops the link; the board learns it after the handshake's round trips.
            this.verdict = "!V\n" + bad + "\n";
            sock.destroy();
            return setTimeout(() => this.connectFailed(this.verdict), 2 * rtt);
          }
        }
        setTimeout(() => {
          if (this.state !== "connecting") return;
          this.state = "open";
          stats.opened++;
          this.flush();
          this.wake();
        }, this.tls ? 2 * rtt : rtt);
      };
      sock.once(this.tls ? "secureConnect" : "connect", onOpen);
      sock.on("data", (data) => this.arrive({ data }));
      sock.on("end", () => this.arrive({ eof: true }));
      sock.on("error", (e) => {
        if (this.state === "connecting") return this.connectFailed(this.connectError(e));
        this.arrive({ err: "!" + nodeErrno(e) });
      });
      sock.on("close", () => {
        if (this.state === "connecting" && !this.verdict) this.connectFailed(this.tls ? "!T" + MBEDTLS.CONN_EOF.join("|") : "!ECONNRESET");
      });
    }
    connectError(e) {
      const code = e && e.code;
      if (code === "ECONNREFUSED") stats.refused++;
      if (!this.tls || ["ECONNREFUSED", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH"].includes(code)) return "!" + nodeErrno(e);
      if (code === "ECONNRESET" || code === "EPIPE") return "!T" + MBEDTLS.CONN_EOF.join("|");
      if (/alert/i.test(String(e && e.message))) return "!T" + MBEDTLS.FATAL_ALERT.join("|");
      return "!T" + MBEDTLS.HANDSHAKE.join("|");
    }
    connectFailed(err) {
      if (this.state !== "connecting") return;
      if (this.sock) this.sock.destroy();
      this.fail(err);
    }
  }

  // A link-level event (Wi-Fi gone, disconnect()): every connection fails at once; the peers are not told.
  const onLinkLost = (err) => {
    for (const c of conns.values()) c.abort("!" + err, { reset: false });
  };
  const wifi = createWifi({ settings, clock, portOf, onLinkLost });

  // getaddrinfo + the route check a board makes before its connect() returns EINPROGRESS.
  function resolve(host) {
    const h = String(host).toLowerCase();
    const named = !isIPv4Literal(h);
    if (named && !wifi.isConnected()) return { err: "!EAI" }; // no DNS server reachable
    if (named && h !== "localhost" && !settings.allow_hosts.includes(h)) return { err: "!EAI" };
    if (!wifi.isConnected()) return { err: "!EHOSTUNREACH" };
    const ip = h === "localhost" ? "127.0.0.1" : h;
    if (!settings.allow_hosts.includes(h) && !settings.allow_hosts.includes(ip)) return { err: "!EHOSTUNREACH" };
    return { ip: named && h !== "localhost" ? h : ip };
  }

  const get = (id) => conns.get(Number(id));

  const module = {
    // -> connection id (number), or an error string raised by open_connection itself
    open(host, port, tlsJson) {
      const r = resolve(host);
      if (r.err) return r.err;
      port = Number(port);
      if (!Number.isInteger(port) || port <= 0 || port > 65535) return "!EINVAL";
      let tlsOpts = null;
      if (tlsJson) {
        const o = JSON.parse(tlsJson);
        try {
          tlsOpts = {
            verify_mode: o.verify_mode,
            server_hostname: o.server_hostname || null,
            ca: (o.cadata || []).flatMap(certsToPem),
            cert: o.cert ? certsToPem(o.cert).join("") : null,
            key: o.key ? keyToPem(o.key) : null,
          };
        } catch (e) {
          return "!W" + e.message;
        }
      }
      const c = new Conn(r.ip, port, tlsOpts);
      c.start();
      return c.id;
    },
    wait_connected: (id) => (get(id) ? get(id).wait(() => get(id) === undefined || get(id).state !== "connecting") : Promise.resolve("")),
    wait_readable: (id) => (get(id) ? get(id).wait(() => get(id) === undefined || get(id).readable()) : Promise.resolve("")),
    wait_writable: (id) => (get(id) ? get(id).wait(() => get(id) === undefined || get(id).writable()) : Promise.resolve("")),
    // "" = fine, "!..." = the connection's error
    error(id) {
      const c = get(id);
      if (!c) return "!EBADF";
      return c.err || "";
    },
    // -> hex (non-empty), "" at EOF, null when nothing is there yet, "!..." on error. n < 0: all buffered.
    recv(id, n) {
      const c = get(id);
      if (!c) return "!EBADF";
      if (c.rlen === 0) {
        if (c.err) return c.err;
        if (c.eof) return "";
        return null;
      }
      n = Number(n);
      const want = Math.min(n < 0 ? c.rlen : n, c.rlen, RECV_MAX_BYTES);
      const all = c.rbuf.length === 1 ? c.rbuf[0] : Buffer.concat(c.rbuf);
      const out = all.subarray(0, want);
      const rest = all.subarray(want);
      c.rbuf = rest.length ? [rest] : [];
      c.rlen = rest.length;
      if (c.paused && c.rlen < RCVBUF_BYTES / 2 && c.sock && c.state === "open") {
        c.paused = false;
        c.sock.resume();
      }
      return out.toString("hex");
    },
    // As recv, but stops after the first newline (a board's socket readline() never reads past it).
    recv_line(id) {
      const c = get(id);
      if (!c || c.rlen === 0) return module.recv(id, -1);
      const all = c.rbuf.length === 1 ? c.rbuf[0] : Buffer.concat(c.rbuf);
      const nl = all.indexOf(10);
      c.rbuf = [all];
      return module.recv(id, nl < 0 ? -1 : nl + 1);
    },
    // -> "" or "!..."
    send(id, hex) {
      const c = get(id);
      if (!c) return "!EBADF";
      if (c.err) return c.err;
      if (c.state === "connecting") return "!EAGAIN";
      const data = Buffer.from(hex, "hex");
      if (data.length) c.depart(data);
      return "";
    },
    close(id) {
      const c = get(id);
      if (c) c.close();
    },
    // Certificates and keys are checked when loaded, as mbedTLS parses them: "" or "invalid cert"/"invalid key".
    check_cert(hex) {
      try {
        certsToPem(hex);
        return "";
      } catch {
        return "invalid cert";
      }
    },
    check_key(hex) {
      try {
        keyToPem(hex);
        return "";
      } catch {
        return "invalid key";
      }
    },
    port: () => portOf(),
    // --- network.WLAN ---
    wlan_active: (on) => wifi.active(on),
    wlan_connect: (ssid, key) => wifi.connect(ssid, key),
    wlan_disconnect: () => wifi.disconnect(),
    wlan_status: () => wifi.status(),
    wlan_isconnected: () => wifi.isConnected(),
    wlan_ifconfig: () => JSON.stringify(wifi.isConnected() ? settings.ifconfig : ["0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0"]),
    wlan_config: (key, value) => {
      const v = wifi.config(key, value === null ? undefined : value);
      return v === undefined ? "!unknown config param" : JSON.stringify(v);
    },
    wlan_scan: () => JSON.stringify(wifi.scan()),
    wlan_mac: () => macFor(portOf(), ctx.board, ctx.opts.mcu && ctx.opts.mcu.uniqueIdHex).toString("hex"),
    wlan_constants: () => JSON.stringify(STATUS[portOf()]),
    // --- ntptime: -> unix seconds (float) or "!..." ---
    ntp_time() {
      if (!wifi.isConnected()) return "!ETIMEDOUT";
      if (settings.ntp.fail) return "!ETIMEDOUT";
      return (Date.now() + settings.ntp.offset_s * 1000) / 1000;
    },
    ntp_set_wall_s: (s) => clock.setWallMs(Number(s) * 1000),
  };
  mp.registerJsModule("vboard_net", module);
  mp.runPython(INSTALL_PY);

  function state() {
    return {
      settings: { ...settings, port: portOf() },
      wifi_status: wifi.status(),
      isconnected: wifi.isConnected(),
      connections: [...conns.values()].map((c) => ({ id: c.id, host: c.host, port: c.port, tls: Boolean(c.tls), state: c.state, error: c.err })),
      stats: { ...stats },
    };
  }

  return {
    // The VM is gone (power cut, reset): its connections go with it. Not called by vm_core.mjs yet; a board
    // host that restarts VMs in one process should call it, or the old VM's host sockets linger.
    dispose() {
      for (const c of [...conns.values()]) {
        if (c.sock) c.sock.destroy();
        c.close();
      }
    },
    control(msg) {
      const patch = checkPatch(msg, "control", ["drop", "status"]);
      const drop = patch.drop;
      delete patch.drop;
      delete patch.status;
      if (drop !== undefined && typeof drop !== "boolean") throw new Error('vboard net: control: "drop" must be true or false');
      applyPatch(settings, patch);
      if ("wifi" in patch) wifi.linkChanged();
      if (drop) for (const c of [...conns.values()]) c.abort("!ECONNRESET", { reset: true });
      if ("block_host" in patch || "delay_ms" in patch) for (const c of conns.values()) c.schedule();
      if ("block_host" in patch) {
        for (const c of conns.values()) if (!hostBlocked(c.host)) c.flush();
      }
      return state();
    },
  };
}
