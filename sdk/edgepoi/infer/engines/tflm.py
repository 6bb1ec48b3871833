"""TFLite Micro adapter: the bit-exact oracle, behind the tflite_runtime Interpreter API.

TFLM's Python wrapper addresses inputs/outputs by position; this adapter maps them to the model's
tensor indices (as tflite_runtime does) and adds names and ``quantization`` tuples.

    from edgepoi.infer.engines.tflm import Engine
    it = Engine(model_path="kws.tflite"); it.allocate_tensors()
    d = it.get_input_details()[0]; it.set_tensor(d["index"], x); it.invoke()
"""
from . import EngineError, LazyMacs


def available():
    """True if tflite_micro can be imported."""
    try:
        from tflite_micro.python.tflite_micro import runtime  # noqa: F401
    except ImportError:
        return False
    return True


class Engine(LazyMacs):
    backend = "tflm"
    bit_exact = True

    def __init__(self, model_path=None, model_content=None, variant=None, arena_size=None):
        from tflite_micro.python.tflite_micro import runtime
        if model_content is None:
            if model_path is None:
                raise EngineError("give model_path or model_content")
            with open(model_path, "rb") as f:
                model_content = f.read()
        self._content = bytes(model_content)
        self._rt = runtime
        try:
            sg = runtime.convert_bytearray_to_object(bytearray(self._content)).subgraphs[0]
            self._inputs = [int(i) for i in sg.inputs]
            self._outputs = [int(i) for i in sg.outputs]
            self._names = {}
            for i in self._inputs + self._outputs:
                name = sg.tensors[i].name
                self._names[i] = name.decode() if isinstance(name, bytes) else str(name)
        except Exception as e:  # the flatbuffers object API raises anything on a bad file
            raise EngineError("tflm cannot parse the model: %s: %s" % (type(e).__name__, e))
        self._arena = arena_size or max(len(self._content) * 10, 1 << 16)
        self._it = None
        self.arena_bytes = None

    def allocate_tensors(self):
        if self._it is not None:
            return
        err = None
        size = self._arena
        for _ in range(3):
            try:
                self._it = self._rt.Interpreter.from_bytes(self._content, arena_size=size)
                self._arena = size
                return
            except (RuntimeError, ValueError) as e:
                err = e
                size *= 4
        raise EngineError("tflm rejected the model: %s" % str(err).strip().splitlines()[0])

    def _details(self, positions, getter):
        self.allocate_tensors()
        out = []
        for pos, tidx in enumerate(positions):
            d = getter(pos)
            qp = d["quantization_parameters"]
            scales, zps = qp["scales"], qp["zero_points"]
            q = (float(scales[0]), int(zps[0])) if len(scales) == 1 else (0.0, 0)
            out.append({"index": tidx, "name": self._names.get(tidx, ""), "shape": d["shape"],
                        "dtype": d["dtype"], "quantization": q, "quantization_parameters": qp})
        return out

    def get_input_details(self):
        return self._details(self._inputs, self._it_input_details)

    def get_output_details(self):
        return self._details(self._outputs, self._it_output_details)

    def _it_input_details(self, pos):
        return self._it.get_input_details(pos)

    def _it_output_details(self, pos):
        return self._it.get_output_details(pos)

    def set_tensor(self, index, value):
        import numpy as np
        self.allocate_tensors()
        if index not in self._inputs:
            raise EngineError("tensor %d is not a model input (inputs: %s)" % (index, self._inputs))
        pos = self._inputs.index(index)
        d = self._it.get_input_details(pos)
        arr = np.ascontiguousarray(value, dtype=d["dtype"])
        if tuple(arr.shape) != tuple(int(s) for s in d["shape"]):
            raise EngineError("input %d: shape %s, expected %s" % (index, arr.shape, tuple(d["shape"])))
        self._it.set_input(arr, pos)

    def invoke(self):
        self.allocate_tensors()
        try:
            self._it.invoke()
        except RuntimeError as e:
            raise EngineError("tflm failed: %s" % str(e).strip().splitlines()[0])

    def get_tensor(self, index):
        self.allocate_tensors()
        if index in self._outputs:
            return self._it.get_output(self._outputs.index(index)).copy()
        raise EngineError("tflm adapter reads outputs only; tensor %d is not one" % index)

    def reset_all_variables(self):
        self.allocate_tensors()
        self._it.reset()
