"""The project's own demo model: a tiny int8 anomaly detector for the synthetic temperature signal.

A fresh clone has no ``../shared/models``, so the demo and the simulator build their model here: an MLP
trained with numpy in about a second on windows of ``SyntheticSensor`` readings, quantized the way
TFLite post-training int8 quantization does it, and written with ``tflite_writer.ModelWriter``.

The model (window W = 16 by default)::

    temp_c[W] int8 (scale 0.25 °C, zero point -84)
      → FULLY_CONNECTED 16 + RELU → FULLY_CONNECTED 1 → LOGISTIC
      → anomaly probability, int8 (scale 1/256, zero point -128)

272 MACs, under 2.5 KB. One hidden layer, because on MicroPython every op costs the interpreter
4-6 KiB of heap (a 16-8 second layer found no more spikes and cost ~6 KiB more with viper).

Its output is the probability that the window holds a spike (a reading 8..12 °C above the signal).
Input quantization maps raw temp_c directly, as the agent does (q = clamp(round(t / 0.25) - 84)):
21 °C is q = 0 and -11.0 .. 52.75 °C is representable. In float training the network sees
(temp_c - 21) / 4; those fixed constants (NORM_MEAN, NORM_STD) are folded into the first layer.

Usage::

    from edgepoi_host import demo_model
    data = demo_model.build(seed=0, window=16)          # bytes of a .tflite file (deterministic)
    path = demo_model.ensure(".edgepoi/demo/anomaly.tflite")   # build once, reuse after
"""
import math
import os

import numpy as np

from edgepoi.infer import schema as S
from edgepoi.sensors.synthetic import SyntheticSensor
from edgepoi_host.tflite_writer import ModelWriter

VERSION = 1
IN_SCALE, IN_ZP = 0.25, -84          # input quantization: temp_c in °C, 21 °C ↔ 0
NORM_MEAN, NORM_STD = 21.0, 4.0      # float-training normalisation, folded into layer 1
HIDDEN = (16,)
OUT_SCALE, OUT_ZP = 1.0 / 256, -128  # LOGISTIC int8 output, as TFLite fixes it
SPIKE_MARGIN = 4.0                   # a reading this far above the clean signal is a spike
TRAIN_READINGS = 800                 # readings per training sensor seed
TRAIN_RATES = (0.02, 0.05, 0.1)      # spike rates of the training sensors
STEPS, LR, MOMENTUM = 600, 1.0, 0.9


def description(seed=0, window=16):
    """The model's description string: identifies what built it, so ``ensure`` can reuse it."""
    return "edgepoi demo anomaly detector v%d seed=%d window=%d" % (VERSION, seed, window)


def training_seeds(seed=0):
    """(sensor seed, anomaly rate) of the training data. The simulator's devices use small seeds, held
    out here; the higher rates put back-to-back spikes, rare at the default 2 %, into training."""
    return [(1000 + 10 * seed + k, TRAIN_RATES[k % len(TRAIN_RATES)]) for k in range(6)]


def sensor_windows(sensor_seed, readings, window=16, anomaly_rate=0.02):
    """Every sliding window of ``readings`` temp_c values of one synthetic sensor.

    Returns:
        (temps float64 [n, window], labels int [n]): label 1 when a window holds a spike, found as a
        reading more than SPIKE_MARGIN °C above the sensor's clean sine (its noise is ±0.2 °C).
    """
    s = SyntheticSensor(seed=sensor_seed, anomaly_rate=anomaly_rate)
    temps = np.empty(readings)
    spikes = np.zeros(readings, dtype=bool)
    for t in range(readings):
        temps[t] = s.read()["temp_c"]
        spikes[t] = temps[t] - (21.0 + 2.5 * math.sin(2.0 * math.pi * t / s.period_s)) > SPIKE_MARGIN
    n = readings - window + 1
    idx = np.arange(n)[:, None] + np.arange(window)[None, :]
    return temps[idx], spikes[idx].any(axis=1).astype(np.int64)


def quantize_input(temps):
    """temp_c values → int8, exactly as the agent quantizes them (Python's round: half to even)."""
    q = np.round(np.asarray(temps, dtype=np.float64) / IN_SCALE) + IN_ZP
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize_input(q):
    return (q.astype(np.float64) - IN_ZP) * IN_SCALE


