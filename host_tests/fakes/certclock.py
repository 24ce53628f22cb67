"""Certificate dates against the board's clock, for the fake TLS layers.

An ESP32's mbedTLS (CONFIG_MBEDTLS_HAVE_TIME_DATE=y) checks every
certificate of the chain against the RTC and refuses one outside its
validity period; after power-on the RTC reads 2000-01-01. The unix port's
mbedTLS checks against the host's clock instead, so a fake RTC would never
matter. `wrap()` closes that gap: it hands mbedTLS a verify callback that
reads each certificate's validity (DER) and compares it with the fake clock
(fakeclock.CLOCK, which the fake machine.RTC sets); a certificate outside
it aborts the handshake, and the error is the ValueError MicroPython raises
on a board, with mbedTLS's own verify-info wording.
Runs under the MicroPython unix port only (the `tls` module).
"""

from fakeclock import CLOCK, days_from_civil

FUTURE = "The certificate validity starts in the future"
EXPIRED = "The certificate validity has expired"
_VERIFY_FAILED = -0x2700  # MBEDTLS_ERR_X509_CERT_VERIFY_FAILED
CHECKS = []  # (depth, not_before, not_after, board unix time, verdict) of every check, for tests


def _tlv(der, i):
    """(tag, value start, value end) of the DER element at offset i."""
    tag = der[i]
    n = der[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = 0
        for _ in range(k):
            n = (n << 8) | der[i]
            i += 1
    return tag, i, i + n


def _time(der, tag, s, e):
    t = bytes(der[s:e]).decode()
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ
        yy = int(t[0:2])
        y = 1900 + yy if yy >= 50 else 2000 + yy
        t = t[2:]
    else:  # GeneralizedTime YYYYMMDDHHMMSSZ
        y = int(t[0:4])
        t = t[4:]
    return (days_from_civil(y, int(t[0:2]), int(t[2:4])) * 86400 + int(t[4:6]) * 3600
            + int(t[6:8]) * 60 + int(t[8:10]))


def validity(der):
    """(not_before, not_after) of a DER certificate, in Unix seconds."""
    _, i, _ = _tlv(der, 0)  # Certificate
    _, i, _ = _tlv(der, i)  # TBSCertificate: step inside
    tag, s, e = _tlv(der, i)
    if tag == 0xA0:  # [0] version
        i = e
    for _ in range(3):  # serialNumber, signature, issuer
        _, _, i = _tlv(der, i)
    _, i, _ = _tlv(der, i)  # Validity: step inside
    tag, s, e = _tlv(der, i)
    nb = _time(der, tag, s, e)
    tag, s, e2 = _tlv(der, e)
    return nb, _time(der, tag, s, e2)


class _DateCheck:
    def __init__(self):
        self.why = None

    def __call__(self, cert, depth):
        nb, na = validity(cert)
        now = CLOCK.unix_s()
        verdict = FUTURE if now < nb else (EXPIRED if now > na else None)
        CHECKS.append((depth, nb, na, now, verdict))
        if verdict is None:
            return 0
        self.why = verdict
        return _VERIFY_FAILED


def wrap(ctx, sock, server_side=False, do_handshake_on_connect=True, server_hostname=None):
    """ctx.wrap_socket with the board's date check (client, CERT_REQUIRED only:
    without verification mbedTLS looks at no date either)."""
    check = None
    if not server_side and ctx.verify_mode == 2:  # CERT_REQUIRED
        check = _DateCheck()
    ctx.verify_callback = check
    try:
        return ctx.wrap_socket(sock, server_side=server_side, do_handshake_on_connect=do_handshake_on_connect,
                               server_hostname=server_hostname)
    except (OSError, ValueError) as e:
        if check is not None and check.why:
            raise ValueError("\n" + check.why + "\n")
        raise e
