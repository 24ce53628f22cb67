"""Shadows `ssl` on the unix port: TLS over the built-in `tls` module, but
the wrapped socket behaves like an ESP32's (no settimeout; setblocking(True)
waits forever). Verification is off unless asked for, as on the board, and
certificate dates are judged by the board's clock (fakes/certclock.py)."""

from certclock import wrap
from esp32socket import Esp32Socket, Esp32TlsSocket
from tlsfake import (CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED, MBEDTLS_VERSION,  # noqa: F401 - the ssl API
                     PROTOCOL_TLS_CLIENT, PROTOCOL_TLS_SERVER, Context, module_wrap_socket)


class SSLContext(Context):
    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True, server_hostname=None):
        timeout = None
        raw = sock
        if isinstance(sock, Esp32Socket):
            raw = sock._raw
            timeout = sock._timeout
        wrapped = wrap(self._ctx, raw, server_side, do_handshake_on_connect, server_hostname)
        return Esp32TlsSocket(wrapped, raw, timeout)


wrap_socket = module_wrap_socket(SSLContext)
