#!/usr/bin/env python3
"""Provision and deploy one board with mpremote: `make flash PORT=... DEVICE=...`.

    .venv/bin/python tools/deploy.py --port /dev/ttyUSB0 --device bus-0107
    .venv/bin/python tools/deploy.py --port socket://127.0.0.1:4567 --device build/fleet/bus-0107 --mpy
    .venv/bin/python tools/deploy.py --port /dev/ttyUSB0 --device bus-0107 --verify-only

Steps, each printed as it runs; any failure ends with one sentence on stderr
and a non-zero exit:
 1. stage what goes to the board in build/deploy/<device>/ (firmware/, lib/,
    the pinned umqtt.simple into /lib where boot.py puts it ahead of the
    frozen copy, the board description, device.json, secrets.json, the CA),
    optionally compiled to .mpy, and hash every file into a manifest;
 2. ask the board for its MicroPython version, .mpy version, free flash and
    the files it holds (one mpremote exec);
 3. refuse a board that is too old, a .mpy mismatch or a flash too small;
 4. remove /manifest.json (the board is "being deployed" until it is back)
    and the stale files under the managed folders;
 5. `mpremote fs cp -r` (which skips files whose SHA-256 already matches);
 6. `mpremote fs sha256sum` of every file, compared with the manifest;
 7. write /manifest.json last, check after a soft reset (boot.py run) which
    umqtt.simple file is imported, clear the crash counter;
 8. hard reset and watch the boot: banner, no safe mode, no traceback.
An interrupted run leaves no manifest; running it again copies only what
changed and converges.

The work is split by job: deploy_stage.py (staging and the manifest),
deploy_checks.py (the board probe and refusals, verification),
deploy_remote.py (mpremote); this module runs the steps and is the CLI.
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from deploy_checks import (AFTER_BOOT_PY, MANAGED_DIRS, PROBE, check_board, check_space,  # noqa: E402
                           fmt_version, stale_files, verify)
from deploy_remote import (ROOT, DeployError, board_exec, check_port, explain, mpremote,  # noqa: E402,F401
                           mpremote_cmd, reset_and_watch, say)
from deploy_stage import (BOARDS, FIRMWARE, FLEET, SECRET_FILES, git_version, load_device,  # noqa: E402,F401
                          resolve_device_dir, sha256_file, stage_files, write_manifest)
from fleet import boardcheck  # noqa: E402


def _refusal(fn, *args):
    try:
        return fn(*args)
    except boardcheck.Refusal as e:
        raise DeployError(str(e))


def _config():
    if FIRMWARE not in sys.path:
        sys.path.insert(0, FIRMWARE)
    from transit import config  # noqa: E402 - the firmware's validator
    return config


def _remove_staged_secrets(stage):
    for name in SECRET_FILES:
        try:
            os.unlink(os.path.join(stage, name))
        except FileNotFoundError:
            pass


def deploy(port, device, mpy=False, verify_only=False, reset=True, stage=None, fleet=FLEET,
           settle_s=4.0, wipe_queue_of=None, overwrite_settings=False):
    t0 = time.monotonic()
    check_port(port)
    device_dir = resolve_device_dir(device, fleet)
    cfg = load_device(device_dir)
    stage = stage or os.path.join(ROOT, "build", "deploy", cfg["device_id"])
    say("stage: %s for %s (%s, board %s)%s" % (os.path.relpath(stage, ROOT), cfg["device_id"], cfg["role"],
                                               cfg["board"], ", compiled to .mpy" if mpy else ""))
    files = stage_files(cfg, device_dir, stage, mpy)
    sizes = {r: os.path.getsize(os.path.join(stage, r)) for r in files}
    try:
        total = sum(sizes.values())
        say("stage: %d files, %.1f KiB" % (len(files), total / 1024))

        say("board: asking %s for its version and files" % port)
        info = board_exec(port, PROBE % {"dirs": MANAGED_DIRS, "top": ("boot.py", "main.py", "device.json",
                                                                       "secrets.json", "ca.der", "manifest.json"),
                                         "extra": boardcheck.PROBE_EXTRA},
                          resume=False)
        board_mpy = check_board(info, mpy)
        with open(os.path.join(BOARDS, cfg["board"] + ".json")) as f:
            chip = _refusal(boardcheck.chip_check, info, json.load(f), cfg["board"], port)
        say("board: MicroPython %s (.mpy %d.%d, %s, chip %s), %d KiB free of %d KiB, %d files in %s"
            % (fmt_version(info["version"]), board_mpy[0], board_mpy[1], info["platform"], chip, info["free"] // 1024,
               info["total"] // 1024, len(info["files"]), "/".join(MANAGED_DIRS)))
        if verify_only:
            _remove_staged_secrets(stage)
            verify(port, files)
            say("done: %s matches this checkout" % cfg["device_id"])
            return {"copied": 0}
        wipe = _refusal(boardcheck.foreign_queue, info, cfg["device_id"], wipe_queue_of, cfg.get("queue_wipe", ""))
        drift = _refusal(boardcheck.settings_drift, info, device_dir, _config())
        if drift and not overwrite_settings:
            _refusal(boardcheck.refuse_drift, drift)
        if drift:
            say("settings: replacing what changed on the board since the last deploy: %s" % "; ".join(drift))
        if wipe:
            res = board_exec(port, boardcheck.WIPE)
            say("queue: wiped the queue of %s (%d files), as --wipe-queue-of asked" % (wipe, res.get("wiped", 0)))

        check_space(info, files, stage)
        stale = stale_files(info, files)
        cleanup = ["import os"]
        for rel in (["manifest.json"] if "manifest.json" in info["files"] else []) + stale:
            cleanup.append("os.remove(%r)" % rel)
        for rel in stale:
            say("clean: removing stale %s" % rel)
        if len(cleanup) > 1:
            mpremote(port, ["exec", "\n".join(cleanup)])

        entries = sorted({rel.split("/")[0] for rel in files})
        say("copy: mpremote fs cp -r (unchanged files are skipped by SHA-256)")
        unchanged = set()

        def on_line(line):
            if line.startswith("Up to date: "):
                rel = line[len("Up to date: "):]
                rel = rel[2:] if rel.startswith("./") else rel
                unchanged.add(rel)
                say("  unchanged %s" % rel)
            elif line.startswith("cp "):
                src = line.split()[1]
                say("  copying %s" % os.path.relpath(src, stage))

        try:
            mpremote(port, ["fs", "cp", "-r"] + [os.path.join(stage, e) for e in entries] + [":."], stream=on_line)
        finally:
            _remove_staged_secrets(stage)
        copied = [r for r in files if r not in unchanged]
        sent = sum(sizes[r] for r in copied)
        say("copy: %d copied (%.1f KiB), %d unchanged" % (len(copied), sent / 1024, len(unchanged)))

        verify(port, files)
        manifest = write_manifest(stage, cfg, files, mpy, info)
        mpremote(port, ["fs", "cp", "-f", manifest, ":manifest.json"])
        say("manifest: /manifest.json written")
        after = board_exec(port, AFTER_BOOT_PY, resume=False)
        want = "/lib/umqtt/simple." + ("mpy" if mpy else "py")
        if after.get("umqtt") != want:
            raise DeployError("the board imports umqtt.simple from %s, not the pinned copy %s: check that boot.py "
                              "was deployed and puts /lib ahead of .frozen" % (after.get("umqtt"), want))
        say("check: after boot.py the board imports umqtt.simple from %s" % want)
        boot_s = None
        if reset:
            boot_s = reset_and_watch(port, settle_s=settle_s)
            say("boot: the board restarted without safe mode or errors")
        say("done: %s deployed in %.1f s (%d copied, %d unchanged, %d stale removed)"
            % (cfg["device_id"], time.monotonic() - t0, len(copied), len(unchanged), len(stale)))
        return {"copied": len(copied), "unchanged": len(unchanged), "bytes": sent, "stale": stale,
                "seconds": time.monotonic() - t0, "boot_s": boot_s}
    finally:
        _remove_staged_secrets(stage)  # never left in build/deploy/


def main(argv=None):
    ap = argparse.ArgumentParser(description="Provision and deploy one board over mpremote.")
    ap.add_argument("--port", required=True, help="serial port (/dev/ttyUSB0, COM3) or socket://127.0.0.1:PORT")
    ap.add_argument("--device", required=True, help="device id (configuration under --fleet) or its folder")
    ap.add_argument("--fleet", default=FLEET, help="folder written by tools/provision.py (default build/fleet)")
    ap.add_argument("--mpy", action="store_true", help="precompile to .mpy with mpy-cross (less RAM, faster boot)")
    ap.add_argument("--verify-only", action="store_true", help="only compare the board with this checkout")
    ap.add_argument("--no-reset", action="store_true", help="do not reset the board at the end")
    ap.add_argument("--settle", type=float, default=4.0, help="seconds to watch the boot after the banner")
    ap.add_argument("--wipe-queue-of", metavar="OLD_DEVICE_ID",
                    help="the board holds unsent records of OLD_DEVICE_ID: delete them (confirm by naming it)")
    ap.add_argument("--overwrite-settings", action="store_true",
                    help="replace settings changed on the board (remote `set`) with the provisioned device.json")
    args = ap.parse_args(argv)
    if not args.port:
        print("deploy: no port given: run `make flash PORT=/dev/ttyUSB0 DEVICE=<id>`", file=sys.stderr)
        return 2
    try:
        deploy(args.port, args.device, mpy=args.mpy, verify_only=args.verify_only, reset=not args.no_reset,
               fleet=args.fleet, settle_s=args.settle, wipe_queue_of=args.wipe_queue_of,
               overwrite_settings=args.overwrite_settings)
    except DeployError as e:
        print("deploy: FAILED: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("deploy: interrupted: run the same command again; it copies only what is missing", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
