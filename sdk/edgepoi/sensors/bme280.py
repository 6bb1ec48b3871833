"""Bosch BME280 temperature / pressure / humidity sensor over I2C (0x76 or 0x77).

    from edgepoi.sensors.i2c import open_bus
    from edgepoi.sensors.bme280 import BME280
    s = BME280(open_bus(0), 0x76)             # checks chip id 0x60, soft reset, reads calibration
    s.read()   # {'temp_c': 21.52, 'pressure_hpa': 1008.31, 'humidity': 43.1}

Forced mode (default) triggers one measurement per read() and waits for it (the datasheet's maximum
measurement time, then polls ``status.measuring`` a bounded number of times); normal mode
(``mode="normal"``) lets the chip cycle on its own and read() only fetches the newest values.
Compensation is the datasheet's integer code (section 4.2.3: 32-bit temperature giving t_fine, the
64-bit pressure variant, 32-bit humidity), with C's truncating division. Errors raise SensorError.
"""
from edgepoi.sensors.i2c import I2CDevice, SensorError, sleep_ms

try:
    from micropython import const
except ImportError:
    const = int

_REG_CALIB0 = const(0x88)    # 0x88..0xA1: dig_T1..dig_P9, (0xA0 unused), dig_H1
_REG_ID = const(0xD0)
_REG_RESET = const(0xE0)
_REG_CALIB1 = const(0xE1)    # 0xE1..0xE7: dig_H2..dig_H6
_REG_CTRL_HUM = const(0xF2)
_REG_STATUS = const(0xF3)
_REG_CTRL_MEAS = const(0xF4)
_REG_CONFIG = const(0xF5)
_REG_DATA = const(0xF7)      # 0xF7..0xFE: press msb/lsb/xlsb, temp msb/lsb/xlsb, hum msb/lsb
_CHIP_ID = const(0x60)
_RESET_CMD = const(0xB6)
_ST_MEASURING = const(0x08)
_ST_IM_UPDATE = const(0x01)
_MODE_FORCED = const(0x01)
_MODE_NORMAL = const(0x03)
_SKIPPED_20 = const(0x80000)
_SKIPPED_16 = const(0x8000)
OVERSAMPLING = {0: 0, 1: 1, 2: 2, 4: 3, 8: 4, 16: 5}        # factor -> register code (0: skipped)
FILTER = {0: 0, 2: 1, 4: 2, 8: 3, 16: 4}                    # IIR coefficient -> code
STANDBY_MS = {0.5: 0, 62.5: 1, 125: 2, 250: 3, 500: 4, 1000: 5, 10: 6, 20: 7}


def _tdiv(a, b):
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _u16(b, i):
    return b[i] | (b[i + 1] << 8)


def _s16(b, i):
    v = b[i] | (b[i + 1] << 8)
    return v - 65536 if v & 0x8000 else v


def _s8(v):
    return v - 256 if v & 0x80 else v


def parse_calibration(c0, c1):
    """(26 bytes from 0x88, 7 bytes from 0xE1) -> the 18 dig_* trimming values in datasheet order."""
    cal = [_u16(c0, 0), _s16(c0, 2), _s16(c0, 4), _u16(c0, 6)]
    for i in range(8, 24, 2):
        cal.append(_s16(c0, i))
    cal.append(c0[25])                                     # dig_H1 (0xA1)
    cal.append(_s16(c1, 0))                                # dig_H2 (0xE1/0xE2)
    cal.append(c1[2])                                      # dig_H3 (0xE3)
    cal.append(_s8(c1[3]) * 16 | (c1[4] & 0x0F))           # dig_H4: 0xE4[7:0] 0xE5[3:0], signed 12-bit
    cal.append(_s8(c1[5]) * 16 | (c1[4] >> 4))             # dig_H5: 0xE6[7:0] 0xE5[7:4], signed 12-bit
    cal.append(_s8(c1[6]))                                 # dig_H6 (0xE7)
    return tuple(cal)


def compensate_t(cal, adc_t):
    """-> (temperature in 0.01 °C, t_fine)."""
    t1, t2, t3 = cal[0], cal[1], cal[2]
    var1 = (((adc_t >> 3) - (t1 << 1)) * t2) >> 11
    d = (adc_t >> 4) - t1
    var2 = (((d * d) >> 12) * t3) >> 14
    t_fine = var1 + var2
    return (t_fine * 5 + 128) >> 8, t_fine


