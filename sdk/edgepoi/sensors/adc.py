"""An analog input through MicroPython's ``machine.ADC``: ``read_u16()`` scaled to volts (or any unit).

    from edgepoi.sensors.adc import ADCSensor
    light = ADCSensor(pin=34, atten="11DB", scale=3.3, field="light", unit="V")
    light.read()   # {'light': 1.234}

value = read_u16() / 65535 * scale + offset, averaged over ``samples`` conversions. ``atten`` and
``width`` are applied where the port has them (ESP32: ADC.ATTN_0DB/2_5DB/6DB/11DB, ADC.WIDTH_9..12BIT);
a port without them ignores them, an unknown name raises SensorError. Any object with
``read_u16()`` can be passed as ``adc`` (tests do). A Pi has no ADC: use an I2C ADC there.
"""
from edgepoi.sensors.i2c import SensorError


def open_adc(pin, atten=None, width=None, machine=None):
    """machine.ADC(machine.Pin(pin)) with attenuation / width where the port supports them."""
    if machine is None:
        try:
            import machine
        except ImportError:
            raise SensorError("adc on pin %s: this platform has no machine.ADC" % (pin,))
    if not hasattr(machine, "ADC"):
        raise SensorError("adc on pin %s: this port's machine module has no ADC" % (pin,))
    try:
        adc = machine.ADC(machine.Pin(int(pin)))
    except (ValueError, OSError, TypeError) as e:
        raise SensorError("adc on pin %s: %s" % (pin, e))
    if atten is not None and hasattr(adc, "atten"):
        const = getattr(machine.ADC, "ATTN_" + str(atten).upper(), None)
        if const is None:
            raise SensorError("adc on pin %s: unknown attenuation %r (e.g. 0DB, 2_5DB, 6DB, 11DB)"
                              % (pin, atten))
        adc.atten(const)
    if width is not None and hasattr(adc, "width"):
        const = getattr(machine.ADC, "WIDTH_%dBIT" % int(width), None)
        if const is None:
            raise SensorError("adc on pin %s: unsupported width %r bits" % (pin, width))
        adc.width(const)
    return adc


class ADCSensor:
    name = "adc"

    def __init__(self, pin=None, adc=None, scale=3.3, offset=0.0, samples=1, field="volts", unit="V",
                 atten=None, width=None, name=None, machine=None):
        """Args: pin (GPIO number) or adc (an object with read_u16()), scale (value at full scale),
        offset, samples (conversions averaged per read), field / unit (the reading's name and unit),
        atten / width (port-specific), machine (the machine module; tests pass a model)."""
        if name:
            self.name = name
        if adc is None:
            if pin is None:
                raise SensorError("adc: give a pin or an adc object")
            adc = open_adc(pin, atten, width, machine)
        if not hasattr(adc, "read_u16"):
            raise SensorError("adc on pin %s: the ADC object has no read_u16()" % (pin,))
        if int(samples) < 1:
            raise SensorError("adc: samples must be >= 1")
        self.adc = adc
        self.pin = pin
        self.scale = float(scale)
        self.offset = float(offset)
        self.samples = int(samples)
        self.field = field
        self.fields = ((field, unit),)

    def read(self):
        total = 0
        try:
            for _ in range(self.samples):
                total += self.adc.read_u16()
        except OSError as e:
            raise SensorError("adc on pin %s: %s" % (self.pin, e))
        return {self.field: total / self.samples / 65535 * self.scale + self.offset}
