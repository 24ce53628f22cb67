"""Over-the-air update agent: fetch a signed release, stage it, switch, report.

The operator sends `{"op": "ota", "url": "http://host:port/rel/<build>/"}`
(docs/ota.md). The agent then works in small steps of the main loop:

  manifest  download manifest.txt and manifest.txt.sig into ota/stage/
  check     Ed25519 signature over SHA-256(manifest), chip, MicroPython .mpy
            version, no downgrade unless signed so, queue format, free space
  files     each file by HTTP range GET into ota/stage/, SHA-256 checked
  image     (firmware image) streamed into the next OTA partition, hash checked
  ready     waits for the switch policy (doors closed; "idle": ignition off
            or standing in the depot) and switches with one atomic write of
            ota/state.json (lib/otaboot.py), then a planned reboot

Progress lives in ota/job.json and in the files themselves, so a link drop
or a power cut resumes where flash ends. Opening a connection waits (bounded)
and runs only when the app may block; reads never wait.

This module is the agent: the `ota` command, the job kept in flash and its
resume, the step machine, the one buffer and connection, the status. The work
of the steps is in modules imported only while a job runs and dropped from
sys.modules afterwards (frozen on a WROOM-32, a module costs heap for its
module objects only, and they go with it):

  transit/otastage.py  manifest and files into ota/stage/; the switch
  transit/otacheck.py  the manifest's check (the download modules step aside)
  transit/otaimage.py  a firmware image into the next OTA partition
  transit/httpget.py   the range GET

Heap (docs/ota.md, measured on the 32-bit frozen build): the manifest is
never parsed whole. Its format (v2) is a JSON header line and then one line
per file, `<sha256 hex> <bytes> <path>`; the board hashes it from flash,
checks the signature, scans the lines once, and later reads one entry at a
time at the byte offset kept in the job. One 1 KiB buffer serves every read
and write (an image goes to flash in 1 KiB programs of an erased block).
"""

import binascii
import gc
import hashlib
import json
import os
import sys
import time

import otaboot
from transit import forget  # noqa: F401  (otacheck takes it from here)

OTA_DIR = "ota"
STAGE = "ota/stage"
JOB = "ota/job.json"
OPEN_MS = 3000
MANIFEST = STAGE + "/manifest.txt"  # format 2 (transit/otacheck.py)
STEP_BYTES = 4096  # read at most this much per loop step
BLOCK = 4096  # flash erase block of an OTA partition
BUF = 1024  # the one I/O buffer: downloads, hashing, image programs, HTTP header
MANIFEST_MAX = 32768  # a larger manifest is refused before it fills the flash
SHORT_WAIT_MS = 30000  # the heap was short: the job waits this long before its next try
SHORT_TRIES = 20  # then it fails, answered ("heap short")
WORKERS = ("transit.otastage", "transit.otaimage", "transit.httpget")  # loaded while a job runs


class OtaError(Exception):
    pass


def mkdirs(path):
    cur = ""
    for part in path.split("/"):
        cur = part if not cur else cur + "/" + part
        try:
            os.mkdir(cur)
        except OSError:
            pass  # exists


def rmtree(path):
    try:
        for entry in os.ilistdir(path):
            p = path + "/" + entry[0]
            if entry[1] & 0x4000:
                rmtree(p)
            else:
                os.remove(p)
        os.rmdir(path)
    except OSError:
        pass  # already gone


def file_sha256(path, buf):
    h = hashlib.sha256()
    mv = memoryview(buf)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(mv[:n])
    return h.digest()


def parse_entry(line):
    """One manifest line `<sha256 hex> <bytes> <path>` -> (digest, bytes, path)."""
    parts = line.split()
    if len(parts) != 3 or len(parts[0]) != 64:
        raise OtaError("manifest: bad file entry %s" % line[:60])
    p = parts[2].decode()
    n = int(parts[1])
    if p.startswith("/") or ".." in p or n < 0:
        raise OtaError("manifest: bad file entry %s" % p[:40])
    return binascii.unhexlify(parts[0]), n, p


