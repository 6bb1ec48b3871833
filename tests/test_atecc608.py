"""ATECC608 driver against the frame-level chip model, byte by byte (CPython).

Expected frames are written here from the datasheet structure — [word address 0x03, count, opcode,
param1, param2 LE16, data, CRC-16 LE] — with the model's own CRC or as literal known frames, never
with the driver's encoder.
"""
import hashlib
import statistics
import time

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from edgepoi.keys import KeyBackendError, open_key
from edgepoi.keys import atecc608 as drv
from fakes.atecc608_chip import IDLE, SLEEP, ATECC608Model, FakeClock, RealClock, chip_crc

WAKE = ("wake", 0, b"\x00")
WAKE_RESP = ("r", 0x60, bytes.fromhex("04113343"))
IDLE_W = ("w", 0x60, b"\x02")
RESET_W = ("w", 0x60, b"\x00")


def cmd(opcode, p1, p2, data=b""):
    body = bytes([7 + len(data), opcode, p1, p2 & 0xFF, p2 >> 8]) + data
    return ("w", 0x60, b"\x03" + body + chip_crc(body))


def status_frame(st):
    return bytes([4, st]) + chip_crc(bytes([4, st]))


def reply(data):
    body = bytes([len(data) + 3]) + data
    return [RESET_W, ("r", 0x60, body[:1]), ("r", 0x60, body[1:] + chip_crc(body))]


def traffic(chip):
    """The bus log without the NACKed polls (they are counted separately)."""
    return [e for e in chip.log if e[0] != "nack-w"]


def make(**kw):
    clock = FakeClock()
    chip = ATECC608Model(clock=clock, **kw)
    return chip, drv.ATECC608(chip, 0x60, clock), clock


def verify(pub65, digest, sig):
    pk = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub65)
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    pk.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))

def pycose_verifies(msg, pub):
    from pycose.keys import EC2Key
    from pycose.keys.curves import P256
    from pycose.messages import CoseMessage
    decoded = CoseMessage.decode(msg)
    decoded.key = EC2Key(crv=P256, x=pub[1:33], y=pub[33:65])
    return decoded.verify_signature()


def test_crc_matches_known_frames_and_the_model():
    assert drv.crc16(b"\x04\x11", 2) == 0x4333               # wake response 04 11 33 43
    assert drv.crc16(b"\x04\x00", 2) == 0x4003               # success status 04 00 03 40
    assert drv.crc16(bytes.fromhex("0730000000"), 5) == 0x5D03   # Info: 03 07 30 00 00 00 03 5D
    assert drv.crc16(bytes.fromhex("071b000000"), 5) == 0xCD24   # Random: ... 24 CD
    import os
    for n in (0, 1, 2, 7, 33, 70):
        data = os.urandom(n)
        c = drv.crc16(data, n)
        assert bytes([c & 0xFF, c >> 8]) == chip_crc(data)


def test_info_transcript_byte_by_byte_with_busy_polling():
    chip, dev, clock = make()
    assert dev.info() == b"\x00\x00\x60\x02"
    assert traffic(chip) == [WAKE, WAKE_RESP, ("w", 0x60, bytes.fromhex("030730000000035d")),
                             *reply(b"\x00\x00\x60\x02"), IDLE_W]
    assert sum(1 for e in chip.log if e[0] == "nack-w") >= 1   # polled while the chip executed
    assert chip.state == IDLE


def test_sign_sends_nonce_passthrough_then_sign_external_and_verifies():
    chip, dev, clock = make()
    key = drv.ATECCKey(dev, 0)
    pub = key.public_key()
    assert chip.commands == [0x40, 0x40]                      # GenKey public (fault 0x05), create
    assert key.key_id == hashlib.sha256(pub).digest()[:16]
    chip.log.clear()
    digest = hashlib.sha256(b"attestation").digest()
    sig = key.sign_digest(digest)
    assert traffic(chip) == [WAKE, WAKE_RESP, cmd(0x16, 0x03, 0, digest),
                             RESET_W, ("r", 0x60, b"\x04"), ("r", 0x60, status_frame(0)[1:]),
                             cmd(0x41, 0x80, 0), *reply(sig), IDLE_W]
    assert cmd(0x41, 0x80, 0)[2] == bytes.fromhex("0307418000002805")
    verify(pub, digest, sig)
    with pytest.raises(InvalidSignature):
        verify(pub, hashlib.sha256(b"other").digest(), sig)


