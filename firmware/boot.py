# boot.py runs first after every reset. Keep it tiny and unable to fail.
# Put /lib ahead of the firmware's frozen modules, so the umqtt.simple that our
# tests ran against (installed in /lib by tools/deploy) wins over the frozen copy.
import sys

try:
    sys.path.remove("/lib")
except ValueError:
    pass
sys.path.insert(1 if sys.path and sys.path[0] == "" else 0, "/lib")

# An over-the-air release (docs/ota.md) goes ahead of everything: otaboot
# decides trial and rollback and puts the active release folder first.
try:
    import machine
    import otaboot

    otaboot.select(machine.reset_cause())
except ImportError as e:
    print("ota: loader missing (%s), booting the base version" % e)
