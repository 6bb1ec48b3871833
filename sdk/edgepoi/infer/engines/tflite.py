"""tflite-runtime adapter: default (AUTO, ruy) and BUILTIN_REF (reference kernels) op resolvers.

BUILTIN_REF is bit-exact with TFLM except on LSTM models; AUTO is not.

    from edgepoi.infer.engines.tflite import Engine
    it = Engine(model_path="kws.tflite", variant="BUILTIN_REF")
"""
from ._tfl import TflEngine


def available():
    """True if tflite_runtime can be imported."""
    try:
        import tflite_runtime.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


class Engine(TflEngine):
    name_prefix = "tflite"
    exact_variants = ("BUILTIN_REF",)

    def __init__(self, model_path=None, model_content=None, variant="AUTO"):
        import tflite_runtime.interpreter as tfl
        TflEngine.__init__(self, tfl, model_path, model_content, variant)
