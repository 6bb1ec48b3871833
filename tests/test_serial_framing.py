"""The raw-REPL sans-I/O core, byte by byte: every case fed whole, one byte at a time, and with trailing bytes.

Device replies are the bytes a MicroPython 1.29 board sends (recorded from the unix port on a raw pty).
"""
import pytest

from edgepoi_host.serial import framing as f
from edgepoi_host.serial.errors import DeviceError, LocalProtocolError, ProtocolError

BANNER_REPLY = b"\r\n>>> \r\n>>> \r\n>>> \r\nraw REPL; CTRL-B to exit\r\n>"
TRACE = (b'Traceback (most recent call last):\n  File "<stdin>", line 2, in <module>\n'
         b'ValueError: x\n')
TRAIL = b"\x01junk>after"


def entered(**kw):
    conn = f.RawRepl(**kw)
    conn.enter()
    conn.receive_data(BANNER_REPLY)
    assert conn.next_event() == f.Entered()
    return conn


def drive(conn, reply, mode):
    """Feed ``reply`` in the given mode; return (merged events, all bytes the host sent)."""
    sent = bytearray(conn.data_to_send())
    if mode == "whole":
        chunks = [reply]
    elif mode == "bytewise":
        chunks = [reply[i:i + 1] for i in range(len(reply))]
    else:
        chunks = [reply + TRAIL]
    events = []
    for chunk in chunks:
        conn.receive_data(chunk)
        while True:
            ev = conn.next_event()
            sent += conn.data_to_send()
            if ev is f.NEED_DATA:
                break
            if events and isinstance(ev, f.Output) and isinstance(events[-1], f.Output):
                events[-1] = f.Output(events[-1].data + ev.data)
            else:
                events.append(ev)
    if mode == "trailing":
        assert conn.trailing_data == TRAIL
    return events, bytes(sent)


CODE = b"print(1)\nraise ValueError('x')\n"
LONG = bytes(range(0x20, 0x7F)) * 3   # 285 bytes: three windows of 128


def case_enter():
    conn = f.RawRepl()
    sent = conn.enter()
    assert sent == b"\r\x03\x03\x01"
    return conn, BANNER_REPLY, [f.Entered()], b""


def case_paste_ok():
    conn = entered()
    conn.exec(b"print(1)")
    return (conn, b"R\x01\x80\x00\x01" + b"\x041\n\x04\x04>",
            [f.Output(b"1\n"), f.ExecResult(b"1\n", b"")], f.PASTE_REQUEST + b"print(1)\x04")


def case_paste_traceback():
    conn = entered()
    conn.exec(CODE)
    return (conn, b"R\x01\x80\x00\x01\x041\n\x04" + TRACE + b"\x04>",
            [f.Output(b"1\n"), f.ExecResult(b"1\n", TRACE)], f.PASTE_REQUEST + CODE + b"\x04")


def case_paste_windows():
    conn = entered()
    conn.exec(LONG)
    # window 128: the device grants two more windows as it consumes the code
    return (conn, b"R\x01\x80\x00" + b"\x01\x01" + b"\x04\x04\x04>",
            [f.ExecResult(b"", b"")], f.PASTE_REQUEST + LONG + b"\x04")


def case_paste_abort():
    conn = entered()
    conn.exec(LONG)
    err = b'Traceback (most recent call last):\n  File "<stdin>", line 2\nSyntaxError: invalid syntax\n'
    # the device stops after the first window; the host acks with \x04 and drops the rest
    return (conn, b"R\x01\x80\x00\x04\x04" + err + b"\x04>",
            [f.ExecResult(b"", err)], f.PASTE_REQUEST + LONG[:128] + b"\x04")


def case_paste_refused():
    conn = entered()
    conn.exec(b"print(2)")
    return (conn, b"R\x00OK2\r\n\x04\x04>", [f.Output(b"2\r\n"), f.ExecResult(b"2\r\n", b"")],
            f.PASTE_REQUEST + b"print(2)\x04")


def case_paste_not_understood():
    conn = entered()
    conn.exec(b"print(3)")
    return (conn, b"raw REPL; CTRL-B to exit\r\n>OK3\r\n\x04\x04>",
            [f.Output(b"3\r\n"), f.ExecResult(b"3\r\n", b"")], f.PASTE_REQUEST + b"print(3)\x04")


def case_plain_raw():
    conn = entered(raw_paste=False)
    conn.exec("print('>\\x05')")
    return (conn, b"OK>\x05\r\n\x04\x04>", [f.Output(b">\x05\r\n"), f.ExecResult(b">\x05\r\n", b"")],
            b"print('>\\x05')\x04")


def case_empty_code_is_not_a_reset():
    conn = entered(raw_paste=False)
    conn.exec(b"")
    return conn, b"OK\x04\x04>", [f.ExecResult(b"", b"")], b"pass\x04"


