"""Linux ``/dev/i2c-N`` with MicroPython machine.I2C's method names (CPython on a Raspberry Pi and similar).

    from edgepoi.sensors.linux_i2c import LinuxI2C
    bus = LinuxI2C(1)                                  # or LinuxI2C("/dev/i2c-1")
    buf = bytearray(1); bus.readfrom_mem_into(0x76, 0xD0, buf)

Register reads are one I2C_RDWR ioctl (register write, repeated start, read), as machine.I2C does;
plain reads and writes select the address with I2C_SLAVE and use read()/write() on the file.
CPython only (fcntl, ctypes); kept apart from edgepoi.sensors.i2c so a MicroPython board never
loads it.
"""
from edgepoi.sensors.i2c import SensorError

_I2C_SLAVE = 0x0703
_I2C_RDWR = 0x0707
_I2C_M_RD = 0x0001


class LinuxI2C:
    """``/dev/i2c-N`` (a bus number or a device path); OSError from the kernel on a NACK."""

    _structs = None

    def __init__(self, bus):
        import ctypes
        import fcntl
        import os
        self._os, self._ioctl, self._ct = os, fcntl.ioctl, ctypes
        if LinuxI2C._structs is None:
            class Msg(ctypes.Structure):          # struct i2c_msg (linux/i2c.h)
                _fields_ = [("addr", ctypes.c_uint16), ("flags", ctypes.c_uint16),
                            ("len", ctypes.c_uint16), ("buf", ctypes.c_void_p)]

            class RdWr(ctypes.Structure):         # struct i2c_rdwr_ioctl_data (linux/i2c-dev.h)
                _fields_ = [("msgs", ctypes.POINTER(Msg)), ("nmsgs", ctypes.c_uint32)]
            LinuxI2C._structs = (Msg, RdWr)
        self.path = bus if isinstance(bus, str) else "/dev/i2c-%d" % bus
        try:
            self._fd = os.open(self.path, os.O_RDWR)
        except OSError as e:
            raise SensorError("cannot open I2C bus %s: %s" % (self.path, e))

    def __repr__(self):
        return self.path

    def writeto(self, addr, buf, stop=True):
        self._ioctl(self._fd, _I2C_SLAVE, addr)
        n = self._os.write(self._fd, bytes(buf))
        if n != len(buf):
            raise OSError(5, "short I2C write")
        return 1

    def readfrom_into(self, addr, buf, stop=True):
        self._ioctl(self._fd, _I2C_SLAVE, addr)
        data = self._os.read(self._fd, len(buf))
        if len(data) != len(buf):
            raise OSError(5, "short I2C read")
        buf[:] = data

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        self.writeto(addr, bytes((memaddr,)) + bytes(buf))

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        ct = self._ct
        msg, rdwr = self._structs
        reg = ct.create_string_buffer(bytes((memaddr,)), 1)
        out = ct.create_string_buffer(len(buf))
        msgs = (msg * 2)(msg(addr, 0, 1, ct.addressof(reg)), msg(addr, _I2C_M_RD, len(buf), ct.addressof(out)))
        self._ioctl(self._fd, _I2C_RDWR, rdwr(msgs, 2))
        buf[:] = out.raw

    def close(self):
        self._os.close(self._fd)