def compensate_p(cal, adc_p, t_fine):
    """-> pressure in Pa as unsigned Q24.8 (value / 256 = Pa); 0 when the calibration is degenerate."""
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = cal[3:12]
    var1 = t_fine - 128000
    var2 = var1 * var1 * p6
    var2 = var2 + ((var1 * p5) << 17)
    var2 = var2 + (p4 << 35)
    var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)
    var1 = (((1 << 47) + var1) * p1) >> 33
    if var1 == 0:
        return 0
    p = 1048576 - adc_p
    p = _tdiv(((p << 31) - var2) * 3125, var1)
    var1 = (p9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (p8 * p) >> 19
    return ((p + var1 + var2) >> 8) + (p7 << 4)


def compensate_h(cal, adc_h, t_fine):
    """-> relative humidity in %RH as unsigned Q22.10 (value / 1024 = %RH)."""
    h1, h2, h3, h4, h5, h6 = cal[12:18]
    v = t_fine - 76800
    v = ((((adc_h << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15) * \
        (((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14)
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4)
    if v < 0:
        v = 0
    if v > 419430400:
        v = 419430400
    return v >> 12


class BME280:
    name = "bme280"
    fields = (("temp_c", "°C"), ("pressure_hpa", "hPa"), ("humidity", "%"))

    def __init__(self, bus, addr=0x76, mode="forced", osrs_t=1, osrs_p=1, osrs_h=1, iir=0,
                 standby_ms=125, name=None, sleep=None):
        """Args: bus (machine.I2C-like), addr, mode "forced"/"normal", oversampling factors
        (0 skips a quantity, 1/2/4/8/16), iir filter coefficient, standby_ms (normal mode), sleep
        (a sleep_ms function; tests pass their own). Raises SensorError."""
        if name:
            self.name = name
        self._sleep = sleep or sleep_ms
        self.dev = I2CDevice(bus, addr, "bme280")
        try:
            osr = (OVERSAMPLING[osrs_t], OVERSAMPLING[osrs_p], OVERSAMPLING[osrs_h])
            flt, sb = FILTER[iir], STANDBY_MS[standby_ms]
        except KeyError as e:
            raise self.dev.error("unsupported setting %s" % e)
        if mode not in ("forced", "normal"):
            raise self.dev.error("mode must be 'forced' or 'normal', not %r" % (mode,))
        self.mode = _MODE_FORCED if mode == "forced" else _MODE_NORMAL
        if not osr[0]:
            raise self.dev.error("osrs_t must not be 0: pressure and humidity need the temperature")
        self._os = osr
        # datasheet 9.1: maximum measurement time (ms), rounded up
        tmax = 1.25 + (2.3 * osrs_t) + ((2.3 * osrs_p + 0.575) if osrs_p else 0) + \
            ((2.3 * osrs_h + 0.575) if osrs_h else 0)
        self.wait_ms = int(tmax) + 1
        self._buf = bytearray(26)
        self._mv = memoryview(self._buf)
        self.dev.check_id(_REG_ID, (_CHIP_ID,))
        self.dev.write_u8(_REG_RESET, _RESET_CMD)
        self._sleep(2)                           # start-up time after reset: 2 ms
        self._wait_clear(_ST_IM_UPDATE, "NVM copy after reset")
        mv = self._mv
        self.dev.read_into(_REG_CALIB0, mv[0:26])
        c0 = bytes(mv[0:26])
        self.dev.read_into(_REG_CALIB1, mv[0:7])
        self.cal = parse_calibration(c0, bytes(mv[0:7]))
        if self.cal[0] == 0 or self.cal[3] == 0:
            raise self.dev.error("calibration data is blank (dig_T1/dig_P1 = 0)")
        # ctrl_hum takes effect only after a write to ctrl_meas; config is written while asleep
        self.dev.write_u8(_REG_CTRL_HUM, osr[2])
        self.dev.write_u8(_REG_CONFIG, (sb << 5) | (flt << 2))
        self._ctrl_meas = (osr[0] << 5) | (osr[1] << 2)
        self.dev.write_u8(_REG_CTRL_MEAS, self._ctrl_meas | (self.mode if self.mode == _MODE_NORMAL else 0))

    def _wait_clear(self, bit, what, tries=20):
        for _ in range(tries):
            if not self.dev.read_u8(_REG_STATUS) & bit:
                return
            self._sleep(1)
        raise self.dev.error("%s did not finish (status bit 0x%02x stuck)" % (what, bit))

    def read_raw(self):
        """-> (adc_T, adc_P, adc_H), triggering a measurement first in forced mode (skipped: None)."""
        if self.mode == _MODE_FORCED:
            self.dev.write_u8(_REG_CTRL_MEAS, self._ctrl_meas | _MODE_FORCED)
            self._sleep(self.wait_ms)
            self._wait_clear(_ST_MEASURING, "measurement")
        d = self._mv[0:8]
        self.dev.read_into(_REG_DATA, d)
        adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
        adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
        adc_h = (d[6] << 8) | d[7]
        return (None if adc_t == _SKIPPED_20 or not self._os[0] else adc_t,
                None if adc_p == _SKIPPED_20 or not self._os[1] else adc_p,
                None if adc_h == _SKIPPED_16 or not self._os[2] else adc_h)

    def read(self):
        adc_t, adc_p, adc_h = self.read_raw()
        if adc_t is None:
            raise self.dev.error("no temperature in the data registers (measurement skipped)")
        t, t_fine = compensate_t(self.cal, adc_t)
        out = {"temp_c": t / 100}
        if adc_p is not None:
            out["pressure_hpa"] = compensate_p(self.cal, adc_p, t_fine) / 25600
        if adc_h is not None:
            out["humidity"] = compensate_h(self.cal, adc_h, t_fine) / 1024
        return out
