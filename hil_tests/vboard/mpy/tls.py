# The `tls` module of MicroPython >= 1.23 (extmod/modtls_mbedtls.c), the subset a device client uses, for the
# virtual board: the handshake and verification run in Node's `tls` (hil_tests/vboard/net.mjs), driven by
# asyncio.open_connection(host, port, ssl=ctx). As on a board:
# - SSLContext(PROTOCOL_TLS_CLIENT) verifies by default (verify_mode CERT_REQUIRED) and trusts nothing until
#   load_verify_locations(cadata) is given a CA (DER or PEM bytes; mbedTLS has no built-in trust store);
# - load_verify_locations and load_cert_chain take positional arguments only and parse at once
#   (ValueError("invalid cert") / ValueError("invalid key"));
# - the server's certificate is checked against server_hostname (open_connection's host by default);
# - a rejected certificate raises ValueError with mbedtls_x509_crt_verify_info()'s text at the stream's first
#   I/O, other handshake failures OSError(mbedTLS error code[, text]).
# Not emulated: verify_callback, DTLS, server side, wrap_socket() (there is no `socket` module here).
import json

import vboard_net

PROTOCOL_TLS_CLIENT = 0
PROTOCOL_TLS_SERVER = 1
PROTOCOL_DTLS_CLIENT = 2
PROTOCOL_DTLS_SERVER = 3
CERT_NONE = 0
CERT_OPTIONAL = 1
CERT_REQUIRED = 2
MBEDTLS_VERSION = "Mbed TLS (virtual board: Node tls)"


def _bytes(data, what):
    if isinstance(data, str):
        data = data.encode()
    try:
        return bytes(data)
    except TypeError:
        raise TypeError("%s must be bytes" % what)


class SSLContext:
    def __init__(self, protocol):
        if protocol not in (
            PROTOCOL_TLS_CLIENT,
            PROTOCOL_TLS_SERVER,
            PROTOCOL_DTLS_CLIENT,
            PROTOCOL_DTLS_SERVER,
        ):
            raise ValueError("invalid protocol")
        self._protocol = protocol
        self.verify_mode = (
            CERT_REQUIRED if protocol in (PROTOCOL_TLS_CLIENT, PROTOCOL_DTLS_CLIENT) else CERT_NONE
        )
        self.verify_callback = None
        self._ca = []
        self._cert = None
        self._key = None

    def load_verify_locations(self, *args, **kwargs):
        if kwargs:
            raise TypeError("function doesn't take keyword arguments")
        if len(args) != 1:
            raise TypeError("function takes 2 positional arguments but %d were given" % (len(args) + 1))
        hexed = _bytes(args[0], "cadata").hex()
        if vboard_net.check_cert(hexed):
            raise ValueError("invalid cert")
        self._ca.append(hexed)

    def load_cert_chain(self, *args, **kwargs):
        if kwargs:
            raise TypeError("function doesn't take keyword arguments")
        if len(args) != 2:
            raise TypeError("function takes 3 positional arguments but %d were given" % (len(args) + 1))
        key = _bytes(args[1], "key").hex()
        cert = _bytes(args[0], "cert").hex()
        if vboard_net.check_key(key):
            raise ValueError("invalid key")
        if vboard_net.check_cert(cert):
            raise ValueError("invalid cert")
        self._cert, self._key = cert, key

    def get_ciphers(self):
        return ["TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256", "TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256"]

    def set_ciphers(self, ciphers):
        pass  # Node negotiates its own suites; accepted for API compatibility

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True, server_hostname=None):
        raise NotImplementedError(
            "virtual board: TLS only through asyncio.open_connection(host, port, ssl=ctx)"
        )

    def _vb_tls_options(self, server_hostname):
        if self._protocol != PROTOCOL_TLS_CLIENT:
            raise NotImplementedError("virtual board: only PROTOCOL_TLS_CLIENT is emulated")
        return json.dumps(
            {
                "verify_mode": self.verify_mode,
                "server_hostname": server_hostname,
                "cadata": self._ca,
                "cert": self._cert,
                "key": self._key,
            }
        )
