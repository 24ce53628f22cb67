"""House rules as tests: hardware stays behind the board layer, board code
imports nothing a board lacks, and no error is swallowed silently."""

import ast
import os

from harness import paths

# Modules allowed to touch hardware modules directly.
# The loader (boot.py, main.py, lib/otaboot.py) runs before any board layer
# exists: it reads the reset cause, resets into a rollback and talks to the
# OTA partitions itself (docs/ota.md).
HARDWARE_OK = {
    "machine": {"firmware/transit/board.py", "firmware/boot.py", "firmware/main.py", "lib/otaboot.py"},
    "network": {"firmware/transit/board.py", "firmware/transit/link.py"},
    "esp32": {"firmware/transit/board.py", "firmware/transit/otaimage.py", "lib/otaboot.py"},
    "bluetooth": {"firmware/transit/board.py"},
}
CPYTHON_ONLY = {"typing", "dataclasses", "pathlib", "enum", "abc", "logging", "threading", "datetime",
                "functools", "itertools", "subprocess", "shutil", "tempfile", "argparse", "inspect",
                "contextlib", "copy", "decimal", "fractions", "statistics", "pickle", "queue"}
BROAD = {"Exception", "BaseException"}


def _board_files():
    for top in (paths.FIRMWARE, paths.LIB):
        for folder, _, files in os.walk(top):
            for fn in files:
                if fn.endswith(".py"):
                    full = os.path.join(folder, fn)
                    yield os.path.relpath(full, paths.ROOT), full


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node, a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node, node.module.split(".")[0]


def _guarded(tree, node):
    """True when the import sits in a try whose handlers catch ImportError."""
    for t in ast.walk(tree):
        if isinstance(t, ast.Try) and any(n is node for b in t.body for n in ast.walk(b)):
            for h in t.handlers:
                names = [h.type] if not isinstance(h.type, ast.Tuple) else list(h.type.elts)
                if any(isinstance(n, ast.Name) and n.id in ("ImportError", "AttributeError") for n in names):
                    return True
    return False


def hardware_offences(rel, tree):
    return ["%s:%d imports %s" % (rel, node.lineno, mod) for node, mod in _imports(tree)
            if mod in HARDWARE_OK and rel not in HARDWARE_OK[mod]]


def cpython_only_offences(rel, tree):
    return ["%s:%d imports %s" % (rel, node.lineno, mod) for node, mod in _imports(tree)
            if mod in CPYTHON_ONLY and not _guarded(tree, node)]


def silent_except_offences(rel, tree):
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ExceptHandler):
            continue
        broad = node.type is None or (isinstance(node.type, ast.Name) and node.type.id in BROAD)
        if broad and all(isinstance(s, (ast.Pass, ast.Continue)) for s in node.body):
            out.append("%s:%d" % (rel, node.lineno))
    return out


def _check_tree(rule):
    offenders = []
    for rel, full in _board_files():
        with open(full) as f:
            offenders += rule(rel, ast.parse(f.read(), rel))
    return offenders


def test_hardware_modules_are_imported_only_behind_the_board_layer():
    offenders = _check_tree(hardware_offences)
    assert not offenders, "\n".join(offenders)


def test_board_code_imports_nothing_micropython_lacks():
    offenders = _check_tree(cpython_only_offences)
    assert not offenders, "\n".join(offenders)


def test_no_broad_except_swallows_an_error_silently():
    offenders = _check_tree(silent_except_offences)
    assert not offenders, "broad except with an empty body (count or log it):\n" + "\n".join(offenders)


def test_the_rules_fire_on_bad_code_and_spare_good_code():
    # The checks above are only worth something if they fire on a bad example.
    bad = ast.parse("import machine\ntry:\n    x()\nexcept Exception:\n    pass\nimport typing\n")
    assert hardware_offences("firmware/transit/track.py", bad) == ["firmware/transit/track.py:1 imports machine"]
    assert hardware_offences("firmware/transit/board.py", bad) == []
    assert cpython_only_offences("lib/x.py", bad) == ["lib/x.py:6 imports typing"]
    assert silent_except_offences("lib/x.py", bad) == ["lib/x.py:4"]
    good = ast.parse("try:\n    import typing\nexcept ImportError:\n    pass\n"
                     "try:\n    x()\nexcept OSError:\n    pass\n")
    assert cpython_only_offences("lib/x.py", good) == []
    assert silent_except_offences("lib/x.py", good) == []


def test_the_frozen_manifest_freezes_every_firmware_library_module():
    """A lib/ module missing from boards/frozen_firmware.py (which the ESP32
    image's manifest includes) would be absent from a WROOM-32 image: the
    board would fail at import in the field."""
    import ast
    import os
    from harness import paths
    with open(os.path.join(paths.BOARDS, "frozen_firmware.py")) as f:
        tree = ast.parse(f.read())
    listed = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "LIB_MODULES":
            listed = {e.value for e in node.value.elts}
    on_disk = {n[:-3] for n in os.listdir(paths.LIB) if n.endswith(".py")}
    assert listed == on_disk, "missing: %s, extra: %s" % (sorted(on_disk - listed), sorted(listed - on_disk))
