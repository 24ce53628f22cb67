# Frozen set of the 32-bit unix port that the memory tests run on
# (`make mp32`, tools/mp32.py; docs/memory.md).
#
# The firmware exactly as on a board (boards/frozen_firmware.py) plus the
# pinned umqtt.simple, so its bytecode stays out of the heap as in flash.
# The hardware fakes and the simulator are frozen too: their code then costs
# the heap nothing either, and their module objects and data are measured
# apart (host_tests/test_memory.py subtracts them exactly).
include("frozen_firmware.py")
module("umqtt/simple.py", base_path="../build/mpylib")
for name in ("blockdev", "bluetooth", "esp32socket", "fakeclock", "fakereset", "machine", "machine_periph",
             "network", "time"):
    module(name + ".py", base_path="../host_tests/fakes")
for name in ("simbus", "simgps", "passenger_gen", "simdepot", "heapcap"):
    module(name + ".py", base_path="../tools")
