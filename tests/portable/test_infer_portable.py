# heapsize: 96K
"""Portable inference tests: the reference interpreter under MicroPython and CPython.

hello_world runs bit-exact against TFLM's outputs stored in golden/*.npz (read here with a tiny zip +
.npy reader); mutated models only raise ModelError; the integer multiplier path equals the double one.
Without the shared models folder the model tests return early with a printed note.
"""
import os
import struct

import checks
from edgepoi.infer import Interpreter, ModelError, ops, quant

MODELS = (os.getenv("EDGEPOI_MODELS") if hasattr(os, "getenv") else None) or "../../../shared/models"
HELLO = MODELS + "/tflm_hello_world_int8.tflite"


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        print("note: %s not found (set EDGEPOI_MODELS); model test skipped" % path)
        return None


def _inflate(data):
    try:
        import deflate
        import io
        return deflate.DeflateIO(io.BytesIO(data), deflate.RAW, 15).read()  # RAW: window size not in the stream
    except ImportError:
        import zlib
        return zlib.decompress(data, -15)


def npz_arrays(data, names):
    """{name: (shape, raw bytes)} for int8 .npy members of an .npz file."""
    out = {}
    p = 0
    while data[p:p + 4] == b"PK\x03\x04":
        method, _, _, _, csize, usize, nlen, xlen = struct.unpack_from("<HHHIIIHH", data, p + 8)
        name = str(data[p + 30:p + 30 + nlen], "utf-8")
        if csize == 0xFFFFFFFF:  # zip64: the sizes are in the extra field (numpy writes these)
            csize = struct.unpack_from("<Q", data, p + 30 + nlen + 12)[0]
        body = data[p + 30 + nlen + xlen:p + 30 + nlen + xlen + csize]
        p += 30 + nlen + xlen + csize
        if name[:-4] not in names:
            continue
        npy = _inflate(body) if method == 8 else body
        hlen = struct.unpack_from("<H", npy, 8)[0]
        header = str(npy[10:10 + hlen], "utf-8")
        assert "'|i1'" in header, header
        dims = header[header.index("(") + 1:header.index(")")].split(",")
        out[name[:-4]] = ([int(d) for d in dims if d.strip()], npy[10 + hlen:])
    return out


def test_hello_world_is_bit_exact_with_tflm_goldens():
    model = _read(HELLO)
    gold = _read(MODELS + "/golden/tflm_hello_world_int8.golden.npz")
    if model is None or gold is None:
        return
    arrs = npz_arrays(gold, ("inputs", "out_tflm"))
    gold = None
    xs, ys = arrs["inputs"][1], arrs["out_tflm"][1]
    it = Interpreter(model_content=model, backend="ref")
    it.allocate_tensors()
    assert it.arena_bytes > 0 and it.macs > 0
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    for k in range(len(xs)):
        it.set_tensor(i, xs[k:k + 1])
        it.invoke()
        got = bytes(memoryview(it.get_tensor(o)))
        assert got == ys[k:k + 1], "input %d: %r != %r" % (k, got, ys[k:k + 1])


def _lcg(state):
    return (state * 1103515245 + 12345) & 0x7FFFFFFF


def test_mutated_models_raise_only_model_error():
    model = _read(HELLO)
    if model is None:
        return
    s = 12345
    errors = 0
    work = bytearray(len(model))  # one buffer, reused: a small heap fragments otherwise
    for case in range(120):
        it = None
        ops.unload(keep=("fully_connected",))  # mutated opcodes load other op modules
        work[:] = model
        buf = work
        s = _lcg(s)
        if case % 2:
            buf = memoryview(work)[:s % len(work)]
        else:
            for _ in range(3):
                s = _lcg(s)
                work[s % len(work)] ^= 1 << (s >> 8) % 8
        try:
            it = Interpreter(model_content=buf, backend="ref", max_arena_bytes=4096)
            it.allocate_tensors()
            if it.macs < 100000:
                it.invoke()
        except ModelError:
            errors += 1
    assert errors > 30, errors


def _f32(bits):
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def test_integer_multipliers_match_double_precision():
    s = 7
    for _ in range(300):
        bits = []
        for _ in range(3):
            s = _lcg(s)
            bits.append(0x30000000 + s % 0x11000000)
        a, b, c = bits
        want = quant.quantize_multiplier_float(_f32(a) * _f32(b) / _f32(c))
        assert quant.conv_multiplier(a, b, c) == want, (a, b, c)
        assert quant.ratio_multiplier(a, c) == quant.quantize_multiplier_float(_f32(a) / _f32(c))


def test_truncated_header_is_a_model_error():
    checks.raises(ModelError, Interpreter, model_content=b"\x10\x00\x00\x00TFL3\x00\x00")
    checks.raises(ModelError, Interpreter, model_content=b"\x00\x00\x00\x00XXXX\x00\x00\x00\x00")
