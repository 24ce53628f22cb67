# MicroPython frozen-firmware manifest for the transit firmware.
#
# On an ESP32-WROOM-32 (no PSRAM) the application's bytecode, loaded from
# .mpy files, would take most of the heap that Wi-Fi and TLS need; frozen
# into the firmware image it stays in flash. Build from a MicroPython
# checkout (ESP-IDF installed), for example:
#
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=$PWD/../transit/boards/frozen_manifest.py
#
# then flash the image with esptool (docs/technician.md). The port's own
# frozen set (asyncio, umqtt.simple from micropython-lib, ...) stays in;
# the pinned umqtt.simple that `tools/deploy.py` installs in /lib still wins
# over the frozen one because boot.py puts /lib first on sys.path.
include("$(PORT_DIR)/boards/manifest.py")

include("frozen_firmware.py")  # transit/ and lib/: the same set the memory tests freeze
