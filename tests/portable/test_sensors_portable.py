# heapsize: 96K
"""Sensor drivers against register-level chip models (tests/fakes), under MicroPython and CPython.

Expected values come from the datasheets' own numbers (the BMP280 compensation example: 25.08 °C,
100653.27 Pa), from the datasheet's floating-point compensation written here independently of the
driver's integer code, and from sensitivities in the register maps; the chip models sit on a bus
and are checked byte by byte where it matters (register writes, reset commands).
"""
import sys

try:
    import i2c_target
except ImportError:
    _here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    sys.path.append(_here + "/../fakes")
    import i2c_target

import bme280_chip
import checks
import lsm6ds_chip
import mpu6050_chip
from edgepoi.sensors.adc import ADCSensor
from edgepoi.sensors.bme280 import BME280
from edgepoi.sensors.i2c import SensorError
from edgepoi.sensors.lsm6ds import LSM6DS
from edgepoi.sensors.mpu6050 import MPU6050
from edgepoi.sensors.replay import ReplaySensor


def nosleep(ms):
    pass


def bme_float(cal, adc_t, adc_p, adc_h):
    """BME280 datasheet section 8.1: the double-precision compensation -> (°C, Pa, %RH)."""
    t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9, h1, h2, h3, h4, h5, h6 = cal
    v1 = (adc_t / 16384.0 - t1 / 1024.0) * t2
    v2 = ((adc_t / 131072.0 - t1 / 8192.0) * (adc_t / 131072.0 - t1 / 8192.0)) * t3
    t_fine = v1 + v2
    v1 = t_fine / 2.0 - 64000.0
    v2 = v1 * v1 * p6 / 32768.0
    v2 = v2 + v1 * p5 * 2.0
    v2 = v2 / 4.0 + p4 * 65536.0
    v1 = (p3 * v1 * v1 / 524288.0 + p2 * v1) / 524288.0
    v1 = (1.0 + v1 / 32768.0) * p1
    p = 1048576.0 - adc_p
    p = (p - v2 / 4096.0) * 6250.0 / v1
    p = p + (p9 * p * p / 2147483648.0 + p * p8 / 32768.0 + p7) / 16.0
    h = t_fine - 76800.0
    h = (adc_h - (h4 * 64.0 + h5 / 16384.0 * h)) * \
        (h2 / 65536.0 * (1.0 + h6 / 67108864.0 * h * (1.0 + h3 / 67108864.0 * h)))
    h = h * (1.0 - h1 * h / 524288.0)
    h = 0.0 if h < 0 else 100.0 if h > 100 else h
    return t_fine / 5120.0, p, h


def bme(addr=0x76, cal=bme280_chip.DATASHEET_CAL, **kw):
    bus = i2c_target.FakeBus("i2c0")
    chip = bme280_chip.BME280Model(bus, addr, cal=cal)
    chip.adc = (519888, 415148, 30000)
    return bus, chip


# -- BME280 ---------------------------------------------------------------------------------------
def test_bme280_datasheet_example():
    bus, chip = bme()
    s = BME280(bus, 0x76, sleep=nosleep)
    r = s.read()
    assert s.cal == bme280_chip.DATASHEET_CAL
    assert r["temp_c"] == 25.08                       # datasheet: T = 25.08 °C
    assert abs(r["pressure_hpa"] * 100 - 100653.27) < 0.5   # datasheet: p = 100653.27 Pa
    t, p, h = bme_float(chip.cal, 519888, 415148, 30000)
    assert abs(t - 25.08247793) < 1e-6 and abs(p - 100653.27) < 0.01   # the float reference agrees
    assert abs(r["humidity"] - h) < 0.02


def test_bme280_integer_matches_float_reference_across_range():
    cals = (bme280_chip.DATASHEET_CAL,
            (28485, 26735, 50, 36992, -10620, 3024, 7211, -68, -7, 9900, -10230, 4285,
             75, 349, 0, 349, 0, 30),
            (27949, 26169, 50, 37942, -10643, 3024, 5745, 40, -7, 15500, -14600, 6000,
             75, 365, 0, 316, 50, 30))
    for cal in cals:
        bus = i2c_target.FakeBus()
        chip = bme280_chip.BME280Model(bus, 0x77, cal=cal)
        s = BME280(bus, 0x77, sleep=nosleep)
        assert s.cal == cal
        for adc_t in (400000, 470000, 519888, 560000):
            for adc_p in (250000, 330000, 415148, 480000):
                for adc_h in (20000, 26000, 32000):
                    chip.adc = (adc_t, adc_p, adc_h)
                    r = s.read()
                    t, p, h = bme_float(cal, adc_t, adc_p, adc_h)
                    assert abs(r["temp_c"] - t) <= 0.01, (cal, adc_t, r, t)
                    assert abs(r["pressure_hpa"] * 100 - p) < 1.0, (cal, adc_p, r, p)
                    assert abs(r["humidity"] - h) < 0.05, (cal, adc_h, r, h)


