"""The harness itself: a private broker that can be stopped, killed and restarted; MicroPython failures
surface as test failures with the device traceback; a serial-attached board speaks raw REPL."""
import os
import socket
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest
import serial

from edgepoi_host.runtime.micropython import MicroPythonError


def _client(broker, client_id, clean=True):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    got = []
    c.on_message = lambda cl, ud, m: got.append((m.topic, bytes(m.payload), m.retain))
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c, got


def _wait(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_broker_is_private_and_not_the_system_one(broker):
    assert broker.port != 1883
    with socket.create_connection((broker.host, broker.port), timeout=2):
        pass
    assert "max_queued_messages 0" in broker.config_text()


def test_persistent_session_survives_a_graceful_broker_restart(broker):
    sub, got = _client(broker, "keeper", clean=False)
    sub.subscribe("t/#", qos=1)
    time.sleep(0.3)
    sub.disconnect()
    sub.loop_stop()
    pub, _ = _client(broker, "pub")
    for i in range(50):
        pub.publish("t/x", b"m%d" % i, qos=1).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()
    broker.stop()
    assert not broker.running
    broker.start()
    sub, got = _client(broker, "keeper", clean=False)
    assert _wait(lambda: len(got) >= 50), "only %d of 50 queued messages after restart" % len(got)
    assert sorted(p for _, p, _ in got) == sorted(b"m%d" % i for i in range(50))
    sub.disconnect()
    sub.loop_stop()


def test_killed_broker_restarts_on_the_same_port_and_keeps_saved_retained(broker):
    pub, _ = _client(broker, "pub")
    pub.publish("edgepoi/v1/d/status", b"online", qos=1, retain=True).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()
    # autosave_interval 1: wait until the broker has written its persistence file after the publish
    db = os.path.join(broker.workdir, "data", "mosquitto.db")
    published = time.time()
    assert _wait(lambda: os.path.exists(db) and os.path.getmtime(db) > published), "no autosave"
    port = broker.port
    broker.kill()
    with pytest.raises(OSError):
        socket.create_connection((broker.host, port), timeout=0.5).close()
    broker.start()
    assert broker.port == port
    sub, got = _client(broker, "reader")
    sub.subscribe("edgepoi/v1/+/status", qos=1)
    assert _wait(lambda: got), "retained status lost across a kill after autosave"
    assert got[0] == ("edgepoi/v1/d/status", b"online", True)
    sub.disconnect()
    sub.loop_stop()


def test_micropython_traceback_fails_with_the_device_traceback(micropython):
    mp = micropython(heapsize="32K")
    with pytest.raises(MicroPythonError) as e:
        mp.run_code("def f():\n    raise ValueError('boom from device')\nf()")
    assert "boom from device" in str(e.value)
    assert "Traceback" in str(e.value)


def test_micropython_heapsize_is_enforced(micropython):
    mp = micropython(heapsize="32K")
    out = mp.run_code("import gc; gc.collect(); print(gc.mem_free() + gc.mem_alloc())").stdout
    assert int(out) <= 32 * 1024
    with pytest.raises(MicroPythonError) as e:
        mp.run_code("x = bytearray(64 * 1024)")
    assert "MemoryError" in str(e.value)


def test_micropython_sees_the_sdk(micropython):
    out = micropython().run_code("import edgepoi, sys; print(sys.implementation.name, edgepoi.__version__)")
    assert out.stdout.split() == ["micropython", __import__("edgepoi").__version__]


def _raw_exec(port, code, timeout=5):
    with serial.Serial(port, 115200, timeout=timeout) as s:
        s.write(b"\r\x03\x03")
        time.sleep(0.2)
        s.reset_input_buffer()
        s.write(b"\x01")
        assert s.read_until(b"raw REPL; CTRL-B to exit\r\n>").endswith(b">")
        s.write(code.encode() + b"\x04")
        assert s.read(2) == b"OK"
        out = s.read_until(b"\x04")
        err = s.read_until(b"\x04")
        s.write(b"\x02")
        return out[:-1], err[:-1]


def test_serial_device_runs_code_in_its_flash_folder(serial_device, tmp_path):
    out, err = _raw_exec(serial_device.port, "f = open('boot.txt', 'w'); f.write('hi'); f.close(); "
                                             "import os; print(os.listdir())")
    assert err == b""
    assert b"boot.txt" in out
    assert (tmp_path / "flash" / "boot.txt").read_text() == "hi"
    out, err = _raw_exec(serial_device.port, "1/0")
    assert b"ZeroDivisionError" in err


def test_serial_device_power_cut_and_restart(serial_device):
    serial_device.kill()
    with serial.Serial(serial_device.port, 115200, timeout=0.5) as s:
        s.write(b"\r\x01")
        assert s.read(100) == b""  # a dead board answers nothing
    serial_device.start()
    out, err = _raw_exec(serial_device.port, "print(6*7)")
    assert out.strip() == b"42"


def test_mpremote_lists_files_on_the_serial_device(serial_device, tmp_path):
    (tmp_path / "flash" / "main.py").write_text("print('hello')\n")
    res = subprocess.run(["mpremote", "connect", serial_device.port, "resume", "ls"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert "main.py" in res.stdout
