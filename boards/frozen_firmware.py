# The firmware's own modules, frozen: included by boards/frozen_manifest.py
# (the ESP32 image) and boards/unix32_manifest.py (the 32-bit unix port the
# memory tests run on), so both freeze the same set.
package("transit", base_path="../firmware")
# Every module of lib/ (host_tests/test_house_rules.py checks this list is complete).
LIB_MODULES = ("civil", "geo", "nmea", "nmea_fields", "nmea_reader", "edgering", "beamfsm", "beampair", "beams", "dqueue",
               "dqueue_boot", "dqueue_fs", "dqueue_lane", "dqueue_reader", "otaboot", "ed25519", "sha512")
for name in LIB_MODULES:
    module(name + ".py", base_path="../lib")
