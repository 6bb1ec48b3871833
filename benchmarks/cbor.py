"""Benchmark edgepoi.cbor: median encode/decode time of a telemetry map and an attestation payload.

Host script (CPython): times edgepoi.cbor against cbor2 (C extension, canonical=True), prints the
ratios, then runs this same file under the real MicroPython unix port (96K heap) and prints its figures.

    python benchmarks/cbor.py            # CPython vs cbor2, then MicroPython
    micropython benchmarks/cbor.py       # MicroPython figures only (what the host script runs)
"""
import sys
import time

MICRO = sys.implementation.name == "micropython"
BATCHES = 15


def telemetry():
    return {"dev": "esp32-7f3a", "seq": 123456, "ts": 1764430000, "temp": 21.5, "hum": 48.25,
            "press": 101325.0, "batt": 3.71, "rssi": -67, "uptime": 86400, "ok": True}


def attestation():
    # An EAT-style claims map: ueid 256, eat_nonce 10, iat 6, then edgepoi's own claims.
    return {256: b"\x01" + bytes(range(16)), 10: bytes(range(100, 116)), 6: 1764430000,
            -70001: 4242, -70002: bytes(range(32)), -70003: bytes(range(32, 64)),
            -70004: bytes(range(64, 96)), -70005: bytes([7, 250, 3, 0, 128, 12, 99, 4, 1, 200]),
            -70006: 1234567, -70007: "int8-ref-viper", -70008: [0.0, 0.9921875, 0.0078125]}


def clock():
    return time.ticks_us() if MICRO else time.perf_counter_ns() // 1000


def medians_us(calls, n):
    """Time each (fn, arg) n times per batch, the calls interleaved batch by batch so that they share
    the machine's load. Returns the median microseconds per call of each, and of each one's ratio to
    the last of the calls (measured within the same batch)."""
    times = [[] for _ in calls]
    for _ in range(BATCHES):
        for i, (fn, arg) in enumerate(calls):
            t0 = clock()
            for _ in range(n):
                fn(arg)
            dt = time.ticks_diff(clock(), t0) if MICRO else clock() - t0
            times[i].append(dt / n)
    ratios = [sorted(t[k] / times[-1][k] for k in range(BATCHES)) for t in times]
    return [sorted(t)[BATCHES // 2] for t in times], [r[BATCHES // 2] for r in ratios]


def ours(n):
    from edgepoi import cbor
    rows = []
    for name, make in (("telemetry", telemetry), ("attestation", attestation)):
        v = make()
        b = cbor.dumps(v)
        if cbor.loads(b) != v:
            raise SystemExit("round trip failed for " + name)
        rows.append((name, len(b)) + tuple(medians_us([(cbor.dumps, v), (cbor.loads, b)], n)[0]))
    return rows


def main():
    import os
    import cbor2

    from edgepoi_host.runtime.micropython import MicroPython

    from edgepoi import cbor

    n = 1000
    print("CPython %s, median of %d batches of %d calls (ours and cbor2 interleaved), us per call"
          % (sys.version.split()[0], BATCHES, n))
    print("%-12s %5s %9s %9s %7s %9s %9s %7s" % ("payload", "bytes", "enc ours", "enc cbor2", "ratio",
                                              "dec ours", "dec cbor2", "ratio"))
    for name, make in (("telemetry", telemetry), ("attestation", attestation)):
        v = make()
        b = cbor.dumps(v)
        if cbor.loads(b) != v or cbor2.loads(b) != v:
            raise SystemExit("round trip failed for " + name)
        (enc, ref_enc), (enc_ratio, _) = medians_us(
            [(cbor.dumps, v), (lambda x: cbor2.dumps(x, canonical=True), v)], n)
        (dec, ref_dec), (dec_ratio, _) = medians_us([(cbor.loads, b), (cbor2.loads, b)], n)
        print("%-12s %5d %9.1f %9.1f %6.1fx %9.1f %9.1f %6.1fx" % (name, len(b), enc, ref_enc, enc_ratio,
                                                                  dec, ref_dec, dec_ratio))
    res = MicroPython(heapsize="96K").run([os.path.abspath(__file__)], timeout=300)
    print(res.stdout.rstrip())


def micro_main():
    n = 200
    print("MicroPython %s unix port, heap 96K, median of %d batches of %d calls, us per call" % (
        ".".join(str(x) for x in sys.implementation.version[:3]), BATCHES, n))
    print("%-12s %5s %9s %9s" % ("payload", "bytes", "enc ours", "dec ours"))
    for name, size, enc, dec in ours(n):
        print("%-12s %5d %9.1f %9.1f" % (name, size, enc, dec))


if __name__ == "__main__":
    if MICRO:
        micro_main()
    else:
        main()
