"""Sans-I/O core of MicroPython's raw REPL: bytes in, events out; actions in, bytes out.

Theory of operation. A MicroPython board's REPL has a *raw* mode for machines: Ctrl-A makes it print
``raw REPL; CTRL-B to exit\\r\\n>`` and then read code without echo. Code is sent one of two ways:

- **raw-paste** (``\\x05A\\x01``): the device answers ``R\\x01`` plus a 2-byte little-endian window size W.
  The host may send W bytes; every ``\\x01`` from the device grants W more; a ``\\x04`` from the device
  means "stop" (it hit a compile error) and the host acknowledges with ``\\x04``. The host ends its code with
  ``\\x04`` and the device acknowledges with ``\\x04``. ``R\\x00`` means "understood, unsupported"; anything
  else (an old firmware re-entering raw REPL on the ``\\x01``) means "not understood": both fall back to
- **plain raw**: code then ``\\x04``; the device answers ``OK``.

Either way the device then runs the code and replies ``stdout \\x04 stderr \\x04 >`` (``>`` is the prompt
for the next command). A non-empty stderr is a MicroPython traceback (``DeviceError``). Ctrl-D at the raw
prompt soft-resets (``OK`` ... ``soft reboot\\r\\n`` ... banner); Ctrl-B leaves raw mode. The unix port has
no soft reset (Ctrl-D ends the process), so sessions default to ``resume``: no reset.

The state machine is a table of per-state handlers (``_HANDLERS``); actions are legal only in the states
listed in ``_ALLOWED``. A device that breaks the protocol moves the connection to ERROR and every later
call raises, like h11.

Usage::

    conn = RawRepl()
    port.write(conn.enter())
    conn.receive_data(port.read(64)); conn.next_event()       # ... until Entered()
    conn.exec(b"print(1)")
    # loop: port.write(conn.data_to_send()); conn.receive_data(port.read(64)); ev = conn.next_event()
    # -> Output(b"1\\n") ... ExecResult(stdout=b"1\\n", stderr=b"") -> .check() returns stdout
"""
import struct

from .errors import DeviceError, LocalProtocolError, ProtocolError

BANNER = b"raw REPL; CTRL-B to exit\r\n>"
INTERRUPT = b"\r\x03\x03"
CTRL_A, CTRL_B, CTRL_D = b"\x01", b"\x02", b"\x04"
PASTE_REQUEST = b"\x05A\x01"

# States.
IDLE = "IDLE"                  # not in raw REPL (or unknown)
ENTERING = "ENTERING"          # sent the interrupt + Ctrl-A, waiting for the banner
READY = "READY"                # at the raw prompt
PASTE_REQ = "PASTE_REQ"        # sent \x05A\x01, waiting for R\x00 / R\x01+window / a banner
PASTE_REENTER = "PASTE_REENTER"  # device did not understand raw-paste: waiting for its banner
PASTE = "PASTE"                # sending code within the flow-control window
PASTE_END = "PASTE_END"        # sent the final \x04, waiting for the device's \x04
RAW_SENT = "RAW_SENT"          # plain raw: sent code + \x04, waiting for OK
RUN_OUT = "RUN_OUT"            # collecting stdout until \x04
RUN_ERR = "RUN_ERR"            # collecting stderr until \x04
PROMPT = "PROMPT"              # waiting for the '>' after an exec
RESETTING = "RESETTING"        # sent Ctrl-D at the prompt, waiting for OK + soft reboot + banner
ERROR = "ERROR"
CLOSED = "CLOSED"


class _NeedData:
    def __repr__(self):
        return "NEED_DATA"


NEED_DATA = _NeedData()      # next_event(): feed more bytes first


class Event:
    _fields: tuple = ()

    def __init__(self, *args):
        for name, value in zip(self._fields, args):
            setattr(self, name, value)

    def __eq__(self, other):
        return type(self) is type(other) and all(getattr(self, f) == getattr(other, f) for f in self._fields)

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join("%s=%r" % (f, getattr(self, f)) for f in self._fields))


class Entered(Event):
    """The device is at the raw-REPL prompt."""


class Output(Event):
    """A piece of the running code's stdout, as it arrives."""
    _fields = ("data",)


