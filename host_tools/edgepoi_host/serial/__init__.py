"""Host side of the USB-serial link to a MicroPython board: raw-REPL framing, pyserial transport, files.

Usage::

    from edgepoi_host.serial import SerialTransport, DeviceFS
    with SerialTransport("/dev/ttyUSB0") as t:
        print(t.eval("1 + 1"))
        DeviceFS(t).sync("build/bundle", "/")
"""
from .errors import (DeviceError, LocalProtocolError, ProtocolError, SerialError,  # noqa: F401
                     TransportError, TransportTimeout)


def __getattr__(name):
    # Lazy: the framing core imports nothing but the stdlib; pyserial/rich load only when used.
    if name == "SerialTransport":
        from .transport import SerialTransport
        return SerialTransport
    if name == "DeviceFS":
        from .fs import DeviceFS
        return DeviceFS
    raise AttributeError(name)
