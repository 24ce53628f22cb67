"""Link management: several Wi-Fi networks, backoff, RSSI, PPP fallback.

Runs under CPython and under the MicroPython unix port, on the virtual clock
with the scripted radio of fakes/network.py."""

import time

import network
from fakeclock import CLOCK

from transit.link import Link

KEYS = {"depot": "depot-pw", "terminal": "term-pw", "garage": "gar-pw"}
NETS = [{"ssid": "depot"}, {"ssid": "terminal"}, {"ssid": "garage"}]


def _link(ppp=False, nets=NETS, keys=KEYS, **kw):
    wlan = network.WLAN(network.STA_IF)
    factory = (lambda: network.PPP(None)) if ppp else None
    return Link(nets, keys.get, wlan=wlan, ppp_factory=factory, connect_ms=5000, check_ms=500,
                backoff_min_ms=2000, backoff_max_ms=16000, **kw)


def _run(link, ms, may_block=True, step_ms=100):
    for _ in range(ms // step_ms):
        link.step(may_block)
        time.sleep_ms(step_ms)


def test_joins_the_strongest_configured_network_in_reach():
    CLOCK.set_virtual(0)
    network.set_aps([{"ssid": "depot", "key": "depot-pw", "rssi": -80},
                     {"ssid": "terminal", "key": "term-pw", "rssi": -55},
                     {"ssid": "cafe", "key": "", "rssi": -30}])
    link = _link()
    _run(link, 2000)
    assert link.isconnected()
    st = link.status()
    assert (st["type"], st["up"], st["ssid"], st["rssi"]) == ("wifi", True, "terminal", -55)
    assert st["connects"] == 1


def test_wrong_key_falls_through_to_the_next_network():
    CLOCK.set_virtual(0)
    network.set_aps([{"ssid": "depot", "key": "changed", "rssi": -40},
                     {"ssid": "garage", "key": "gar-pw", "rssi": -70}])
    link = _link()
    _run(link, 4000)
    st = link.status()
    assert (st["up"], st["ssid"], st["fail_auth"]) == (True, "garage", 1)


def test_no_scan_while_doors_are_open():
    CLOCK.set_virtual(0)
    network.set_aps([{"ssid": "depot", "key": "depot-pw"}])
    link = _link()
    _run(link, 3000, may_block=False)
    assert not link.isconnected()
    assert link.stats["scans"] == 0
    _run(link, 2000, may_block=True)
    assert link.isconnected()


def test_nothing_in_reach_backs_off_exponentially():
    CLOCK.set_virtual(0)
    network.set_aps([{"ssid": "elsewhere", "key": ""}])
    link = _link()
    _run(link, 60000, step_ms=50)
    # Backoff 2, 4, 8, 16, 16 s with +-50 % jitter: 5 to 10 rounds in 60 s, not 1200.
    assert 5 <= link.stats["scans"] <= 10
    assert not link.isconnected()


def test_outage_drops_the_link_and_it_comes_back_with_rssi():
    CLOCK.set_virtual(0)
    network.set_aps([{"ssid": "depot", "key": "depot-pw", "rssi": -61}])
    link = _link()
    _run(link, 2000)
    assert link.isconnected()
    network.outage(time.ticks_ms() + 100, 3000)
    _run(link, 1000)
    assert not link.isconnected()
    assert link.status()["rssi"] is None
    # Worst case with +-50 % jitter: two failed rounds (<= 3 + 6 s) and a 1.5 s join.
    _run(link, 12000)
    st = link.status()
    assert (st["up"], st["drops"], st["connects"], st["rssi"]) == (True, 1, 2, -61)


def test_falls_back_to_ppp_without_wifi_and_returns_to_wifi():
    CLOCK.set_virtual(0)
    network.set_aps([{"ssid": "depot", "key": "depot-pw"}])
    network.set_reachable("depot", False)
    link = _link(ppp=True, wifi_retry_ms=10000)
    _run(link, 3000)
    st = link.status()
    assert (st["type"], st["up"], st["rssi"]) == ("ppp", True, None)
    network.set_reachable("depot", True)
    _run(link, 14000)
    st = link.status()
    assert (st["type"], st["up"], st["ssid"], st["ppp_connects"]) == ("wifi", True, "depot", 1)


def test_ppp_alone_when_no_networks_are_configured():
    CLOCK.set_virtual(0)
    network.set_cellular(False)
    link = _link(ppp=True, nets=[])
    _run(link, 7000)
    assert not link.isconnected()
    assert link.stats["ppp_fail"] == 1
    network.set_cellular(True)
    _run(link, 12000)
    assert link.status()["type"] == "ppp" and link.isconnected()