def test_key_reused_on_reopen_and_create_false_on_empty_slot():
    chip, dev, clock = make()
    with pytest.raises(drv.ATECCError) as ei:
        drv.ATECCKey(dev, 1, create=False)
    assert ei.value.status == 0x05 and ei.value.reason == "device_error"
    pub = drv.ATECCKey(dev, 1).public_key()
    chip.log.clear()
    again = drv.ATECCKey(dev, 1, create=False)
    assert again.public_key() == pub
    assert cmd(0x40, 0x00, 1) in chip.log and cmd(0x40, 0x04, 1) not in chip.log
    assert drv.ATECCKey(dev, 2).public_key() != pub


def test_open_key_uri_with_registered_bus_in_real_time():
    chip = ATECC608Model(clock=RealClock(), exec_ms={0x40: 3, 0x41: 3, 0x16: 1})
    drv.register_bus("model-rt", chip)
    key = open_key("atecc608:bus=model-rt;addr=0x60;slot=3")
    assert (key.alg, key.backend) == (-7, "atecc608")
    d = hashlib.sha256(b"uri").digest()
    verify(key.public_key(), d, key.sign_digest(d))
    key.close()
    assert chip.state == SLEEP
    with pytest.raises(KeyBackendError):
        key.sign_digest(d)
    for bad in ("atecc608:bus=model-rt;addr=0x99", "atecc608:slot=16", "atecc608:colour=1",
                "atecc608:bus=nope-not-registered", "atecc608:addr=zz"):
        with pytest.raises(KeyBackendError) as ei:
            open_key(bad)
        assert ei.value.reason == "bad_uri"


def test_corrupted_or_short_response_is_retried():
    chip, dev, clock = make()
    key = drv.ATECCKey(dev, 0)
    d = hashlib.sha256(b"noise").digest()
    chip.corrupt_responses = 1
    verify(key.public_key(), d, key.sign_digest(d))
    assert dev.stats["retries"] == 1
    chip.drop_response_bytes = 1
    verify(key.public_key(), d, key.sign_digest(d))
    assert dev.stats["retries"] == 2
    chip.corrupt_responses = 10                    # every attempt garbled: a clear error, no hang
    with pytest.raises(drv.ATECCError) as ei:
        key.sign_digest(d)
    assert "gave up after 3 attempts" in str(ei.value) and ei.value.status is None


def test_command_crc_error_answers_ff_and_driver_resends():
    chip, dev, clock = make()
    chip.corrupt_commands = 1                      # one bit flips on the wire
    assert dev.info() == b"\x00\x00\x60\x02"
    reads = [e[2] for e in chip.log if e[0] == "r"]
    assert status_frame(0xFF)[1:] in reads          # the chip said "CRC error"
    assert sum(1 for e in chip.log if e == WAKE) == 2
    assert dev.stats["retries"] == 1


def test_wake_nack_is_retried_then_fails_clearly():
    chip, dev, clock = make()
    chip.nack_wakes = 1
    assert dev.random() != dev.random()
    chip.nack_wakes = 99
    with pytest.raises(drv.ATECCError) as ei:
        dev.info()
    assert "no wake response" in str(ei.value)
    assert sum(1 for e in chip.log[-20:] if e == WAKE) >= 3


def test_no_wake_when_bus_clock_too_fast_for_twlo():
    chip, dev, clock = make(freq=400000)           # address byte holds SDA low 22 us < 60 us
    with pytest.raises(drv.ATECCError) as ei:
        dev.info()
    assert "wake" in str(ei.value)


def test_selftest_failure_at_wake_is_not_retried():
    chip, dev, clock = make()
    chip.selftest_fail = 1
    with pytest.raises(drv.ATECCError) as ei:
        dev.info()
    assert ei.value.status == 0x07 and dev.stats["retries"] == 0


def test_busy_beyond_max_execution_time_times_out():
    chip, dev, clock = make(exec_ms={0x30: 200})   # Info max is 5 ms
    t0 = clock.us
    with pytest.raises(drv.ATECCError) as ei:
        dev.info()
    assert "within" in str(ei.value)
    assert clock.us - t0 < 3 * 60000               # bounded polling per attempt


