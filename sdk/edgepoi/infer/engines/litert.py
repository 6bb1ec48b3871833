"""LiteRT (ai-edge-litert) adapter: AUTO (XNNPACK), BUILTIN_WITHOUT_DEFAULT_DELEGATES, BUILTIN_REF.

None of LiteRT 2.3's variants is bit-exact with TFLM on every shared model (XNNPACK and its reference
kernels differ on ResNet-8 and the AD autoencoder), so ``bit_exact`` is always False.

    from edgepoi.infer.engines.litert import Engine
    it = Engine(model_path="kws.tflite")          # XNNPACK
"""
from ._tfl import TflEngine


def available():
    """True if ai_edge_litert can be imported."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


class Engine(TflEngine):
    name_prefix = "litert"
    exact_variants: tuple = ()

    def __init__(self, model_path=None, model_content=None, variant="AUTO"):
        import ai_edge_litert.interpreter as lrt
        TflEngine.__init__(self, lrt, model_path, model_content, variant)
