"""pyserial adapter around the raw-REPL core: run code on a MicroPython board over a serial port.

Every wait has a timeout, and every failure is a ``TransportError`` whose message is one line that says what
to try. A session is ``resume``-style by default (no soft reset: the unix port has none, and a reset would
restart the board's application); pass ``soft_reset=True`` to reset on entering.

Usage::

    with SerialTransport("/dev/ttyUSB0", timeout=5) as t:
        t.exec("import os")                 # -> stdout bytes; a device traceback raises DeviceError
        t.eval("os.uname().release")        # -> '1.29.0' (repr on the device, ast.literal_eval here)
"""
import ast
import time

from . import framing
from .errors import DeviceError, ProtocolError, TransportError, TransportTimeout

PLAIN_RAW_CHUNK = 256        # plain raw REPL has no flow control: pace writes like a human paste
PLAIN_RAW_PAUSE = 0.01


class SerialTransport:
    """A raw-REPL session on one serial port.

    Args:
        port: device path (``/dev/ttyUSB0``, ``/dev/pts/5``, ``COM3``).
        baudrate: line speed (ignored by USB CDC and pseudo-terminals).
        timeout: seconds without a byte from the board before an operation fails (per exec by default).
        enter_timeout: seconds allowed to reach the raw-REPL prompt.
        raw_paste: try raw-paste mode (falls back to plain raw REPL when the board refuses).
        soft_reset: soft-reset the board after entering raw REPL (not on the unix port).
    """

    def __init__(self, port, baudrate=115200, timeout=10.0, enter_timeout=5.0, raw_paste=True,
                 soft_reset=False):
        self.port = port
        self.baudrate = baudrate
        self.timeout = timeout
        self.enter_timeout = enter_timeout
        self.raw_paste = raw_paste
        self.soft_reset_on_enter = soft_reset
        self.conn = None
        self._ser = None
        self.bytes_sent = 0
        self.execs = 0
        self.session = 0          # incremented every time raw REPL is (re-)entered: device globals may be new

    # ---- lifecycle ---------------------------------------------------------------------------------

    def open(self):
        """Open the port and enter raw REPL. Raises TransportError."""
        import serial
        if self._ser is None:
            try:
                self._ser = serial.Serial(self.port, self.baudrate, timeout=0.1, write_timeout=self.timeout,
                                          exclusive=True)
            except (serial.SerialException, OSError, ValueError) as e:
                raise TransportError("could not open %s: %s: is the board plugged in and the path right? is "
                                     "another program holding the port?" % (self.port, _reason(e)))
        self.enter()
        return self

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Leave raw REPL (best effort) and close the port."""
        if self._ser is None:
            return
        try:
            if self.conn is not None and self.conn.state == framing.READY:
                self._write(self.conn.exit())     # no flush(): tcdrain could wait forever on a dead board
        except TransportError:
            pass
        finally:
            self._ser.close()
            self._ser = None
            self.conn = None

    def enter(self):
        """(Re-)enter raw REPL with a fresh protocol state; raises TransportError if the board won't."""
        self.conn = framing.RawRepl(raw_paste=self.raw_paste)
        self.session += 1
        try:
            self._ser.reset_input_buffer()
            self._write(self.conn.enter())
            self._until(lambda ev: isinstance(ev, framing.Entered), self.enter_timeout, overall=True)
            if self.soft_reset_on_enter:
                self.soft_reset()
        except TransportError as e:
            self.conn = None
            why = "" if isinstance(e, TransportTimeout) else " (%s)" % e
            raise TransportError("could not enter raw REPL on %s: is another program holding the port? is "
                                 "the board running MicroPython?%s" % (self.port, why))

    def soft_reset(self):
        """Soft-reset the board from the raw prompt and wait (``timeout``) until it is back at the prompt."""
        self._ensure_ready()
        self.session += 1
        self._write(self.conn.soft_reset())
        try:
            self._until(lambda ev: isinstance(ev, framing.SoftRebooted), self.timeout, overall=True)
        except TransportError:
            self.conn = None
            raise TransportError("the board on %s did not come back to the raw REPL within %.1f s after a soft "
                                 "reset: is boot.py or main.py stuck? (the unix port just ends)"
                                 % (self.port, self.timeout))

    # ---- running code ------------------------------------------------------------------------------

    def exec_raw(self, code, timeout=None, on_output=None):
        """Run ``code`` and return the ``framing.ExecResult`` (stdout and stderr) without raising on stderr.

        Args:
            code: str or bytes of Python source.
            timeout: seconds of silence from the board before failing (default: the transport's timeout).
            on_output: called with each stdout chunk as it arrives.
        Raises:
            TransportError: the board stopped answering or broke the protocol (the session re-enters raw
                REPL on the next call).
        """
        self._ensure_ready()
        self.conn.exec(code)
        self.execs += 1
        result = []

        def done(ev):
            if isinstance(ev, framing.Output) and on_output is not None:
                on_output(ev.data)
            if isinstance(ev, framing.ExecResult):
                result.append(ev)
                return True
            return False

        self._until(done, self.timeout if timeout is None else timeout)
        return result[0]

    def exec(self, code, timeout=None, on_output=None):
        """Run ``code``; return its stdout bytes. Raises DeviceError for a device traceback."""
        return self.exec_raw(code, timeout, on_output).check()

    def eval(self, expr, timeout=None):
        """Evaluate ``expr`` on the device; return the Python value (its repr parsed by literal_eval)."""
        out = self.exec("print(repr(%s))" % expr, timeout)
        text = out.decode("utf-8", "replace").strip()
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise DeviceError("", "eval(%r) gave %r, not a Python literal" % (expr, text[:200]))

    # ---- the I/O loop ------------------------------------------------------------------------------

    def ready(self):
        """Make sure the board is at the raw prompt (re-entering if an earlier call failed); return the
        session number, which changes whenever the board may have lost its globals."""
        self._ensure_ready()
        return self.session

    def _ensure_ready(self):
        if self._ser is None:
            raise TransportError("port %s is not open: call open() first" % self.port)
        if self.conn is None or self.conn.state != framing.READY:
            self.enter()

    def _until(self, done, timeout, overall=False):
        """Pump bytes both ways until ``done(event)`` is true; fail after ``timeout`` s of silence."""
        start = last_rx = time.monotonic()
        while True:
            try:
                ev = self.conn.next_event()
            except ProtocolError as e:
                raise TransportError("unexpected reply from the board on %s: %s: reset the board and try "
                                     "again" % (self.port, e))
            self._write(self.conn.data_to_send())
            if ev is not framing.NEED_DATA:
                if done(ev):
                    return ev
                continue
            data = self._read(0.1)
            now = time.monotonic()
            if data:
                last_rx = now
                self.conn.receive_data(data)
            elif now - (start if overall else last_rx) > timeout:
                raise TransportTimeout("no answer from the board on %s for %.1f s (waiting in state %s): did it "
                                     "reset or lose power? check it and run the command again"
                                     % (self.port, now - last_rx, self.conn.state))

    def _read(self, wait):
        import serial
        try:
            if self._ser.timeout != wait:
                self._ser.timeout = wait      # (each change is a tcsetattr)
            data = self._ser.read(1)
            if data:
                n = self._ser.in_waiting
                if n:
                    data += self._ser.read(n)
            return data
        except (serial.SerialException, OSError) as e:
            raise TransportError("lost the serial connection to %s: %s: check the cable and try again"
                                 % (self.port, _reason(e)))

    def _write(self, data):
        if not data:
            return
        import serial
        pace = self.conn is not None and self.conn.raw_paste is False and len(data) > PLAIN_RAW_CHUNK
        try:
            step = PLAIN_RAW_CHUNK if pace else len(data)
            for i in range(0, len(data), step):
                self._ser.write(data[i:i + step])
                if pace:
                    time.sleep(PLAIN_RAW_PAUSE)
            self.bytes_sent += len(data)
        except serial.SerialTimeoutException:
            raise TransportTimeout("the board on %s stopped taking data (write timed out after %.1f s): did it "
                                 "reset or lose power? check it and run the command again"
                                 % (self.port, self.timeout))
        except (serial.SerialException, OSError) as e:
            raise TransportError("lost the serial connection to %s: %s: check the cable and try again"
                                 % (self.port, _reason(e)))


