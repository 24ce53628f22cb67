#!/usr/bin/env python3
"""Fleet inventory -> one configuration per device, broker credentials, ACL and TLS.

    .venv/bin/python tools/provision.py --inventory tools/fleet/inventory.example.csv \\
        --broker-host mqtt.phitsanulok.example --wifi-keys ~/depot-wifi.json
    .venv/bin/python tools/provision.py --revoke bus-0301      # a stolen board: refused from now on

Reads a CSV inventory (device_id, role, board, plate, route, depot, networks)
and writes into --out (default build/fleet; keep a backup, `make clean` removes build/):
  <device_id>/device.json   validated with the firmware's own validator (geofences too)
  <device_id>/secrets.json  Wi-Fi keys and the device's own broker password (mode 0600)
  <device_id>/ca.der        the broker's CA in DER (MicroPython's mbedTLS loads DER)
  <device_id>/client.crt, client.key (+ .der)   with --client-certs: its TLS client certificate
  broker/passwd             Mosquitto password file (hashed with mosquitto_passwd)
  broker/acl                each device writes only its own topics and reads only its own cmd
  broker/consumer.json      read-only account: dashboards, bridges, listeners (reads phs/#)
  broker/operator.json      the back office that sends commands (reads all, writes phs/+/+/cmd)
  broker/ca.crt, ca.key, server.crt, server.key, mosquitto.conf   a pilot broker
  broker/fleet.json, revoked.json   what was provisioned and what was revoked
Running it again keeps every existing password and the CA (--rotate ID makes
a new password for one device). Passwords and keys are never printed.
--revoke ID removes a device's password, ACL lines (and certificate, through
the CRL) and reloads the running broker; --reinstate ID gives it new ones.
"""

import argparse
import csv
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIRMWARE = os.path.join(ROOT, "firmware")
BOARDS = os.path.join(ROOT, "boards")
COLUMNS = ("device_id", "role", "board", "plate", "route", "depot", "networks")
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from fleet import broker, checks, ids  # noqa: E402
from fleet.broker import FleetError as ProvisionError  # noqa: E402
from fleet.certs import Certs  # noqa: E402


def _tool(name):
    cand = os.path.join(ROOT, ".venv", "bin", name)
    if os.path.exists(cand):
        return cand
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def _validator():
    if FIRMWARE not in sys.path:
        sys.path.insert(0, FIRMWARE)
    from transit import config  # noqa: E402 - the firmware's own validator
    return config


def read_inventory(path):
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(row for row in f if row.strip() and not row.lstrip().startswith("#")))
    except OSError as e:
        raise ProvisionError("cannot read the inventory %s (%s)" % (path, e.strerror))
    if not rows:
        raise ProvisionError("the inventory %s lists no devices" % path)
    missing = [c for c in ("device_id", "role", "board") if c not in rows[0]]
    if missing:
        raise ProvisionError("the inventory %s lacks the column(s) %s (expected %s)"
                             % (path, ", ".join(missing), ",".join(COLUMNS)))
    seen = set()
    for i, row in enumerate(rows, start=2):
        row = {k: (v or "").strip() for k, v in row.items() if k}
        dev = row["device_id"]
        why = ids.check(dev)
        if why:
            raise ProvisionError("inventory line %d: device id %r %s" % (i, dev, why))
        if dev in seen:
            raise ProvisionError("inventory line %d: device %s is listed twice" % (i, dev))
        seen.add(dev)
        row["line"] = i
        yield row


