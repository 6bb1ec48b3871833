"""MQTT 3.1.1 for devices: a sans-I/O codec (``codec``) and a small blocking socket client (``client``).

The codec turns packets into bytes and bytes into packets and never touches a socket, so the same core
runs on MicroPython and CPython and is tested byte by byte. The client is the thin socket adapter.
"""
