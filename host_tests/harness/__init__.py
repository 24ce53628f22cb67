"""Test harness: MicroPython runner, Mosquitto broker fixture, MQTT subscriber."""
