# heapsize: 128K
"""ATECC608 driver against the frame-level chip model, under MicroPython and CPython.

The model signs with real P-256 keys (edgepoi.p256 under MicroPython, `cryptography` on CPython);
signatures are checked with edgepoi.p256_verify.verify_digest. Expected frames are built from the datasheet
structure with the model's CRC, or are literal known frames.
"""
import sys

try:
    import atecc608_chip
except ImportError:
    _here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    sys.path.append(_here + "/../fakes")
    import atecc608_chip

import hashlib

import checks
from edgepoi import p256_verify
from edgepoi.keys import KeyBackendError
from edgepoi.keys import atecc608 as drv


def make(**kw):
    clock = atecc608_chip.FakeClock()
    chip = atecc608_chip.ATECC608Model(clock=clock, **kw)
    return chip, drv.ATECC608(chip, 0x60, clock), clock


def cmd(opcode, p1, p2, data=b""):
    body = bytes([7 + len(data), opcode, p1, p2 & 0xFF, p2 >> 8]) + data
    return ("w", 0x60, b"\x03" + body + atecc608_chip.chip_crc(body))


def traffic(chip):
    return [e for e in chip.log if e[0] != "nack-w"]


def test_crc_known_frames():
    assert drv.crc16(b"\x04\x11", 2) == 0x4333
    assert drv.crc16(b"\x04\x00", 2) == 0x4003
    assert drv.crc16(bytes([7, 0x30, 0, 0, 0]), 5) == 0x5D03
    for data in (b"", b"\x00", b"\xff" * 9, bytes(range(40))):
        c = drv.crc16(data, len(data))
        assert bytes([c & 0xFF, c >> 8]) == atecc608_chip.chip_crc(data)


def test_build_command_matches_datasheet_layout():
    buf = bytearray(80)
    n = drv.build_command(buf, 0x30, 0, 0)
    assert bytes(buf[:n]) == bytes([3, 7, 0x30, 0, 0, 0, 0x03, 0x5D])
    digest = hashlib.sha256(b"x").digest()
    n = drv.build_command(buf, 0x16, 0x03, 0, digest)
    assert ("w", 0x60, bytes(buf[:n])) == cmd(0x16, 0x03, 0, digest)


def test_info_transcript():
    chip, dev, clock = make()
    assert dev.info() == b"\x00\x00\x60\x02"
    t = traffic(chip)
    assert t[0] == ("wake", 0, b"\x00")
    assert t[1] == ("r", 0x60, b"\x04\x11\x33\x43")
    assert t[2] == ("w", 0x60, bytes([3, 7, 0x30, 0, 0, 0, 0x03, 0x5D]))
    assert t[-1] == ("w", 0x60, b"\x02")


def test_sign_verifies_and_survives_a_corrupted_reply():
    chip, dev, clock = make()
    key = drv.ATECCKey(dev, 0)
    pub = key.public_key()
    assert len(pub) == 65 and pub[0] == 4
    d = hashlib.sha256(b"portable").digest()
    chip.log = []
    sig = key.sign_digest(d)
    assert cmd(0x16, 0x03, 0, d) in chip.log and cmd(0x41, 0x80, 0) in chip.log
    assert p256_verify.verify_digest(pub, d, sig)
    assert not p256_verify.verify_digest(pub, hashlib.sha256(b"other").digest(), sig)
    chip.log = None
    chip.corrupt_responses = 1
    assert p256_verify.verify_digest(pub, d, key.sign_digest(d))
    assert dev.stats["retries"] == 1


def test_wake_failures_raise_clear_errors():
    chip, dev, clock = make()
    chip.nack_wakes = 99
    e = checks.raises(drv.ATECCError, dev.info)
    assert "wake" in str(e)
    assert isinstance(e, KeyBackendError)
    chip.nack_wakes = 0
    chip.corrupt_commands = 1
    assert len(dev.random()) == 32


def test_counter_and_status_errors():
    chip, dev, clock = make()
    c = drv.ATECCCounter(dev, 0)
    assert [c.next(), c.next()] == [1, 2] and c.peek() == 2
    e = checks.raises(drv.ATECCError, drv.ATECCKey, dev, 9)
    assert e.status == 0x0F
    checks.raises(KeyBackendError, drv.parse_uri, "atecc608:slot=99")
    assert drv.parse_uri("atecc608:bus=1;addr=0x35;slot=2") == ("1", 0x35, 2)
