"""Sensor drivers behind one small interface: ``read() -> dict`` of named readings (floats, SI-ish units).

Every driver has ``name`` (a short id) and ``fields`` (the reading names it returns, with units), so the
edge node and Home Assistant discovery can describe them without reading any data.
"""



class ConfigError(ValueError):
    """A device config (or its sensor section) that cannot be used; the message names the field."""
