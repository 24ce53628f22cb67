"""Mosquitto fixture support: the launcher lives in tools/localbroker.py
(shared with `make sim`); this adds the paho subscriber the tests use."""

import os
import sys
import threading
import time

from . import paths

if paths.TOOLS not in sys.path:
    sys.path.insert(0, paths.TOOLS)
from localbroker import Broker, TlsMaterial, free_port  # noqa: E402,F401


class Subscriber:
    """A paho-mqtt client that records every message on its topics."""

    def __init__(self, broker, topics=("#",), username=None, password=None, ca_cert=None, client_id=None):
        import paho.mqtt.client as mqtt

        self.messages = []  # (topic, payload bytes, qos, retain)
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "test-sub-%d" % free_port())
        if username:
            self.client.username_pw_set(username, password)
        if ca_cert:
            self.client.tls_set(ca_certs=ca_cert)
        self._topics = list(topics)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a, **k: self._subscribed.set()
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("subscriber could not subscribe to %s" % (self._topics,))

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        client.subscribe([(t, 1) for t in self._topics])

    def _on_message(self, client, userdata, msg):
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))
            self._cond.notify_all()

    def wait_for(self, count, timeout=10.0, topic_prefix=None):
        """Wait until `count` messages (optionally under topic_prefix) arrived; return them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [m for m in self.messages if topic_prefix is None or m[0].startswith(topic_prefix)]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    return got
                self._cond.wait(left)

    def close(self):
        # DISCONNECT first: the network thread sends it and ends at once. The
        # other way round, loop_stop() waits out the thread's 1 s select().
        self.client.disconnect()
        self.client.loop_stop()