def device_document(row, args):
    doc = {"device_id": row["device_id"], "role": row["role"], "board": row["board"],
           "topic_root": args.topic_root,
           "networks": [{"ssid": s.strip()} for s in row.get("networks", "").split(";") if s.strip()],
           "broker": {"host": args.broker_host, "port": args.broker_port, "tls": not args.no_tls}}
    if not args.no_tls:
        doc["broker"]["ca"] = "ca.der"
    if getattr(args, "sntp", None):
        doc["time"] = {"sntp": args.sntp}  # the clock before TLS (docs/technician.md, "no time")
    if getattr(args, "ota_key", None):
        doc["ota_key"] = args.ota_key  # the public key releases are signed with (docs/ota.md)
    if row["role"] == "bus":
        doc["bus"] = {"plate": row.get("plate", ""), "route": row.get("route", "")}
        if args.geofences:
            doc["geofences"] = args.geofences
    elif row["role"] == "depot":
        doc["depot"] = {"name": row.get("depot", "")}
        # The depot's own geofence (by name) lets a board without BLE follow
        # the buses' enter/exit events for its yard roster.
        for z in args.geofences or ():
            if z.get("kind") == "depot" and z.get("name") == row.get("depot"):
                doc["depot"]["zone_id"] = z["id"]
    return doc


def _openssl(*args):
    proc = subprocess.run([_tool("openssl") or "openssl"] + list(args), capture_output=True, text=True)
    if proc.returncode != 0:
        raise ProvisionError("openssl failed (%s): is openssl installed?" % proc.stderr.strip().splitlines()[-1:])


def tls_material(folder, host):
    """A CA (kept once made) and a server certificate for `host`; returns the CA's DER path."""
    p = lambda n: os.path.join(folder, n)  # noqa: E731
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    made = []
    if not (os.path.exists(p("ca.key")) and os.path.exists(p("ca.crt"))):
        _openssl("req", "-x509", *ec, "-keyout", p("ca.key"), "-out", p("ca.crt"), "-days", "3650",
                 "-subj", "/O=Phitsanulok Transit/CN=Phitsanulok Transit Pilot CA")
        made.append("CA")
    if not os.path.exists(p("server.crt")) or _server_host(folder) != host:
        try:
            ipaddress.ip_address(host)
            san = "IP:%s" % host
        except ValueError:
            san = "DNS:%s" % host
        with open(p("server.ext"), "w") as f:
            f.write("subjectAltName=%s\n" % san)
        _openssl("req", *ec, "-keyout", p("server.key"), "-out", p("server.csr"), "-subj", "/CN=" + host)
        _openssl("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
                 "-CAcreateserial", "-out", p("server.crt"), "-days", "825", "-extfile", p("server.ext"))
        with open(p("server.host"), "w") as f:
            f.write(host + "\n")
        made.append("server certificate for " + host)
    _openssl("x509", "-in", p("ca.crt"), "-outform", "DER", "-out", p("ca.der"))
    for key in ("ca.key", "server.key"):
        os.chmod(p(key), 0o600)
    return p("ca.der"), made


def _server_host(folder):
    try:
        with open(os.path.join(folder, "server.host")) as f:
            return f.read().strip()
    except OSError:
        return None


