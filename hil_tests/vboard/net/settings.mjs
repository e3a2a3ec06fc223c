// Settings of the virtual board's network (net.mjs): defaults, validation of the settings file (--plugin
// net.mjs=FILE) and of runtime controls. Every key is checked, so a typo fails loudly instead of being ignored.

export const DEFAULTS = Object.freeze({
  // The MicroPython port whose network constants and Wi-Fi behaviour are emulated: "esp32" or "rp2".
  // Default: from the board profile (its "port"/"micropython_port"), else "esp32".
  port: null,
  // Wi-Fi networks the board can join.
  networks: [{ ssid: "vboard-wifi", password: "vboard-pass" }],
  // Board milliseconds a Wi-Fi association + DHCP takes (one attempt).
  connect_ms: 1500,
  // "up" or "down" (access point gone: no association, open connections aborted).
  wifi: "up",
  // Hosts the board may reach (IPv4 literals or names; "localhost" resolves to 127.0.0.1).
  allow_hosts: ["127.0.0.1", "localhost"],
  // New connections refused (as a host with no listener answers).
  refuse: false,
  // Added one-way latency, host milliseconds, each direction (the TCP handshake pays it twice).
  delay_ms: 0,
  // Hosts whose packets are dropped: connects time out (ETIMEDOUT after connect_timeout_ms), open ones abort.
  block_host: [],
  // Host milliseconds before a connect to a blocked host fails with ETIMEDOUT (lwIP gives up after ~20 s).
  connect_timeout_ms: 20000,
  // The board's IPv4 configuration once connected (ifconfig()).
  ifconfig: ["192.168.4.23", "255.255.255.0", "192.168.4.1", "192.168.4.1"],
  // NTP: the time the server gives is the host's plus offset_s; fail = no answer (ntptime raises ETIMEDOUT).
  ntp: { offset_s: 0, fail: false },
});

const PORTS = ["esp32", "rp2"];

function fail(where, msg) {
  throw new Error(`vboard net: ${where}: ${msg}`);
}

const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const isIPv4 = (s) => /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(s) && s.split(".").every((p) => Number(p) <= 255);

function hostList(where, key, v) {
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || !list.every((h) => typeof h === "string" && h.length > 0 && h.length <= 253)) {
    fail(where, `"${key}" must be a host name or a list of host names, got ${JSON.stringify(v)}`);
  }
  return list.map((h) => h.toLowerCase());
}

// Checks `patch` (settings file or control message) and returns the normalised keys it sets.
// `extra` lists keys valid only in controls (e.g. "drop").
export function checkPatch(patch, where, extra = []) {
  if (!isObj(patch)) fail(where, `expected a JSON object, got ${JSON.stringify(patch)}`);
  const out = {};
  for (const [key, v] of Object.entries(patch)) {
    switch (key) {
      case "port":
        if (v !== null && !PORTS.includes(v)) fail(where, `"port" must be one of ${PORTS.join(", ")} or null, got ${JSON.stringify(v)}`);
        out.port = v;
        break;
      case "networks":
        if (!Array.isArray(v) || !v.every((n) => isObj(n) && typeof n.ssid === "string" && n.ssid.length > 0 && n.ssid.length <= 32 && typeof n.password === "string" && Object.keys(n).every((k) => k === "ssid" || k === "password"))) {
          fail(where, `"networks" must be a list of {"ssid": str (1-32 chars), "password": str}, got ${JSON.stringify(v)}`);
        }
        out.networks = v.map((n) => ({ ssid: n.ssid, password: n.password }));
        break;
      case "wifi":
        if (v !== "up" && v !== "down") fail(where, `"wifi" must be "up" or "down", got ${JSON.stringify(v)}`);
        out.wifi = v;
        break;
      case "allow_hosts":
        out.allow_hosts = hostList(where, key, v);
        break;
      case "block_host":
        out.block_host = v === null || v === false ? [] : hostList(where, key, v);
        break;
      case "refuse":
        if (typeof v !== "boolean") fail(where, `"refuse" must be true or false, got ${JSON.stringify(v)}`);
        out.refuse = v;
        break;
      case "connect_ms":
      case "delay_ms":
      case "connect_timeout_ms":
        if (!isNum(v) || v < 0 || v > 3600000) fail(where, `"${key}" must be a number of milliseconds in 0..3600000, got ${JSON.stringify(v)}`);
        out[key] = v;
        break;
      case "ifconfig":
        if (!Array.isArray(v) || v.length !== 4 || !v.every((a) => typeof a === "string" && isIPv4(a))) {
          fail(where, `"ifconfig" must be 4 IPv4 addresses [ip, netmask, gateway, dns], got ${JSON.stringify(v)}`);
        }
        out.ifconfig = [...v];
        break;
      case "ntp": {
        if (!isObj(v)) fail(where, `"ntp" must be an object {"offset_s": number, "fail": bool}, got ${JSON.stringify(v)}`);
        const ntp = {};
        for (const [k, x] of Object.entries(v)) {
          if (k === "offset_s") {
            if (!isNum(x)) fail(where, `"ntp.offset_s" must be a number of seconds, got ${JSON.stringify(x)}`);
            ntp.offset_s = x;
          } else if (k === "fail") {
            if (typeof x !== "boolean") fail(where, `"ntp.fail" must be true or false, got ${JSON.stringify(x)}`);
            ntp.fail = x;
          } else fail(where, `unknown key "ntp.${k}" (known: offset_s, fail)`);
        }
        out.ntp = ntp;
        break;
      }
      default:
        if (extra.includes(key)) out[key] = v;
        else fail(where, `unknown key "${key}" (known: ${[...Object.keys(DEFAULTS), ...extra].join(", ")})`);
    }
  }
  return out;
}

export function applyPatch(settings, patch) {
  for (const [k, v] of Object.entries(patch)) {
    if (k === "ntp") settings.ntp = { ...settings.ntp, ...v };
    else if (k in DEFAULTS) settings[k] = v;
  }
}

export function isIPv4Literal(s) {
  return isIPv4(s);
}

// The port from the board profile (boards/<id>/board.json), if it names one.
export function portFromBoard(board) {
  if (!board) return null;
  const raw = board.port ?? board.micropython_port ?? (isObj(board.micropython) ? board.micropython.port : null);
  if (typeof raw !== "string") return null;
  const p = raw.toLowerCase();
  if (p.startsWith("esp32")) return "esp32";
  if (p.startsWith("rp2")) return "rp2";
  return null;
}
