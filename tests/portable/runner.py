# Portable test runner: runs every test_* function of a portable test module, under MicroPython or CPython.
#
#   micropython -X heapsize=32K tests/portable/runner.py test_cbor_portable
#
# Prints one line per test and a closing "N passed, M failed" line; exits 1 when any test failed.
# Under CPython, pytest collects the same modules directly (tests/portable/conftest.py).
import sys
import gc


def run(modname, only=None):
    mod = __import__(modname)
    names = sorted([n for n in dir(mod) if n.startswith("test_")])
    passed = failed = 0
    for name in names:
        if only and name != only:
            continue
        fn = getattr(mod, name)
        gc.collect()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - report any failure of the test
            failed += 1
            print("FAIL", modname, name)
            if hasattr(sys, "print_exception"):
                sys.print_exception(e)
            else:
                import traceback
                traceback.print_exc()
        else:
            passed += 1
            print("ok", modname, name)
    print("%d passed, %d failed" % (passed, failed))
    return failed


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: runner.py MODULE [TEST]")
        sys.exit(2)
    sys.exit(1 if run(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None) else 0)
