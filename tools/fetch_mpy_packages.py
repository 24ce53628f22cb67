#!/usr/bin/env python3
"""Fetch the pinned third-party MicroPython packages into build/mpylib.

Reads lib/mpy-packages.json, downloads each sdist from the package index with
the pypi-simple client, checks its SHA-256 against the pin and unpacks only
the listed files. A second run does nothing when the files are in place.
"""

import hashlib
import io
import json
import os
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = os.path.join(ROOT, "lib", "mpy-packages.json")
DEST = os.path.join(ROOT, "build", "mpylib")


def _stamp_path(pkg):
    return os.path.join(DEST, ".%s-%s.sha256" % (pkg["name"], pkg["version"]))


def _up_to_date(pkg):
    stamp = _stamp_path(pkg)
    if not os.path.exists(stamp):
        return False
    with open(stamp) as f:
        if f.read().strip() != pkg["sha256"]:
            return False
    return all(os.path.exists(os.path.join(DEST, rel)) for rel in pkg["files"])


def fetch(pkg):
    from pypi_simple import PyPISimple
    import requests

    with PyPISimple() as client:
        page = client.get_project_page(pkg["pypi"])
    dists = [d for d in page.packages if d.version == pkg["version"] and d.filename.endswith(".tar.gz")]
    if not dists:
        raise SystemExit("fetch: %s %s is not on the package index" % (pkg["pypi"], pkg["version"]))
    resp = requests.get(dists[0].url, timeout=60)
    resp.raise_for_status()
    data = resp.content
    digest = hashlib.sha256(data).hexdigest()
    if digest != pkg["sha256"]:
        raise SystemExit("fetch: %s: SHA-256 %s does not match the pin %s" % (dists[0].filename, digest, pkg["sha256"]))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            rel = member.name.split("/", 1)[1] if "/" in member.name else member.name
            if rel in pkg["files"]:
                out = os.path.join(DEST, rel)
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with open(out, "wb") as f:
                    f.write(tar.extractfile(member).read())
    missing = [rel for rel in pkg["files"] if not os.path.exists(os.path.join(DEST, rel))]
    if missing:
        raise SystemExit("fetch: %s lacks %s" % (dists[0].filename, ", ".join(missing)))
    with open(_stamp_path(pkg), "w") as f:
        f.write(pkg["sha256"] + "\n")


def main():
    with open(MANIFEST) as f:
        packages = json.load(f)["packages"]
    os.makedirs(DEST, exist_ok=True)
    for pkg in packages:
        if _up_to_date(pkg):
            continue
        print("fetch: %s %s from the package index" % (pkg["name"], pkg["version"]))
        fetch(pkg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