class ExecResult(Event):
    """The code finished: its whole stdout and stderr; the device is back at the prompt."""
    _fields = ("stdout", "stderr")

    def check(self):
        """Return stdout, or raise ``DeviceError`` parsed from a non-empty stderr."""
        if self.stderr:
            raise DeviceError.from_stderr(self.stderr)
        return self.stdout


class SoftRebooted(Event):
    """A soft reset finished and the device is back at the raw prompt."""


class RawRepl:
    """The raw-REPL protocol state of one connection to one device.

    Args:
        raw_paste: try raw-paste mode (default True); it is switched off for the connection when the device
            refuses it.
    """

    def __init__(self, raw_paste=True):
        self.state = IDLE
        self.raw_paste = None if raw_paste else False   # None: not tried yet
        self.window = 0
        self._window_left = 0
        self._buf = bytearray()
        self._out = bytearray()       # bytes ready to send now
        self._code = b""              # code waiting for its window / for the mode to be settled
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._seen_ok = False

    # ---- actions: each returns nothing or bytes, and queues bytes for data_to_send() -------------------

    def _require(self, action):
        if self.state == ERROR:
            raise LocalProtocolError("connection failed earlier; open a new one")
        if self.state not in _ALLOWED[action]:
            raise LocalProtocolError("cannot %s in state %s" % (action, self.state))

    def enter(self, interrupt=True):
        """Interrupt whatever runs and enter raw REPL; returns the bytes to send. Expect ``Entered``."""
        self._require("enter")
        self._buf = bytearray()
        self._out = bytearray()
        self.state = ENTERING
        return (INTERRUPT if interrupt else b"") + CTRL_A

    def exec(self, code):
        """Start running ``code`` (str or bytes); its bytes come out of ``data_to_send()``.

        Expect ``Output`` events, then ``ExecResult``. Empty code is sent as ``pass`` (an empty plain-raw
        command would be a soft reset).
        """
        self._require("exec")
        if isinstance(code, str):
            code = code.encode("utf-8")
        code = bytes(code) or b"pass"
        self._stdout = bytearray()
        self._stderr = bytearray()
        if self.raw_paste is False:
            self._send_raw(code)
        else:
            self._code = code
            self._out += PASTE_REQUEST
            self.state = PASTE_REQ

    def soft_reset(self):
        """Ctrl-D at the raw prompt; returns the bytes to send. Expect ``SoftRebooted``."""
        self._require("soft_reset")
        self.state = RESETTING
        self._seen_ok = False
        return CTRL_D

    def exit(self):
        """Leave raw REPL for the friendly REPL; returns the bytes to send."""
        self._require("exit")
        self.state = CLOSED
        return b"\r" + CTRL_B

    def data_to_send(self):
        """Bytes the host may write now (respects the raw-paste window)."""
        out, self._out = bytes(self._out), bytearray()
        return out

    def _fill(self):
        # Queue as much code as the raw-paste window allows; the final \x04 goes with the last byte.
        if self.state == PASTE and self._window_left:
            n = min(self._window_left, len(self._code))
            self._out += self._code[:n]
            self._code = self._code[n:]
            self._window_left -= n
            if not self._code:
                self._out += CTRL_D
                self.state = PASTE_END

    # ---- input -----------------------------------------------------------------------------------------

    def receive_data(self, data):
        """Buffer bytes read from the device. Call ``next_event()`` until it returns NEED_DATA."""
        self._buf += data

    trailing_data = property(lambda self: bytes(self._buf), doc="Bytes received, not yet consumed.")

    def next_event(self):
        """Process buffered bytes; return the next Event or NEED_DATA. Raises ProtocolError."""
        if self.state == ERROR:
            raise ProtocolError("connection failed earlier; open a new one")
        handler = _HANDLERS.get(self.state)
        if handler is None:
            return NEED_DATA
        try:
            return handler(self)
        except ProtocolError:
            self.state = ERROR
            raise

    def _fail(self, what):
        raise ProtocolError("%s (got %r)" % (what, bytes(self._buf[:80])))

    def _send_raw(self, code):
        self._out += code + CTRL_D
        self.state = RAW_SENT

    def _wait_banner(self):
        i = self._buf.find(BANNER)
        if i < 0:
            keep = len(BANNER) - 1   # drop noise, keep a possible banner prefix
            if len(self._buf) > keep:
                del self._buf[:len(self._buf) - keep]
            return False
        del self._buf[:i + len(BANNER)]
        return True

    def _on_entering(self):
        if not self._wait_banner():
            return NEED_DATA
        self.state = READY
        return Entered()

    def _on_paste_req(self):
        if len(self._buf) < 2:
            return NEED_DATA
        head = bytes(self._buf[:2])
        if head == b"R\x01":
            if len(self._buf) < 4:
                return NEED_DATA
            self.window = struct.unpack("<H", bytes(self._buf[2:4]))[0]
            del self._buf[:4]
            if self.window == 0:
                self._fail("device offered a raw-paste window of 0 bytes")
            self.raw_paste = True
            self._window_left = self.window
            self.state = PASTE
            self._fill()
            return self._on_paste()
        self.raw_paste = False
        if head == b"R\x00":
            del self._buf[:2]
            code, self._code = self._code, b""
            self._send_raw(code)
            return self._on_raw_sent()
        self.state = PASTE_REENTER   # the \x01 of the request re-entered raw REPL: wait for its banner
        return self._on_paste_reenter()

    def _on_paste_reenter(self):
        if not self._wait_banner():
            return NEED_DATA
        code, self._code = self._code, b""
        self._send_raw(code)
        return self._on_raw_sent()

    def _on_paste(self):
        while self._buf:
            c = self._buf[0]
            del self._buf[0]
            if c == 0x01:
                self._window_left += self.window
                self._fill()
            elif c == 0x04:
                if self.state == PASTE:        # device asks us to stop: acknowledge, drop the rest
                    self._code = b""           # (it discards what is in flight until our \x04)
                    self._out += CTRL_D
                self.state = RUN_OUT
                return self._on_run_out()
            else:
                self._buf.insert(0, c)
                self._fail("unexpected byte from device during raw-paste")
        return NEED_DATA

    def _on_raw_sent(self):
        if len(self._buf) < 2:
            return NEED_DATA
        if bytes(self._buf[:2]) != b"OK":
            self._fail("device did not accept the command")
        del self._buf[:2]
        self.state = RUN_OUT
        return self._on_run_out()

    def _on_run_out(self):
        if not self._buf:
            return NEED_DATA
        i = self._buf.find(CTRL_D)
        chunk = bytes(self._buf if i < 0 else self._buf[:i])
        del self._buf[:len(chunk) if i < 0 else i + 1]
        self._stdout += chunk
        if i >= 0:
            self.state = RUN_ERR
        if chunk:
            return Output(chunk)
        return self._on_run_err()

    def _on_run_err(self):
        i = self._buf.find(CTRL_D)
        if i < 0:
            self._stderr += self._buf
            self._buf = bytearray()
            return NEED_DATA
        self._stderr += self._buf[:i]
        del self._buf[:i + 1]
        self.state = PROMPT
        return self._on_prompt()

    def _on_prompt(self):
        if not self._buf:
            return NEED_DATA
        if self._buf[0] != 0x3E:   # '>'
            self._fail("device did not return to the raw prompt")
        del self._buf[0]
        self.state = READY
        return ExecResult(bytes(self._stdout), bytes(self._stderr))

    def _on_resetting(self):
        if not self._seen_ok:
            if len(self._buf) < 2:
                return NEED_DATA
            if bytes(self._buf[:2]) != b"OK":
                self._fail("device did not accept the soft reset")
            del self._buf[:2]
            self._seen_ok = True
        if not self._wait_banner():
            return NEED_DATA
        self.state = READY
        return SoftRebooted()


_HANDLERS = {
    ENTERING: RawRepl._on_entering,
    PASTE_REQ: RawRepl._on_paste_req,
    PASTE_REENTER: RawRepl._on_paste_reenter,
    PASTE: RawRepl._on_paste,
    PASTE_END: RawRepl._on_paste,
    RAW_SENT: RawRepl._on_raw_sent,
    RUN_OUT: RawRepl._on_run_out,
    RUN_ERR: RawRepl._on_run_err,
    PROMPT: RawRepl._on_prompt,
    RESETTING: RawRepl._on_resetting,
}

_ALLOWED = {"enter": {IDLE, READY, ENTERING, CLOSED}, "exec": {READY}, "soft_reset": {READY},
            "exit": {READY, IDLE, ENTERING}}
