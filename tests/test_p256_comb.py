"""The precomputed comb table of edgepoi.p256: every entry against `cryptography`, the file against a fresh
computation, and the point of precomputing it: from ROMFS the 4 KB table takes no heap."""
import importlib.util
import os
import re

from cryptography.hazmat.primitives.asymmetric import ec

from edgepoi import p256, p256_comb
from edgepoi_host import bundle
from edgepoi_host.runtime.micropython import MicroPython

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script():
    spec = importlib.util.spec_from_file_location("derive_p256_comb",
                                                  os.path.join(ROOT, "scripts", "derive_p256_comb.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_comb_parameters_agree():
    gen = _script()
    assert gen.COMB == p256._COMB
    assert p256._COLS == (256 + p256._COMB - 1) // p256._COMB
    assert p256._MASK == (1 << p256._COLS) - 1
    assert isinstance(p256_comb.TABLE, bytes)
    assert len(p256_comb.TABLE) == 64 * ((1 << p256._COMB) - 1)


def test_every_entry_is_the_point_cryptography_computes():
    t = p256_comb.TABLE
    for i in range(1, 1 << p256._COMB):
        s = sum(1 << (p256._COLS * j) for j in range(p256._COMB) if i >> j & 1) % p256.N
        nums = ec.derive_private_key(s, ec.SECP256R1()).public_key().public_numbers()
        o = 64 * (i - 1)
        assert int.from_bytes(t[o:o + 32], "big") == nums.x, i
        assert int.from_bytes(t[o + 32:o + 64], "big") == nums.y, i


def test_the_generated_file_is_what_the_script_writes():
    gen = _script()
    with open(p256_comb.__file__) as f:
        assert f.read() == gen.render(gen.table())


def test_signing_reads_the_table(monkeypatch):
    # k*G comes from the table: with one bit of every entry flipped the public key is wrong
    d = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
    nums = ec.derive_private_key(d, ec.SECP256R1()).public_key().public_numbers()
    good = b"\x04" + nums.x.to_bytes(32, "big") + nums.y.to_bytes(32, "big")
    assert p256.public_key(d) == good
    bad = bytearray(p256_comb.TABLE)
    for i in range(0, len(bad), 64):
        bad[i + 31] ^= 1
    monkeypatch.setattr(p256, "TABLE", bytes(bad))
    assert p256.public_key(d) != good


def test_from_romfs_the_table_takes_no_heap(tmp_path):
    rom = bundle.build("unix", str(tmp_path / "rom"), romfs=True)
    code = ("import gc\ngc.collect()\na = gc.mem_alloc()\nfrom edgepoi import p256_comb\ngc.collect()\n"
            "print('HEAP', gc.mem_alloc() - a, len(p256_comb.TABLE))\n")
    out = MicroPython(heapsize="64K", sdk=False, romfs=rom.romfs_image).run_code(code).stdout
    heap, size = map(int, re.search(r"HEAP (\d+) (\d+)", out).groups())
    assert size == 4032 and heap < 1024, out      # module, dict and qstrs; a copy alone would be 4 KB
