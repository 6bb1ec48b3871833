"""Sensor drivers on CPython: the Linux /dev/i2c adapter's error paths against the real kernel, the
BME280 integer compensation against the datasheet's floating-point formulas over many random
calibrations (hypothesis), and each driver's heap on the real MicroPython, shipped as .mpy.

The portable behaviour tests (register maps, conversions, faults) are tests/portable/test_sensors_portable.py.
"""
import os
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "fakes"))
sys.path.insert(0, os.path.join(HERE, "portable"))

import bme280_chip  # noqa: E402
import i2c_target  # noqa: E402
from test_sensors_portable import bme_float  # noqa: E402

from edgepoi.sensors import bme280  # noqa: E402
from edgepoi.sensors.i2c import I2CDevice, SensorError, open_bus, register_bus  # noqa: E402
from edgepoi.sensors.linux_i2c import LinuxI2C  # noqa: E402


def test_linux_i2c_missing_bus_is_a_clear_error():
    with pytest.raises(SensorError, match=r"/dev/i2c-97"):
        LinuxI2C(97)
    with pytest.raises(SensorError, match=r"/dev/i2c-98"):
        open_bus(98)
    with pytest.raises(SensorError, match=r"/dev/i2c-99"):
        open_bus("99")


def test_linux_i2c_on_a_non_i2c_file_fails_with_the_bus_and_address(tmp_path):
    # A regular file refuses the I2C ioctls (ENOTTY) as a missing adapter would: the driver layer
    # must turn that into a SensorError that says where.
    f = tmp_path / "not-i2c"
    f.write_bytes(b"\x00" * 16)
    bus = LinuxI2C(str(f))
    dev = I2CDevice(bus, 0x76, "bme280")
    with pytest.raises(SensorError) as e:
        dev.read_u8(0xD0)
    assert "bme280 at 0x76 on %s" % f in str(e.value) and "0xd0" in str(e.value)
    with pytest.raises(SensorError, match="writing register 0xe0"):
        dev.write_u8(0xE0, 0xB6)
    bus.close()


def test_registered_bus_is_returned_by_name():
    bus = i2c_target.FakeBus("model-bus")
    register_bus("model-bus", bus)
    assert open_bus("model-bus") is bus


cal_values = st.tuples(
    st.integers(25000, 30000), st.integers(25000, 28000), st.integers(-1500, 100),   # T1..T3
    st.integers(35000, 39000), st.integers(-11000, -10000), st.integers(2500, 3500),  # P1..P3
    st.integers(2000, 8000), st.integers(-200, 200), st.integers(-10, 0),             # P4..P6
    st.integers(9000, 16000), st.integers(-15000, -9000), st.integers(4000, 6500),    # P7..P9
    st.integers(0, 100), st.integers(300, 400), st.integers(0, 20),                  # H1..H3
    st.integers(250, 400), st.integers(0, 60), st.integers(20, 40))                   # H4..H6


@settings(max_examples=300, deadline=None)
@given(cal=cal_values, adc_t=st.integers(380000, 600000), adc_p=st.integers(200000, 500000),
       adc_h=st.integers(15000, 40000))
def test_bme280_integer_compensation_agrees_with_the_float_formulas(cal, adc_t, adc_p, adc_h):
    t_int, t_fine = bme280.compensate_t(cal, adc_t)
    t, p, h = bme_float(cal, adc_t, adc_p, adc_h)
    assert abs(t_int / 100 - t) <= 0.01
    p_int = bme280.compensate_p(cal, adc_p, t_fine)
    assert abs(p_int / 256 - p) < 1.0
    h_int = bme280.compensate_h(cal, adc_h, t_fine) / 1024
    assert abs(h_int - h) < 0.05 or (h in (0.0, 100.0) and abs(h_int - h) < 0.5)


@given(cal=cal_values)
@settings(max_examples=200, deadline=None)
def test_bme280_calibration_round_trips_through_the_register_encoding(cal):
    regs = bme280_chip.encode_calibration(cal)
    c0 = bytes(regs[r] for r in range(0x88, 0xA2))
    c1 = bytes(regs[r] for r in range(0xE1, 0xE8))
    assert bme280.parse_calibration(c0, c1) == cal


