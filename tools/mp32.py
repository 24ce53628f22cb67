#!/usr/bin/env python3
"""`make mp32`: a 32-bit MicroPython 1.28.0 unix port with the firmware frozen in.

Why: the PyPI unix port is 64-bit and loads code as .mpy into its heap, so
its heap figures are about twice an ESP32's and include bytecode that a
WROOM-32 build keeps in flash. A 32-bit build with the code frozen in has
the ESP32's object sizes and frozen-code layout; host_tests/test_memory.py
runs the roles on it in a 64 KiB heap (docs/memory.md).

Source, in this order:
  MP32_SRC=<folder>    an upstream clone at tag v1.28.0 (git clone -b v1.28.0
                       https://github.com/micropython/micropython); built in place
  MP32_ARCHIVE=<file>  default ../shared/micropython/micropython-1.28.0-unix-src.tar.xz
                       (beside the checkout): unpacked into the cache
The binary is cached outside the clone, in $MP32_CACHE (default
~/.cache/phs-transit)/mp32-<key>/micropython, where <key> hashes the source
(archive sha256 or the clone's commit) and every frozen file and manifest:
it is built again only when one of them changes. The unpacked source and its
object files stay in mp32-src-<source hash>/, so a change to a frozen module
only re-freezes and links (seconds); the first build takes ~1-4 minutes.

    python3 tools/mp32.py          # build if needed, print the binary's path
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = os.path.join(ROOT, "boards", "unix32_manifest.py")
TAG = "v1.28.0"
ARCHIVE_NAME = "micropython-1.28.0-unix-src.tar.xz"
DEFAULT_ARCHIVE = os.path.join(os.path.dirname(ROOT), "shared", "micropython", ARCHIVE_NAME)
# The build flags of the trimmed source's README: no FFI, btree or TLS (their
# submodules are not in it; on a board mbedTLS lives in the ESP-IDF heap anyway).
UNIX_FLAGS = ["MICROPY_FORCE_32BIT=1", "MICROPY_PY_FFI=0", "MICROPY_PY_BTREE=0", "MICROPY_PY_SSL=0",
              "MICROPY_SSL_MBEDTLS=0"]
JOBS = "-j%d" % max(1, min(4, os.cpu_count() or 1))
KEEP_BUILDS = 4  # cached binaries kept (worktrees and branches each have their own key)


class BuildError(RuntimeError):
    pass


def cache_root():
    return os.environ.get("MP32_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "phs-transit")


def _sha256(path, h=None):
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h


def source():
    """(kind, path, hash) of the MicroPython source to build, or BuildError saying where to put one."""
    clone = os.environ.get("MP32_SRC")
    if clone:
        if not os.path.isfile(os.path.join(clone, "ports", "unix", "Makefile")):
            raise BuildError("MP32_SRC=%s is not a MicroPython source tree (no ports/unix/Makefile)" % clone)
        try:
            rev = subprocess.run(["git", "-C", clone, "rev-parse", "HEAD"], capture_output=True, text=True,
                                 check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            rev = _sha256(os.path.join(clone, "py", "mpconfig.h")).hexdigest()
        return "clone", os.path.abspath(clone), rev
    archive = os.environ.get("MP32_ARCHIVE") or DEFAULT_ARCHIVE
    if not os.path.isfile(archive):
        raise BuildError(
            "mp32: the MicroPython 1.28.0 source is missing.\n"
            "  Expected the trimmed archive at %s\n"
            "  (the checkout's sibling folder shared/micropython/), or an upstream clone of tag %s:\n"
            "      git clone --depth 1 -b %s https://github.com/micropython/micropython %s\n"
            "      make mp32 MP32_SRC=%s\n"
            "  (MP32_SRC may point at any clone of that tag; MP32_ARCHIVE at another copy of the archive.)"
            % (archive, TAG, TAG, os.path.join(os.path.dirname(ROOT), "micropython"),
               os.path.join(os.path.dirname(ROOT), "micropython")))
    return "archive", os.path.abspath(archive), _sha256(archive).hexdigest()


# Everything boards/unix32_manifest.py can freeze (a superset is fine: the key
# only decides when to build again).
FROZEN_TREES = ("firmware", "lib", "build/mpylib", "host_tests/fakes")
FROZEN_TOOLS = ("simbus.py", "simgps.py", "passenger_gen.py", "simdepot.py", "heapcap.py")


def frozen_files():
    """Every file the manifest may freeze, and the manifests, in a stable order."""
    out = [os.path.join(ROOT, "boards", n) for n in sorted(os.listdir(os.path.join(ROOT, "boards")))
           if n.endswith(".py")]
    for top in FROZEN_TREES:
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            out += [os.path.join(folder, n) for n in sorted(files) if n.endswith(".py")]
    out += [os.path.join(ROOT, "tools", n) for n in FROZEN_TOOLS if os.path.exists(os.path.join(ROOT, "tools", n))]
    return out


def key(src_hash):
    h = hashlib.sha256(("mp32 1\n%s\n%s\n" % (src_hash, " ".join(UNIX_FLAGS))).encode())
    for path in frozen_files():
        h.update(os.path.relpath(path, ROOT).encode() + b"\n")
        _sha256(path, h)
    return h.hexdigest()[:16]


def _multilib_ok():
    try:
        r = subprocess.run(["gcc", "-m32", "-x", "c", "-", "-o", os.devnull], input="int main(void){return 0;}\n",
                           capture_output=True, text=True)
    except OSError:
        return False
    return r.returncode == 0


def _run(cmd, log, cwd=None):
    log.write("$ %s\n" % " ".join(cmd))
    log.flush()
    r = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise BuildError("mp32: `%s` failed (exit %d); see %s" % (" ".join(cmd), r.returncode, log.name))


def binary_path():
    """Where the binary for the current source and frozen files is (built or not)."""
    kind, path, h = source()
    return os.path.join(cache_root(), "mp32-" + key(h), "micropython")


def ensure(say=print):
    """Build the binary if the cache has none for the current key; return its path."""
    kind, path, src_hash = source()
    out_dir = os.path.join(cache_root(), "mp32-" + key(src_hash))
    binary = os.path.join(out_dir, "micropython")
    if os.path.exists(binary):
        return binary
    os.makedirs(cache_root(), exist_ok=True)
    with open(os.path.join(cache_root(), "mp32.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time (parallel test sessions)
        if os.path.exists(binary):
            return binary
        if not _multilib_ok():
            raise BuildError("mp32: gcc cannot build 32-bit programs. Install the 32-bit C library first:\n"
                             "    sudo apt-get install gcc-multilib      (make setup does it when run as root)")
        if kind == "archive":
            work = os.path.join(cache_root(), "mp32-src-" + src_hash[:16])
            tree = os.path.join(work, "micropython-1.28.0")
            if not os.path.isdir(tree):
                say("mp32: unpacking %s into %s" % (os.path.basename(path), work))
                tmp = work + ".part"
                shutil.rmtree(tmp, ignore_errors=True)
                os.makedirs(tmp)
                with tarfile.open(path) as t:
                    t.extractall(tmp)
                os.rename(tmp, work)
        else:
            work = os.path.join(cache_root(), "mp32-clone")
            tree = path
        nolib = os.path.join(work, "nolib")  # stands in for the micropython-lib submodule (README.md checked)
        os.makedirs(nolib, exist_ok=True)
        with open(os.path.join(nolib, "README.md"), "w") as f:
            f.write("placeholder: nothing from micropython-lib is frozen\n")
        os.makedirs(out_dir + ".part", exist_ok=True)
        log_path = os.path.join(out_dir + ".part", "build.log")
        say("mp32: building the 32-bit unix port with the firmware frozen (log: %s)" % log_path)
        # The port re-freezes a module only when its source is newer than the
        # .mpy it made before; checkouts elsewhere (other worktrees, older
        # files) share this tree, so freeze everything afresh (seconds).
        shutil.rmtree(os.path.join(tree, "ports", "unix", "build-standard", "frozen_mpy"), ignore_errors=True)
        with open(log_path, "w") as log:
            _run(["make", "-C", "mpy-cross", JOBS], log, cwd=tree)
            _run(["make", "-C", "ports/unix", JOBS] + UNIX_FLAGS
                 + ["MPY_LIB_DIR=" + nolib, "FROZEN_MANIFEST=" + MANIFEST], log, cwd=tree)
        built = os.path.join(tree, "ports", "unix", "build-standard", "micropython")
        shutil.copy2(built, os.path.join(out_dir + ".part", "micropython"))
        shutil.rmtree(out_dir, ignore_errors=True)
        os.rename(out_dir + ".part", out_dir)
        _prune(out_dir)
        say("mp32: %s" % binary)
        return binary


def _prune(keep, n=KEEP_BUILDS):
    """Remove all but the n newest cached binaries (each key is one build)."""
    root = cache_root()
    dirs = [os.path.join(root, d) for d in os.listdir(root)
            if d.startswith("mp32-") and not d.startswith("mp32-src-") and not d.endswith(".part")]
    dirs.sort(key=os.path.getmtime, reverse=True)
    for d in dirs[n:]:
        if d != keep:
            shutil.rmtree(d, ignore_errors=True)


def main():
    try:
        print(ensure(say=lambda s: print(s, file=sys.stderr)))
    except BuildError as e:
        print(e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
