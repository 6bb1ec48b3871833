"""Microchip ATECC608 secure element driver over I2C (portable: MicroPython machine.I2C, Linux /dev/i2c-N).

    from edgepoi.keys import open_key
    key = open_key("atecc608:bus=0;addr=0x60;slot=0")       # P-256 key generated in slot 0 on first use
    sig = key.sign_digest(digest32)                          # Nonce(pass-through) + Sign(external)
    seq = ATECCCounter(key.chip, 0).next()                   # the chip's monotonic counter 0

A bus is any object with ``writeto(addr, buf)`` / ``readfrom_into(addr, buf)`` raising OSError on NACK
(machine.I2C; LinuxI2C below); ``register_bus(name, bus)`` makes it ``bus=name`` in a URI. Clock it at
<= 100 kHz: the wake token (a write to address 0) must hold SDA low >= 60 us.

Theory of operation (datasheet facts as cryptoauthlib's calib_* sources document them): a transaction
wakes the chip (token, tWHI 1.5 ms, read 04 11 33 43), writes commands after word address 0x03 as
[count, opcode, p1, p2 LE16, data, CRC-16 LE], polls while the chip NACKs (reset the I/O address with
word 0x00, read the count byte, then the rest), checks CRC (poly 0x8005, bits LSB first) and status,
and ends with idle (word 0x02) well inside the ~1.3 s watchdog. CRC/communication errors, a bad wake
reply, a NACK timeout and status 0xEE/0xFF/0x11 retry the whole transaction (sleep, re-wake) up to
``attempts`` times; other statuses raise ATECCError at once. docs/KEYS.md has the details.
"""
from edgepoi.keys import KeyBackendError, key_id_of

try:
    from micropython import const
except ImportError:
    const = int

OP_READ = const(0x02)
OP_NONCE = const(0x16)
OP_RANDOM = const(0x1B)
OP_COUNTER = const(0x24)
OP_INFO = const(0x30)
OP_GENKEY = const(0x40)
OP_SIGN = const(0x41)
# Max execution times (ms) of the ATECC608 at the default clock divider (cryptoauthlib, M0 table).
EXEC_MS = {OP_READ: 5, OP_NONCE: 20, OP_RANDOM: 23, OP_COUNTER: 25, OP_INFO: 5, OP_GENKEY: 115,
           OP_SIGN: 115}
STATUS = {0x01: "checkmac/verify miscompare", 0x03: "parse error", 0x05: "ECC fault",
          0x07: "self test error", 0x08: "health test error", 0x0F: "execution error",
          0x11: "after wake, no command", 0xEE: "watchdog about to expire",
          0xFF: "CRC or communication error"}
_RETRY_STATUS = (0x11, 0xEE, 0xFF)
WAKE_OK = b"\x04\x11\x33\x43"
_T_WHI_US = const(1500)
_POLL_INIT_US = const(1000)
_POLL_US = const(2000)
COUNTER_MAX = const(2097151)
_BUSES = {}


def crc16(buf, n):
    """CRC-16 of buf[:n] as the chip computes it: poly 0x8005, init 0, data bits taken LSB first."""
    crc = 0
    for i in range(n):
        b = buf[i]
        for _ in range(8):
            if (b & 1) ^ (crc >> 15):
                crc = ((crc << 1) ^ 0x8005) & 0xFFFF
            else:
                crc = (crc << 1) & 0xFFFF
            b >>= 1
    return crc


def build_command(out, opcode, p1, p2, data=b""):
    """Write [0x03, count, opcode, p1, p2 LE16, data, CRC LE] into out; return its length."""
    n = 7 + len(data)
    out[0:6] = bytes((0x03, n, opcode, p1 & 0xFF, p2 & 0xFF, (p2 >> 8) & 0xFF))
    out[6:6 + len(data)] = data
    c = crc16(memoryview(out)[1:], n - 2)
    out[n - 1] = c & 0xFF
    out[n] = c >> 8
    return n + 1


class ATECCError(KeyBackendError):
    """The chip failed a command (``status`` is its status byte, or None for a communication failure)."""

    def __init__(self, detail, status=None):
        KeyBackendError.__init__(self, "device_error", "atecc608: " + detail)
        self.status = status


class _Retry(Exception):
    pass


class _SysClock:
    """time.sleep_us / ticks_ms / ticks_diff on MicroPython; time.sleep / monotonic on CPython."""

    def __init__(self):
        import time
        self.t = time
        self.mp = hasattr(time, "ticks_ms")

    def sleep_us(self, us):
        return self.t.sleep_us(us) if self.mp else self.t.sleep(us / 1000000)

    def ticks_ms(self):
        return self.t.ticks_ms() if self.mp else int(self.t.monotonic() * 1000)

    def diff_ms(self, a, b):
        return self.t.ticks_diff(a, b) if self.mp else a - b


