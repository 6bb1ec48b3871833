"""Synthetic sensor for the simulator: a room temperature/humidity signal with noise and rare anomalies.

Deterministic for a given seed (xorshift32), identical on MicroPython and CPython, so a simulated fleet
can be replayed. Usage::

    s = SyntheticSensor(seed=7)
    s.read()   # {'temp_c': 21.43, 'humidity': 45.2}
"""
import math


class SyntheticSensor:
    name = "synthetic"
    fields = (("temp_c", "°C"), ("humidity", "%"))

    def __init__(self, seed=1, period_s=60.0, anomaly_rate=0.02):
        self._state = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1
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
        return x / 4294967296.0

    def read(self):
        phase = 2.0 * math.pi * self.t / self.period_s
        self.t += 1
        temp = 21.0 + 2.5 * math.sin(phase) + (self._rand() - 0.5) * 0.4
        hum = 45.0 - 5.0 * math.sin(phase) + (self._rand() - 0.5) * 1.0
        if self._rand() < self.anomaly_rate:
            temp += 8.0 + 4.0 * self._rand()
        return {"temp_c": round(temp, 2), "humidity": round(hum, 2)}
