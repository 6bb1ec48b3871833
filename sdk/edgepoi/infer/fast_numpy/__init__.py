"""numpy fast path of the int8 interpreter (CPython only): one module per op, same names as
``edgepoi/infer/ops/``, each with ``eval(params, arrays)`` consuming the reference op's ``prepare``
params; arrays are numpy views shaped like the tensors. Results are bit-exact with the reference.

Importing this package pins OpenBLAS to one thread (unless OPENBLAS_NUM_THREADS is set): the layers of
small models are far too small to gain from threads, and on a busy 2-core host a threaded BLAS was
~10x slower on VWW. ``blas_threads(n)`` changes it.

    from edgepoi.infer import Interpreter
    it = Interpreter(model_path="kws.tflite", backend="numpy")
"""
import glob
import os

_blas_set = None


def _find_blas_setter():
    import ctypes
    import numpy
    here = os.path.dirname(os.path.dirname(numpy.__file__))
    libs = glob.glob(os.path.join(here, "numpy.libs", "libopenblas*.so*"))
    libs += glob.glob(os.path.join(os.path.dirname(numpy.__file__), ".libs", "libopenblas*"))
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for sym in ("openblas_set_num_threads64_", "openblas_set_num_threads"):
            f = getattr(lib, sym, None)
            if f is not None:
                return f
    return None


def blas_threads(n):
    """Set OpenBLAS's thread count; returns False when numpy's BLAS is not a findable OpenBLAS."""
    global _blas_set
    if _blas_set is None:
        _blas_set = _find_blas_setter() or False
    if not _blas_set:
        return False
    _blas_set(int(n))
    return True


if "OPENBLAS_NUM_THREADS" not in os.environ:
    try:
        blas_threads(1)
    except Exception:  # noqa: BLE001 - only a speed setting
        pass
