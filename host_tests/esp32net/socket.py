"""Shadows `socket` on the unix port so every socket behaves like an ESP32's
(see fakes/esp32socket.py). Put host_tests/esp32net first on the path."""

from usocket import *  # noqa: F401,F403  constants and getaddrinfo
from esp32socket import Esp32Socket


def socket(af=AF_INET, kind=SOCK_STREAM, proto=0):  # noqa: F405
    return Esp32Socket(af, kind, proto)
