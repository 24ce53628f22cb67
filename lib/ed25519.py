"""Ed25519 signature verification (RFC 8032, section 5.1.7) in plain MicroPython.

Verification only: boards check release manifests, the operator's
workstation signs them (tools/release.py, with the `cryptography` package).
Points are kept in extended twisted-Edwards coordinates (X, Y, Z, T) so that
no modular inverse is needed inside the scalar multiplications; the only
inverse is in point decoding. Arithmetic is on MicroPython's long ints
(`pow(a, e, m)` for inverses and square roots), a few thousand 255-bit
multiplications per check: measured in bench/bench_ota.py.
"""

from sha512 import sha512

_P = 2 ** 255 - 19
_L = 2 ** 252 + 27742317777372353535851937790883648493
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_D2 = (2 * _D) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_BY = (4 * pow(5, _P - 2, _P)) % _P


def _add(a, b):
    """Point addition, extended coordinates, a = -1 (add-2008-hwcd-3)."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    p = _P
    aa = (y1 - x1) * (y2 - x2) % p
    bb = (y1 + x1) * (y2 + x2) % p
    cc = t1 * _D2 * t2 % p
    dd = z1 * 2 * z2 % p
    e = bb - aa
    f = dd - cc
    g = dd + cc
    h = bb + aa
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def _mul(k, pt):
    """[k]pt by double-and-add (k is public here: no constant time needed)."""
    q = (0, 1, 1, 0)
    while k:
        if k & 1:
            q = _add(q, pt)
        pt = _add(pt, pt)
        k >>= 1
    return q


def _recover_x(y, sign):
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


def _decode(s):
    """32 bytes -> point, or None when they encode no point of the curve."""
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % _P)


_B = (_recover_x(_BY, 0), _BY, 1, _recover_x(_BY, 0) * _BY % _P)


def _same(a, b):
    x1, y1, z1, _ = a
    x2, y2, z2, _ = b
    return (x1 * z2 - x2 * z1) % _P == 0 and (y1 * z2 - y2 * z1) % _P == 0


def verify(public_key, message, signature):
    """True when `signature` (64 bytes) by `public_key` (32 bytes) holds for
    `message`; False for a wrong signature, key or malformed input."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a = _decode(public_key)
    r = _decode(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    h = int.from_bytes(sha512(bytes(signature[:32]) + bytes(public_key) + bytes(message)), "little") % _L
    return _same(_mul(s, _B), _add(r, _mul(h, a)))
