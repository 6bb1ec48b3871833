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
