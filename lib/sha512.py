"""SHA-512 (FIPS 180-4) in plain MicroPython, for Ed25519 verification.

The ESP32's hashlib has sha256 and sha1 only. Ed25519 needs SHA-512 of
R || A || M, and we sign a 32-byte digest, so this hashes 96 bytes (two
blocks) per update check: slow per byte, but only a few hundred bytes ever
pass through it. Not for bulk data.
"""

_M = 0xFFFFFFFFFFFFFFFF

# The first 64 bits of the fractional parts of the cube roots of the first
# 80 primes (FIPS 180-4, 4.2.3), as one hex text constant (16 digits each):
# frozen, it stays in flash, and each round reads its constant from it, so
# importing this module builds no table in the heap.
_K = (
    "428a2f98d728ae227137449123ef65cdb5c0fbcfec4d3b2fe9b5dba58189dbbc3956c25bf348b538"
    "59f111f1b605d019923f82a4af194f9bab1c5ed5da6d8118d807aa98a303024212835b0145706fbe"
    "243185be4ee4b28c550c7dc3d5ffb4e272be5d74f27b896f80deb1fe3b1696b19bdc06a725c71235"
    "c19bf174cf692694e49b69c19ef14ad2efbe4786384f25e30fc19dc68b8cd5b5240ca1cc77ac9c65"
    "2de92c6f592b02754a7484aa6ea6e4835cb0a9dcbd41fbd476f988da831153b5983e5152ee66dfab"
    "a831c66d2db43210b00327c898fb213fbf597fc7beef0ee4c6e00bf33da88fc2d5a79147930aa725"
    "06ca6351e003826f142929670a0e6e7027b70a8546d22ffc2e1b21385c26c9264d2c6dfc5ac42aed"
    "53380d139d95b3df650a73548baf63de766a0abb3c77b2a881c2c92e47edaee692722c851482353b"
    "a2bfe8a14cf10364a81a664bbc423001c24b8b70d0f89791c76c51a30654be30d192e819d6ef5218"
    "d69906245565a910f40e35855771202a106aa07032bbd1b819a4c116b8d2d0c81e376c085141ab53"
    "2748774cdf8eeb9934b0bcb5e19b48a8391c0cb3c5c95a634ed8aa4ae3418acb5b9cca4f7763e373"
    "682e6ff3d6b2b8a3748f82ee5defb2fc78a5636f43172f6084c87814a1f0ab728cc702081a6439ec"
    "90befffa23631e28a4506cebde82bde9bef9a3f7b2c67915c67178f2e372532bca273eceea26619c"
    "d186b8c721c0c207eada7dd6cde0eb1ef57d4f7fee6ed17806f067aa72176fba0a637dc5a2c898a6"
    "113f9804bef90dae1b710b35131c471b28db77f523047d8432caab7b40c724933c9ebe0a15c9bebc"
    "431d67c49c100d4c4cc5d4becb3e42b6597f299cfc657e2a5fcb6fab3ad6faec6c44198c4a475817")
_H0 = (0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
       0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179)

def _rotr(x, n):
    return ((x >> n) | (x << (64 - n))) & _M


def _block(h, block):
    """One 128-byte block into the state h (a list of 8). The message schedule
    is a ring of 16 words, so the live state stays a few hundred bytes."""
    w = [int.from_bytes(block[i:i + 8], "big") for i in range(0, 128, 8)]
    a, b, c, d, e, f, g, hh = h
    for i in range(80):
        if i < 16:
            wi = w[i]
        else:
            x = w[(i - 15) & 15]
            y = w[(i - 2) & 15]
            wi = (w[i & 15] + (_rotr(x, 1) ^ _rotr(x, 8) ^ (x >> 7)) + w[(i - 7) & 15]
                  + (_rotr(y, 19) ^ _rotr(y, 61) ^ (y >> 6))) & _M
            w[i & 15] = wi
        k = int(_K[16 * i:16 * i + 16], 16)
        t1 = (hh + (_rotr(e, 14) ^ _rotr(e, 18) ^ _rotr(e, 41)) + ((e & f) ^ (~e & g & _M)) + k + wi) & _M
        t2 = ((_rotr(a, 28) ^ _rotr(a, 34) ^ _rotr(a, 39)) + ((a & b) ^ (a & c) ^ (b & c))) & _M
        hh, g, f, e, d, c, b, a = g, f, e, (d + t1) & _M, c, b, a, (t1 + t2) & _M
    return [(x + y) & _M for x, y in zip(h, (a, b, c, d, e, f, g, hh))]

def sha512(data):
    """The 64-byte SHA-512 digest of `data` (bytes)."""
    n = len(data)
    pad = b"\x80" + b"\x00" * ((111 - n) % 128) + (n * 8).to_bytes(16, "big")
    msg = bytes(data) + pad
    h = list(_H0)
    for i in range(0, len(msg), 128):
        h = _block(h, msg[i:i + 128])
    return b"".join(x.to_bytes(8, "big") for x in h)
