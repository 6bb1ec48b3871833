"""Run every portable test module under the real MicroPython with the heap its header asks for.

The sdk is imported as it ships to a board: compiled to .mpy (the unix-board bundle), not as source;
compiling a module from source on the device needs several times the heap of loading its .mpy.
"""
import os
import re

import pytest

PORTABLE = os.path.join(os.path.dirname(__file__), "portable")
MODULES = sorted(f[:-3] for f in os.listdir(PORTABLE) if f.startswith("test_") and f.endswith(".py"))


def heapsize_of(module):
    with open(os.path.join(PORTABLE, module + ".py")) as f:
        for line in f:
            m = re.match(r"#\s*heapsize:\s*(\d+[KM]?)", line)
            if m:
                return m.group(1)
    return "96K"


@pytest.mark.parametrize("module", MODULES)
def test_portable_module_under_micropython(micropython, sdk_mpy, module):
    heap = heapsize_of(module)
    mp = micropython(heapsize=heap, path=[PORTABLE, sdk_mpy], sdk=False)
    res = mp.run(["runner.py", module], cwd=PORTABLE, check=False, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, "under MicroPython (heapsize=%s):\n%s" % (heap, out)
    assert re.search(r"^\d+ passed, 0 failed$", out, re.M), out
    assert not re.search(r"^0 passed", out, re.M), "no test ran:\n" + out