def provision(args):
    config = _validator()
    wifi = {}
    if args.wifi_keys:
        try:
            with open(args.wifi_keys) as f:
                wifi = json.load(f)
        except (OSError, ValueError) as e:
            raise ProvisionError("cannot read the Wi-Fi keys file %s (%s): it must be JSON {\"ssid\": \"key\"}"
                                 % (args.wifi_keys, e))
    rows = list(read_inventory(args.inventory))  # every id checked before anything is written
    out = os.path.abspath(args.out)
    broker_dir = os.path.join(out, "broker")
    os.makedirs(broker_dir, exist_ok=True)
    revoked = broker.read_json(os.path.join(broker_dir, "revoked.json"), {})
    for dev in args.reinstate:
        if revoked.pop(dev, None) is None:
            raise ProvisionError("--reinstate %s: that device is not revoked" % dev)
        args.rotate.append(dev)
    ca_der = certs = None
    if not args.no_tls:
        ca_der, made = tls_material(broker_dir, args.broker_host)
        print("tls: %s" % (("made " + " and ".join(made)) if made else "kept the existing CA and server certificate"))
        if args.client_certs:
            certs = Certs(broker_dir, ROOT)
    devices = {}
    for row in rows:
        dev = row["device_id"]
        if dev in revoked:
            print("device %-12s REVOKED on %s: skipped (a replacement board gets new credentials with "
                  "--reinstate %s)" % (dev, revoked[dev].get("utc", "?"), dev))
            continue
        if row["role"] not in ("bus", "depot"):
            raise ProvisionError("inventory line %d: role of %s must be bus or depot, not %r"
                                 % (row["line"], dev, row["role"]))
        if not os.path.exists(os.path.join(BOARDS, row["board"] + ".json")):
            raise ProvisionError("inventory line %d: board %s of %s has no boards/%s.json"
                                 % (row["line"], row["board"], dev, row["board"]))
        doc = device_document(row, args)
        folder = os.path.join(out, dev)
        old = broker.old_password(os.path.join(folder, "secrets.json"))
        pw = old if old and dev not in args.rotate else secrets.token_urlsafe(18)
        sec = {"wifi": {}, "mqtt_password": pw}
        for net in doc["networks"]:
            key = wifi.get(net["ssid"])
            if key is None:
                raise ProvisionError("inventory line %d: no Wi-Fi key for %s (device %s): add it to the --wifi-keys file"
                                     % (row["line"], net["ssid"], dev))
            sec["wifi"][net["ssid"]] = key
        try:
            config.validate(doc, sec)
            checks.geofences(doc.get("geofences"))
        except (config.ConfigError, ValueError) as e:
            raise ProvisionError("inventory line %d: device %s: %s" % (row["line"], dev, e))
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "device.json"), "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        broker.write_private(os.path.join(folder, "secrets.json"), json.dumps(sec, indent=1) + "\n")
        if ca_der:
            shutil.copyfile(ca_der, os.path.join(folder, "ca.der"))
        if certs:
            if dev in args.rotate:
                for n in ("client.crt", "client.key"):
                    if os.path.exists(os.path.join(folder, n)):
                        os.unlink(os.path.join(folder, n))
            certs.issue(dev, os.path.join(folder, "client.crt"), os.path.join(folder, "client.key"))
        devices[dev] = row["role"]
        print("device %-12s %-5s %-18s %s (password %s)" % (dev, row["role"], row["board"],
                                                             os.path.relpath(folder, os.getcwd()),
                                                             "kept" if pw == old else "new"))
    with open(os.path.join(broker_dir, "revoked.json"), "w") as f:
        json.dump(revoked, f, indent=1, sort_keys=True)
    settings = {"host": args.broker_host, "port": args.broker_port, "tls": not args.no_tls,
                "client_certs": bool(certs), "topic_root": args.topic_root,
                "user": args.broker_user or broker.default_user()}
    broker.write_broker(out, settings, devices, ROOT, certs=certs)
    print("broker: %s (passwd, acl, mosquitto.conf%s, runs as %s) for %d devices and the consumer and operator "
          "accounts" % (os.path.relpath(broker_dir, os.getcwd()),
                        ", TLS with client certificates" if certs else (", TLS" if ca_der else ""),
                        settings["user"], len(devices)))
    return devices


