"""Shadows `ssl` on the MicroPython unix port when the fakes are in use.

The built-in TLS (real mbedTLS, real handshakes with Mosquitto) plus the one
check the host's mbedTLS makes differently from a board's: certificate dates
are judged by the board's clock (the fake RTC), not the host's, so a test
board at 2000-01-01 fails its handshake as an ESP32 does. Lives apart from
host_tests/fakes because CPython puts that folder on its path and must keep
its own `ssl`. The same API as MicroPython's stock `ssl` module.
"""

from tlsfake import (CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED, MBEDTLS_VERSION,  # noqa: F401 - the ssl API
                     PROTOCOL_TLS_CLIENT, PROTOCOL_TLS_SERVER, Context, module_wrap_socket)

SSLContext = Context
wrap_socket = module_wrap_socket(SSLContext)
