"""The textual console under textual's test pilot, against a real Mosquitto, real MicroPython devices
(edgepoi_host.sim.Fleet), real attestations and a real registry database.

pytest-asyncio is not installed: each test drives ``app.run_test()`` through ``asyncio.run``.
"""
import asyncio
import os
import time

import paho.mqtt.client as mqtt

from edgepoi import attest, cbor
from edgepoi.counter import FileCounter
from edgepoi.keys import open_key
from edgepoi_host.console.app import ConsoleApp
from edgepoi_host.console.decode import KeyRing
from edgepoi_host.console.source import ALL_TOPICS, Source
from edgepoi_host.edge import db, registry

SIZE = (150, 40)


class Pub:
    def __init__(self, url):
        host, port = url.rsplit("/", 1)[1].split(":")
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-pub-" + os.urandom(3).hex())
        self.c.connect(host, int(port))
        self.c.loop_start()

    def send(self, topic, payload, retain=False):
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def telemetry(dev, seq, q=0):
    return cbor.dumps({"dev": dev, "seq": seq, "ts": 1795970626, "readings": {"temp_c": 20.0 + seq},
                       "inference": {"out": [0.25, 0.75], "backend": "numpy"}, "q": q})


def signer(tmp_path, reg, dev):
    key = open_key("file:%s" % (tmp_path / (dev + ".pem")))
    reg.register(dev, key.public_key(), kind="file")
    att = attest.Attester(key, dev, FileCounter(str(tmp_path / (dev + ".seq"))), attest.MemoryStore())
    return lambda: att.attest(attest.digest(b"m"), attest.digest(b"i"), b"\x05", 64, "numpy", True, 1,
                              b"n" * 16)


async def until(pilot, cond, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        await pilot.pause(0.1)


def row(app, dev):
    from textual.widgets import DataTable
    return [str(c) for c in app.query_one("#devices", DataTable).get_row(dev)]


def status_bar(app):
    from textual.widgets import Static
    return str(app.query_one("#status", Static).render())


def test_devices_appear_verdicts_show_and_foreign_traffic_creates_no_device(broker, tmp_path):
    reg = registry.Registry(db.connect("sqlite:///%s" % (tmp_path / "edge.db")))
    sign_a, sign_b = signer(tmp_path, reg, "dev-a"), signer(tmp_path, reg, "dev-b")
    app = ConsoleApp(Source(broker.url, ALL_TOPICS, KeyRing(reg)))
    shot = tmp_path / "shots"
    shot.mkdir()

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.source.state == "connected", "connection")
            pub = Pub(broker.url)
            pub.send("edgepoi/v1/dev-a/status", b"online", retain=True)
            for seq in range(3):
                pub.send("edgepoi/v1/dev-a/telemetry", telemetry("dev-a", seq, q=seq))
            pub.send("edgepoi/v1/dev-a/attest", sign_a())
            forged = bytearray(sign_b())
            forged[-7] ^= 0x10
            pub.send("edgepoi/v1/dev-b/attest", bytes(forged))
            pub.send("zigbee2mqtt/lamp", b'{"state": "ON", "brightness": 254}')
            pub.send("foo/bar", os.urandom(64))
            pub.send("edgepoi/v1/dev-c/cmd/ping", b"")          # to a device that never spoke
            pub.close()
            await until(pilot, lambda: app.model.total >= 9, "9 messages")
            await pilot.pause(0.6)                  # the table refreshes every 0.5 s
            a, b = row(app, "dev-a"), row(app, "dev-b")
            assert a[0:2] == ["dev-a", "online"] and a[4:7] == ["2", "2", "[0.25, 0.75] numpy"]
            assert a[7] == "verified (1/1)" and "temp_c=22" in a[8]
            assert b[0] == "dev-b" and b[1] == "seen" and b[7] == "bad signature (1/1)"
            assert sorted(app.model.devices) == ["dev-a", "dev-b"]
            lines = app.stream_text()
            assert any("zigbee2mqtt/lamp json" in ln and '"state":"ON"' in ln for ln in lines)
            assert any(ln[9:].startswith("foo/bar binary bytes=64") for ln in lines)
            assert any("dev-b" in ln and "bad signature" in ln for ln in lines)
            assert any("dev-a" in ln and "verified" in ln and "output=05" in ln for ln in lines)
            bar = status_bar(app)
            assert broker.url in bar and "connected" in bar and "2 devices (1 online)" in bar
            assert "2 foreign" in bar
            path = app.save_screenshot(path=str(shot), filename="console.svg")
            return open(path).read()

    svg = asyncio.run(scenario())
    assert "dev-a" in svg and "bad&#160;signature" in svg and "verified&#160;(1/1)" in svg


