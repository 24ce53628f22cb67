"""What the two fake `ssl` modules share: MicroPython's `ssl` API over the
built-in `tls` module, certificate dates judged by the board's clock
(certclock.py), and verification off unless asked for, as on a board.

host_tests/mpfakes/ssl.py uses it as is; host_tests/esp32net/ssl.py wraps
the socket it returns to behave like an ESP32's. Unix port only (`tls`).
"""

import tls
from certclock import wrap

CERT_NONE = tls.CERT_NONE
CERT_OPTIONAL = tls.CERT_OPTIONAL
CERT_REQUIRED = tls.CERT_REQUIRED
PROTOCOL_TLS_CLIENT = tls.PROTOCOL_TLS_CLIENT
PROTOCOL_TLS_SERVER = tls.PROTOCOL_TLS_SERVER
MBEDTLS_VERSION = tls.MBEDTLS_VERSION


class Context:
    def __init__(self, protocol=PROTOCOL_TLS_CLIENT):
        self._ctx = tls.SSLContext(protocol)
        self._ctx.verify_mode = CERT_NONE  # the stock module's default on a board: verify nothing

    @property
    def verify_mode(self):
        return self._ctx.verify_mode

    @verify_mode.setter
    def verify_mode(self, mode):
        self._ctx.verify_mode = mode

    def load_verify_locations(self, cafile=None, cadata=None):
        if cafile:
            with open(cafile, "rb") as f:
                cadata = f.read()
        self._ctx.load_verify_locations(cadata)

    def load_cert_chain(self, certfile, keyfile):
        self._ctx.load_cert_chain(certfile, keyfile)

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True, server_hostname=None):
        return wrap(self._ctx, sock, server_side, do_handshake_on_connect, server_hostname)


def module_wrap_socket(context_class):
    """The module-level ssl.wrap_socket() of MicroPython, over context_class."""
    def wrap_socket(sock, server_side=False, key=None, cert=None, cert_reqs=CERT_NONE,
                    cadata=None, server_hostname=None, do_handshake=True):
        ctx = context_class(PROTOCOL_TLS_SERVER if server_side else PROTOCOL_TLS_CLIENT)
        if cert or key:
            ctx.load_cert_chain(cert, key)
        if cadata:
            ctx.load_verify_locations(cadata=cadata)
        ctx.verify_mode = cert_reqs
        return ctx.wrap_socket(sock, server_side=server_side, do_handshake_on_connect=do_handshake,
                               server_hostname=server_hostname)
    return wrap_socket
