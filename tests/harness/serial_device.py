"""The pseudo-terminal MicroPython board for provisioning and transport tests.

It lives in product code (``edgepoi_host.runtime.ptyboard``, the demo uses it too); this module re-exports
it so tests keep importing ``from harness.serial_device import SerialDevice``.
"""
from edgepoi_host.runtime.ptyboard import SerialDevice  # noqa: F401
