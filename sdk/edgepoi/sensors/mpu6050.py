"""InvenSense MPU-6050 6-axis IMU over I2C (0x68, or 0x69 with AD0 high).

    from edgepoi.sensors.i2c import open_bus
    from edgepoi.sensors.mpu6050 import MPU6050
    imu = MPU6050(open_bus(0), 0x68, accel_g=2, gyro_dps=250)
    imu.read()  # {'accel_x': 0.01, 'accel_y': -0.02, 'accel_z': 1.0, 'gyro_x': ..., 'temp_c': 24.9}

Init: WHO_AM_I (0x75) must read 0x68; device reset (PWR_MGMT_1 bit 7, 100 ms), wake from sleep with
the X-gyro PLL as clock (PWR_MGMT_1 = 0x01), digital low-pass filter (CONFIG), sample rate divider,
full scales (GYRO_CONFIG / ACCEL_CONFIG FS_SEL bits 4:3). read() is one 14-byte burst from
ACCEL_XOUT_H (0x3B..0x48, big-endian signed): accel in g (or m/s² with ``accel_unit="m/s2"``), gyro
in °/s, temperature °C = raw / 340 + 36.53 (register map rev 4.2, section 4.18).
"""
from edgepoi.sensors.i2c import I2CDevice, SensorError, s16, sleep_ms  # noqa: F401 - re-exported

try:
    from micropython import const
except ImportError:
    const = int

_SMPLRT_DIV = const(0x19)
_CONFIG = const(0x1A)
_GYRO_CONFIG = const(0x1B)
_ACCEL_CONFIG = const(0x1C)
_ACCEL_XOUT_H = const(0x3B)
_PWR_MGMT_1 = const(0x6B)
_WHO_AM_I = const(0x75)
_DEVICE_RESET = const(0x80)
_SLEEP = const(0x40)
_CLK_PLL_X = const(0x01)
ACCEL_FS = {2: 0, 4: 1, 8: 2, 16: 3}           # ±g -> AFS_SEL; LSB/g = 16384 >> AFS_SEL
GYRO_FS = {250: 0, 500: 1, 1000: 2, 2000: 3}   # ±°/s -> FS_SEL; LSB/(°/s) = 131, 65.5, 32.8, 16.4
_GYRO_LSB = (131.0, 65.5, 32.8, 16.4)
G = 9.80665


class MPU6050:
    name = "mpu6050"

    def __init__(self, bus, addr=0x68, accel_g=2, gyro_dps=250, dlpf=3, rate_div=9,
                 accel_unit="g", name=None, sleep=None):
        """Args: bus, addr, accel_g (2/4/8/16), gyro_dps (250/500/1000/2000), dlpf (CONFIG 0..6),
        rate_div (sample rate = 1 kHz / (1 + rate_div) with the DLPF on), accel_unit "g" or "m/s2",
        sleep (a sleep_ms function). Raises SensorError."""
        if name:
            self.name = name
        self.dev = I2CDevice(bus, addr, "mpu6050")
        if accel_g not in ACCEL_FS or gyro_dps not in GYRO_FS or accel_unit not in ("g", "m/s2"):
            raise self.dev.error("unsupported accel_g=%r / gyro_dps=%r / accel_unit=%r"
                                 % (accel_g, gyro_dps, accel_unit))
        if not 0 <= dlpf <= 6 or not 0 <= rate_div <= 255:
            raise self.dev.error("dlpf must be 0..6 and rate_div 0..255")
        sleep = sleep or sleep_ms
        a_sel, g_sel = ACCEL_FS[accel_g], GYRO_FS[gyro_dps]
        self.accel_scale = (G if accel_unit == "m/s2" else 1.0) / (16384 >> a_sel)
        self.gyro_scale = 1.0 / _GYRO_LSB[g_sel]
        u = "g" if accel_unit == "g" else "m/s²"
        self.fields = (("accel_x", u), ("accel_y", u), ("accel_z", u), ("gyro_x", "°/s"),
                       ("gyro_y", "°/s"), ("gyro_z", "°/s"), ("temp_c", "°C"))
        self._buf = bytearray(14)
        d = self.dev
        d.check_id(_WHO_AM_I, (0x68,))
        d.write_u8(_PWR_MGMT_1, _DEVICE_RESET)
        sleep(100)
        for _ in range(10):
            if not d.read_u8(_PWR_MGMT_1) & _DEVICE_RESET:
                break
            sleep(10)
        else:
            raise d.error("device reset did not complete")
        d.write_u8(_PWR_MGMT_1, _CLK_PLL_X)        # SLEEP cleared: wake, PLL with the X gyro
        d.write_u8(_CONFIG, dlpf)
        d.write_u8(_SMPLRT_DIV, rate_div)
        d.write_u8(_GYRO_CONFIG, g_sel << 3)
        d.write_u8(_ACCEL_CONFIG, a_sel << 3)
        if d.read_u8(_PWR_MGMT_1) & _SLEEP:
            raise d.error("still asleep after wake-up (PWR_MGMT_1 = 0x%02x)" % d.read_u8(_PWR_MGMT_1))
        sleep(30)                                    # gyro start-up time

    def read_raw(self):
        """-> (ax, ay, az, temp, gx, gy, gz) raw signed counts from one burst read."""
        b = self._buf
        self.dev.read_into(_ACCEL_XOUT_H, b)
        return (s16(b[0], b[1]), s16(b[2], b[3]), s16(b[4], b[5]), s16(b[6], b[7]),
                s16(b[8], b[9]), s16(b[10], b[11]), s16(b[12], b[13]))

    def read(self):
        ax, ay, az, t, gx, gy, gz = self.read_raw()
        a, g = self.accel_scale, self.gyro_scale
        return {"accel_x": ax * a, "accel_y": ay * a, "accel_z": az * a,
                "gyro_x": gx * g, "gyro_y": gy * g, "gyro_z": gz * g, "temp_c": t / 340 + 36.53}
