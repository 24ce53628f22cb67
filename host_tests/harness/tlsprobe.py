"""One TLS handshake from MicroPython code, for the tests that check which
`ssl` a runtime gets and how it judges certificate dates (test_tls_time,
test_vboard, test_sim_e2e). DEF is MicroPython source defining
`tls_probe(port, ca_der_path)`: a client handshake with CERT_REQUIRED
against the CA, returning 'ok' or the error text (mbedTLS's words)."""

DEF = """
import socket, ssl


def tls_probe(port, ca):
    s = socket.socket()
    s.connect(socket.getaddrinfo('127.0.0.1', port)[0][-1])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=open(ca, 'rb').read())
    try:
        t = ctx.wrap_socket(s, server_hostname='localhost')
        t.close()
        return 'ok'
    except ValueError as e:
        s.close()
        return str(e)
"""


def code(port, ca, before=""):
    """Source that runs `before`, one probe, and prints 'tls ok' or 'tls refused: <why>'."""
    return DEF + before + "\nr = tls_probe(%d, %r)\nprint('tls ok' if r == 'ok' else 'tls refused: ' + r.strip())\n" % (
        port, ca)
