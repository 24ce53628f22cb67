"""Phitsanulok transit edge firmware: the application package."""

VERSION = "0.1.0"
