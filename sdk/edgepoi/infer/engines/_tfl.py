"""Shared adapter for the two tflite_runtime-shaped engines (tflite-runtime and LiteRT).

Both already speak the tflite_runtime Interpreter API; this wrapper pins one thread, selects the op
resolver variant, turns load errors into EngineError and adds ``backend``/``bit_exact``/``macs``/
``arena_bytes``. Not used directly: see ``engines.tflite`` and ``engines.litert``.
"""
from . import EngineError, LazyMacs


class TflEngine(LazyMacs):
    """tflite_runtime-API engine around ``interpreter_module`` with op-resolver ``variant``."""

    name_prefix = "tfl"
    exact_variants: tuple = ()

    def __init__(self, interpreter_module, model_path=None, model_content=None, variant="AUTO"):
        if model_content is None:
            if model_path is None:
                raise EngineError("give model_path or model_content")
            with open(model_path, "rb") as f:
                model_content = f.read()
        self._content = bytes(model_content)
        self.variant = variant or "AUTO"
        resolver = getattr(interpreter_module.OpResolverType, self.variant, None)
        if resolver is None:
            raise EngineError("unknown op resolver %r" % variant)
        try:
            self._it = interpreter_module.Interpreter(
                model_content=self._content, num_threads=1,
                experimental_op_resolver_type=resolver)
        except (ValueError, RuntimeError) as e:
            raise EngineError("%s rejected the model: %s" % (self.backend, _first_line(e)))
        self._allocated = False
        ops = set()
        try:
            for d in self._it._get_ops_details():
                ops.add(d.get("op_name"))
        except Exception:  # private API: missing details only cost the LSTM check
            pass
        self.ops = ops
        self.arena_bytes = None

    @property
    def backend(self):
        if self.variant == "AUTO":
            return self.name_prefix
        if self.variant == "BUILTIN_REF":
            return self.name_prefix + "_ref"
        return self.name_prefix + "_nodel"

    @property
    def bit_exact(self):
        """Reference kernels match TFLM on every shared model except the LSTM ones."""
        if self.variant not in self.exact_variants:
            return False
        return "UNIDIRECTIONAL_SEQUENCE_LSTM" not in self.ops and "LSTM" not in self.ops

    def allocate_tensors(self):
        try:
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise EngineError("%s cannot allocate: %s" % (self.backend, _first_line(e)))
        self._allocated = True

    def _ensure(self):
        if not self._allocated:
            self.allocate_tensors()

    def get_input_details(self):
        self._ensure()
        return self._it.get_input_details()

    def get_output_details(self):
        self._ensure()
        return self._it.get_output_details()

    def set_tensor(self, index, value):
        self._ensure()
        self._it.set_tensor(index, value)

    def invoke(self):
        self._ensure()
        try:
            self._it.invoke()
        except RuntimeError as e:
            raise EngineError("%s failed: %s" % (self.backend, _first_line(e)))

    def get_tensor(self, index):
        return self._it.get_tensor(index)

    def reset_all_variables(self):
        self._ensure()
        self._it.reset_all_variables()


def _first_line(e, limit=160):
    """First line of an engine's error, cut to ``limit`` characters (tflite repeats itself per tensor)."""
    s = str(e).strip().splitlines()
    s = s[0] if s else type(e).__name__
    return s if len(s) <= limit else s[:limit - 3] + "..."
