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

# Curve constants as literals (RFC 8032, 5.1): frozen into a WROOM-32 image
# they stay in flash, where computing them at import (modular inverses and
# square roots) would cost heap and, on an ESP32, a noticeable time.
_P = 57896044618658097711785492504343953926634992332820282019728792003956564819949  # 2**255 - 19
_L = 7237005577332262213973186563042994240857116359379907606001950938285454250989  # 2**252 + 27742317777372353535851937790883648493
_D = 37095705934669439343138083508754565189542113879843219016388785533085940283555  # -121665/121666
_D2 = 16295367250680780974490674513165176452449235426866156013048779062215315747161  # 2 * d
_SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752  # 2**((p-1)/4)
# The base point B in extended coordinates (X, Y, 1, X*Y).
_B = (15112221349535400772501151409588531511454012693041857206046113283949847762202,
      46316835694926478169428394003475163141307993866256225615783033603165251855960, 1,
      46827403850823179245072216630277197565144205554125654976674165829533817101731)

# A remainder keeps the digit room of its dividend (a product: twice the
# digits); `+ 0` copies a point's coordinates into tight long ints, which
# cuts the heap a check needs on a 32-bit board by about a fifth.


def _add(a, b):
    """Point addition, extended coordinates, a = -1 (add-2008-hwcd-3). Few
    long ints alive at once: each is ~100 bytes of heap on a 32-bit board."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    p = _P
    e = (y1 + x1) * (y2 + x2) % p
    h = (y1 - x1) * (y2 - x2) % p
    e, h = e - h, e + h
    g = t1 * _D2 % p * t2 % p  # reduced in between: no 765-bit intermediate
    f = z1 * 2 * z2 % p
    f, g = f - g, f + g
    return (e * f % p + 0, g * h % p + 0, f * g % p + 0, e * h % p + 0)


def _double(a):
    """2a, extended coordinates, a = -1 (dbl-2008-hwcd): four squares and
    four products instead of an addition's nine products."""
    x, y, z, _ = a
    p = _P
    sx = x * x % p
    sy = y * y % p
    e = (x + y) * (x + y) % p - sx - sy
    g = sy - sx
    h = -sx - sy
    f = g - 2 * z * z % p
    return (e * f % p + 0, g * h % p + 0, f * g % p + 0, e * h % p + 0)


def _mul(k, pt):
    """[k]pt by double-and-add (k is public here: no constant time needed)."""
    q = (0, 1, 1, 0)
    while k:
        if k & 1:
            q = _add(q, pt)
        pt = _double(pt)
        k >>= 1
    return q


def _recover_x(y, sign):
    if y >= _P:
        return None
    yy = y * y % _P
    # pow() squares its base first: reduce it, or a 765-bit base needs 1530-bit temporaries.
    x2 = (yy - 1) * pow((_D * yy + 1) % _P, _P - 2, _P) % _P
    yy = None
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



def _same(a, b):
    x1, y1, z1, _ = a
    x2, y2, z2, _ = b
    return (x1 * z2 - x2 * z1) % _P == 0 and (y1 * z2 - y2 * z1) % _P == 0


def verify(public_key, message, signature):
    """True when `signature` (64 bytes) by `public_key` (32 bytes) holds for
    `message`; False for a wrong signature, key or malformed input."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    h = int.from_bytes(sha512(bytes(signature[:32]) + bytes(public_key) + bytes(message)), "little") % _L
    # [s]B == R + [h]A, in an order that keeps few points alive at once (each
    # is about 400 bytes of long ints on a 32-bit board): [h]A, then + R,
    # then [s]B.
    a = _decode(public_key)
    if a is None:
        return False
    a = _mul(h, a)
    r = _decode(signature[:32])
    if r is None:
        return False
    a = _add(r, a)
    r = None
    return _same(_mul(s, _B), a)
