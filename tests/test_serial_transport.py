"""The pyserial transport against a real MicroPython board on a pseudo-terminal (the serial_device fixture)."""
import os
import pty
import time
import tty

import pytest
import serial

from edgepoi_host.serial import framing
from edgepoi_host.serial.errors import DeviceError, TransportError, TransportTimeout
from edgepoi_host.serial.fs import DeviceFS
from edgepoi_host.serial.transport import SerialTransport, board_info


@pytest.fixture
def transport(serial_device):
    t = SerialTransport(serial_device.port, timeout=2, enter_timeout=2)
    t.open()
    yield t
    t.close()


def one_line(e):
    text = str(e)
    assert "\n" not in text and text
    return text


def test_eval_returns_the_values_cpython_computes_for_the_same_expression(transport):
    expr = "[1, -2**40, 2.5, 'h\\u00e9', b'\\x00\\xff\\x04', (None, True), {'k': [3]}, 7 // 2]"
    assert transport.eval(expr) == eval(expr)
    assert transport.conn.raw_paste is True and transport.conn.window > 0


def test_exec_streams_stdout_and_returns_all_of_it(transport):
    chunks = []
    out = transport.exec("for i in range(300):\n print(i)", on_output=chunks.append)
    assert out == "".join("%d\n" % i for i in range(300)).encode()
    assert b"".join(chunks) == out


def test_code_much_larger_than_the_window_runs_intact(transport):
    blob = bytes(range(256)) * 200
    out = transport.exec("import hashlib, binascii\nx = %r\nprint(len(x), binascii.hexlify(hashlib.sha256(x)"
                         ".digest()).decode())" % blob)
    import hashlib
    assert out.split() == [str(len(blob)).encode(), hashlib.sha256(blob).hexdigest().encode()]


def test_plain_raw_repl_fallback_works_on_the_real_board(serial_device):
    with SerialTransport(serial_device.port, timeout=2, raw_paste=False) as t:
        out = t.exec("x = %r\nprint(len(x))" % ("a" * 3000))
        assert out == b"3000\n" and t.conn.raw_paste is False


def test_a_device_traceback_is_a_device_error_and_the_session_goes_on(transport):
    with pytest.raises(DeviceError) as ei:
        transport.exec("def f():\n    open('/no/such/file')\nf()")
    assert ei.value.exc_type == "OSError"
    assert "ENOENT" in ei.value.value or "2" in ei.value.value
    assert len(ei.value.traceback) == 2
    assert transport.eval("40 + 2") == 42


def test_code_that_runs_too_long_times_out_then_the_session_recovers(transport):
    t0 = time.monotonic()
    with pytest.raises(TransportError) as ei:
        transport.exec("import time\ntime.sleep(2.5)\nprint('late')", timeout=0.7)
    assert time.monotonic() - t0 < 2.0
    msg = one_line(ei.value)
    assert transport.port in msg and "no answer" in msg and isinstance(ei.value, TransportTimeout)
    time.sleep(2.2)                       # the board finishes; the stale output is skipped on re-entering
    assert transport.eval("'fresh'") == "fresh"


def test_a_board_killed_mid_transfer_fails_within_the_timeout_and_the_next_run_completes(serial_device):
    old, data = os.urandom(30000), os.urandom(60000)
    t = SerialTransport(serial_device.port, timeout=1.5).open()
    fs = DeviceFS(t, budget=4096)
    fs.put(old, "model.bin")
    sent = []

    def cut_power(n):
        sent.append(n)
        if len(sent) == 2:
            serial_device.kill()

    t0 = time.monotonic()
    with pytest.raises(TransportError) as ei:
        fs.put_many([("model.bin", data)], progress=cut_power)
    assert time.monotonic() - t0 < 4.0
    assert serial_device.port in one_line(ei.value)
    with open(os.path.join(serial_device.flash_dir, "model.bin"), "rb") as f:
        assert f.read() == old                # the old file is intact: no half-written file in its place
    assert os.path.exists(os.path.join(serial_device.flash_dir, "model.bin.ep~"))

    serial_device.start()                 # power back on: the same transport re-enters raw REPL
    report = fs.sync({"model.bin": data}, ".")
    assert report.sent == ["model.bin"]
    with open(os.path.join(serial_device.flash_dir, "model.bin"), "rb") as f:
        assert f.read() == data
    assert fs.ls(".") == [("model.bin", len(data))]   # the leftover temp file is gone
    t.close()


