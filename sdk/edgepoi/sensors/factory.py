"""Sensor drivers from a config's ``sensor`` section (each driver is imported only when used).

Usage::

    from edgepoi.sensors.factory import make_sensor
    s = make_sensor({"type": "bme280", "i2c": 0, "sda": 21, "scl": 22, "address": "0x76"})
"""
from edgepoi.sensors import ConfigError  # noqa: F401 - re-exported: factory.ConfigError


def _int(v, what):
    """An int from config: 118, "0x76", "GPIO21" -> ConfigError when it is none of those."""
    if isinstance(v, int):
        return v
    try:
        v = str(v)
        return int(v[4:] if v.upper().startswith("GPIO") else v, 0)
    except ValueError:
        raise ConfigError("sensor.%s: %r is not a number" % (what, v))


def make_sensor(spec):
    """Build the sensor driver a config's ``sensor`` section names (drivers imported on demand)."""
    kind = spec.get("type", "synthetic")
    name = spec.get("name")
    if kind == "synthetic":
        from edgepoi.sensors.synthetic import SyntheticSensor
        return SyntheticSensor(seed=int(spec.get("seed", 1)),
                               anomaly_rate=float(spec.get("anomaly_rate", 0.02)),
                               frame=int(spec.get("frame", 0)))
    if kind == "replay":
        from edgepoi.sensors.replay import ReplaySensor
        return ReplaySensor(spec.get("file") or spec["path"], loop=bool(spec.get("loop", True)), name=name)
    if kind == "adc":
        from edgepoi.sensors.adc import ADCSensor
        if "pin" not in spec:
            raise ConfigError("sensor.pin: required for an adc sensor")
        return ADCSensor(pin=_int(spec["pin"], "pin"), scale=float(spec.get("scale", 3.3)),
                         offset=float(spec.get("offset", 0.0)), samples=int(spec.get("samples", 1)),
                         field=spec.get("field", "volts"), unit=spec.get("unit", "V"),
                         atten=spec.get("atten"), width=spec.get("width"), name=name)
    if kind in ("bme280", "mpu6050", "lsm6ds"):
        from edgepoi.sensors.i2c import open_bus
        bus_id = spec.get("i2c", 0)
        bus = open_bus(bus_id if isinstance(bus_id, str) and not bus_id.isdigit() else _int(bus_id, "i2c"),
                       freq=_int(spec.get("freq", 400000), "freq"),
                       sda=spec.get("sda"), scl=spec.get("scl"))
        addr = _int(spec["address"], "address") if "address" in spec else None
        if kind == "bme280":
            from edgepoi.sensors.bme280 import BME280
            return BME280(bus, addr or 0x76, mode=spec.get("mode", "forced"), name=name)
        if kind == "mpu6050":
            from edgepoi.sensors.mpu6050 import MPU6050
            return MPU6050(bus, addr or 0x68, accel_g=int(spec.get("accel_g", 2)),
                           gyro_dps=int(spec.get("gyro_dps", 250)), name=name)
        from edgepoi.sensors.lsm6ds import LSM6DS
        return LSM6DS(bus, addr or 0x6A, accel_g=int(spec.get("accel_g", 2)),
                      gyro_dps=int(spec.get("gyro_dps", 250)), name=name)
    raise ConfigError("sensor.type: unknown sensor %r" % kind)


