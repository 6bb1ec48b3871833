"""File operations and hash-based sync on a real MicroPython board over a pseudo-terminal.

The board's flash is a host folder (``serial_device.flash_dir``), so every check reads the truth straight from
disk; mpremote, a third-party client, must list and read back what edgepoi wrote.
"""
import base64
import hashlib
import os
import subprocess
import sys
import zlib

import pytest

from edgepoi_host.serial.fs import EXEC_BUDGET, DeviceFS, encode_chunk
from edgepoi_host.serial.transport import SerialTransport


@pytest.fixture
def fs(serial_device):
    t = SerialTransport(serial_device.port, timeout=3).open()
    yield DeviceFS(t)
    t.close()


def flash_tree(root):
    """{relative path: bytes} of the board's flash, read on the host."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            full = os.path.join(dirpath, n)
            with open(full, "rb") as f:
                out[os.path.relpath(full, root).replace(os.sep, "/")] = f.read()
    return out


def make_tree(root, files):
    for rel, data in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)


TREE = {
    "main.py": b"import app\napp.run()\n",
    "lib/app.py": b"def run():\n    print('it\\'s \"quoted\"')\n" * 40,
    "lib/edgepoi/__init__.py": b"",
    "lib/edgepoi/cbor.mpy": bytes(range(256)) * 30,
    "model.tflite": os.urandom(20000),
}


@pytest.mark.parametrize("data", [b"", b"\x04", bytes(range(256)), os.urandom(EXEC_BUDGET - 1),
                                  os.urandom(3 * EXEC_BUDGET + 17), b"'\"\\\r\n\x03" * 500])
def test_put_then_cat_gives_back_the_same_bytes_and_hash(fs, serial_device, data):
    fs.put(data, "d/x.bin")
    with open(os.path.join(serial_device.flash_dir, "d", "x.bin"), "rb") as f:
        assert f.read() == data
    assert fs.cat("d/x.bin") == data
    assert fs.sha256("d/x.bin") == hashlib.sha256(data).hexdigest()


def test_each_piece_goes_as_the_shortest_of_literal_base64_and_deflate():
    text, binary = b"print('hello %d')\n" * 20, os.urandom(600)
    assert encode_chunk(text)[0] == "_ep_w" and eval(encode_chunk(text)[1]) == text
    writer, expr = encode_chunk(binary, inflate=True)
    assert writer == "_ep_w" and expr.startswith("_ep_a2b(") and len(expr) < len(repr(binary))
    writer, expr = encode_chunk(text, inflate=True)
    assert writer == "_ep_wz" and len(expr) < len(text) / 2
    packed = base64.b64decode(expr[len("_ep_a2b('"):-2])
    assert zlib.decompress(packed, -10) == text      # CPython's zlib, independently, with a 1 KB window


@pytest.mark.parametrize("compress", [True, False])
def test_text_travels_deflated_only_when_enabled_and_arrives_intact(serial_device, compress):
    text = b"".join(b"def f%d(x):\n    return x * %d\n" % (i, i) for i in range(2000))
    with SerialTransport(serial_device.port, timeout=3) as t:
        fs = DeviceFS(t, compress=compress)
        before = serial_device.bytes_to_device
        fs.put(text, "big.py")
        sent = serial_device.bytes_to_device - before
        assert fs.can_inflate is compress
    assert (sent < len(text) / 2) is compress
    with open(os.path.join(serial_device.flash_dir, "big.py"), "rb") as f:
        assert f.read() == text


def test_ls_lists_recursively_with_the_sizes_on_disk(fs, serial_device):
    make_tree(serial_device.flash_dir, TREE)
    want = {rel: len(d) for rel, d in TREE.items()}
    want.update({"lib": -1, "lib/edgepoi": -1})
    assert dict(fs.ls(".")) == want
    assert fs.ls("lib", recursive=False) == [("app.py", len(TREE["lib/app.py"])), ("edgepoi", -1)]
    rows = fs.ls(".", hashes=True)
    assert {p: h for p, s, h in rows if s >= 0} == {p: hashlib.sha256(d).hexdigest() for p, d in TREE.items()}


def test_mkdir_p_and_recursive_rm(fs, serial_device):
    fs.mkdir("a/b/c")
    assert os.path.isdir(os.path.join(serial_device.flash_dir, "a", "b", "c"))
    fs.mkdir("a/b/c")                          # already there: fine
    fs.put(b"x", "a/b/c/f.txt")
    fs.rm("a")
    assert not os.path.exists(os.path.join(serial_device.flash_dir, "a"))
    fs.rm("a")                                 # nothing there: fine
    assert fs.isdir("a") is None


def test_sync_copies_the_tree_and_a_second_sync_sends_nothing(fs, serial_device, tmp_path):
    src = tmp_path / "bundle"
    make_tree(str(src), TREE)
    seen = []
    r1 = fs.sync(str(src), ".", progress=seen.append)
    assert sorted(r1.sent) == sorted(TREE) and sum(seen) == r1.bytes_sent == sum(map(len, TREE.values()))
    assert flash_tree(serial_device.flash_dir) == TREE

    before = serial_device.bytes_to_device
    r2 = fs.sync(str(src), ".", progress=False)
    sent = serial_device.bytes_to_device - before
    assert r2.sent == [] and sorted(r2.unchanged) == sorted(TREE)
    assert sent < 200, "an unchanged tree must cost one listing exec, not %d bytes" % sent


def test_sync_sends_only_what_changed_and_deletes_only_when_asked(fs, serial_device, tmp_path):
    src = tmp_path / "bundle"
    make_tree(str(src), TREE)
    fs.sync(str(src), "app")
    make_tree(serial_device.flash_dir, {"app/old/stale.py": b"x", "app/extra.txt": b"y"})
    make_tree(str(src), {"lib/app.py": b"def run():\n    pass\n"})
    before = serial_device.bytes_to_device
    r = fs.sync(str(src), "app")
    assert r.sent == ["lib/app.py"] and r.deleted == []
    assert serial_device.bytes_to_device - before < 1500       # the 20 KB model did not travel again
    assert os.path.exists(os.path.join(serial_device.flash_dir, "app", "extra.txt"))

    r = fs.sync(str(src), "app", delete=True)
    assert r.sent == [] and sorted(r.deleted) == ["extra.txt", "old"]
    tree = flash_tree(os.path.join(serial_device.flash_dir, "app"))
    assert tree == dict(TREE, **{"lib/app.py": b"def run():\n    pass\n"})


def test_sync_replaces_a_directory_standing_where_a_file_goes_and_vice_versa(fs, serial_device):
    make_tree(serial_device.flash_dir, {"x/config.json/inner": b"1", "x/y": b"file"})
    fs.sync({"config.json": b"{}", "y/z.py": b"z=1\n"}, "x")
    assert flash_tree(os.path.join(serial_device.flash_dir, "x")) == {"config.json": b"{}", "y/z.py": b"z=1\n"}


def test_absolute_remote_paths_work_too(fs, serial_device):
    root = os.path.abspath(serial_device.flash_dir)         # the unix port's flash is a host folder
    fs.mkdir(root + "/abs/x")
    r = fs.sync({"a/b.py": b"b=1\n", "c.txt": b"c"}, root + "/abs/x/")
    assert sorted(r.sent) == ["a/b.py", "c.txt"]
    assert flash_tree(os.path.join(root, "abs")) == {"x/a/b.py": b"b=1\n", "x/c.txt": b"c"}
    assert fs.sync({"a/b.py": b"b=1\n", "c.txt": b"c"}, root + "/abs/x").sent == []
    assert fs.ls(root + "/abs") == [("x", -1), ("x/a", -1), ("x/a/b.py", 4), ("x/c.txt", 1)]


def test_sync_with_a_rich_progress_bar(fs, serial_device, capsys):
    r = fs.sync({"a.bin": os.urandom(5000)}, ".", progress=True)
    assert r.bytes_sent == 5000
    assert "sync" in capsys.readouterr().out


def mpremote(port, *args):
    cmd = [sys.executable, "-m", "mpremote", "connect", port, "resume"] + list(args)
    p = subprocess.run(cmd, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


def test_mpremote_lists_and_reads_back_what_edgepoi_wrote(serial_device, tmp_path):
    with SerialTransport(serial_device.port, timeout=3) as t:
        DeviceFS(t).sync(TREE, ".")
    listing = mpremote(serial_device.port, "ls", ":lib/edgepoi").decode()
    assert "__init__.py" in listing and "cbor.mpy" in listing
    assert mpremote(serial_device.port, "cat", ":lib/app.py") == TREE["lib/app.py"]
    mpremote(serial_device.port, "cp", ":model.tflite", str(tmp_path / "m.tflite"))
    assert (tmp_path / "m.tflite").read_bytes() == TREE["model.tflite"]
    # and edgepoi still works on the port mpremote used
    with SerialTransport(serial_device.port, timeout=3) as t:
        assert DeviceFS(t).sync(TREE, ".").sent == []


def cli(*args):
    p = subprocess.run([sys.executable, "-m", "edgepoi_host.device_cli"] + list(args), capture_output=True,
                       timeout=60)
    return p.returncode, p.stdout, p.stderr.decode()


def test_device_cli_put_ls_cat_sync_exec(serial_device, tmp_path):
    port = serial_device.port
    src = tmp_path / "bundle"
    make_tree(str(src), TREE)
    code, out, err = cli("device", "sync", str(src), "app", "--port", port, "--no-progress")
    assert (code, err) == (0, "") and b"sent 5 files" in out
    code, out, _ = cli("device", "sync", str(src), "app", "--port", port, "--no-progress")
    assert b"sent 0 files (0 bytes), 5 unchanged" in out

    (tmp_path / "cfg.json").write_bytes(b'{"broker": "mqtt://x"}')
    assert cli("device", "put", str(tmp_path / "cfg.json"), "app/", "--port", port)[0] == 0
    code, out, _ = cli("device", "cat", "app/cfg.json", "--port", port)
    assert out == b'{"broker": "mqtt://x"}'
    code, out, _ = cli("device", "ls", "app", "--port", port)
    lines = out.decode().splitlines()
    assert "%10d %s" % (len(TREE["model.tflite"]), "model.tflite") in lines and "%10s lib/" % "" in lines

    code, out, _ = cli("device", "info", "--port", port)
    assert code == 0 and b"mpy       6." in out and b"platform  linux" in out
    code, out, err = cli("device", "exec", "print(6 * 7)", "--port", port)
    assert (code, out) == (0, b"42\n")
    code, out, err = cli("device", "exec", "import nosuchmodule", "--port", port)
    assert code == 1 and "ImportError" in err
    assert err.splitlines()[-1] == "edgepoi device: device raised ImportError: no module named 'nosuchmodule'"


def test_device_cli_failures_are_one_line(serial_device, tmp_path):
    code, _, err = cli("device", "cat", "nope.txt", "--port", serial_device.port)
    assert code == 1 and err == "edgepoi device: nope.txt: not a file on the board\n"
    code, _, err = cli("device", "ls", "--port", "/dev/edgepoi-none")
    assert code == 1 and err.startswith("edgepoi device: could not open /dev/edgepoi-none") and err.count("\n") == 1
    p = subprocess.run([sys.executable, "-m", "edgepoi_host.device_cli", "device", "ls"], capture_output=True,
                       text=True, env=dict(os.environ, EDGEPOI_PORT=""), timeout=60)
    assert p.returncode == 1 and p.stderr == "edgepoi device: no port given: pass --port PORT or set EDGEPOI_PORT\n"
