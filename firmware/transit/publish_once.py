"""Walking skeleton: one QoS 1 message through umqtt.simple.

Proves the chain firmware -> umqtt.simple -> broker on the MicroPython unix
port. The real uplink (transit/uplink.py) replaces this for the roles.
"""

from umqtt.simple import MQTTClient


def publish_once(client_id, host, port, topic, payload, qos=1, retain=False):
    """Connect, publish one message, disconnect. Raises on any failure."""
    client = MQTTClient(client_id, host, port=port, keepalive=30)
    client.connect()
    try:
        client.publish(topic, payload, retain=retain, qos=qos)
    finally:
        client.disconnect()
