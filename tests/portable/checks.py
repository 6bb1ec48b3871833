# Small helpers for portable tests (MicroPython-safe; no pytest).


def raises(exc_type, fn, *args, **kwargs):
    """Call fn and return the exc_type it raised; fail when it raises nothing or something else."""
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    except Exception as e:  # noqa: BLE001
        raise AssertionError("expected %s, got %s: %s" % (exc_type.__name__, type(e).__name__, e))
    raise AssertionError("expected %s, nothing was raised" % exc_type.__name__)


def is_micropython():
    import sys
    return sys.implementation.name == "micropython"


_scratch = [0]


def scratch_dir(tag="t"):
    """A new empty directory path under $TMPDIR (or /tmp) for a test; created, not cleaned up."""
    import os
    _scratch[0] += 1
    base = os.getenv("TMPDIR") or "/tmp"
    seed = os.urandom(4)
    name = "%s/edgepoi-%s-%d-%02x%02x%02x%02x" % (base, tag, _scratch[0], seed[0], seed[1], seed[2], seed[3])
    os.mkdir(name)
    return name
