"""MQTT 3.1.1 for devices: a sans-I/O codec (``codec``), a session (``session``, what the link drives) and a
small blocking socket client (``client``); ``packets`` names the packet types for code that inspects packets.

The codec turns packets into bytes and bytes into packets and never touches a socket, so the same core
runs on MicroPython and CPython and is tested byte by byte. The client is the thin socket adapter.
"""
