# Runs one dual-runtime test module under the MicroPython unix port.
# Usage: micropython mprunner.py DIR MODULE [TEST ...]
# Prints "@@PASS name" or "@@FAIL name" followed by the traceback, then "@@DONE".
import sys
import gc

folder, modname = sys.argv[1], sys.argv[2]
only = sys.argv[3:]
sys.path.insert(0, folder)

import fakereset  # noqa: E402

mod = __import__(modname)
names = [n for n in dir(mod) if n.startswith("test_")] if not only else only
for name in names:
    fn = getattr(mod, name)
    fakereset.reset()
    gc.collect()
    try:
        fn()
        gc.collect()
        print("@@PASS", name, gc.mem_free())
    except BaseException as e:  # report everything, including MemoryError and resets
        print("@@FAIL", name)
        sys.print_exception(e, sys.stdout)
        print("@@ENDFAIL")
print("@@DONE")