def test_bme280_raw_values_are_assembled_exactly():
    bus, chip = bme()
    s = BME280(bus, 0x76, sleep=nosleep)
    for raw in ((0x7FFFF, 0x12345, 0xFFFF), (0x00001, 0xABCDE, 0x0001), (0x5A5A5, 0xF0F0F, 0x8001)):
        chip.adc = raw
        assert s.read_raw() == raw


def test_bme280_configuration_sequence():
    bus, chip = bme()
    BME280(bus, 0x76, osrs_t=2, osrs_p=16, osrs_h=4, iir=4, standby_ms=1000, sleep=nosleep)
    assert chip.resets == 1                                  # 0xB6 written to 0xE0
    assert ("w", 0x76, b"\xe0\xb6") in bus.log
    assert chip.regs[0xF2] == 0b011                          # osrs_h x4
    assert chip.regs[0xF5] == (0b101 << 5) | (0b010 << 2)    # t_sb 1000 ms, filter 4
    assert chip.regs[0xF4] == (0b010 << 5) | (0b101 << 2)    # osrs_t x2, osrs_p x16, sleep mode
    writes = [e[2][0] for e in bus.log if e[0] == "w" and len(e[2]) == 2]
    assert writes.index(0xF2) < writes.index(0xF4)           # ctrl_hum before ctrl_meas


def test_bme280_forced_mode_triggers_and_waits():
    bus, chip = bme()
    waits = []
    s = BME280(bus, 0x76, sleep=waits.append)
    n = chip.conversions
    chip.adc = (500000, 400000, 25000)
    assert s.read_raw() == (500000, 400000, 25000)
    assert chip.conversions == n + 1
    assert chip.regs[0xF4] & 3 == 0                         # back to sleep after the conversion
    # datasheet 9.1 max time for x1/x1/x1: 1.25 + 2.3 + 2.875 + 2.875 = 9.3 ms
    assert 10 in waits


def test_bme280_normal_mode_and_skipped_humidity():
    bus, chip = bme()
    s = BME280(bus, 0x76, mode="normal", osrs_h=0, sleep=nosleep)
    assert chip.regs[0xF4] & 3 == 3
    r = s.read()
    assert chip.conversions == 0
    assert sorted(r) == ["pressure_hpa", "temp_c"] and r["temp_c"] == 25.08


def test_bme280_wrong_chip_id_names_address_and_id():
    bus, chip = bme(addr=0x77)
    chip.chip_id = 0x58                                      # a BMP280
    e = checks.raises(SensorError, BME280, bus, 0x77, sleep=nosleep)
    assert "0x77" in str(e) and "0x58" in str(e) and "0x60" in str(e), str(e)


def test_bme280_nack_and_stuck_conversion():
    bus, chip = bme()
    e = checks.raises(SensorError, BME280, bus, 0x76 + 1, sleep=nosleep)   # nobody at 0x77
    assert "0x77" in str(e) and "i2c0" in str(e), str(e)
    s = BME280(bus, 0x76, sleep=nosleep)
    chip.nack = True
    e = checks.raises(SensorError, s.read)
    assert "0x76" in str(e) and "i2c0" in str(e) and "I2C error" in str(e), str(e)
    chip.nack = False
    chip.stuck_measuring = True
    e = checks.raises(SensorError, s.read)
    assert "did not finish" in str(e), str(e)
    checks.raises(SensorError, BME280, bus, 0x76, osrs_p=3, sleep=nosleep)


# -- MPU6050 --------------------------------------------------------------------------------------
def test_mpu6050_wakes_configures_and_converts():
    bus = i2c_target.FakeBus()
    chip = mpu6050_chip.MPU6050Model(bus, 0x68)
    assert chip.asleep()
    imu = MPU6050(bus, 0x68, accel_g=4, gyro_dps=500, sleep=nosleep)
    assert chip.resets == 1 and not chip.asleep()
    assert (chip.regs[0x1C] >> 3) & 3 == 1 and (chip.regs[0x1B] >> 3) & 3 == 1
    chip.raw = (8192, -8192, 4096, 0, 655, -131, 32767)      # ±4 g: 8192 LSB/g; 500 °/s: 65.5 LSB
    r = imu.read()
    assert r["accel_x"] == 1.0 and r["accel_y"] == -1.0 and r["accel_z"] == 0.5
    assert abs(r["gyro_x"] - 10.0) < 1e-9 and abs(r["gyro_y"] + 2.0) < 1e-9
    assert abs(r["temp_c"] - 36.53) < 1e-9                   # raw 0 -> 36.53 °C
    chip.raw = (0, 0, 0, -3400, 0, 0, 0)
    assert abs(imu.read()["temp_c"] - 26.53) < 1e-9
    chip.raw = None
    chip.accel_g, chip.gyro_dps, chip.temp_c = (0.25, -1.5, 1.0), (100.0, -300.0, 0.0), 21.0
    r = imu.read()
    for k, v in (("accel_x", 0.25), ("accel_y", -1.5), ("accel_z", 1.0)):
        assert abs(r[k] - v) <= 1 / 8192, (k, r[k])
    for k, v in (("gyro_x", 100.0), ("gyro_y", -300.0)):
        assert abs(r[k] - v) <= 1 / 65.5, (k, r[k])
    assert abs(r["temp_c"] - 21.0) <= 1 / 340


