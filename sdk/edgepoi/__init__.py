"""edgepoi: agent firmware SDK for small devices (portable core, MicroPython and CPython)."""
__version__ = "0.1.0"