def _round(x):
    """Round half away from zero, as std::round in TFLite's post-training quantizer."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


# -- training (float, numpy) -------------------------------------------------------------------------

def training_data(seed=0, window=16):
    xs, ys = [], []
    for s, rate in training_seeds(seed):
        x, y = sensor_windows(s, TRAIN_READINGS, window, rate)
        xs.append(x)
        ys.append(y)
    temps = dequantize_input(quantize_input(np.concatenate(xs)))   # what the model will really see
    return temps, np.concatenate(ys)


def _forward(params, x):
    """Float forward pass on normalised inputs; returns the activations of every layer and the logit."""
    acts = [x]
    for k, (w, b) in enumerate(params):
        z = acts[-1] @ w.T + b
        acts.append(np.maximum(z, 0.0) if k < len(params) - 1 else z)
    return acts


def train(seed=0, window=16, temps=None, labels=None):
    """Train the float MLP (full-batch gradient descent with momentum, cross-entropy loss).

    Returns:
        list of (weights [out, in], bias [out]) per layer, on inputs normalised with NORM_MEAN/STD.
    """
    if temps is None:
        temps, labels = training_data(seed, window)
    rng = np.random.default_rng(seed)
    sizes = [window] + list(HIDDEN) + [1]
    params = [(rng.normal(0.0, math.sqrt(2.0 / a), size=(b, a)), np.zeros(b))
              for a, b in zip(sizes[:-1], sizes[1:])]
    vel = [(np.zeros_like(w), np.zeros_like(b)) for w, b in params]
    x = (temps - NORM_MEAN) / NORM_STD
    y = labels.astype(np.float64)[:, None]
    # weight positives and negatives equally: spikes are the minority of windows
    pos = max(1.0, float(y.sum()))
    weight = np.where(y > 0, 0.5 / pos, 0.5 / max(1.0, len(y) - pos))
    for _ in range(STEPS):
        acts = _forward(params, x)
        p = 1.0 / (1.0 + np.exp(-acts[-1]))
        grad = (p - y) * weight
        for k in range(len(params) - 1, -1, -1):
            w, b = params[k]
            gw, gb = grad.T @ acts[k], grad.sum(axis=0)
            if k:
                grad = (grad @ w) * (acts[k] > 0)
            vw, vb = vel[k]
            vw = MOMENTUM * vw - LR * gw
            vb = MOMENTUM * vb - LR * gb
            vel[k] = (vw, vb)
            params[k] = (w + vw, b + vb)
    return params


def fold_normalisation(params):
    """Fold x = (t - NORM_MEAN) / NORM_STD into layer 1, so the model takes temp_c."""
    (w, b), rest = params[0], params[1:]
    w1 = w / NORM_STD
    return [(w1, b - NORM_MEAN * w1.sum(axis=1))] + list(rest)


# -- post-training quantization, as TFLite does it ---------------------------------------------------

def _activation_qparams(lo, hi):
    """Asymmetric int8 (scale, zero point) for a calibrated range, nudged so 0.0 is exact."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    zp = int(np.clip(_round(-128 - lo / scale), -128, 127))
    return scale, zp


def _weight_qparams(w):
    """Symmetric per-channel int8 weights ([-127, 127], zero point 0) along output channels."""
    scale = np.abs(w).max(axis=1) / 127.0
    scale = np.where(scale > 0, scale, 1.0)
    return np.clip(_round(w / scale[:, None]), -127, 127).astype(np.int8), scale


def quantize(params, temps):
    """Quantize folded float params; activation ranges calibrated on ``temps`` (°C windows).

    Returns:
        list of per-layer dicts: w (int8), w_scale, b (int32), out (scale, zp), relu.
    """
    acts = _forward(params, temps)
    in_scale, layers = IN_SCALE, []
    for k, (w, b) in enumerate(params):
        wq, ws = _weight_qparams(w)
        bs = in_scale * ws
        bq = np.clip(_round(b / bs), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
        out = _activation_qparams(acts[k + 1].min(), acts[k + 1].max())
        layers.append({"w": wq, "w_scale": ws, "b": bq, "b_scale": bs, "out": out,
                       "relu": k < len(params) - 1})
        in_scale = out[0]
    return layers


def write(layers, window, desc):
    """The .tflite bytes of quantized ``layers`` (FULLY_CONNECTED chain, then LOGISTIC)."""
    w = ModelWriter(description=desc)
    x = first = w.tensor("temp_c", [1, window], S.INT8, scale=IN_SCALE, zero_point=IN_ZP)
    for k, L in enumerate(layers):
        units = L["w"].shape[0]
        kt = w.tensor("fc%d/weights" % (k + 1), list(L["w"].shape), S.INT8, data=L["w"],
                      scale=[float(v) for v in L["w_scale"]], quantized_dimension=0)
        bt = w.tensor("fc%d/bias" % (k + 1), [units], S.INT32, data=L["b"],
                      scale=[float(v) for v in L["b_scale"]])
        name = "fc%d/relu" % (k + 1) if L["relu"] else "logit"
        y = w.tensor(name, [1, units], S.INT8, scale=L["out"][0], zero_point=L["out"][1])
        w.op(S.FULLY_CONNECTED, [x, kt, bt], [y], activation=S.ACT_RELU if L["relu"] else S.ACT_NONE)
        x = y
    prob = w.tensor("anomaly", [1, 1], S.INT8, scale=OUT_SCALE, zero_point=OUT_ZP)
    w.op(S.LOGISTIC, [x], [prob])
    return w.finish(inputs=[first], outputs=[prob])


def build(seed=0, window=16):
    """Train, quantize and write the demo model. Deterministic: the same arguments give the same bytes.

    Returns:
        bytes of an int8 .tflite model (input [1, window] temp_c, output [1, 1] anomaly probability).
    """
    if not 2 <= int(window) <= 256:
        raise ValueError("window must be 2..256 readings, not %r" % (window,))
    temps, labels = training_data(seed, window)
    params = fold_normalisation(train(seed, window, temps, labels))
    return write(quantize(params, temps), window, description(seed, window))


def is_current(path, seed=0, window=16):
    """True when ``path`` is a readable model built by this version with these parameters."""
    from edgepoi.infer.model import Model, ModelError
    try:
        with open(path, "rb") as f:
            data = f.read()
        return Model(data).description == description(seed, window)
    except (OSError, ModelError):
        return False


def ensure(path, seed=0, window=16):
    """Build the model into ``path`` unless a current one is already there; written atomically.

    Returns:
        path.
    """
    if is_current(path, seed, window):
        return path
    data = build(seed, window)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = "%s.tmp%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
