"""A tiny portable I2C layer for sensor drivers: register access with explicit errors, bus lookup.

A bus is any object with MicroPython ``machine.I2C``'s methods ``writeto(addr, buf)``,
``readfrom_into(addr, buf)``, ``writeto_mem(addr, reg, buf)`` and ``readfrom_mem_into(addr, reg, buf)``,
raising OSError on a NACK. ``edgepoi.sensors.linux_i2c.LinuxI2C`` is that interface over
``/dev/i2c-N`` for CPython on a Pi (a module of its own: MicroPython never loads it).

    from edgepoi.sensors.i2c import open_bus, I2CDevice
    bus = open_bus(1)                      # machine.I2C(1) on MicroPython, /dev/i2c-1 on Linux
    dev = I2CDevice(bus, 0x76, "bme280")
    chip_id = dev.read_u8(0xD0)            # SensorError("bme280 at 0x76 on ...: I2C error ...")

``register_bus(name, bus)`` makes a bus object (a SoftI2C, a test model) reachable by name.
"""
_BUSES = {}


class SensorError(Exception):
    """A sensor could not be found, configured or read; the message names the part and where it is."""


def sleep_ms(ms):
    import time
    if hasattr(time, "sleep_ms"):
        time.sleep_ms(ms)
    else:
        time.sleep(ms / 1000)


def s16(msb, lsb):
    """Signed 16-bit value from two bytes."""
    v = (msb << 8) | lsb
    return v - 65536 if v & 0x8000 else v


class I2CDevice:
    """One device on a bus: register reads/writes that turn OSError into SensorError."""

    def __init__(self, bus, addr, part):
        self.bus = bus
        self.addr = addr
        self.where = "%s at 0x%02x on %s" % (part, addr, bus)
        self._b1 = bytearray(1)

    def error(self, what):
        return SensorError("%s: %s" % (self.where, what))

    def read_into(self, reg, buf):
        try:
            self.bus.readfrom_mem_into(self.addr, reg, buf)
        except OSError as e:
            raise self.error("I2C error reading register 0x%02x: %s" % (reg, e))

    def read_u8(self, reg):
        self.read_into(reg, self._b1)
        return self._b1[0]

    def write_u8(self, reg, value):
        b = self._b1
        b[0] = value
        try:
            self.bus.writeto_mem(self.addr, reg, b)
        except OSError as e:
            raise self.error("I2C error writing register 0x%02x: %s" % (reg, e))

    def check_id(self, reg, expected):
        """Read the chip id at reg; return it when it is in expected, else raise SensorError."""
        got = self.read_u8(reg)
        if got not in expected:
            raise self.error("chip id 0x%02x at register 0x%02x, expected %s (wrong part or address?)"
                             % (got, reg, " or ".join(["0x%02x" % x for x in expected])))
        return got


def register_bus(name, bus):
    """Make a bus object reachable as ``open_bus(name)`` (and as ``"i2c": name`` in a sensor spec)."""
    _BUSES[name] = bus


def open_bus(bus_id, freq=400000, sda=None, scl=None):
    """The bus named bus_id: a registered one, else machine.I2C (MicroPython) or /dev/i2c-N (Linux).

    Raises:
        SensorError: the bus cannot be opened.
    """
    if bus_id in _BUSES:
        return _BUSES[bus_id]
    import sys
    if sys.implementation.name == "micropython":
        try:
            import machine
            if sda is not None and scl is not None:
                bus = machine.I2C(int(bus_id), scl=machine.Pin(int(scl)), sda=machine.Pin(int(sda)),
                                  freq=int(freq))
            else:
                bus = machine.I2C(int(bus_id), freq=int(freq))
        except (ImportError, AttributeError, ValueError, OSError) as e:
            raise SensorError("cannot open I2C bus %s: %s" % (bus_id, e))
    else:
        from edgepoi.sensors.linux_i2c import LinuxI2C
        bus = LinuxI2C(bus_id if isinstance(bus_id, str) and not bus_id.isdigit() else int(bus_id))
    _BUSES[bus_id] = bus
    return bus