def _ota_key(value):
    """The boards' release key: hex, 'none', or 'auto' (tools/release.py's default key, if made)."""
    if value == "none":
        return ""
    if value == "auto":
        import release
        if not os.path.exists(release.DEFAULT_KEY):
            return ""
        return release.public_hex(release.DEFAULT_KEY)
    try:
        if len(bytes.fromhex(value)) == 32:
            return value.lower()
    except ValueError:
        pass
    raise SystemExit("provision: FAILED: --ota-key: 64 hex digits (tools/release.py --init-key prints them)")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fleet inventory -> device configurations, broker credentials, ACL, TLS.")
    ap.add_argument("--inventory", default=os.path.join(HERE, "fleet", "inventory.example.csv"),
                    help="CSV with columns " + ",".join(COLUMNS))
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "fleet"), help="output folder (default build/fleet)")
    ap.add_argument("--broker-host", default="mqtt.phitsanulok-transit.example", help="broker host name or IP")
    ap.add_argument("--broker-port", type=int, default=None, help="broker port (default 8883, or 1883 with --no-tls)")
    ap.add_argument("--no-tls", action="store_true", help="plain MQTT (a bench test only, never in service)")
    ap.add_argument("--topic-root", default="phs", help="topic root (default phs)")
    ap.add_argument("--wifi-keys", help="JSON file {\"ssid\": \"key\"} with the depots' Wi-Fi keys")
    ap.add_argument("--geofences", help="JSON file with the fleet's geofences (depots, termini), as in "
                    "tools/routes/*.json 'geofences'; buses get all of them, a depot board the id of its own")
    ap.add_argument("--rotate", action="append", default=[], metavar="DEVICE_ID",
                    help="make a new broker password for this device (repeatable)")
    ap.add_argument("--broker-user", help="the account Mosquitto runs as (its `user` directive; owns the files "
                    "it reads); default mosquitto when run as root, else you")
    ap.add_argument("--client-certs", action="store_true",
                    help="TLS client certificates per device and account (CN = user; require_certificate)")
    ap.add_argument("--revoke", metavar="DEVICE_ID",
                    help="a stolen or lost board: remove its credentials and ACL lines, reload the broker")
    ap.add_argument("--reinstate", action="append", default=[], metavar="DEVICE_ID",
                    help="provision a revoked device again, with new credentials (a replacement board)")
    ap.add_argument("--no-reload", action="store_true", help="with --revoke: do not signal the local broker")
    ap.add_argument("--sntp", action="append", default=[], metavar="HOST[:PORT]",
                    help="time server for the boards' clock before TLS (repeatable; a depot has no GPS: give one)")
    ap.add_argument("--ota-key", default="auto",
                    help="hex public key of the release key (docs/ota.md); 'auto' (default) takes it from "
                    "tools/release.py's default key when there is one, 'none' leaves updates off")
    args = ap.parse_args(argv)
    args.ota_key = _ota_key(args.ota_key)
    if args.revoke:
        try:
            out = os.path.abspath(args.out)
            fleet = broker.read_json(os.path.join(out, "broker", "fleet.json")) or {}
            certs = Certs(os.path.join(out, "broker"), ROOT) if fleet.get("client_certs") else None
            ok = broker.revoke(out, args.revoke, ROOT, reload_broker=not args.no_reload, certs=certs)
        except ProvisionError as e:
            print("provision: FAILED: %s" % e, file=sys.stderr)
            return 1
        return 0 if ok else 3
    if args.broker_port is None:
        args.broker_port = 1883 if args.no_tls else 8883
    if args.geofences:
        try:
            with open(args.geofences) as f:
                doc = json.load(f)
            zones = doc["geofences"] if isinstance(doc, dict) else doc
            args.geofences = [{"id": z["id"], "kind": z["kind"], "name": z.get("name", ""), "at": z["at"],
                               "radius_m": z["radius_m"]} for z in zones]
            checks.geofences(args.geofences)  # what the board would crash-loop on
        except (OSError, ValueError, KeyError, TypeError) as e:
            print("provision: FAILED: cannot read geofences from %s: %s" % (args.geofences, e), file=sys.stderr)
            return 1
    if not args.no_tls and not args.sntp:
        print("provision: note: no --sntp server: depot boards (no GPS) cannot set their clock, and TLS "
              "refuses certificates until they do (docs/technician.md)")
    if not args.ota_key:
        print("provision: note: no release key (--ota-key): boards will refuse over-the-air updates (docs/ota.md)")
    try:
        provision(args)
    except ProvisionError as e:
        print("provision: FAILED: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