class Agent:
    """One update at a time. `env` gives what the agent needs from the app:
    chip(), version(), public_key() (32 bytes or None), tls_context() (for
    https://: verifies the server with the board's CA), may_switch(at) and
    reboot(why). The step modules keep nothing: their state is here."""

    def __init__(self, env):
        self.env = env
        self.job = None
        self.get = None
        self.buf = None
        self.ent = None  # (index, sha256 digest, bytes, path, line length) of the file being fetched
        self.img = None  # (bytes, sha256 digest) of an image
        self.fill = 0  # bytes of the current image block programmed
        self.f = None
        self.h = None
        self.stats = {"ok": 0, "refused": 0}
        self.answer = None  # fn(ok, text): a late answer to the ota command
        self.paused = None  # ticks_ms until which the job waits (the heap was short)
        try:
            with open(JOB) as f:
                self.job = json.load(f)  # resumes after a reset
        except (OSError, ValueError):
            self.job = None

    # --- command ---------------------------------------------------------
    def start(self, cmd):
        """The `ota` command: accept and work in later steps, or raise OtaError."""
        url = cmd.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 200:
            raise OtaError("url: an http:// or https:// release folder is required")
        if not url.endswith("/"):
            url += "/"
        if self.job is not None and self.job.get("st") not in ("failed", None):
            raise OtaError("an update is already running (%s)" % self.job.get("ver", self.job.get("st")))
        rmtree(STAGE)
        mkdirs(STAGE)
        at = cmd.get("at", "idle")
        if at not in ("now", "idle"):
            raise OtaError("at: now or idle")
        self.ent = self.img = self.h = None  # nothing of an earlier job carries over
        self.fill = 0
        self.job = {"url": url, "st": "manifest", "i": 0, "id": cmd.get("id"), "at": at, "err": "",
                    "trial_s": int(cmd.get("trial_s", 60)), "max_boots": int(cmd.get("max_boots", 3))}
        self._save()
        return "accepted"

    def active(self):
        return self.job is not None and self.job.get("st") not in ("failed", "done")

    # --- the loop ----------------------------------------------------------
    def step(self, may_block):
        """One bounded slice of work; never raises (a failure ends the job, reported)."""
        job = self.job
        if job is None or not may_block or not self.active():
            return  # a busy door: no connection, and no flash writes that stall pin callbacks
        if self.paused is not None:
            if time.ticks_diff(self.paused, time.ticks_ms()) > 0:
                return
            self.paused = None
        try:
            st = job["st"]
            if st == "image":
                from transit import otaimage
                otaimage.step(self)
            elif st == "ready":
                if self.env.may_switch(job["at"]):
                    from transit import otastage
                    otastage.switch(self)
            else:
                from transit import otastage
                if st == "files":
                    otastage.files(self)
                elif otastage.manifest(self):
                    otastage = None  # (it steps aside for the check)
                    self._check()
        except (OtaError, ValueError, KeyError, TypeError) as e:  # httpget.HttpError is a ValueError
            self._fail(str(e))
        except MemoryError:
            # The application's heap is short (a busy moment, fragmentation): the
            # update steps aside and tries again later rather than take the
            # vehicle's loop down with it (docs/memory.md). Counted, in the status.
            self._drop()
            gc.collect()
            job["short"] = job.get("short", 0) + 1
            job["err"] = "retrying: heap short (%d)" % job["short"]
            self.paused = time.ticks_add(time.ticks_ms(), SHORT_WAIT_MS)
            if job["short"] > SHORT_TRIES:
                self.paused = None
                self._fail("heap short: gave up after %d tries" % SHORT_TRIES)
        except OSError as e:  # network or flash: retried from where flash ends
            self._close()
            job["retries"] = job.get("retries", 0) + 1
            job["err"] = "retrying: %r" % (e,)
            if job["retries"] > 50:
                self._fail("gave up after 50 network errors: %r" % (e,))

    def _buf(self):
        if self.buf is None:
            self.buf = bytearray(BUF)
        return self.buf

    def _close(self):
        if self.get is not None:
            self.get.close()
        if self.f is not None:
            self.f.close()
            self.f = None

    def _open(self, url, offset):
        if self.get is None:
            from transit.httpget import RangeGet
            self.get = RangeGet()
        self.get.open(url, offset, OPEN_MS, self.env.tls_context() if url.startswith("https") else None,
                      self._buf())

    def _drop(self, keep_buf=False):
        """Give back the download machinery: connection, buffer, step modules."""
        self._close()
        self.get = None
        if not keep_buf:
            self.buf = None
        self.ent = self.img = self.h = None
        forget(*WORKERS)

    def _check(self):
        """The manifest's check (transit/otacheck.py, loaded for it only). Its
        long-int arithmetic gets the download machinery's heap: the buffer,
        the connection object and the step and HTTP modules step aside
        (loaded again for the files)."""
        self._drop(keep_buf=True)
        from transit import otacheck
        try:
            digest, sig = otacheck.staged(MANIFEST, self._buf())
            self.buf = None
            otacheck.signature(self.env.public_key(), digest, sig)
            gc.collect()  # the check's garbage goes before the buffer comes back, so it finds a hole
            self._buf()
            self.job.update(otacheck.contents(MANIFEST, self.env))
        finally:
            otacheck = None
            forget("transit.otacheck")
        self.job["done"] = 0
        self._save()

    def _finish(self, reboot=True):
        """The switch is done: the job goes, and with it the step modules."""
        self.switched = self.job["ver"]
        try:
            os.remove(JOB)
        except OSError:
            pass  # a cut after the removal: already gone
        self.job = None
        self.stats["ok"] += 1
        self._drop()
        if reboot:
            self.env.reboot("ota: switch to %s" % self.switched)

    def _fail(self, why):
        self._drop()
        job = self.job
        job["st"] = "failed"
        job["err"] = why[:120]
        self.stats["refused"] += 1
        self._save()
        rmtree(STAGE)
        print("ota: refused:", why)
        if self.answer is not None:
            self.answer(False, why)

    def _save(self):
        mkdirs(OTA_DIR)
        tmp = JOB + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.job, f)
        os.rename(tmp, JOB)

    def status(self):
        """The status document's `ota` part: what runs, what is on trial,
        what was rejected, and the progress of a running update."""
        out = {"run": self.env.version()}
        doc = otaboot.read()
        if doc:
            if doc.get("trial"):
                out["trial"] = (doc.get("cur") or {}).get("ver")
            if doc.get("rejected"):
                out["rejected"] = doc["rejected"]
        job = self.job
        if job is not None:
            out["st"] = job["st"]
            if job.get("ver"):
                out["ver"] = job["ver"]
            if job.get("total"):
                out["pct"] = min(100, job.get("done", 0) * 100 // job["total"])
            if job.get("err"):
                out["err"] = job["err"]
        return out
