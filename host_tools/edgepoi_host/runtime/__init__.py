"""Launchers for the real components edgepoi runs beside: Mosquitto and the MicroPython unix port.

Used by the demo, the simulator and the test harness alike, so what the tests start is what users run.
"""
