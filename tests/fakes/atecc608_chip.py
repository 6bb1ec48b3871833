"""Frame-level model of a Microchip ATECC608 on an I2C bus, from the chip's side (CPython and MicroPython).

No emulator of this chip exists, so this model is written from the datasheet facts (as documented by
cryptoauthlib's public source), independently of the driver: its own CRC, its own frame parser.

    clock = FakeClock()
    chip = ATECC608Model(clock=clock)           # is also the bus: writeto(addr, buf), readfrom_into
    key = ATECCKey(ATECC608(chip, 0x60, clock), slot=0)

Behaviour: states sleep / idle / awake. A write to address 0 (always NACKed) is the wake token; it
wakes the chip when the bus clock holds SDA low >= 60 us (9 low bit times: freq <= 150 kHz) and, after
tWHI (1.5 ms; earlier reads NACK), the I/O buffer holds 04 11 33 43. Word addresses: 0x00 resets the
I/O buffer read address, 0x01 sleep (TempKey lost), 0x02 idle (TempKey kept), 0x03 command. A command
is [count, opcode, p1, p2 LE16, data, CRC LE]; a bad CRC or a count that disagrees with the bytes
written answers status 0xFF, an unknown opcode/mode 0x03; while it executes (exec_ms) the chip NACKs.
The watchdog (1.3 s from wake) sends an awake chip back to sleep; a command that could not finish
before it fires answers 0xEE. Commands: Info, Random, Nonce (pass-through 0x03, random 0x00/0x01),
GenKey (0x04 create, 0x00 public), Sign (0x80 external, from TempKey), Counter (0/1, limit 2,097,151),
Read (config zone, 4/32 bytes). Real P-256 keys: `cryptography` on CPython, edgepoi.p256 otherwise.

Fault injection (counts of upcoming events): nack_wakes, corrupt_responses (flip a byte),
drop_response_bytes (lose a byte), corrupt_commands (a bit flips on the wire), selftest_fail.
"""
try:
    from os import urandom
except ImportError:  # pragma: no cover
    from random import getrandbits

    def urandom(n):
        return bytes(getrandbits(8) for _ in range(n))

import hashlib

SLEEP = 0
IDLE = 1
AWAKE = 2
NACK_ERRNO = 19            # MicroPython's machine.I2C raises OSError(ENODEV) on an address NACK
COUNTER_LIMIT = 2097151
# Max execution times (ms), ATECC608 default clock divider.
DEFAULT_EXEC_MS = {0x02: 5, 0x16: 20, 0x1B: 23, 0x24: 25, 0x30: 5, 0x40: 115, 0x41: 115}


def chip_crc(data):
    """The chip's CRC-16 (polynomial 0x8005, register starts at 0, each byte fed LSB first)."""
    reg = 0
    for byte in data:
        for bit in range(8):
            data_bit = (byte >> bit) & 1
            top = reg >> 15
            reg = (reg << 1) & 0xFFFF
            if data_bit != top:
                reg ^= 0x8005
    return bytes((reg & 0xFF, reg >> 8))


class FakeClock:
    """Virtual time shared by the model and the driver (sleep_us / ticks_ms / diff_ms): tests run
    in no real time, and the time the chip would have taken is read from ``us``."""

    def __init__(self):
        self.us = 0

    def now_us(self):
        return self.us

    def advance(self, us):
        self.us += int(us)

    def sleep_us(self, us):
        self.us += int(us)

    def ticks_ms(self):
        return self.us // 1000

    def diff_ms(self, a, b):
        return a - b


class RealClock:
    """Wall-clock time for the model when the driver uses its own system clock."""

    def __init__(self):
        import time
        self._t = time

    def now_us(self):
        t = self._t
        return t.ticks_us() if hasattr(t, "ticks_us") else int(t.monotonic() * 1000000)


class _CryptographyECC:
    def __init__(self):
        from cryptography.hazmat.primitives.asymmetric import ec
        self.ec = ec

    def generate(self):
        return self.ec.generate_private_key(self.ec.SECP256R1())

    def public64(self, k):
        n = k.public_key().public_numbers()
        return n.x.to_bytes(32, "big") + n.y.to_bytes(32, "big")

    def sign(self, k, digest):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
        r, s = decode_dss_signature(k.sign(digest, self.ec.ECDSA(Prehashed(hashes.SHA256()))))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class _PureECC:
    def __init__(self):
        from edgepoi import p256
        self.p = p256

    def generate(self):
        return self.p.keygen()

    def public64(self, k):
        return self.p.public_key(k)[1:]

    def sign(self, k, digest):
        return self.p.sign_digest(k, digest)