def test_mpu6050_m_s2_and_errors():
    bus = i2c_target.FakeBus("i2c1")
    chip = mpu6050_chip.MPU6050Model(bus, 0x69)
    imu = MPU6050(bus, 0x69, accel_g=16, gyro_dps=2000, accel_unit="m/s2", sleep=nosleep)
    chip.raw = (2048, 0, 0, 0, 164, 0, 0)
    r = imu.read()
    assert abs(r["accel_x"] - 9.80665) < 1e-9 and abs(r["gyro_x"] - 10.0) < 1e-9
    assert imu.fields[0] == ("accel_x", "m/s²")
    chip.who_am_i = 0x70                                     # an MPU-6500
    e = checks.raises(SensorError, MPU6050, bus, 0x69, sleep=nosleep)
    assert "0x69" in str(e) and "0x70" in str(e), str(e)
    chip.who_am_i = 0x68
    chip.nack_after = chip.transactions + 3                  # dies during initialisation
    e = checks.raises(SensorError, MPU6050, bus, 0x69, sleep=nosleep)
    assert "i2c1" in str(e) and "0x69" in str(e)
    checks.raises(SensorError, MPU6050, bus, 0x69, accel_g=3, sleep=nosleep)


# -- LSM6DS ---------------------------------------------------------------------------------------
def test_lsm6ds_parts_scales_and_temperature():
    for who, part, t_lsb in ((0x69, "LSM6DS3", 16), (0x6C, "LSM6DSO", 256)):
        bus = i2c_target.FakeBus()
        chip = lsm6ds_chip.LSM6DSModel(bus, 0x6B, who_am_i=who)
        imu = LSM6DS(bus, 0x6B, accel_g=4, gyro_dps=1000, odr_hz=208, sleep=nosleep)
        assert imu.part == part and chip.resets == 1
        assert chip.regs[0x12] == 0x44                       # BDU | IF_INC
        assert chip.regs[0x10] == 0x58 and chip.regs[0x11] == 0x58   # ODR 208 Hz, FS 4 g / 1000 dps
        chip.raw = (t_lsb * 2, 1000, -1000, 0, 8197, -8197, 0)
        r = imu.read()
        assert abs(r["temp_c"] - 27.0) < 1e-9
        assert abs(r["gyro_x"] - 35.0) < 1e-9 and abs(r["gyro_y"] + 35.0) < 1e-9
        assert abs(r["accel_x"] - 8197 * 0.000122) < 1e-12 and abs(r["accel_y"] + 1.000034) < 1e-9
        chip.raw = None
        chip.accel_g, chip.gyro_dps, chip.temp_c = (0.5, -2.0, 1.0), (-500.0, 12.5, 0.0), 30.0
        r = imu.read()
        for k, v in (("accel_x", 0.5), ("accel_y", -2.0), ("accel_z", 1.0)):
            assert abs(r[k] - v) <= 0.000122, (k, r[k])
        assert abs(r["gyro_x"] + 500.0) <= 0.035 and abs(r["gyro_y"] - 12.5) <= 0.035
        assert abs(r["temp_c"] - 30.0) <= 1.0 / t_lsb


def test_lsm6ds_125_dps_and_errors():
    bus = i2c_target.FakeBus("i2c3")
    chip = lsm6ds_chip.LSM6DSModel(bus, 0x6A, who_am_i=0x6C)
    imu = LSM6DS(bus, 0x6A, gyro_dps=125, sleep=nosleep)
    chip.raw = (0, 1000, 0, 0, 0, 0, 16393)
    r = imu.read()
    assert abs(r["gyro_x"] - 4.375) < 1e-9 and abs(r["accel_z"] - 16393 * 0.000061) < 1e-12
    chip.who_am_i = 0x6B
    e = checks.raises(SensorError, LSM6DS, bus, 0x6A, sleep=nosleep)
    assert "0x6a" in str(e) and "0x6b" in str(e), str(e)
    chip.who_am_i = 0x6C
    chip.nack = True
    e = checks.raises(SensorError, imu.read)
    assert "i2c3" in str(e) and "0x20" in str(e)


