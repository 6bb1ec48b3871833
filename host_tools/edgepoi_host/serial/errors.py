"""Errors of the serial transport: one exception type per party at fault.

- ``LocalProtocolError``: the host asked the framing core for something illegal in its state (a bug here).
- ``ProtocolError``: the device sent bytes the raw-REPL protocol does not allow.
- ``TransportError``: the port or the board failed (could not open, board gone); its message is one line
  that says what to try. ``TransportTimeout`` is the kind where the board went silent.
- ``DeviceError``: the code ran and raised on the device; carries the MicroPython exception type, message
  and traceback lines.

Usage::

    try:
        t.exec("open('/nope')")
    except DeviceError as e:
        e.exc_type, e.value        # ('OSError', '[Errno 2] ENOENT')
"""


class SerialError(Exception):
    """Base of every error raised by ``edgepoi_host.serial``."""


class LocalProtocolError(SerialError):
    """The host side used the raw-REPL core out of order (e.g. exec before entering raw REPL)."""


class ProtocolError(SerialError):
    """The device broke the raw-REPL protocol; the connection fails fast afterwards."""


class TransportError(SerialError):
    """The port or the board failed; the message is a single line ending in what to try."""


class TransportTimeout(TransportError):
    """The board went silent (or stopped taking data) for longer than the timeout."""


class DeviceError(SerialError):
    """A MicroPython exception raised by code run on the device.

    Attributes:
        exc_type: the exception's type name, e.g. ``"OSError"`` (``""`` if the stream was not a traceback).
        value: the exception message (may be empty).
        traceback: the ``File ...`` frame lines, as text lines without the leading indentation.
        stderr: the whole error stream as text.
    """

    def __init__(self, exc_type, value, traceback=(), stderr=""):
        self.exc_type = exc_type
        self.value = value
        self.traceback = list(traceback)
        self.stderr = stderr
        head = "%s: %s" % (exc_type, value) if value else exc_type
        SerialError.__init__(self, "device raised " + (head or stderr.strip() or "an error"))

    @classmethod
    def from_stderr(cls, stderr):
        """Parse MicroPython's error stream (``Traceback ...\\n  File ...\\nType: msg``) into a DeviceError.

        Args:
            stderr: bytes or str, the second section of a raw-REPL exec reply.
        Returns:
            DeviceError (not raised).
        """
        if isinstance(stderr, (bytes, bytearray)):
            stderr = bytes(stderr).decode("utf-8", "replace")
        lines = stderr.replace("\r\n", "\n").rstrip("\n").split("\n")
        frames, rest = [], []
        started = False
        for line in lines:
            if not started and line.startswith("Traceback (most recent call last)"):
                started = True
                continue
            if started and not rest and line.startswith("  "):
                frames.append(line.strip())
            elif started or line:
                rest.append(line)
        exc_type, value = "", "\n".join(rest).strip()
        head = rest[0] if rest else ""
        name, sep, msg = head.partition(":")
        if sep and name and _is_dotted_name(name):
            exc_type = name
            value = "\n".join([msg.strip()] + rest[1:]).strip()
        elif rest and _is_dotted_name(head.strip()):
            exc_type, value = head.strip(), "\n".join(rest[1:]).strip()
        return cls(exc_type, value, frames, stderr)


def _is_dotted_name(s):
    return bool(s) and all(p and (p[0].isalpha() or p[0] == "_") and p.replace("_", "a").isalnum()
                           for p in s.split("."))
