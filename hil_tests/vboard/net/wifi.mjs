// The board's Wi-Fi station, as MicroPython's network.WLAN(STA_IF) reports it on the ESP32 and RP2 (Pico W) ports.
//
// Status values are the ports' own (network.STAT_*): ESP32 reports esp_wifi disconnect reasons (200-205) and
// 1000/1001/1010; the Pico W's cyw43 driver reports link states (-3..3). Behaviour differs too, and is kept:
// - ESP32: while a connect is requested it retries for ever (config(reconnects=0), the default), so a wrong
//   password or a missing AP shows as STAT_CONNECTING; with config(reconnects=N) it gives up after N attempts
//   and status() is the reason (STAT_WRONG_PASSWORD 202, STAT_NO_AP_FOUND 201).
// - RP2: one join attempt; a wrong password gives STAT_WRONG_PASSWORD (-3), a missing AP STAT_NO_AP_FOUND (-2).
// Both re-associate by themselves when the AP comes back (wifi fault "up") while a connect is requested.
// Time is the board's tick clock, so clock speed-up shortens the association as it does every other wait.

export const STATUS = {
  esp32: { IDLE: 1000, CONNECTING: 1001, GOT_IP: 1010, NO_AP_FOUND: 201, WRONG_PASSWORD: 202, CONNECT_FAIL: 205, BEACON_TIMEOUT: 200, ASSOC_FAIL: 203, HANDSHAKE_TIMEOUT: 204 },
  rp2: { IDLE: 0, CONNECTING: 1, GOT_IP: 3, NO_AP_FOUND: -2, WRONG_PASSWORD: -3, CONNECT_FAIL: -1 },
};

// Organisationally unique identifiers: Espressif (ESP32 base MAC) and Raspberry Pi (Pico W's CYW43439).
const OUI = { esp32: [0x24, 0x0a, 0xc4], rp2: [0x28, 0xcd, 0xc1] };

// The STA MAC: on an ESP32 machine.unique_id() *is* the base MAC (the STA MAC); on a Pico W the MAC comes from
// the radio's OTP, so the last three bytes of the flash unique id stand in for it. The unique id is the one
// machine.unique_id() reports (mcu.mjs: ctx.opts.mcu.uniqueIdHex, default "0123456789ab"), else the profile's.
export const DEFAULT_UNIQUE_ID_HEX = "0123456789ab";
export function macFor(port, board, uniqueIdHex = null) {
  let uid = null;
  const raw = uniqueIdHex ?? (board && (board.unique_id ?? board.uid)) ?? DEFAULT_UNIQUE_ID_HEX;
  if (typeof raw === "string" && /^([0-9a-fA-F]{2}[:-]?){4,}$/.test(raw)) uid = Buffer.from(raw.replace(/[:-]/g, ""), "hex");
  if (port === "esp32" && uid && uid.length >= 6) return Buffer.from(uid.subarray(0, 6));
  const tail = uid ? [...uid.subarray(uid.length - 3)] : [0x56, 0x42, 0x01];
  return Buffer.from([...OUI[port], ...tail]);
}

export function createWifi({ settings, clock, portOf, onLinkLost }) {
  const now = () => clock.ticksMs();
  const st = {
    active: false,
    requested: null, // { ssid, key } while a connect is requested
    attemptFrom: 0, // ticks when the current series of attempts began
    reconnects: 0, // ESP32 config(reconnects=N); 0 = retry for ever
    lastUp: settings.wifi === "up", // settings.wifi at the last check (to notice changes)
    upSince: 0, // ticks when the AP last came back
    wasConnected: false,
    hostname: null,
  };

  const apFor = (ssid) => settings.wifi === "up" && settings.networks.find((n) => n.ssid === ssid);

  function status() {
    const S = STATUS[portOf()];
    if (!st.active || !st.requested) return S.IDLE;
    const t = now();
    const start = Math.max(st.attemptFrom, st.upSince);
    const elapsed = t - start;
    const ap = apFor(st.requested.ssid);
    if (ap && ap.password === st.requested.key) return elapsed >= settings.connect_ms ? S.GOT_IP : S.CONNECTING;
    const reason = ap ? S.WRONG_PASSWORD : S.NO_AP_FOUND;
    if (portOf() === "esp32") {
      if (st.reconnects === 0) return S.CONNECTING;
      return elapsed >= st.reconnects * settings.connect_ms ? reason : S.CONNECTING;
    }
    return elapsed >= settings.connect_ms ? reason : S.CONNECTING;
  }

  const isConnected = () => status() === STATUS[portOf()].GOT_IP;

  // Called when the wifi setting changes (control or settings): the link drops at once when the AP goes.
  function linkChanged() {
    const up = settings.wifi === "up";
    if (up && !st.lastUp) st.upSince = now();
    if (!up && st.lastUp) onLinkLost("ECONNABORTED");
    st.lastUp = up;
  }

  return {
    status,
    isConnected,
    linkChanged,
    active(on) {
      if (on === undefined || on === null) return st.active;
      on = Boolean(on);
      if (!on && st.active) {
        const was = isConnected();
        st.requested = null;
        if (was) onLinkLost("ECONNABORTED");
      }
      st.active = on;
      return st.active;
    },
    // Returns "" or an error message (the port raises OSError with it).
    connect(ssid, key) {
      if (!st.active) return "Wifi Not Started";
      if (typeof ssid !== "string" || ssid.length === 0 || ssid.length > 32) return "invalid SSID";
      const was = isConnected();
      st.requested = { ssid, key: key ?? "" };
      st.attemptFrom = now();
      if (was) onLinkLost("ECONNABORTED");
      return "";
    },
    disconnect() {
      const was = isConnected();
      st.requested = null;
      if (was) onLinkLost("ECONNABORTED");
    },
    config(key, value) {
      if (key === "reconnects") {
        if (value === undefined) return st.reconnects;
        st.reconnects = Math.max(0, Math.floor(Number(value)) || 0);
        return null;
      }
      if (key === "essid" || key === "ssid") return st.requested ? st.requested.ssid : "";
      if (key === "hostname" || key === "dhcp_hostname") {
        if (value === undefined) return st.hostname ?? (portOf() === "esp32" ? "esp32" : "PicoW");
        st.hostname = String(value);
        return null;
      }
      return undefined;
    },
    ssid: () => (st.requested ? st.requested.ssid : ""),
    // What a scan finds: the networks in range (none while the AP is down or the interface inactive).
    scan: () => (st.active && settings.wifi === "up" ? settings.networks.map((n) => n.ssid) : []),
  };
}
