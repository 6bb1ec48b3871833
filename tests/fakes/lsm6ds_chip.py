"""Register-level model of an ST LSM6DS3 / LSM6DSO on I2C, from their datasheets.

    bus = FakeBus()
    imu = LSM6DSModel(bus, 0x6A, who_am_i=0x6C)      # 0x69 LSM6DS3, 0x6C LSM6DSO
    imu.accel_g = (0, 0, 1.0); imu.gyro_dps = (0, 0, 0); imu.temp_c = 25.0

Reset values: WHO_AM_I 0x0F (read-only), CTRL3_C 0x12 = 0x04 (IF_INC), everything else 0 (power-down).
CTRL3_C.SW_RESET (bit 0) restores the reset values and reads 1 for ``reset_reads`` reads. Burst
reads and writes auto-increment only while CTRL3_C.IF_INC is set. Output registers 0x20..0x2D
(OUT_TEMP, OUTX/Y/Z_G, OUTX/Y/Z_XL, little-endian) are sampled at each read of 0x20 (or of the
first gyro/accel register) while the sensor's ODR (bits 7:4) is not power-down, converted with the
configured full scale (FS_XL: 00 ±2 g, 01 ±16, 10 ±4, 11 ±8 -> 0.061/0.488/0.122/0.244 mg/LSB;
FS_G: 00 250, 01 500, 10 1000, 11 2000 °/s -> 8.75/17.5/35/70 mdps/LSB, FS_125 4.375) and the
part's temperature sensitivity (LSM6DS3 16 LSB/°C, LSM6DSO 256 LSB/°C, 0 LSB = 25 °C).
``raw`` (7 counts: t, gx, gy, gz, ax, ay, az) overrides the physical values when set.
"""
from i2c_target import RegisterTarget, put_s16_le

XL_MG = {0: 0.061, 1: 0.488, 2: 0.122, 3: 0.244}
G_MDPS = {0: 8.75, 1: 17.5, 2: 35.0, 3: 70.0}


def _sat(v):
    v = int(round(v))
    return -32768 if v < -32768 else 32767 if v > 32767 else v


class LSM6DSModel(RegisterTarget):
    reset_values = {0x12: 0x04}
    read_only = (0x0F,) + tuple(range(0x1E, 0x2E))

    def __init__(self, bus, addr=0x6A, who_am_i=0x69, reset_reads=1):
        self.who_am_i = who_am_i
        self.reset_reads = reset_reads
        self._resetting = 0
        self.accel_g = (0.0, 0.0, 1.0)
        self.gyro_dps = (0.0, 0.0, 0.0)
        self.temp_c = 25.0
        self.raw = None
        self.resets = 0
        RegisterTarget.__init__(self, bus, addr)

    def auto_increment(self):
        return bool(self.regs[0x12] & 0x04)

    def on_write(self, reg, value):
        if reg == 0x12 and value & 0x01:
            self.resets += 1
            self.reset()
            self.regs[0x12] |= 0x01
            self._resetting = self.reset_reads

    def sample(self):
        xl_on = self.regs[0x10] >> 4
        g_on = self.regs[0x11] >> 4
        if self.raw is not None:
            t, gx, gy, gz, ax, ay, az = self.raw
        else:
            tl = 16.0 if self.who_am_i == 0x69 else 256.0
            t = _sat((self.temp_c - 25.0) * tl)
            fs_g = self.regs[0x11]
            mdps = 4.375 if fs_g & 0x02 else G_MDPS[(fs_g >> 2) & 3]
            gx, gy, gz = [_sat(v * 1000.0 / mdps) for v in self.gyro_dps]
            mg = XL_MG[(self.regs[0x10] >> 2) & 3]
            ax, ay, az = [_sat(v * 1000.0 / mg) for v in self.accel_g]
        if xl_on or g_on:
            put_s16_le(self.regs, 0x20, t)
        if g_on:
            for i, v in enumerate((gx, gy, gz)):
                put_s16_le(self.regs, 0x22 + 2 * i, v)
        if xl_on:
            for i, v in enumerate((ax, ay, az)):
                put_s16_le(self.regs, 0x28 + 2 * i, v)

    def on_read(self, reg):
        if reg == 0x0F:
            return self.who_am_i
        if reg == 0x12 and self._resetting:
            self._resetting -= 1
            if not self._resetting:
                self.regs[0x12] &= 0xFE
            return self.regs[0x12] | 0x01
        if reg in (0x20, 0x22, 0x28):
            self.sample()
        return self.regs[reg]