MPY_ARCHS = (None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp", "xtensa",
             "xtensawin", "rv32imc", "rv64imc")


def board_info(transport):
    """What the board runs: MicroPython version, .mpy version and native arch, platform, machine, free heap.

    Returns:
        dict: ``version`` ("1.29.0"), ``mpy`` ("6.3"), ``arch`` ("xtensawin", or None if the firmware has no
        native code emitter), ``platform`` ("esp32", "linux"), ``machine``, ``mem_free`` (bytes).
    """
    out = transport.exec("import sys, gc\nprint(repr((tuple(sys.implementation.version[:3]), getattr("
                         "sys.implementation, '_mpy', 0), sys.platform, getattr(sys.implementation, '_machine', ''), "
                         "gc.mem_free())))")
    version, mpy, platform, machine, free = ast.literal_eval(out.decode("utf-8", "replace").strip())
    arch = (mpy >> 10) & 0x0F
    return {"version": ".".join(str(v) for v in version), "mpy": "%d.%d" % (mpy & 0xFF, (mpy >> 8) & 3),
            "arch": MPY_ARCHS[arch] if arch < len(MPY_ARCHS) else "arch%d" % arch, "platform": platform,
            "machine": machine, "mem_free": free}


def _reason(e):
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__).rstrip(".:")
