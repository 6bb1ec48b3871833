"""ST LSM6DS3 / LSM6DSL / LSM6DSO 6-axis IMU over I2C (0x6A, or 0x6B with SA0 high).

    from edgepoi.sensors.i2c import open_bus
    from edgepoi.sensors.lsm6ds import LSM6DS
    imu = LSM6DS(open_bus(0), 0x6A, accel_g=4, gyro_dps=500, odr_hz=104)
    imu.read()   # {'accel_x': ..., 'gyro_z': ..., 'temp_c': 24.5};  imu.part == "LSM6DSO"

Init: WHO_AM_I (0x0F) tells the part (0x69 LSM6DS3, 0x6A LSM6DSL/LSM6DS3TR-C, 0x6C LSM6DSO/DSOX);
software reset (CTRL3_C.SW_RESET, self-clearing), then CTRL3_C = BDU | IF_INC (block data update,
register auto-increment), CTRL1_XL = ODR | FS_XL, CTRL2_G = ODR | FS_G. read() is one 14-byte burst
from OUT_TEMP_L (0x20..0x2D, little-endian signed: temperature, gyro X/Y/Z, accel X/Y/Z) with the
datasheets' typical sensitivities (mg/LSB, mdps/LSB) and temperature 25 °C + raw / (16 or 256).
"""
from edgepoi.sensors.i2c import I2CDevice, SensorError, sleep_ms  # noqa: F401 - re-exported

try:
    from micropython import const
except ImportError:
    const = int

_WHO_AM_I = const(0x0F)
_CTRL1_XL = const(0x10)
_CTRL2_G = const(0x11)
_CTRL3_C = const(0x12)
_OUT_TEMP_L = const(0x20)
_SW_RESET = const(0x01)
_IF_INC = const(0x04)
_BDU = const(0x40)
PARTS = {0x69: "LSM6DS3", 0x6A: "LSM6DSL", 0x6C: "LSM6DSO"}
_TEMP_LSB = {0x69: 16.0, 0x6A: 256.0, 0x6C: 256.0}
# full scale -> (FS bits for CTRL1_XL/CTRL2_G [3:1], sensitivity in g or °/s per LSB)
ACCEL_FS = {2: (0x0, 0.000061), 4: (0x8, 0.000122), 8: (0xC, 0.000244), 16: (0x4, 0.000488)}
GYRO_FS = {125: (0x2, 0.004375), 250: (0x0, 0.00875), 500: (0x4, 0.0175), 1000: (0x8, 0.035),
           2000: (0xC, 0.070)}
ODR = {12.5: 1, 26: 2, 52: 3, 104: 4, 208: 5, 416: 6, 833: 7, 1660: 8, 3330: 9, 6660: 10}


def _s16le(b, i):
    v = b[i] | (b[i + 1] << 8)
    return v - 65536 if v & 0x8000 else v


class LSM6DS:
    name = "lsm6ds"
    fields = (("accel_x", "g"), ("accel_y", "g"), ("accel_z", "g"), ("gyro_x", "°/s"),
              ("gyro_y", "°/s"), ("gyro_z", "°/s"), ("temp_c", "°C"))

    def __init__(self, bus, addr=0x6A, accel_g=2, gyro_dps=250, odr_hz=104, name=None, sleep=None):
        """Args: bus, addr, accel_g (2/4/8/16), gyro_dps (125/250/500/1000/2000), odr_hz (12.5..6660,
        both sensors), sleep (a sleep_ms function). Raises SensorError."""
        if name:
            self.name = name
        self.dev = d = I2CDevice(bus, addr, "lsm6ds")
        if accel_g not in ACCEL_FS or gyro_dps not in GYRO_FS or odr_hz not in ODR:
            raise d.error("unsupported accel_g=%r / gyro_dps=%r / odr_hz=%r" % (accel_g, gyro_dps, odr_hz))
        sleep = sleep or sleep_ms
        who = d.check_id(_WHO_AM_I, (0x69, 0x6A, 0x6C))
        self.part = PARTS[who]
        self.temp_lsb = _TEMP_LSB[who]
        xl_bits, self.accel_scale = ACCEL_FS[accel_g]
        g_bits, self.gyro_scale = GYRO_FS[gyro_dps]
        odr = ODR[odr_hz] << 4
        d.write_u8(_CTRL3_C, _IF_INC | _SW_RESET)
        for _ in range(10):
            sleep(1)
            if not d.read_u8(_CTRL3_C) & _SW_RESET:
                break
        else:
            raise d.error("software reset did not complete")
        d.write_u8(_CTRL3_C, _BDU | _IF_INC)
        d.write_u8(_CTRL1_XL, odr | xl_bits)
        d.write_u8(_CTRL2_G, odr | g_bits)
        got = d.read_u8(_CTRL1_XL)
        if got != odr | xl_bits:
            raise d.error("CTRL1_XL reads 0x%02x after writing 0x%02x" % (got, odr | xl_bits))
        self._buf = bytearray(14)
        sleep(int(3000 / odr_hz) + 1)                 # the first samples after power-up

    def read_raw(self):
        """-> (temp, gx, gy, gz, ax, ay, az) raw signed counts from one burst read."""
        b = self._buf
        self.dev.read_into(_OUT_TEMP_L, b)
        return (_s16le(b, 0), _s16le(b, 2), _s16le(b, 4), _s16le(b, 6), _s16le(b, 8), _s16le(b, 10),
                _s16le(b, 12))

    def read(self):
        t, gx, gy, gz, ax, ay, az = self.read_raw()
        a, g = self.accel_scale, self.gyro_scale
        return {"accel_x": ax * a, "accel_y": ay * a, "accel_z": az * a,
                "gyro_x": gx * g, "gyro_y": gy * g, "gyro_z": gz * g,
                "temp_c": 25.0 + t / self.temp_lsb}