def test_a_micropython_device_appears_and_goes_offline_when_killed(broker, tmp_path):
    from edgepoi_host.sim import Fleet
    fleet = Fleet(broker.url, count=1, workdir=str(tmp_path / "fleet"), period_s=0.5)
    fleet.devices[0].config["keepalive"] = 5
    app = ConsoleApp(Source(broker.url))

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.source.state == "connected", "connection")
            fleet.start()
            try:
                await until(pilot, lambda: "sim-01" in app.model.devices
                            and app.model.devices["sim-01"].status == "online"
                            and app.model.devices["sim-01"].telemetry >= 2, "sim-01 online", 60)
                await until(pilot, lambda: row(app, "sim-01")[1] == "online", "the table row online", 2)
                fleet.devices[0].kill()
                await until(pilot, lambda: app.model.devices["sim-01"].status == "offline",
                            "the Last Will", 20)
                await until(pilot, lambda: row(app, "sim-01")[1] == "offline", "the table row offline", 2)
                assert any(ln.split()[1:4] == ["sim-01", "status", "status=offline"]
                           for ln in app.stream_text())
            finally:
                fleet.stop()

    asyncio.run(scenario())


def test_keys_pause_clear_and_filter_by_device(broker):
    app = ConsoleApp(Source(broker.url))

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.source.state == "connected", "connection")
            pub = Pub(broker.url)
            for dev in ("dev-a", "dev-b"):
                pub.send("edgepoi/v1/%s/telemetry" % dev, telemetry(dev, 0))
            await until(pilot, lambda: len(app.model.devices) == 2, "two devices")
            await pilot.press("p")
            pub.send("edgepoi/v1/dev-a/telemetry", telemetry("dev-a", 1))
            await until(pilot, lambda: app.model.total == 3, "a third message")
            assert not any("seq=1" in ln for ln in app.stream_text()) and "PAUSED (1 hidden)" in status_bar(app)
            await pilot.press("p")
            assert any("1 messages arrived while paused" in ln for ln in app.stream_text())
            await pilot.press("c")
            await pilot.pause(0.1)
            assert app.stream_text() == []
            await pilot.press("down")           # cursor on the second row: dev-b
            await pilot.press("f")
            assert app.device_filter == "dev-b" and "filter: dev-b" in status_bar(app)
            for dev in ("dev-a", "dev-b"):
                pub.send("edgepoi/v1/%s/telemetry" % dev, telemetry(dev, 2))
            await until(pilot, lambda: app.model.total == 5, "two more messages")
            await pilot.pause(0.2)
            lines = app.stream_text()
            assert len(lines) == 1 and "dev-b" in lines[0] and "seq=2" in lines[0]
            await pilot.press("f")
            pub.send("edgepoi/v1/dev-a/telemetry", telemetry("dev-a", 3))
            await until(pilot, lambda: len(app.stream_text()) == 2, "dev-a shown again")
            pub.close()
            await pilot.press("q")
        assert app.return_code == 0

    asyncio.run(scenario())


def test_console_reconnects_when_the_broker_restarts(broker):
    app = ConsoleApp(Source(broker.url))

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.source.state == "connected", "connection")
            broker.stop()
            await until(pilot, lambda: app.source.state != "connected", "disconnection")
            await pilot.pause(0.3)
            assert "disconnected" in status_bar(app)
            broker.start()
            await until(pilot, lambda: app.source.connects == 2 and app.source.state == "connected",
                        "reconnection", 20)
            pub = Pub(broker.url)
            pub.send("edgepoi/v1/dev-r/status", b"online", retain=True)
            pub.close()
            await until(pilot, lambda: "dev-r" in app.model.devices, "a message after the restart")
            await pilot.pause(0.6)
            assert row(app, "dev-r")[1] == "online" and "connected" in status_bar(app)

    asyncio.run(scenario())


def test_a_tick_during_shutdown_is_harmless(broker):
    """The poll timer can fire after exit removed the widgets (seen once in CI): it must do nothing,
    and leave what the broker sent queued rather than half-applied."""
    app = ConsoleApp(Source(broker.url, ALL_TOPICS, KeyRing()))

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.source.state == "connected", "connection")
        total = app.model.total
        app.poll()                                   # the widgets are gone now
        return total

    total = asyncio.run(scenario())
    assert app.model.total == total
