"""The live operations page in a real headless Chromium, driven by the real firmware.

The simulated bus (tools/sim.py: the bus firmware under the MicroPython unix
port) publishes to a private Mosquitto; the bridge serves the page; Chromium
(Debian's, through selenium's WebDriver) loads it with no internet. The
test checks the route and stops are drawn, the bus appears and moves, the
fleet table shows it, boards in safe mode and offline are highlighted; a
screenshot goes to build/city/page.png.
"""

import os
import shutil
import threading
import time

import pytest

from harness import paths

import sim  # noqa: E402  (tools/, on the path from conftest)
from city.bridge import Bridge, parse

SHOT = os.path.join(paths.ROOT, "build", "city", "page.png")


def chromium():
    """A headless Chromium WebDriver, or a loud skip naming what is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        pytest.skip("BROWSER TEST SKIPPED: selenium is not installed (%s): run make setup" % e)
    binary = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        if os.getuid() == 0 or os.environ.get("CI"):
            pytest.fail("chromium/chromium-driver missing although setup runs as root: tools/ensure_chromium.sh failed")
        pytest.skip("BROWSER TEST SKIPPED: chromium and chromium-driver are not installed and this user cannot "
                    "install them (sudo apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    profile = os.path.join(paths.ROOT, "build", "city", "chrome-profile-%d" % os.getpid())
    shutil.rmtree(profile, ignore_errors=True)
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
              "--user-data-dir=" + profile, "--window-size=1400,900"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(driver), options=opts), profile


def test_bus_moves_on_the_live_page_when_the_firmware_drives(broker_factory, tmp_path):
    broker = broker_factory(persistence=True)
    bridge = Bridge(parse(["--host", broker.host, "--port", str(broker.port), "--id", "city-page-test",
                           "--data", str(tmp_path / "bridge"), "--http-port", "0"])).start()
    args = sim.parse(["--accel", "20", "--no-table", "--device", "bus-0101", "--stops", "3", "--batch-s", "1",
                      "--outage-after", "0", "--gps-loss-at", "-1", "--drain-s", "60"])
    run = sim.Run(args, broker, out=None)
    t = threading.Thread(target=run.run, daemon=True)
    drv = profile = None
    try:
        drv, profile = chromium()
        t.start()
        drv.get(bridge.web.url)
        wait = lambda cond, s=60: _wait(drv, cond, s)  # noqa: E731
        wait(lambda d: d.find_elements("css selector", "#routes polyline"), 10)
        assert len(drv.find_elements("css selector", "#stops circle")) == 9
        bus = wait(lambda d: d.find_elements("id", "bus-bus-0101"))[0]
        first = bus.get_attribute("transform")
        # Moved on the map by more than 20 units of 1000 (about 200 m at this route's scale).
        wait(lambda d: _dist(first, d.find_element("id", "bus-bus-0101").get_attribute("transform")) > 20)
        moved = drv.find_element("id", "bus-bus-0101").get_attribute("transform")
        # The row shows the route from the inventory (1) and the firmware version.
        wait(lambda d: d.find_element("id", "row-bus-0101").text.startswith("bus-0101 1 "), 10)
        assert drv.find_element("id", "conn").text == "live"
        # A board in safe mode and a board whose last will said offline are highlighted.
        _publish_states(broker)
        wait(lambda d: "safe" in d.find_element("id", "row-bus-0102").get_attribute("class"), 20)
        wait(lambda d: "broker.host missing" in d.find_element("id", "row-bus-0102").text, 5)
        assert "safe" in drv.find_element("id", "bus-bus-0102").get_attribute("class")
        wait(lambda d: "offline" in d.find_element("id", "row-bus-0107").get_attribute("class"), 20)
        assert "offline" in drv.find_element("id", "bus-bus-0107").get_attribute("class")
        os.makedirs(os.path.dirname(SHOT), exist_ok=True)
        wait(lambda d: d.find_elements("css selector", "#today tbody tr"), 90)  # a stop visit arrived
        drv.save_screenshot(SHOT)
        print("\nlive page screenshot: %s (bus moved %s -> %s)" % (SHOT, first, moved))
        assert os.path.getsize(SHOT) > 10000
    finally:
        if drv:
            drv.quit()
        if profile:
            shutil.rmtree(profile, ignore_errors=True)
        t.join(120)
        bridge.stop()


def _publish_states(broker):
    """bus-0102 drives and reports safe mode; bus-0107 drives, then its last will arrives."""
    import json
    import paho.mqtt.client as mqtt
    from city.fakefleet import SynthBus, load_route
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="page-test-states")
    c.connect(broker.host, broker.port)
    c.loop_start()
    now = int(time.time())
    for dev in ("bus-0102", "bus-0107"):
        bus = SynthBus(dev, load_route(), seed=59)  # its first batch is due at once
        for t in range(now - 120, now + 1):
            for topic, payload, qos, retain in bus.due(t):
                if topic.endswith("/pos"):
                    c.publish(topic, payload, qos=1).wait_for_publish(5)
    safe = SynthBus("bus-0102", load_route(), epoch=9).status(now)
    safe["safe"] = {"why": "config: broker.host missing"}
    c.publish("phs/bus/bus-0102/status", json.dumps(safe), qos=1, retain=True).wait_for_publish(5)
    c.publish("phs/bus/bus-0107/status", json.dumps({"v": 2, "d": "bus-0107", "on": False}),
              qos=1, retain=True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def _dist(a, b):
    """Distance between two SVG 'translate(x,y)' attributes."""
    pa = [float(x) for x in a[a.index("(") + 1:-1].split(",")]
    pb = [float(x) for x in b[b.index("(") + 1:-1].split(",")]
    return ((pa[0] - pb[0]) ** 2 + (pa[1] - pb[1]) ** 2) ** 0.5


def _wait(drv, cond, seconds):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait
    # The tables are redrawn as data arrives: an element found a moment ago may be replaced.
    return WebDriverWait(drv, seconds, poll_frequency=0.2,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(cond)