def test_an_idle_board_that_died_gives_a_clear_error_within_the_timeout(serial_device):
    with SerialTransport(serial_device.port, timeout=1.0, enter_timeout=1.0) as t:
        serial_device.kill()
        t0 = time.monotonic()
        with pytest.raises(TransportError) as ei:
            t.exec("print(1)")
        assert time.monotonic() - t0 < 3.0
        assert "did it reset or lose power" in one_line(ei.value)


def test_opening_a_missing_port_says_what_to_try():
    with pytest.raises(TransportError) as ei:
        SerialTransport("/dev/edgepoi-no-such-port").open()
    assert "could not open /dev/edgepoi-no-such-port" in one_line(ei.value)
    assert "plugged in" in str(ei.value)


def test_a_port_held_by_another_program_is_reported(serial_device):
    holder = serial.Serial(serial_device.port, exclusive=True)
    try:
        with pytest.raises(TransportError) as ei:
            SerialTransport(serial_device.port).open()
        assert "another program holding the port" in one_line(ei.value)
    finally:
        holder.close()


def test_a_port_where_no_micropython_answers_fails_to_enter_raw_repl_in_time():
    master, slave = pty.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    try:
        t0 = time.monotonic()
        with pytest.raises(TransportError) as ei:
            SerialTransport(path, enter_timeout=0.8).open()
        assert time.monotonic() - t0 < 2.5
        msg = one_line(ei.value)
        assert msg == ("could not enter raw REPL on %s: is another program holding the port? is the board "
                       "running MicroPython?" % path)
    finally:
        os.close(master)
        os.close(slave)


def test_close_leaves_the_board_in_the_friendly_repl_for_the_next_tool(serial_device):
    t = SerialTransport(serial_device.port).open()
    assert t.conn.state == framing.READY
    t.close()
    with serial.Serial(serial_device.port, timeout=0.5) as s:
        s.write(b"\r")
        assert b">>> " in s.read(200)


def test_a_host_that_vanished_mid_raw_paste_leaves_a_board_the_next_run_can_use(serial_device):
    s = serial.Serial(serial_device.port, timeout=0.5)
    s.write(b"\r\x03\x03\x01")
    assert s.read_until(framing.BANNER).endswith(framing.BANNER)
    s.write(framing.PASTE_REQUEST)
    assert s.read(4).startswith(b"R\x01")
    s.write(b"x = b'" + b"a" * 100)          # half a statement, then the host is gone
    s.close()
    with SerialTransport(serial_device.port, timeout=2, enter_timeout=2) as t:
        assert t.eval("'x' in globals()") is False
        assert t.eval("6 * 7") == 42


def test_a_host_that_vanished_while_the_board_was_printing_leaves_a_usable_board(serial_device):
    s = serial.Serial(serial_device.port, timeout=0.5)
    s.write(b"\r\x03\x03\x01")
    s.read_until(framing.BANNER)
    s.write(framing.PASTE_REQUEST)
    s.read(5)
    s.write(b"for i in range(20000):\n print('line', i)\n\x04")
    s.read(100)
    s.close()
    with SerialTransport(serial_device.port, timeout=2, enter_timeout=3) as t:
        assert t.exec("print('mine')") == b"mine\n"


def test_soft_reset_on_the_unix_port_ends_it_and_says_so(serial_device):
    with SerialTransport(serial_device.port, timeout=1) as t:
        with pytest.raises(TransportError) as ei:
            t.soft_reset()
        assert "did not come back to the raw REPL" in one_line(ei.value)
    serial_device.proc.wait(5)
    assert not serial_device.alive           # the unix port has no soft reset: Ctrl-D ends it


def test_board_info_reports_what_mpy_cross_and_the_interpreter_say(transport):
    import platform
    import re
    import subprocess
    info = board_info(transport)
    emits = subprocess.run(["mpy-cross", "--version"], capture_output=True, text=True).stdout
    assert "mpy v%s" % info["mpy"] in emits
    assert emits.startswith("MicroPython v%s" % info["version"])
    assert info["arch"] == {"x86_64": "x64", "aarch64": None}.get(platform.machine(), info["arch"])
    assert info["platform"] == "linux" and info["mem_free"] > 0
    assert re.match(r"\d+\.\d+\.\d+$", info["version"])