def case_soft_reset():
    conn = entered()
    assert conn.soft_reset() == b"\x04"
    return (conn, b"OK\r\nMPY: soft reboot\r\nboot.py says hi\r\nraw REPL; CTRL-B to exit\r\n>",
            [f.SoftRebooted()], b"")


CASES = [case_enter, case_paste_ok, case_paste_traceback, case_paste_windows, case_paste_abort,
         case_paste_refused, case_paste_not_understood, case_plain_raw, case_empty_code_is_not_a_reset,
         case_soft_reset]


@pytest.mark.parametrize("mode", ["whole", "bytewise", "trailing"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__[5:])
def test_each_exchange_gives_the_same_events_however_the_bytes_arrive(case, mode):
    conn, reply, want_events, want_sent = case()
    events, sent = drive(conn, reply, mode)
    assert events == want_events
    assert sent == want_sent
    assert conn.state == f.READY


def test_the_host_never_sends_beyond_the_granted_window():
    conn = entered()
    conn.exec(LONG)
    assert conn.data_to_send() == f.PASTE_REQUEST
    conn.receive_data(b"R\x01\x80\x00")
    assert conn.next_event() is f.NEED_DATA
    assert conn.data_to_send() == LONG[:128]
    assert conn.data_to_send() == b""            # window used up
    conn.receive_data(b"\x01")
    assert conn.next_event() is f.NEED_DATA
    assert conn.data_to_send() == LONG[128:256]
    conn.receive_data(b"\x01")
    conn.next_event()
    assert conn.data_to_send() == LONG[256:] + b"\x04"
    assert conn.raw_paste is True and conn.window == 128


def test_a_refused_paste_mode_is_not_asked_for_again():
    conn, reply, _, _ = case_paste_refused()
    drive(conn, reply, "whole")
    assert conn.raw_paste is False
    conn.exec(b"x")
    assert conn.data_to_send() == b"x\x04"


def test_device_traceback_becomes_a_device_error_with_type_message_and_frames():
    conn, reply, _, _ = case_paste_traceback()
    events, _ = drive(conn, reply, "bytewise")
    with pytest.raises(DeviceError) as ei:
        events[-1].check()
    e = ei.value
    assert (e.exc_type, e.value) == ("ValueError", "x")
    assert e.traceback == ['File "<stdin>", line 2, in <module>']
    assert "ValueError: x" in str(e)


@pytest.mark.parametrize("stderr,exc_type,value,frames", [
    (b'Traceback (most recent call last):\n  File "<stdin>", line 9, in <module>\nOSError: [Errno 2] ENOENT\n',
     "OSError", "[Errno 2] ENOENT", 1),
    (b'Traceback (most recent call last):\n  File "<stdin>", line 6, in <module>\nValueError: \n',
     "ValueError", "", 1),
    (b'Traceback (most recent call last):\n  File "<stdin>", line 3, in <module>\n  File "<stdin>", line 2, '
     b'in f\nKeyError: a\nb\n', "KeyError", "a\nb", 2),
    (b'Traceback (most recent call last):\n  File "<stdin>", line 1\nKeyboardInterrupt\n',
     "KeyboardInterrupt", "", 1),
    (b"something odd\n", "", "something odd", 0),
])
def test_error_streams_parse_into_type_message_and_traceback(stderr, exc_type, value, frames):
    e = DeviceError.from_stderr(stderr)
    assert (e.exc_type, e.value, len(e.traceback)) == (exc_type, value, frames)


def test_a_device_breaking_the_protocol_fails_the_connection_for_good():
    conn = entered(raw_paste=False)
    conn.exec(b"1")
    conn.data_to_send()
    conn.receive_data(b"NO")
    with pytest.raises(ProtocolError, match="did not accept"):
        conn.next_event()
    with pytest.raises(ProtocolError):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.exec(b"1")


def test_garbage_during_raw_paste_is_a_protocol_error():
    conn = entered()
    conn.exec(LONG)
    conn.receive_data(b"R\x01\x80\x00Z")
    with pytest.raises(ProtocolError, match="raw-paste"):
        conn.next_event()


def test_exec_before_entering_is_a_local_error():
    with pytest.raises(LocalProtocolError, match="IDLE"):
        f.RawRepl().exec(b"1")


def test_a_zero_window_is_refused():
    conn = entered()
    conn.exec(b"1")
    conn.receive_data(b"R\x01\x00\x00")
    with pytest.raises(ProtocolError, match="window"):
        conn.next_event()


def test_noise_before_the_banner_is_dropped_even_split_mid_banner():
    conn = f.RawRepl()
    conn.enter()
    noise = b"x" * 5000 + b"raw REPL; CTR"
    conn.receive_data(noise)
    assert conn.next_event() is f.NEED_DATA
    assert len(conn.trailing_data) < len(f.BANNER)
    conn.receive_data(b"L-B to exit\r\n>")
    assert conn.next_event() == f.Entered()


def test_exit_leaves_raw_mode():
    conn = entered()
    assert conn.exit() == b"\r\x02"
    assert conn.state == f.CLOSED