def default_ecc():
    try:
        return _CryptographyECC()
    except ImportError:
        return _PureECC()


def nack(what):
    return OSError(NACK_ERRNO, "NACK: " + what)


class ATECC608Model:
    def __init__(self, addr=0x60, clock=None, freq=100000, exec_ms=None, watchdog_ms=1300,
                 ecc=None, ecc_slots=(0, 1, 2, 3, 4), revision=b"\x00\x00\x60\x02",
                 serial=b"\x01\x23\x9a\x4b\x5c\x6d\x7e\x8f\xee", bus_time=True, log=True):
        self.addr = addr
        self.clock = clock or FakeClock()
        self.freq = freq
        self.exec_ms = dict(DEFAULT_EXEC_MS)
        self.exec_ms.update(exec_ms or {})
        self.watchdog_us = watchdog_ms * 1000
        self.ecc = ecc or default_ecc()
        self.ecc_slots = ecc_slots
        self.revision = revision
        self.bus_time = bus_time
        self.log = [] if log else None
        self.state = SLEEP
        self.out = b""
        self.rp = 0
        self.ready_us = 0          # reads/writes NACK before this time (tWHI, command execution)
        self.wd_deadline = 0
        self.tempkey = None
        self.keys = {}
        self.counters = [0, 0]
        self.config = bytearray(128)
        self.config[0:4] = serial[0:4]
        self.config[4:8] = revision
        self.config[8:13] = serial[4:9]
        self.config[86] = 0x00     # LockValue: data zone locked
        self.config[87] = 0x00     # LockConfig: config zone locked
        self.commands = []         # opcodes executed, for tests
        self.nack_wakes = 0
        self.corrupt_responses = 0
        self.drop_response_bytes = 0
        self.corrupt_commands = 0
        self.selftest_fail = 0

    # -- time ---------------------------------------------------------------------------------
    def now(self):
        return self.clock.now_us()

    def _bus(self, nbytes):
        """Advance virtual time by an I2C transfer: address and n bytes of 9 bit times, start, stop."""
        if self.bus_time and hasattr(self.clock, "advance"):
            self.clock.advance((9 * (nbytes + 1) + 2) * 1000000 // self.freq)

    def _tick(self):
        if self.state == AWAKE and self.now() >= self.wd_deadline:
            self._to_sleep()

    def _to_sleep(self):
        self.state = SLEEP
        self.tempkey = None
        self.out = b""

    def _log(self, kind, addr, data):
        if self.log is not None:
            self.log.append((kind, addr, bytes(data)))

    # -- the I2C side ---------------------------------------------------------------------------
    def writeto(self, addr, buf):
        buf = bytes(buf)
        self._bus(len(buf))
        self._tick()
        if addr == 0x00:
            self._log("wake", 0, buf)
            self._wake_token()
            raise nack("general address 0")
        if addr != self.addr or self.state != AWAKE or self.now() < self.ready_us or not buf:
            self._log("nack-w", addr, buf)
            raise nack("write to 0x%02x" % addr)
        word = buf[0]
        if word == 0x00:
            self.rp = 0
        elif word == 0x01:
            self._to_sleep()
        elif word == 0x02:
            self.state = IDLE
            self.out = b""
        elif word == 0x03:
            self._command(buf[1:])
        else:
            self._log("nack-w", addr, buf)
            raise nack("word address 0x%02x" % word)
        self._log("w", addr, buf)

    def readfrom_into(self, addr, buf):
        n = len(buf)
        self._bus(n)
        self._tick()
        if addr != self.addr or self.state != AWAKE or self.now() < self.ready_us or not self.out:
            self._log("nack-r", addr, b"")
            raise nack("read from 0x%02x" % addr)
        data = self.out[self.rp:self.rp + n]
        data = data + b"\xff" * (n - len(data))
        self.rp += n
        for i in range(n):
            buf[i] = data[i]
        self._log("r", addr, data)

    def _wake_token(self):
        low_us = 9 * 1000000 // self.freq
        if self.state == AWAKE or low_us < 60:
            return
        if self.nack_wakes:
            self.nack_wakes -= 1
            return
        self.state = AWAKE
        self.ready_us = self.now() + 1500
        self.wd_deadline = self.now() + self.watchdog_us
        if self.selftest_fail:
            self.selftest_fail -= 1
            self.out = b"\x04\x07\xc4\x40"    # as cryptoauthlib's hal_check_wake expects it
            self.rp = 0
        else:
            self._respond(None, 0x11)

    def _respond(self, data, status=0x00):
        body = bytes((len(data) + 3,)) + data if data else bytes((4, status))
        frame = body + chip_crc(body)
        if self.corrupt_responses:
            self.corrupt_responses -= 1
            frame = frame[:1] + bytes((frame[1] ^ 0x01,)) + frame[2:]
        if self.drop_response_bytes:
            self.drop_response_bytes -= 1
            frame = frame[:1] + frame[2:]
        self.out = frame
        self.rp = 0

    def _command(self, frame):
        if self.corrupt_commands and len(frame) > 2:
            self.corrupt_commands -= 1
            frame = frame[:2] + bytes((frame[2] ^ 0x10,)) + frame[3:]
        if not frame or frame[0] != len(frame) or len(frame) < 7:
            return self._respond(None, 0xFF if frame and frame[0] >= 7 else 0x03)
        if chip_crc(frame[:-2]) != frame[-2:]:
            return self._respond(None, 0xFF)
        op, p1, p2, data = frame[1], frame[2], frame[3] | (frame[4] << 8), frame[5:-2]
        ms = self.exec_ms.get(op, 5)
        if self.now() + ms * 1000 > self.wd_deadline:
            return self._respond(None, 0xEE)
        self.ready_us = self.now() + ms * 1000
        self.commands.append(op)
        handler = self.HANDLERS.get(op)
        if handler is None:
            return self._respond(None, 0x03)
        r = handler(self, p1, p2, data)
        if isinstance(r, int):
            return self._respond(None, r)
        return self._respond(r)

    # -- commands -------------------------------------------------------------------------------
    def _info(self, p1, p2, data):
        return self.revision if p1 == 0 and not data else 0x03

    def _random(self, p1, p2, data):
        return urandom(32) if p1 in (0, 1) and not data else 0x03

    def _nonce(self, p1, p2, data):
        if p1 == 0x03 and len(data) == 32:
            self.tempkey = bytes(data)
            return 0x00
        if p1 in (0x00, 0x01) and len(data) == 20:
            rand = urandom(32)
            self.tempkey = hashlib.sha256(rand + bytes(data) + bytes((0x16, p1, 0x00))).digest()
            return rand
        return 0x03

    def _genkey(self, p1, p2, data):
        if p2 > 15 or data or p1 not in (0x00, 0x04):
            return 0x03
        if p2 not in self.ecc_slots:
            return 0x0F
        if p1 == 0x04:
            self.keys[p2] = self.ecc.generate()
        if p2 not in self.keys:
            return 0x05
        return self.ecc.public64(self.keys[p2])

    def _sign(self, p1, p2, data):
        if p1 != 0x80 or p2 > 15 or data:
            return 0x03
        if p2 not in self.ecc_slots or self.tempkey is None:
            return 0x0F
        if p2 not in self.keys:
            return 0x05
        digest, self.tempkey = self.tempkey, None
        return self.ecc.sign(self.keys[p2], digest)

    def _counter(self, p1, p2, data):
        if p1 not in (0, 1) or p2 not in (0, 1) or data:
            return 0x03
        if p1 == 1:
            if self.counters[p2] >= COUNTER_LIMIT:
                return 0x0F
            self.counters[p2] += 1
        v = self.counters[p2]
        return bytes((v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF, v >> 24))

    def _read(self, p1, p2, data):
        zone, block, word = p1 & 0x03, (p2 >> 3) & 0x1F, p2 & 0x07
        if data or zone > 2:
            return 0x03
        if zone != 0:
            return 0x0F           # data and OTP zones are not modelled (secret slots anyway)
        if block > 3 or (p1 & 0x80 and word):
            return 0x03
        start = block * 32 + (0 if p1 & 0x80 else word * 4)
        return bytes(self.config[start:start + (32 if p1 & 0x80 else 4)])

    HANDLERS = {0x30: _info, 0x1B: _random, 0x16: _nonce, 0x40: _genkey, 0x41: _sign,
                0x24: _counter, 0x02: _read}
