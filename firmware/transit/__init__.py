"""Phitsanulok transit edge firmware: the application package."""

VERSION = "0.1.0"


def forget(*names):
    """Drop modules from sys.modules and from their package, so their globals
    and functions can be collected: frozen on a WROOM-32 a module costs the
    heap only those, and importing it again later is cheap (the code stays in
    flash). Boot-only code, the OTA agent's step modules and safe mode's
    report use it (docs/memory.md)."""
    import sys
    for name in names:
        sys.modules.pop(name, None)
        pkg, _, attr = name.rpartition(".")
        if pkg in sys.modules and getattr(sys.modules[pkg], attr, None) is not None:
            delattr(sys.modules[pkg], attr)
