"""The staging of a release on flash, and the switch to it.

transit.ota's agent imports this module for its manifest, files and switch
steps only; it is dropped from sys.modules for the check and when the job
ends (docs/ota.md, heap). Its functions work on the agent (its job, its one
1 KiB buffer and its connection); nothing is kept here.

  manifest  manifest.txt and manifest.txt.sig into ota/stage/ (each refused
            above MANIFEST_MAX bytes, before it fills the flash)
  files     one HTTP range GET per file into ota/stage/, STEP_BYTES per loop
            step, then its SHA-256 against the signed manifest; the job keeps
            the index and byte offset of the next entry line, so one entry is
            read at a time from the staged manifest
  switch    ota/stage becomes ota/<build> and ota/state.json names it (or the
            image's partition): the one atomic step (lib/otaboot.py)

A download resumes where its file on flash ends (`Range: bytes=<size>-`).
"""

import os

import otaboot
from transit.ota import (MANIFEST, MANIFEST_MAX, OTA_DIR, STAGE, STEP_BYTES, OtaError, file_sha256, mkdirs,
                         parse_entry, rmtree)


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


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


def fetch(agent, url, path, size):
    """Advance the download of one file; True when it is complete. A file
    of unknown size (size < 0: the manifest, its signature) starts afresh
    after a cut and may not pass MANIFEST_MAX bytes."""
    have = max(_size(path), 0)
    if size >= 0 and have >= size:
        return True
    job = agent.job
    g = agent.get
    if g is None or g.sock is None:
        if size < 0 and have:
            os.remove(path)
            have = 0
        agent._open(url, have)
        g = agent.get
        agent.f = open(path, "ab")
    f = agent.f
    buf = memoryview(agent._buf())
    moved = 0
    while moved < STEP_BYTES:
        n = g.read_into(buf)
        if n == 0:
            return False
        if n < 0:
            agent._close()
            return True
        f.write(buf[:n])
        moved += n
        f.flush()  # LittleFS keeps only synced data over a power cut: resume from here
        if size < 0 and have + moved > MANIFEST_MAX:
            raise OtaError("manifest: larger than %d bytes" % MANIFEST_MAX)
        job["done"] = job.get("done", 0) + n
        if size >= 0 and have + moved >= size:
            agent._close()
            return True
    return False


def manifest(agent):
    """True once the manifest and its signature are staged whole."""
    url = agent.job["url"]
    return fetch(agent, url + "manifest.txt", MANIFEST, -1) and \
        fetch(agent, url + "manifest.txt.sig", MANIFEST + ".sig", -1)


def _entry_at(agent, i):
    """The i-th file entry, read from the staged manifest at the job's offset."""
    ent = agent.ent
    if ent is None or ent[0] != i:
        with open(MANIFEST, "rb") as f:
            f.seek(agent.job["off"])
            line = f.readline()
        h, n, p = parse_entry(line)
        agent.ent = ent = (i, h, n, p, len(line))
    return ent


def files(agent):
    """Up to STEP_BYTES of the next file; a whole file is hashed, then the
    job moves to the next entry (or to "ready" after the last)."""
    job = agent.job
    i = job["i"]
    if i >= job["files"]:
        job["st"] = "ready"
        agent._save()
        agent._drop()  # the switch may wait for hours (parked): the download's heap goes now
        return
    _, h, n, p, used = _entry_at(agent, i)
    path = STAGE + "/" + p
    if "/" in p:
        mkdirs(path[:path.rfind("/")])
    if not fetch(agent, job["url"] + p, path, n):
        return
    if _size(path) != n or file_sha256(path, agent._buf()) != h:
        os.remove(path)
        raise OtaError("hash: %s does not match the signed manifest" % p)
    job["i"] = i + 1
    job["off"] += used
    agent._save()


def switch(agent):
    """Idempotent: a power cut anywhere in here is finished by the next boot's agent."""
    job = agent.job
    doc = otaboot.read() or {}
    new = {"ver": job["ver"], "build": job["build"], "kind": job["kind"]}
    if (doc.get("cur") or {}).get("build") == job["build"]:
        agent._finish(False)  # switched already; the cut came before the job was closed
        return
    if job["kind"] == "files":
        folder = OTA_DIR + "/" + job["build"]
        if _isdir(STAGE):
            rmtree(folder)
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
            rmtree(prev["dir"])
    doc.update({"cur": new, "prev": old, "trial": 1, "boots": 0, "fail": "",
                "max_boots": job["max_boots"], "trial_s": job["trial_s"]})
    otaboot.write(doc)  # the one atomic step: the next boot runs the new version
    agent._finish()
