// TLS helpers for the virtual board's network: certificates handed over by MicroPython's tls.SSLContext (DER or
// PEM bytes, as hex) turned into what Node's `tls` takes, and Node's verification results turned into what
// MicroPython's mbedTLS binding (extmod/modtls_mbedtls.c) raises on a board.
import crypto from "node:crypto";
import tls from "node:tls";

const PEM_RE = /-----BEGIN [^-]+-----[\s\S]+?-----END [^-]+-----/g;

function toPem(der, label) {
  const b64 = der.toString("base64").replace(/(.{64})/g, "$1\n").replace(/\n$/, "");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

// Certificates (one DER certificate, or PEM text with one or more) -> list of PEM strings; throws on bad input.
export function certsToPem(hex) {
  const raw = Buffer.from(hex, "hex");
  const text = raw.toString("latin1");
  if (text.includes("-----BEGIN ")) {
    const blocks = text.match(PEM_RE) || [];
    if (!blocks.length) throw new Error("invalid cert");
    for (const b of blocks) new crypto.X509Certificate(b); // validates
    return blocks;
  }
  const cert = new crypto.X509Certificate(raw); // throws on bad DER
  return [toPem(Buffer.from(cert.raw), "CERTIFICATE")];
}

// A private key (DER: PKCS#8, SEC1 or PKCS#1; or PEM) -> PEM; throws on bad input.
export function keyToPem(hex) {
  const raw = Buffer.from(hex, "hex");
  const text = raw.toString("latin1");
  if (text.includes("-----BEGIN ")) return crypto.createPrivateKey(text).export({ type: "pkcs8", format: "pem" });
  for (const type of ["pkcs8", "sec1", "pkcs1"]) {
    try {
      return crypto.createPrivateKey({ key: raw, format: "der", type }).export({ type: "pkcs8", format: "pem" });
    } catch {
      /* try the next encoding */
    }
  }
  throw new Error("invalid key");
}

// mbedtls_x509_crt_verify_info() texts for the verification flags a board would set.
export const VERIFY_TEXT = {
  notTrusted: "The certificate is not correctly signed by the trusted CA",
  cnMismatch: "The certificate Common Name (CN) does not match with the expected CN",
  expired: "The certificate validity has expired",
  future: "The certificate validity starts in the future",
};

// mbedTLS error codes (negative) and mbedtls_strerror() texts for the other handshake failures.
export const MBEDTLS = {
  FATAL_ALERT: [-0x7780, "SSL - A fatal alert message was received from our peer"],
  CONN_EOF: [-0x7280, "SSL - The connection indicated an EOF"],
  HANDSHAKE: [-0x6a80, "SSL - Processing of the Handshake message failed"],
};

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

// Node connect options for a board-side SSLContext (options from the tls.py shim).
// Verification is done after the handshake (verifyPeer), so that the result maps onto mbedTLS's flags.
export function nodeTlsOptions(o) {
  // Node checks the chain only; the name is checked in verifyPeer against server_hostname, as mbedTLS does.
  const opts = { rejectUnauthorized: false, minVersion: "TLSv1.2", checkServerIdentity: () => undefined };
  if (o.server_hostname && !IPV4.test(o.server_hostname)) opts.servername = o.server_hostname; // SNI: names only
  if (o.ca && o.ca.length) opts.ca = o.ca;
  if (o.cert) opts.cert = o.cert;
  if (o.key) opts.key = o.key;
  return opts;
}

// After secureConnect: null when the peer is acceptable, else the verify-info text (one flag) a board reports.
export function verifyPeer(socket, o) {
  if (o.verify_mode !== 2) return null; // CERT_NONE / CERT_OPTIONAL: the handshake goes on
  if (!o.ca || !o.ca.length) return VERIFY_TEXT.notTrusted; // mbedTLS has no built-in trust store
  if (!socket.authorized) {
    const code = String(socket.authorizationError && (socket.authorizationError.code || socket.authorizationError));
    if (code.includes("CERT_HAS_EXPIRED")) return VERIFY_TEXT.expired;
    if (code.includes("CERT_NOT_YET_VALID")) return VERIFY_TEXT.future;
    return VERIFY_TEXT.notTrusted;
  }
  if (o.server_hostname) {
    const err = tls.checkServerIdentity(o.server_hostname, socket.getPeerCertificate());
    if (err) return VERIFY_TEXT.cnMismatch;
  }
  return null;
}
