"""The simulator's broker-side listener: a persistent MQTT session that a
broker killed with SIGKILL cannot lose.

Mosquitto keeps sessions in memory and writes them to its persistence file
only now and then (and on a clean exit); after SIGKILL it restarts from the
last file. A listener whose subscription is not in that file comes back as a
stranger and misses what the bus sends before it subscribes again. So the
listener subscribes with clean_session=False, waits for the SUBACK, and has
a persistent broker save its database (Broker.save, SIGUSR1) before the bus
starts. At the end its session is removed from the broker.
"""

import os
import threading
import time


class Listener:
    def __init__(self, broker, device, on_message, say=print, timeout=10.0):
        import paho.mqtt.client as mqtt
        self.broker = broker
        self.say = say
        self.client_id = "phs-sim-listener-%s-%d" % (device, os.getpid())
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False)
        subscribed = threading.Event()
        c.on_connect = lambda c, u, f, rc, p=None: c.subscribe("phs/#", qos=1)
        c.on_subscribe = lambda c, u, mid, rcs, p=None: subscribed.set()
        c.on_message = lambda c, u, m: on_message(m.topic, bytes(m.payload))
        c.reconnect_delay_set(0.2, 1)
        if getattr(broker, "tls", None) is not None:  # our own TLS broker (sim --tls)
            c.tls_set(ca_certs=broker.tls.ca_cert)
        c.connect(broker.host, broker.port, keepalive=10)
        c.loop_start()
        self.client = c
        if not subscribed.wait(timeout):
            self.close(forget=False)
            raise RuntimeError("the listener got no SUBACK from %s:%d in %.0f s" % (broker.host, broker.port, timeout))
        save = getattr(broker, "save", None)  # an external broker is not ours to signal
        if save is not None and not save():
            self.close(forget=False)
            raise RuntimeError("the broker did not save its database (the listener's session) in time")

    def close(self, forget=True):
        """Disconnect; forget: also remove the persistent session from the broker."""
        c, self.client = self.client, None
        if c is None:
            return
        c.loop_stop()
        c.disconnect()
        if not forget:
            return
        import paho.mqtt.client as mqtt
        try:
            end = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
            end.connect(self.broker.host, self.broker.port, keepalive=10)
            end.loop_start()
            time.sleep(0.2)  # the CONNECT with clean_session=True ends the stored session
            end.disconnect()  # then loop_stop(): the thread ends at once, not after its 1 s select()
            end.loop_stop()
        except OSError as e:  # the broker is gone: nothing to clean
            self.say("sim: could not remove the listener's session: %s" % e)
