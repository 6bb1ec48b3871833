"""ROMFS on the unix board: the bundle's package packed into an image, mapped outside MicroPython's heap
and mounted at /rom, so its bytecode runs in place as on a board with a ROMFS partition."""
import json
import os
import re

import pytest

from edgepoi_host import bundle
from edgepoi_host.runtime import romfs
from edgepoi_host.runtime.micropython import MicroPython, MicroPythonError

IMPORTS = r"""
import gc
gc.collect(); before = gc.mem_alloc()
from edgepoi import cbor, attest, agent
from edgepoi.link.link import Link
from edgepoi.infer import Interpreter
gc.collect()
print("FILE", cbor.__file__)
print("HEAP", gc.mem_alloc() - before)
doc = {"dev": "sim-01", "seq": 7, "ok": True}
assert cbor.loads(cbor.dumps(doc)) == doc
print("OK")
"""


@pytest.fixture(scope="module")
def rom_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("rom") / "bundle"
    return bundle.build("unix", str(out), romfs=True)


def _heap(out):
    return int(re.search(r"^HEAP (\d+)$", out, re.M).group(1))


def test_romfs_bundle_keeps_the_package_out_of_the_flash_files(rom_bundle):
    paths = [f["path"] for f in rom_bundle.files]
    assert not any(p.startswith("edgepoi/") for p in paths), paths
    assert "boot.py" in paths and "main.py" in paths and "board.json" in paths
    assert os.path.isfile(rom_bundle.romfs_image)
    with open(rom_bundle.manifest_path) as f:
        man = json.load(f)
    assert man["romfs"]["size"] == os.path.getsize(rom_bundle.romfs_image)
    assert man["romfs"]["sha256"] == bundle.sha256_file(rom_bundle.romfs_image)
    assert "romfs.img" not in paths
    assert bundle.verify(rom_bundle.out_dir) == []


def test_code_runs_from_rom_and_takes_less_heap_than_loaded_mpy(rom_bundle, tmp_path):
    rom = MicroPython(heapsize="1M", sdk=False, path=[rom_bundle.out_dir], romfs=rom_bundle.romfs_image)
    res = rom.run_code(IMPORTS, cwd=rom_bundle.out_dir)
    assert "FILE /rom/edgepoi/cbor.mpy" in res.stdout and "OK" in res.stdout
    ram_bundle = bundle.build("unix", str(tmp_path / "ram"))
    ram = MicroPython(heapsize="1M", sdk=False, path=[ram_bundle.out_dir])
    res2 = ram.run_code(IMPORTS, cwd=ram_bundle.out_dir)
    assert "FILE edgepoi/cbor.mpy" in res2.stdout      # from the flash folder (the cwd)
    # the bytecode stays in the (mapped) image: only function objects, tables and qstr entries remain
    assert _heap(res.stdout) < 0.7 * _heap(res2.stdout), (_heap(res.stdout), _heap(res2.stdout))


def test_scripts_run_with_the_image_mounted(rom_bundle, tmp_path):
    script = tmp_path / "probe.py"
    script.write_text("import sys\nimport edgepoi.cbor as c\nprint('ARGV', sys.argv[1:], c.__file__)\n")
    mp = MicroPython(heapsize="256K", sdk=False, romfs=rom_bundle.romfs_image)
    out = mp.run_script(str(script), ["a", "b"]).stdout
    assert "ARGV ['a', 'b'] /rom/edgepoi/cbor.mpy" in out


def test_image_round_trips_files_and_folders(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 3)
    img = str(tmp_path / "x.img")
    size = romfs.build_image(str(src), img, prefix="pkg")
    assert size == os.path.getsize(img)
    mp = MicroPython(heapsize="256K", sdk=False, romfs=img)
    out = mp.run_code("import os\nprint(sorted(os.listdir('/rom/pkg')))\n"
                      "print(open('/rom/pkg/a.txt').read())\n"
                      "d = open('/rom/pkg/sub/b.bin', 'rb').read()\nprint(len(d), d[255], d[256])\n").stdout
    assert "['a.txt', 'sub']" in out and "alpha" in out and "768 255 0" in out


def test_missing_image_and_missing_mapping_fail_with_a_reason(tmp_path):
    with pytest.raises(romfs.RomfsError, match="no image"):
        MicroPython(romfs=str(tmp_path / "nope.img")).run_code("print(1)")
    with pytest.raises(romfs.RomfsError, match="not a folder"):
        romfs.build_image(str(tmp_path / "nope"), str(tmp_path / "x.img"))
    # the device-side mount refuses to run without the mapping instead of importing from elsewhere
    mp = MicroPython(heapsize="256K", sdk=False)
    with pytest.raises(MicroPythonError, match="not mapped"):
        mp.run_code(romfs.MOUNT_CODE + "print('unreachable')\n")


def test_cpython_boards_refuse_romfs(tmp_path):
    with pytest.raises(bundle.BundleError, match="CPython"):
        bundle.build("rpi-4", str(tmp_path / "pi"), romfs=True)
