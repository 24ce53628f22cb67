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

Heap (docs/ota.md, measured on the 32-bit frozen build): the manifest is
never parsed whole. Its format (v2) is a JSON header line and then one line
per file, `<sha256 hex> <bytes> <path>`; the board hashes it from flash,
checks the signature, scans the lines once, and later reads one entry at a
time at the byte offset kept in the job. One 1 KiB buffer serves every read
and write (an image goes to flash in 1 KiB programs of an erased block), and
the check's modules (transit.otacheck, ed25519, sha512) leave sys.modules
after it.
"""

import binascii
import gc
import hashlib
import json
import os
import sys

import otaboot

OTA_DIR = "ota"
STAGE = "ota/stage"
JOB = "ota/job.json"
OPEN_MS = 3000
MANIFEST = STAGE + "/manifest.txt"  # format 2 (transit/otacheck.py)
STEP_BYTES = 4096  # read at most this much per loop step
BLOCK = 4096  # flash erase block of an OTA partition
BUF = 1024  # the one I/O buffer: downloads, hashing, image programs, HTTP header
MANIFEST_MAX = 32768  # a larger manifest is refused before it fills the flash


class OtaError(Exception):
    pass


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def _mkdirs(path):
    cur = ""
    for part in path.split("/"):
        cur = part if not cur else cur + "/" + part
        try:
            os.mkdir(cur)
        except OSError:
            pass  # exists


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass  # already gone: what we wanted


def _isdir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


def _rmtree(path):
    try:
        for entry in os.ilistdir(path):
            p = path + "/" + entry[0]
            if entry[1] & 0x4000:
                _rmtree(p)
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


def forget(*names):
    """Drop modules from sys.modules (and from their package): frozen on a
    WROOM-32, a module costs only its module objects, and they go with it.
    Imported again when needed (cheap: the code stays in flash)."""
    for name in names:
        sys.modules.pop(name, None)
        pkg, _, attr = name.rpartition(".")
        if pkg in sys.modules and hasattr(sys.modules[pkg], attr):
            delattr(sys.modules[pkg], attr)


class Agent:
    """One update at a time. `env` gives what the agent needs from the app:
    chip(), version(), public_key() (32 bytes or None), tls_context() (for
    https://: verifies the server with the board's CA), may_switch(at) and
    reboot(why)."""

    def __init__(self, env, ticks_ms=None):
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
        _rmtree(STAGE)
        _mkdirs(STAGE)
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
        try:
            st = job["st"]
            if st == "manifest":
                if self._fetch(job["url"] + "manifest.txt", MANIFEST, -1, may_block) and \
                        self._fetch(job["url"] + "manifest.txt.sig", MANIFEST + ".sig", -1, may_block):
                    self._check()
            elif st == "files":
                self._step_files(may_block)
            elif st == "image":
                self._step_image(may_block)
            elif st == "ready" and may_block and self.env.may_switch(job["at"]):
                self._switch()
        except (OtaError, ValueError, KeyError, TypeError) as e:  # httpget.HttpError is a ValueError
            self._fail(str(e))
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

    def _fetch(self, url, path, size, may_block):
        """Advance the download of one file; True when it is complete. A file
        of unknown size (the manifest, its signature) may not pass MANIFEST_MAX."""
        have = max(_size(path), 0)
        if size >= 0 and have >= size:
            return True
        g = self.get
        if g is None or g.sock is None:
            if not may_block:
                return False
            if size < 0 and have:  # size unknown (manifest, signature): start afresh
                os.remove(path)
                have = 0
            self._open(url, have)
            g = self.get
            self.f = open(path, "ab")
        buf = memoryview(self._buf())
        moved = 0
        while moved < STEP_BYTES:
            n = g.read_into(buf)
            if n == 0:
                return False
            if n < 0:
                self._close()
                return True
            self.f.write(buf[:n])
            moved += n
            self.f.flush()  # LittleFS keeps only synced data over a power cut: resume from here
            if size < 0 and have + moved > MANIFEST_MAX:
                raise OtaError("manifest: larger than %d bytes" % MANIFEST_MAX)
            self.job["done"] = self.job.get("done", 0) + n
            if size >= 0 and have + moved >= size:
                self._close()
                return True
        return False

    def _check(self):
        """The manifest's check (transit/otacheck.py, loaded for it only). Its
        long-int arithmetic gets the download machinery's heap: the buffer,
        the connection object and the HTTP module step aside (loaded again
        for the files)."""
        from transit import otacheck
        try:
            digest, sig = otacheck.staged(MANIFEST, self._buf())
            self._close()
            self.get = self.buf = None
            forget("transit.httpget")
            otacheck.signature(self.env.public_key(), digest, sig)
            gc.collect()  # the check's garbage goes before the buffer comes back, so it finds a hole
            self._buf()
            self.job.update(otacheck.contents(MANIFEST, self.env))
        finally:
            otacheck = None
            forget("transit.otacheck")
        self.job["done"] = 0
        self._save()

    def _entry_at(self, i):
        """The i-th file entry, read from the staged manifest at the job's offset."""
        ent = self.ent
        if ent is None or ent[0] != i:
            with open(MANIFEST, "rb") as f:
                f.seek(self.job["off"])
                line = f.readline()
            h, n, p = parse_entry(line)
            self.ent = ent = (i, h, n, p, len(line))
        return ent

    def _step_files(self, may_block):
        job = self.job
        i = job["i"]
        if i >= job["files"]:
            job["st"] = "ready"
            self._save()
            return
        _, h, n, p, used = self._entry_at(i)
        path = STAGE + "/" + p
        if "/" in p:
            _mkdirs(path[:path.rfind("/")])
        if not self._fetch(job["url"] + p, path, n, may_block):
            return
        if _size(path) != n or file_sha256(path, self._buf()) != h:
            os.remove(path)
            raise OtaError("hash: %s does not match the signed manifest" % p)
        job["i"] = i + 1
        job["off"] += used
        self._save()

    def _image(self):
        """(bytes, sha256 digest) of the image, from the staged manifest's header."""
        with open(MANIFEST, "rb") as f:
            img = json.loads(f.readline())["image"]
        return img["n"], binascii.unhexlify(img["h"])

    def _step_image(self, may_block):
        """Up to STEP_BYTES of the image per call, through the 1 KiB buffer: a
        block is erased before its first piece, then each piece is programmed
        at its offset (the extended block protocol LittleFS uses on the same
        kind of partition). job["i"] counts whole blocks, so a power cut
        redoes at most the block it interrupted."""
        import esp32
        job = self.job
        if self.img is None:
            self.img = self._image()
        size, digest = self.img
        part = esp32.Partition(esp32.Partition.RUNNING).get_next_update()
        if size > part.ioctl(4, 0) * BLOCK:
            raise OtaError("image: %d bytes do not fit partition %s" % (size, part.info()[4]))
        buf = self._buf()
        mv = memoryview(buf)
        if self.h is None:  # (re)start: hash what earlier steps or boots wrote
            self.h = hashlib.sha256()
            for pos in range(0, min(job["i"] * BLOCK, size), BUF):  # the last block is partial
                part.readblocks(pos // BLOCK, buf, pos % BLOCK)
                self.h.update(mv[:min(BUF, size - pos)])
            self.fill = 0
        done = job["i"] * BLOCK
        if done >= size:
            if self.h.digest() != digest:
                job["i"] = 0
                self.h = None
                raise OtaError("hash: image does not match the signed manifest")
            part.set_boot()
            job["part"] = part.info()[4]
            job["st"] = "ready"
            self._save()
            return
        g = self.get
        if g is None or g.sock is None:
            if not may_block:
                return
            self._open(job["url"] + "image.bin", done + self.fill)
            g = self.get
        want = min(BLOCK, size - done)
        moved = 0
        while self.fill < want and moved < STEP_BYTES:
            n = g.read_into(mv[:min(BUF, want - self.fill)])
            if n <= 0:
                if n < 0:
                    self._close()
                return
            if self.fill == 0:
                part.ioctl(6, job["i"])  # erase the block before its first program
            part.writeblocks(job["i"], mv[:n], self.fill)
            self.h.update(mv[:n])
            self.fill += n
            moved += n
        if self.fill < want:
            return
        self.fill = 0
        job["i"] += 1
        job["done"] = job["i"] * BLOCK
        self._save()

    def _switch(self):
        """Idempotent: a power cut anywhere in here is finished by the next boot's agent."""
        job = self.job
        doc = otaboot.read() or {}
        new = {"ver": job["ver"], "build": job["build"], "kind": job["kind"]}
        if (doc.get("cur") or {}).get("build") == job["build"]:
            self._finish(False)  # switched already; the cut came before the job was closed
            return
        if job["kind"] == "files":
            folder = OTA_DIR + "/" + job["build"]
            if _isdir(STAGE):
                _rmtree(folder)
                _remove(MANIFEST)
                _remove(MANIFEST + ".sig")
                os.rename(STAGE, folder)
            new["dir"] = folder
        else:
            new["part"] = job["part"]
        old = doc.get("cur")
        if old and old.get("dir") and old.get("dir") != new.get("dir"):
            prev = doc.get("prev")
            if prev and prev.get("dir") and prev.get("dir") not in (old.get("dir"), new.get("dir")):
                _rmtree(prev["dir"])
        doc.update({"cur": new, "prev": old, "trial": 1, "boots": 0, "fail": "",
                    "max_boots": job["max_boots"], "trial_s": job["trial_s"]})
        otaboot.write(doc)  # the one atomic step: the next boot runs the new version
        self._finish()

    def _finish(self, reboot=True):
        self.switched = self.job["ver"]
        _remove(JOB)
        self.job = None
        self.stats["ok"] += 1
        if reboot:
            self.env.reboot("ota: switch to %s" % self.switched)

    def _fail(self, why):
        self._close()
        job = self.job
        job["st"] = "failed"
        job["err"] = why[:120]
        self.stats["refused"] += 1
        self._save()
        _rmtree(STAGE)
        print("ota: refused:", why)
        if self.answer is not None:
            self.answer(False, why)

    def _save(self):
        _mkdirs(OTA_DIR)
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