class ATECC608:
    """The chip: command execution with CRC, busy polling, wake/idle and bounded retries."""

    def __init__(self, bus, addr=0x60, clock=None, attempts=3):
        self.bus, self.addr, self.attempts = bus, addr, attempts
        self.clock = clock or _SysClock()
        self._tx = bytearray(80)
        self._rx = bytearray(72)
        self._mrx = memoryview(self._rx)
        self.stats = {"retries": 0, "transactions": 0}

    def _wake(self):
        try:
            self.bus.writeto(0x00, b"\x00")      # the wake token: nobody ACKs address 0
        except OSError:
            pass
        self.clock.sleep_us(_T_WHI_US)
        rx = self._mrx
        try:
            self.bus.readfrom_into(self.addr, rx[0:4])
        except OSError:
            raise _Retry("no wake response (NACK)")
        got = bytes(rx[0:4])
        if got[0] == 0x04 and got[1] == 0x07:
            # cryptoauthlib matches 04 07 C4 40, which is not CRC-valid (04 07 -> 40 C2): accept both.
            raise ATECCError("self test failed at wake", 0x07)
        if got != WAKE_OK:
            raise _Retry("bad wake response " + got.hex())

    def _word(self, w):
        try:
            self.bus.writeto(self.addr, bytes((w,)))
        except OSError:
            pass

    def execute(self, opcode, p1, p2, data=b"", rlen=0):
        """Send one command to the awake chip; return its rlen data bytes (b"" for a status-only reply).

        Call inside transaction(); raises _Retry for transient failures, ATECCError for status errors.
        """
        n = build_command(self._tx, opcode, p1, p2, data)
        try:
            self.bus.writeto(self.addr, memoryview(self._tx)[:n])
        except OSError:
            raise _Retry("command 0x%02x NACKed" % opcode)
        clock = self.clock
        clock.sleep_us(_POLL_INIT_US)
        t0 = clock.ticks_ms()
        limit = EXEC_MS[opcode] + 10
        rx = self._mrx
        while True:
            try:
                self.bus.writeto(self.addr, b"\x00")       # reset the I/O buffer address
                self.bus.readfrom_into(self.addr, rx[0:1])
                count = rx[0]
                if count < 4 or count > len(rx):
                    raise _Retry("bad response count %d" % count)
                self.bus.readfrom_into(self.addr, rx[1:count])
                break
            except OSError:
                if clock.diff_ms(clock.ticks_ms(), t0) > limit:
                    raise _Retry("no response to 0x%02x within %d ms" % (opcode, limit))
                clock.sleep_us(_POLL_US)
        c = crc16(rx, count - 2)
        if rx[count - 2] != c & 0xFF or rx[count - 1] != c >> 8:
            raise _Retry("response CRC error")
        if count == 4 and (rlen or rx[1]):
            st = rx[1]
            if st in _RETRY_STATUS or st == 0:
                raise _Retry("status 0x%02x (%s)" % (st, STATUS.get(st, "status-only reply")))
            raise ATECCError("command 0x%02x failed: status 0x%02x (%s)"
                             % (opcode, st, STATUS.get(st, "unknown")), st)
        want = rlen + 3 if rlen else 4
        if count != want:
            raise _Retry("response of %d bytes to 0x%02x, expected %d" % (count, opcode, want))
        return bytes(rx[1:1 + rlen])

    def transaction(self, fn, *args):
        """wake -> fn(*args) -> idle, retried on transient failures; returns fn's result."""
        first = last = None
        self.stats["transactions"] += 1
        for _ in range(self.attempts):
            try:
                self._wake()
                r = fn(*args)
            except _Retry as e:
                first = first or e
                last = e
                self.stats["retries"] += 1
                self._word(0x01)                  # sleep: back to a known state, re-wake next try
                self.clock.sleep_us(_POLL_US)
                continue
            except ATECCError:
                self._word(0x02)
                raise
            self._word(0x02)                      # idle: watchdog stops, TempKey kept
            return r
        if str(first) != str(last):
            last = "first %s; last %s" % (first, last)
        raise ATECCError("gave up after %d attempts: %s" % (self.attempts, last))

    def sleep(self):
        """Wake and put the chip to sleep (lowest power; clears TempKey)."""
        try:
            self._wake()
        except (_Retry, ATECCError):
            pass
        self._word(0x01)

    # Commands (each one a transaction of its own).
    def info(self):
        return self.transaction(self.execute, OP_INFO, 0x00, 0, b"", 4)

    def random(self):
        return self.transaction(self.execute, OP_RANDOM, 0x00, 0, b"", 32)

    def read_config(self, block):
        """32 bytes of config zone block 0..3 (Read, zone config, 32-byte mode)."""
        return self.transaction(self.execute, OP_READ, 0x80, block << 3, b"", 32)

    def serial_number(self):
        c = self.read_config(0)
        return c[0:4] + c[8:13]

    def lock_status(self):
        """(config_locked, data_locked) from config bytes 86 (LockValue) and 87 (LockConfig)."""
        c = self.read_config(2)
        return c[23] != 0x55, c[22] != 0x55

    def public_key(self, slot):
        return b"\x04" + self.transaction(self.execute, OP_GENKEY, 0x00, slot, b"", 64)

    def genkey(self, slot):
        """Generate a new private key in slot (GenKey mode 0x04); returns the 65-byte public point."""
        return b"\x04" + self.transaction(self.execute, OP_GENKEY, 0x04, slot, b"", 64)

    def _nonce_sign(self, slot, digest):
        self.execute(OP_NONCE, 0x03, 0, digest, 0)      # pass-through: TempKey = digest
        return self.execute(OP_SIGN, 0x80, slot, b"", 64)

    def sign_digest(self, slot, digest):
        if not isinstance(digest, (bytes, bytearray)) or len(digest) != 32:
            raise KeyBackendError("bad_digest", "sign_digest needs a 32-byte SHA-256 digest")
        return self.transaction(self._nonce_sign, slot, bytes(digest))

    def counter(self, cid, increment=False):
        v = self.transaction(self.execute, OP_COUNTER, 1 if increment else 0, cid, b"", 4)
        return v[0] | (v[1] << 8) | (v[2] << 16) | (v[3] << 24)


