"""Register-level model of an InvenSense MPU-6050 on I2C, from its register map (rev 4.2).

    bus = FakeBus()
    imu = MPU6050Model(bus, 0x68)
    imu.accel_g = (0.0, 0.0, 1.0); imu.gyro_dps = (10.0, 0, -250.0); imu.temp_c = 25.0

Reset values: all registers 0 except PWR_MGMT_1 (0x6B) = 0x40 (SLEEP) and WHO_AM_I (0x75) = 0x68
(read-only, the same with AD0 high). PWR_MGMT_1 bit 7 (DEVICE_RESET) resets every register and
reads 1 for ``reset_reads`` reads. While asleep the sensor registers 0x3B..0x48 are frozen (zero
after reset); awake, each read of ACCEL_XOUT_H samples the physical values, converted with the
full scale then configured (ACCEL_CONFIG/GYRO_CONFIG bits 4:3: 16384/8192/4096/2048 LSB/g and
131/65.5/32.8/16.4 LSB/(°/s)), saturating at the int16 range; temperature raw = (°C - 36.53) * 340.
``raw`` (7 signed counts ax, ay, az, t, gx, gy, gz) overrides the physical values when set.
Reads and writes auto-increment. Fault injection: ``who_am_i``, ``nack`` / ``nack_after``.
"""
from i2c_target import RegisterTarget, put_s16_be

ACCEL_LSB = (16384, 8192, 4096, 2048)
GYRO_LSB = (131.0, 65.5, 32.8, 16.4)


def _sat(v):
    v = int(round(v))
    return -32768 if v < -32768 else 32767 if v > 32767 else v


class MPU6050Model(RegisterTarget):
    reset_values = {0x6B: 0x40, 0x75: 0x68}
    read_only = (0x75,) + tuple(range(0x3B, 0x49))

    def __init__(self, bus, addr=0x68, reset_reads=1):
        self.who_am_i = 0x68
        self.reset_reads = reset_reads
        self._resetting = 0
        self.accel_g = (0.0, 0.0, 1.0)
        self.gyro_dps = (0.0, 0.0, 0.0)
        self.temp_c = 25.0
        self.raw = None
        self.resets = 0
        RegisterTarget.__init__(self, bus, addr)

    def asleep(self):
        return bool(self.regs[0x6B] & 0x40)

    def on_write(self, reg, value):
        if reg == 0x6B and value & 0x80:
            self.resets += 1
            self.reset()
            self.regs[0x6B] = 0x40 | 0x80
            self._resetting = self.reset_reads

    def sample(self):
        if self.raw is not None:
            vals = self.raw
        else:
            a = ACCEL_LSB[(self.regs[0x1C] >> 3) & 3]
            g = GYRO_LSB[(self.regs[0x1B] >> 3) & 3]
            ax, ay, az = self.accel_g
            gx, gy, gz = self.gyro_dps
            vals = (_sat(ax * a), _sat(ay * a), _sat(az * a), _sat((self.temp_c - 36.53) * 340),
                    _sat(gx * g), _sat(gy * g), _sat(gz * g))
        for i, v in enumerate(vals):
            put_s16_be(self.regs, 0x3B + 2 * i, v)

    def on_read(self, reg):
        if reg == 0x75:
            return self.who_am_i
        if reg == 0x6B and self._resetting:
            self._resetting -= 1
            if not self._resetting:
                self.regs[0x6B] &= 0x7F
            return self.regs[0x6B] | 0x80
        if reg == 0x3B and not self.asleep():
            self.sample()
        return self.regs[reg]