# Each driver under MicroPython as .mpy: heap retained by import + instance, and garbage per read.
HEAP_SCRIPT = r"""
import gc, sys
sys.path.append(%(fakes)r)
import i2c_target, bme280_chip, mpu6050_chip, lsm6ds_chip
kind = %(kind)r
bus = i2c_target.FakeBus()
bus.log_limit = 2
if kind == "bme280":
    chip = bme280_chip.BME280Model(bus, 0x76); chip.adc = (519888, 415148, 30000)
elif kind == "mpu6050":
    chip = mpu6050_chip.MPU6050Model(bus, 0x68)
elif kind == "lsm6ds":
    chip = lsm6ds_chip.LSM6DSModel(bus, 0x6A, who_am_i=0x6C)
def nosleep(ms):
    pass
class SnapshotBus:
    # the chip's register image, served without allocating: per-read garbage is the driver's own
    def __init__(self, regs):
        self.regs = regs
    def readfrom_mem_into(self, addr, reg, buf):
        r = self.regs
        for i in range(len(buf)):
            buf[i] = r[reg + i]
    def writeto_mem(self, addr, reg, buf):
        self.regs[reg] = buf[0]
gc.collect()
m0 = gc.mem_alloc()
if kind == "bme280":
    from edgepoi.sensors.bme280 import BME280
    s = BME280(bus, 0x76, sleep=nosleep)
elif kind == "mpu6050":
    from edgepoi.sensors.mpu6050 import MPU6050
    s = MPU6050(bus, 0x68, sleep=nosleep)
elif kind == "lsm6ds":
    from edgepoi.sensors.lsm6ds import LSM6DS
    s = LSM6DS(bus, 0x6A, sleep=nosleep)
elif kind == "adc":
    from edgepoi.sensors.adc import ADCSensor
    class A:
        def read_u16(self):
            return 12345
    s = ADCSensor(adc=A())
elif kind == "replay":
    from edgepoi.sensors.replay import ReplaySensor
    with open(%(tmp)r + "/r.csv", "w") as f:
        f.write("ts,temp_c,humidity\n")
        for i in range(200):
            f.write("%%d,%%d.5,40.25\n" %% (i, i))
    s = ReplaySensor(%(tmp)r + "/r.csv")
s.read()
if kind in ("bme280", "mpu6050", "lsm6ds"):
    s.dev.bus = SnapshotBus(bytearray(chip.regs))
gc.collect()
m1 = gc.mem_alloc()
gc.disable()
for _ in range(20):
    s.read()
m2 = gc.mem_alloc()
gc.enable()
print("HEAP", kind, m1 - m0, (m2 - m1) // 20)
"""


@pytest.mark.parametrize("kind,retained_max,per_read_max", [
    ("bme280", 14000, 900), ("mpu6050", 11500, 700), ("lsm6ds", 12500, 700), ("adc", 10000, 300),
    ("replay", 12500, 900)])
def test_driver_heap_under_micropython(micropython, sdk_mpy, tmp_path, kind, retained_max, per_read_max):
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    from edgepoi_host.bundle import mpy_cross_path
    for name in ("i2c_target", "bme280_chip", "mpu6050_chip", "lsm6ds_chip"):
        subprocess.run([mpy_cross_path(), "-o", str(fakes / (name + ".mpy")),
                        os.path.join(HERE, "fakes", name + ".py")], check=True)
    probe = fakes / "heap_probe.py"
    probe.write_text(HEAP_SCRIPT % {"fakes": str(fakes), "kind": kind, "tmp": str(tmp_path)})
    subprocess.run([mpy_cross_path(), "-o", str(fakes / "heap_probe.mpy"), str(probe)], check=True)
    probe.unlink()
    mp = micropython(heapsize="64K", path=[str(fakes), sdk_mpy], sdk=False)
    out = mp.run_code("import heap_probe").stdout
    m = re.search(r"HEAP (\w+) (\d+) (\d+)", out)
    assert m, out
    retained, per_read = int(m.group(2)), int(m.group(3))
    print("%s under MicroPython (.mpy): %d bytes retained, %d bytes garbage per read"
          % (kind, retained, per_read))
    assert retained <= retained_max and per_read <= per_read_max, (retained, per_read)
