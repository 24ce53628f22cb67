# The firmware's own modules, frozen: included by boards/frozen_manifest.py
# (the ESP32 image) and boards/unix32_manifest.py (the 32-bit unix port the
# memory tests run on), so both freeze the same set.
package("transit", base_path="../firmware")
for name in ("civil", "geo", "nmea", "nmea_reader", "beams", "dqueue", "dqueue_lane"):
    module(name + ".py", base_path="../lib")
