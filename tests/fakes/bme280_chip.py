"""Register-level model of a Bosch BME280 on I2C, written from the datasheet (CPython and MicroPython).

    bus = FakeBus()
    chip = BME280Model(bus, 0x76, cal=DATASHEET_CAL)
    chip.adc = (519888, 415148, 30000)     # raw (adc_T, adc_P, adc_H) the next measurement produces

Register map: id 0xD0 = 0x60; reset 0xE0 (0xB6 resets, anything else ignored); NVM trimming values at
0x88..0xA1 and 0xE1..0xE7 (read-only, copied in after reset while status.im_update (bit 0) reads 1);
ctrl_hum 0xF2 (latched only by a following ctrl_meas write), status 0xF3, ctrl_meas 0xF4, config 0xF5,
data 0xF7..0xFE, reset values 0x80 0x00 0x00 / 0x80 0x00 0x00 / 0x80 0x00 (= "skipped"). I2C writes
are (register, value) pairs (no auto-increment in write mode); reads auto-increment.
Forced mode: a ctrl_meas write with mode 01/10 starts a conversion; status.measuring (bit 3) reads 1
for ``busy_reads`` status reads, then the data registers hold the new values and the mode is back
to sleep (00). Normal mode: the data registers always hold the newest values. A quantity whose
oversampling is 0 reads as skipped (0x80000 / 0x8000).

Fault injection: ``chip_id``, ``nack`` / ``nack_after`` (from RegisterTarget), ``stuck_measuring``.
"""
from i2c_target import RegisterTarget

# BMP280 datasheet section 3.12 example trimming values (T and P are the BME280's too) and a real
# BME280's humidity trimming values.
DATASHEET_CAL = (27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000,
                 75, 362, 0, 313, 50, 30)


def encode_calibration(cal):
    """dig_T1..dig_H6 -> {register: byte} as the NVM holds them."""
    out = {}
    regs = list(range(0x88, 0xA0, 2))
    for reg, v in zip(regs, cal[:12]):
        v &= 0xFFFF
        out[reg] = v & 0xFF
        out[reg + 1] = v >> 8
    h1, h2, h3, h4, h5, h6 = cal[12:]
    out[0xA0] = 0x00
    out[0xA1] = h1 & 0xFF
    out[0xE1] = h2 & 0xFF
    out[0xE2] = (h2 >> 8) & 0xFF
    out[0xE3] = h3 & 0xFF
    out[0xE4] = (h4 >> 4) & 0xFF                    # dig_H4 [11:4]
    out[0xE5] = (h4 & 0x0F) | ((h5 & 0x0F) << 4)   # dig_H4 [3:0], dig_H5 [3:0]
    out[0xE6] = (h5 >> 4) & 0xFF                    # dig_H5 [11:4]
    out[0xE7] = h6 & 0xFF
    return out


class BME280Model(RegisterTarget):
    write_pairs = True
    read_only = tuple(range(0x88, 0xA2)) + tuple(range(0xD0, 0xE0)) + tuple(range(0xE1, 0xF2)) + \
        (0xF3,) + tuple(range(0xF7, 0xFF))

    def __init__(self, bus, addr=0x76, cal=DATASHEET_CAL, busy_reads=2, nvm_reads=1):
        self.cal = cal
        self.chip_id = 0x60
        self.busy_reads = busy_reads
        self.nvm_reads = nvm_reads
        self.stuck_measuring = False
        self.adc = (0x80000, 0x80000, 0x8000)
        self.conversions = 0
        self.resets = 0
        RegisterTarget.__init__(self, bus, addr)

    def reset(self):
        RegisterTarget.reset(self)
        for r, v in encode_calibration(self.cal).items():
            self.regs[r] = v
        self.regs[0xF7] = self.regs[0xFA] = self.regs[0xFD] = 0x80
        self.hum_latched = 0
        self._busy = 0
        self._nvm_busy = getattr(self, "nvm_reads", 0)

    def on_write(self, reg, value):
        if reg == 0xE0:
            if value == 0xB6:
                self.resets += 1
                self.reset()
            else:
                self.regs[0xE0] = 0
        elif reg == 0xF4:
            self.hum_latched = self.regs[0xF2] & 0x07
            mode = value & 0x03
            if mode in (1, 2):
                self._busy = self.busy_reads
                self.conversions += 1
                if not self._busy:
                    self._finish()
            elif mode == 3:
                self._latch()

    def _latch(self):
        t, p, h = self.adc
        if not (self.regs[0xF4] >> 5):
            t = 0x80000
        if not ((self.regs[0xF4] >> 2) & 7):
            p = 0x80000
        if not self.hum_latched:
            h = 0x8000
        r = self.regs
        r[0xF7], r[0xF8], r[0xF9] = (p >> 12) & 0xFF, (p >> 4) & 0xFF, (p & 0x0F) << 4
        r[0xFA], r[0xFB], r[0xFC] = (t >> 12) & 0xFF, (t >> 4) & 0xFF, (t & 0x0F) << 4
        r[0xFD], r[0xFE] = h >> 8, h & 0xFF

    def _finish(self):
        self._latch()
        self.regs[0xF4] &= 0xFC            # back to sleep mode

    def on_read(self, reg):
        if reg == 0xD0:
            return self.chip_id
        if reg == 0xF3:
            st = 0
            if self._nvm_busy:
                self._nvm_busy -= 1
                st |= 0x01
            if self.stuck_measuring:
                return st | 0x08
            if self._busy:
                self._busy -= 1
                if not self._busy:
                    self._finish()
                return st | 0x08
            return st
        if reg == 0xF7 and self.regs[0xF4] & 0x03 == 3:
            self._latch()
        return self.regs[reg]
