"""The check of a staged release manifest, before anything else is fetched.

transit.ota imports this module for the check only and drops it from
sys.modules afterwards, with the Ed25519 modules it imports: frozen on a
WROOM-32 their code stays in flash, and their module objects cost heap only
while the check runs (docs/ota.md, heap).

Manifest format 2 (tools/release.py writes it): one JSON header line, then
one line per file, `<sha256 hex> <bytes> <path>`. The check reads it from
flash a line at a time, never as a whole document:

  signature  Ed25519 over SHA-256(manifest) with the board's release key
  header     format, chip, the .mpy version the firmware loads, no downgrade
             unless the manifest says so, the queue's on-flash format
  entries    every line parses; their count and total match the header, and
             the files fit with FREE_RESERVE bytes to spare
"""

import binascii
import json
import os
import sys

from transit.ota import OtaError, file_sha256, forget, parse_entry

FORMAT = 2  # the manifest format this firmware reads
FREE_RESERVE = 32768  # bytes the filesystem keeps free after staging
QUEUE_FORMAT = 1  # lib/dqueue on-flash format this firmware reads
SIG_MAX = 200  # bytes of manifest.txt.sig read: 128 hex digits and a line end


def version_tuple(v):
    out = []
    for p in str(v).split("."):
        n = 0
        for ch in p:
            if "0" <= ch <= "9":
                n = n * 10 + ord(ch) - 48
            else:
                break
        out.append(n)
    return tuple(out)


def mpy_version():
    m = getattr(sys.implementation, "_mpy", 0)
    return "%d.%d" % (m & 0xFF, (m >> 8) & 3)


def staged(path, buf):
    """(SHA-256 of the staged manifest, its signature's bytes), hashed from
    flash through `buf`."""
    digest = file_sha256(path, buf)
    with open(path + ".sig", "rb") as f:
        sig = f.read(SIG_MAX)
    try:
        return digest, binascii.unhexlify(sig.strip())
    except ValueError:
        raise OtaError("signature: not hex")


def signature(key, digest, sig):
    """Raise OtaError unless `sig` by the release key holds for `digest`."""
    if key is None:
        raise OtaError("no release key on this board (ota_key in device.json)")
    import ed25519
    try:
        ok = ed25519.verify(key, digest, sig)
    finally:
        ed25519 = None
        forget("ed25519", "sha512")
    if not ok:
        raise OtaError("signature: does not verify with this board's release key")


def header(man, env):
    """The header line's checks against this board (`env`: chip(), version())."""
    if man.get("v") != FORMAT or man.get("kind") not in ("files", "image"):
        raise OtaError("manifest: unknown format")
    if man.get("chip") != env.chip():
        raise OtaError("chip: release for %s, this board is %s" % (man.get("chip"), env.chip()))
    if man["kind"] == "files" and man.get("mpy") != mpy_version():
        raise OtaError("mpy: release has .mpy %s, this firmware loads %s" % (man.get("mpy"), mpy_version()))
    if version_tuple(man.get("version", "0")) <= version_tuple(env.version()) and not man.get("downgrade"):
        raise OtaError("version: %s is not newer than the running %s (a downgrade must be signed as one)"
                       % (man.get("version"), env.version()))
    if man.get("qfmt", QUEUE_FORMAT) != QUEUE_FORMAT:
        raise OtaError("queue format %s: this firmware cannot migrate its queue (%d)"
                       % (man.get("qfmt"), QUEUE_FORMAT))


def contents(path, env):
    """After the signature: the header and every entry line. Returns the job's
    fields for the download: version, build, kind, total bytes, next step,
    and for files their count and the byte offset of the first entry line."""
    with open(path, "rb") as f:
        head = f.readline()
        man = json.loads(head)
        header(man, env)
        out = {"ver": man["version"], "build": man["build"], "kind": man["kind"], "off": len(head)}
        head = None
        if man["kind"] == "image":
            out["total"] = man["image"]["n"]
            out["st"] = "image"
            return out
        count = total = 0
        while True:
            line = f.readline()
            if not line:
                break
            total += parse_entry(line)[1]
            count += 1
    if count != man.get("files") or total != man.get("total"):
        raise OtaError("manifest: %d entries of %d bytes, the header says %s of %s"
                       % (count, total, man.get("files"), man.get("total")))
    st = os.statvfs("/")
    free = st[0] * st[3]
    if total + FREE_RESERVE > free:
        raise OtaError("space: release needs %d bytes, %d free" % (total + FREE_RESERVE, free))
    out.update(total=total, files=count, st="files")
    return out
