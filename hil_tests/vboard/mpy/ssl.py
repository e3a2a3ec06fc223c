# The `ssl` module as micropython-lib provides it on MicroPython >= 1.23: a thin wrapper over `tls` (tls.py
# here) that adds file arguments and keyword forms. Virtual board: see tls.py for what is emulated.
import tls
from tls import (  # noqa: F401
    CERT_NONE,
    CERT_OPTIONAL,
    CERT_REQUIRED,
    MBEDTLS_VERSION,
    PROTOCOL_DTLS_CLIENT,
    PROTOCOL_DTLS_SERVER,
    PROTOCOL_TLS_CLIENT,
    PROTOCOL_TLS_SERVER,
)


def _read(name):
    with open(name, "rb") as f:
        return f.read()


class SSLContext:
    def __init__(self, *args):
        self._context = tls.SSLContext(*args)

    @property
    def verify_mode(self):
        return self._context.verify_mode

    @verify_mode.setter
    def verify_mode(self, val):
        self._context.verify_mode = val

    def load_cert_chain(self, certfile, keyfile):
        if isinstance(certfile, str):
            certfile = _read(certfile)
        if isinstance(keyfile, str):
            keyfile = _read(keyfile)
        self._context.load_cert_chain(certfile, keyfile)

    def load_verify_locations(self, cafile=None, cadata=None):
        if cafile:
            cadata = _read(cafile)
        self._context.load_verify_locations(cadata)

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True, server_hostname=None):
        return self._context.wrap_socket(sock, server_side, do_handshake_on_connect, server_hostname)

    def _vb_tls_options(self, server_hostname):
        return self._context._vb_tls_options(server_hostname)


def wrap_socket(
    sock,
    server_side=False,
    key=None,
    cert=None,
    cert_reqs=CERT_NONE,
    cadata=None,
    server_hostname=None,
    do_handshake=True,
):
    raise NotImplementedError("virtual board: TLS only through asyncio.open_connection(host, port, ssl=ctx)")