class ATECCKey:
    """Signer for a P-256 private key in a slot of the chip."""
    alg = -7
    backend = "atecc608"

    def __init__(self, chip, slot, create=True):
        self.chip, self.slot = chip, slot
        try:
            pub = chip.public_key(slot)
        except ATECCError as e:
            if not create or e.status not in (0x05, 0x0F):
                raise
            pub = chip.genkey(slot)
        self._pub, self.key_id = pub, key_id_of(pub)

    def public_key(self):
        return self._pub

    def sign_digest(self, digest):
        if self.chip is None:
            raise KeyBackendError("closed", "atecc608 key is closed")
        return self.chip.sign_digest(self.slot, digest)

    def close(self):
        if self.chip is not None:
            chip, self.chip = self.chip, None
            chip.sleep()
            if hasattr(chip.bus, "close") and getattr(chip.bus, "owned", False):
                chip.bus.close()


class ATECCCounter:
    """The chip's monotonic counter 0 or 1 (max 2,097,151): next() increments, never repeats."""

    def __init__(self, chip, cid=0):
        if cid not in (0, 1):
            raise KeyBackendError("bad_uri", "atecc608 counter id must be 0 or 1")
        self.chip, self.cid = chip, cid

    def next(self):
        return self.chip.counter(self.cid, True)

    def peek(self):
        return self.chip.counter(self.cid, False)


class LinuxI2C:
    """/dev/i2c-N with the machine.I2C method names (CPython on a Raspberry Pi and similar)."""
    owned = True

    def __init__(self, busnum):
        import fcntl
        import os
        self._os, self._ioctl = os, fcntl.ioctl
        self._fd = os.open("/dev/i2c-%d" % busnum, os.O_RDWR)

    def writeto(self, addr, buf):
        self._ioctl(self._fd, 0x0703, addr)              # I2C_SLAVE
        self._os.write(self._fd, bytes(buf))

    def readfrom_into(self, addr, buf):
        self._ioctl(self._fd, 0x0703, addr)
        data = self._os.read(self._fd, len(buf))
        if len(data) != len(buf):
            raise OSError(5, "short I2C read")
        buf[:] = data

    def close(self):
        self._os.close(self._fd)


def register_bus(name, bus):
    """Make a bus object (machine.I2C, a test model) reachable as ``bus=name`` in atecc608: URIs."""
    _BUSES[name] = bus


def _open_bus(name):
    if name in _BUSES:
        return _BUSES[name]
    try:
        num = int(name)
    except ValueError:
        raise KeyBackendError("bad_uri", "atecc608 bus %r is neither registered nor a number" % name)
    import sys
    if sys.implementation.name == "micropython":
        import machine
        return machine.I2C(num, freq=100000)
    try:
        return LinuxI2C(num)
    except OSError as e:
        raise KeyBackendError("not_found", "cannot open /dev/i2c-%d: %s" % (num, e))


def parse_uri(uri):
    """``atecc608:bus=0;addr=0x60;slot=0`` -> (bus name, addr, slot)."""
    if not uri.startswith("atecc608:"):
        raise KeyBackendError("bad_uri", "not an atecc608: URI")
    attrs = {"bus": "0", "addr": "0x60", "slot": "0"}
    for part in uri[9:].split(";"):
        if not part:
            continue
        k, sep, v = part.partition("=")
        if not sep or k not in attrs:
            raise KeyBackendError("bad_uri", "atecc608 URI part %r (known: bus, addr, slot)" % part)
        attrs[k] = v
    try:
        addr, slot = int(attrs["addr"], 0), int(attrs["slot"])
    except ValueError:
        raise KeyBackendError("bad_uri", "atecc608 addr and slot must be integers")
    if not 0x08 <= addr <= 0x77 or not 0 <= slot <= 15:
        raise KeyBackendError("bad_uri", "atecc608 addr 0x08..0x77 and slot 0..15")
    return attrs["bus"], addr, slot


def open(uri, create=True, clock=None):  # noqa: A001 - the backend interface is open(uri, create)
    """Open the key in a slot (with create, generate it when the slot holds no valid key)."""
    bus, addr, slot = parse_uri(uri)
    return ATECCKey(ATECC608(_open_bus(bus), addr, clock), slot, create)
