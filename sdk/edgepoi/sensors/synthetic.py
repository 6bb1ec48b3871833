"""Synthetic sensor for the simulator: a room temperature/humidity signal with noise and rare anomalies.

Deterministic for a given seed (xorshift32), identical on MicroPython and CPython, so a simulated fleet
can be replayed. Usage::

    s = SyntheticSensor(seed=7)
    s.read()   # {'temp_c': 21.43, 'humidity': 45.2}
    SyntheticSensor(seed=7, frame=40).read()["frame"]   # + 40 values per read, like a spectrogram row

``frame=N`` adds a reading "frame": N numbers per read (a band-energy row drifting with the same phase),
for models whose input is a stack of frames (micro_speech: 49 rows of 40); the agent slides its window
by a whole frame each cycle.
"""
import math


class SyntheticSensor:
    name = "synthetic"
    fields = (("temp_c", "°C"), ("humidity", "%"))

    def __init__(self, seed=1, period_s=60, anomaly_rate=0.02, frame=0):
        self._state = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1
        self.frame = int(frame)
        self.period_s = period_s
        self.anomaly_rate = anomaly_rate
        self.t = 0

    def _rand(self):
        """Uniform float in [0, 1) from xorshift32."""
        x = self._state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._state = x
        return x / 4294967296

    def read(self):
        phase = 2 * math.pi * self.t / self.period_s
        self.t += 1
        # integral constants are ints: each float literal is an object on a device's heap (same values)
        temp = 21 + 2.5 * math.sin(phase) + (self._rand() - 0.5) * 0.4
        hum = 45 - 5 * math.sin(phase) + (self._rand() - 0.5)
        if self._rand() < self.anomaly_rate:
            temp += 8 + 4 * self._rand()
        out = {"temp_c": round(temp, 2), "humidity": round(hum, 2)}
        if self.frame > 0:
            row = [0.0] * self.frame  # one allocation of the final size (a comprehension grows in steps)
            for j in range(self.frame):
                row[j] = round(0.5 + 0.4 * math.sin(phase + 0.3 * j) + (self._rand() - 0.5) * 0.2, 3)
            out["frame"] = row
        return out
