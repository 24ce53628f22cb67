# Power cuts through a whole over-the-air update on LittleFS over a RAM block
# device (960 KiB, the ESP32's filesystem with the OTA partition layout).
# Usage: micropython ota_powercut.py URL PUBKEY_HEX SEED MANIFEST_PATH
# After every cut the filesystem is mounted afresh, the boot-time choice is
# checked (the state file names a complete version, or none), and the agent
# resumes. Prints "RESULT cuts=<n> switched=<0|1> ..." at the end.
import gc
import hashlib
import json
import os
import random
import sys
import vfs
from blockdev import RAMBlockDev

URL, KEY, SEED = sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3])
with open(sys.argv[4]) as _f:
    MANIFEST = json.load(_f)  # the release's manifest, for the checker only
random.seed(SEED)
MNT = "/flash"
bd = RAMBlockDev(240)
vfs.VfsLfs2.mkfs(bd)


class Rebooted(Exception):
    pass


class Env:
    def chip(self):
        return "sim"

    def version(self):
        return "0.1.0"

    def public_key(self):
        return KEY

    def may_switch(self, at):
        return True

    def reboot(self, why=''):
        raise Rebooted()


def power_on():
    gc.collect()
    bd.revive()
    os.chdir("/")
    try:
        vfs.umount(MNT)
    except OSError:
        pass
    vfs.mount(vfs.VfsLfs2(bd), MNT)
    os.chdir(MNT)


def check_boot_choice():
    """What boot.py would run: the base version, or a complete release."""
    import otaboot
    doc = otaboot.read()
    if doc is None or not doc.get("cur"):
        return "base"
    folder = doc["cur"]["dir"]
    # Every file the signed manifest lists must be there, whole.
    for e in MANIFEST["files"]:
        h = hashlib.sha256()
        with open(folder + "/" + e["p"], "rb") as f:
            h.update(f.read())
        assert h.digest().hex() == e["h"], "incomplete release file " + e["p"]
    return doc["cur"]["ver"]


from transit import ota  # noqa: E402 - after the helpers, as on a board

power_on()
if len(sys.argv) > 5 and sys.argv[5] == "switch":
    # Every write of the switch: download without cuts up to "ready", keep that
    # flash image, then cut the power after 0, 16, 32 ... programmed bytes
    # of the switch, power on, check the boot choice, and let the agent finish.
    env = Env()
    hold = [True]
    env.may_switch = lambda at: not hold[0]
    agent = ota.Agent(env)
    agent.start({"id": "p2", "op": "ota", "url": URL, "at": "now"})
    while agent.job["st"] != "ready":
        agent.step(True)
        assert agent.job["st"] != "failed", agent.job["err"]
    agent._close()
    snapshot = bytes(bd.data)
    hold[0] = False
    bd.reset_counters()
    try:
        ota.Agent(env).step(True)
    except Rebooted:
        pass
    total = bd.bytes_programmed
    seen = {}
    budget = 0
    while budget <= total:
        bd.data[:] = snapshot
        power_on()
        bd.arm(budget)
        try:
            ota.Agent(env).step(True)
        except (Rebooted, OSError):
            pass
        bd.disarm()
        power_on()
        choice = check_boot_choice()
        seen[choice] = seen.get(choice, 0) + 1
        a = ota.Agent(env)  # the next boot's agent finishes what the cut left
        try:
            for i in range(10):
                a.step(True)
        except Rebooted:
            pass
        power_on()
        assert check_boot_choice() != "base", "the update was lost at budget %d" % budget
        budget += 16
    print("SWITCH programmed=%d cuts=%d choices=%s" % (total, sum(seen.values()),
                                                      ",".join("%s:%d" % kv for kv in seen.items())))
    sys.exit(0)

agent = ota.Agent(Env())
agent.start({"id": "p1", "op": "ota", "url": URL, "at": "now"})
cuts = 0
choices = {}
switched = 0
steps = 0
while steps < 20000 and cuts < 2000:
    bd.arm(random.randint(300, 20000))
    try:
        while True:
            agent.step(True)
            steps += 1
            if agent.job is None:  # finished by an earlier boot's switch
                raise Rebooted()
            if agent.job.get("st") == "failed":
                raise AssertionError("update failed: " + agent.job["err"])
            if bd.cut:
                break
    except Rebooted:
        switched = 1
    bd.disarm()
    if switched:
        break
    cuts += 1
    agent._close()
    power_on()
    try:
        choice = check_boot_choice()
    except OSError as e:
        raise AssertionError("boot would fail after cut %d: %r" % (cuts, e))
    choices[choice] = choices.get(choice, 0) + 1
    agent = ota.Agent(Env())
power_on()
final = check_boot_choice()
print("RESULT cuts=%d switched=%d steps=%d choices=%s final=%s" % (
    cuts, switched, steps, ",".join("%s:%d" % kv for kv in choices.items()), final))