# -- ADC ------------------------------------------------------------------------------------------
class FakeADC:
    ATTN_0DB, ATTN_11DB, WIDTH_12BIT = 0, 3, 3

    def __init__(self, pin):
        self.pin, self.values, self.atten_set, self.width_set = pin, [0], None, None

    def read_u16(self):
        v = self.values.pop(0)
        self.values.append(v)
        return v

    def atten(self, a):
        self.atten_set = a

    def width(self, w):
        self.width_set = w


class FakeMachine:
    ADC = FakeADC

    class Pin:
        def __init__(self, n):
            self.n = n


def test_adc_scales_averages_and_configures():
    s = ADCSensor(pin=34, atten="11db", width=12, scale=3.3, field="light", machine=FakeMachine)
    assert s.adc.pin.n == 34 and s.adc.atten_set == 3 and s.adc.width_set == 3
    s.adc.values = [65535]
    assert s.read() == {"light": 3.3} and s.fields == (("light", "V"),)
    s2 = ADCSensor(adc=FakeADC(None), scale=10.0, offset=-5.0, samples=4)
    s2.adc.values = [0, 65535, 0, 65535]
    assert s2.read() == {"volts": 0.0}
    e = checks.raises(SensorError, ADCSensor, pin=34, atten="7DB", machine=FakeMachine)
    assert "7DB" in str(e)
    checks.raises(SensorError, ADCSensor, adc=object())
    checks.raises(SensorError, ADCSensor)


# -- Replay ---------------------------------------------------------------------------------------
def _write(text, ext):
    d = checks.scratch_dir("replay")
    path = d + "/rec." + ext
    with open(path, "w") as f:
        f.write(text)
    return path


def test_replay_csv_skips_bad_lines_and_loops():
    path = _write("# recorded\nts,temp_c,humidity\n1,20.5,40\n2,oops,41\n\n3,21.0\n4,21.5,42.5\n", "csv")
    s = ReplaySensor(path, units={"temp_c": "°C"})
    assert s.fields == (("temp_c", "°C"), ("humidity", ""))
    got = [s.read() for _ in range(5)]
    assert got == [{"temp_c": 20.5, "humidity": 40.0}, {"temp_c": 21.5, "humidity": 42.5},
                   {"temp_c": 20.5, "humidity": 40.0}, {"temp_c": 21.5, "humidity": 42.5},
                   {"temp_c": 20.5, "humidity": 40.0}]
    assert s.skipped == 4 and s.passes == 2                  # two bad lines, seen twice
    assert "line 6" in s.last_error and "columns" in s.last_error, s.last_error


def test_replay_jsonl_and_end_of_recording():
    path = _write('{"x": 1, "y": 2.5, "ts": 9}\n{"x": true, "y": 1}\nnot json\n{"y": 3}\n'
                  '{"x": 4, "y": 5, "z": 6}\n', "jsonl")
    s = ReplaySensor(path, loop=False)
    assert s.fields == (("x", ""), ("y", ""))
    assert s.read() == {"x": 1.0, "y": 2.5} and s.read() == {"x": 4.0, "y": 5.0}
    e = checks.raises(SensorError, s.read)
    assert "end of the recording" in str(e) and s.skipped == 3
    bad = _write("a,b\n1,x\n2\n", "csv")
    e = checks.raises(SensorError, ReplaySensor(bad).read)
    assert "no valid reading" in str(e), str(e)
    checks.raises(SensorError, ReplaySensor, "/nonexistent/rec.csv")


def test_replay_streams_a_file_larger_than_the_heap():
    import gc
    N = 12000                                                # ~130 KB of CSV > the 96K heap
    path = _write("", "csv")
    with open(path, "w") as f:
        f.write("t,v\n")
        for i in range(N):
            f.write("%d,%d.25\n" % (i, i))
        for _ in range(40):                                  # one over-long line, written
            f.write("x" * 50)                                # in pieces: a 2 KB string is
        f.write("\n")                                        # itself a risk in a 96K heap
        f.write("1,2\n")
    s = ReplaySensor(path, loop=False, max_line=64)
    gc.collect()
    total = 0.0
    for i in range(N):
        r = s.read()
        total += r["v"]
    assert r == {"t": N - 1.0, "v": N - 1 + 0.25}
    assert total == sum(range(N)) + 0.25 * N
    assert s.read() == {"t": 1.0, "v": 2.0} and s.skipped == 1