def test_watchdog_sleeps_chip_and_status_ee_when_command_cannot_finish():
    chip, dev, clock = make()
    key = drv.ATECCKey(dev, 0)
    # Chip left awake by someone else: the watchdog puts it to sleep, the driver re-wakes it.
    try:
        chip.writeto(0, b"\x00")
    except OSError:
        pass
    clock.advance(1400000)
    chip._tick()
    assert chip.state == SLEEP
    d = hashlib.sha256(b"wd").digest()
    verify(key.public_key(), d, key.sign_digest(d))
    # TempKey does not survive the watchdog: Nonce, wait 1.4 s, Sign -> execution error 0x0F.
    chip.log.clear()

    def slow(slot):
        dev.execute(0x16, 0x03, 0, d, 0)
        clock.advance(1400000)
        dev._wake()
        return dev.execute(0x41, 0x80, slot, b"", 64)
    with pytest.raises(drv.ATECCError) as ei:
        dev.transaction(slow, 0)
    assert ei.value.status == 0x0F
    # A watchdog too short for Sign: the chip answers 0xEE instead of executing.
    chip2, dev2, _ = make(watchdog_ms=100)
    chip2.keys[0] = chip2.ecc.generate()
    with pytest.raises(drv.ATECCError) as ei:
        dev2.sign_digest(0, d)
    assert "0xee" in str(ei.value)
    assert status_frame(0xEE)[1:] in [e[2] for e in chip2.log if e[0] == "r"]


def test_status_errors_raise_typed_errors_without_retry():
    chip, dev, clock = make()
    with pytest.raises(drv.ATECCError) as ei:
        drv.ATECCKey(dev, 9)                        # slot 9 holds no ECC private key
    assert ei.value.status == 0x0F
    with pytest.raises(drv.ATECCError) as ei:
        dev.transaction(dev.execute, 0x24, 0x00, 2, b"", 4)   # counter 2 does not exist
    assert ei.value.status == 0x03 and dev.stats["retries"] == 0
    with pytest.raises(KeyBackendError):
        dev.sign_digest(0, b"short")


def test_counter_is_monotonic_and_stops_at_the_limit():
    chip, dev, clock = make()
    c = drv.ATECCCounter(dev, 1)
    assert c.peek() == 0
    seen = [c.next() for _ in range(5)]
    assert seen == [1, 2, 3, 4, 5] and c.peek() == 5
    assert cmd(0x24, 0x01, 1) in chip.log and cmd(0x24, 0x00, 1) in chip.log
    chip.corrupt_responses = 1                      # a lost reply: the retry skips, never repeats
    assert c.next() > 5
    chip.counters[0] = drv.COUNTER_MAX - 1
    c0 = drv.ATECCCounter(dev, 0)
    assert c0.next() == drv.COUNTER_MAX
    with pytest.raises(drv.ATECCError) as ei:
        c0.next()
    assert ei.value.status == 0x0F
    with pytest.raises(KeyBackendError):
        drv.ATECCCounter(dev, 2)


def test_config_reads_serial_and_lock_status():
    chip, dev, clock = make(serial=bytes.fromhex("0123aabbccddeeff11"))
    assert dev.serial_number() == bytes.fromhex("0123aabbccddeeff11")
    assert dev.lock_status() == (True, True)
    chip.config[87] = 0x55
    assert dev.lock_status() == (False, True)
    assert cmd(0x02, 0x80, 2 << 3) in chip.log


def test_pycose_verifies_cose_sign1_made_with_the_chip_key():
    from edgepoi import cose, cose_verify
    chip, dev, clock = make()
    key = drv.ATECCKey(dev, 4)
    msg = cose.sign1(b"claims from the secure element", key)
    assert pycose_verifies(msg, key.public_key())
    assert cose_verify.verify1(msg, key.public_key()) == b"claims from the secure element"


def test_sign_latency_median():
    chip, dev, clock = make()
    key = drv.ATECCKey(dev, 0)
    d = hashlib.sha256(b"bench").digest()
    wall, chip_time = [], []
    for _ in range(30):
        t, v = time.perf_counter(), clock.us
        verify(key.public_key(), d, key.sign_digest(d))
        wall.append(time.perf_counter() - t)
        chip_time.append(clock.us - v)
    med, vmed = statistics.median(wall) * 1000, statistics.median(chip_time) / 1000
    print("atecc608 driver vs model (CPython) sign_digest median: %.3f ms host, %.1f ms modelled "
          "chip+bus time" % (med, vmed))
    assert med < 50 and 100 < vmed < 300
