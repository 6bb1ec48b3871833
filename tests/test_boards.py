"""Board definitions: every file validates (validator and JSON schema), pin facts match the chip docs, the
schema and the validator agree on broken boards, and `edgepoi board` / `edgepoi bundle` behave.
The validator's own cases run on MicroPython too: tests/portable/test_boards_portable.py."""
import copy
import io
import json
import os

import jsonschema
import pytest

from edgepoi import boards
from edgepoi_host import boards_cli, bundle

IDS = {"esp32", "esp32-s3", "esp32-c3", "rpi-zero-2w", "rpi-4", "rpi-5", "unix"}
with open(os.path.join(bundle.BOARDS_DIR, "schema.json")) as _f:
    SCHEMA = json.load(_f)
SCHEMA_CHECK = jsonschema.Draft202012Validator(SCHEMA)


def raw(bid):
    with open(os.path.join(bundle.BOARDS_DIR, bid + ".json")) as f:
        return json.load(f)


def schema_errors(board):
    return list(SCHEMA_CHECK.iter_errors(board))


def test_the_seven_boards_exist_with_unique_ids_and_aliases():
    table = bundle.load_boards()
    assert set(table) == IDS
    names = [n.lower() for b in table.values() for n in [b["id"]] + b.get("aliases", [])]
    assert len(names) == len(set(names)), names


@pytest.mark.parametrize("bid", sorted(IDS))
def test_every_board_passes_validator_and_schema(bid):
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert schema_errors(raw(bid)) == []
    b = boards.validate(raw(bid))
    assert schema_errors(json.loads(json.dumps(b))) == []      # the normalised form is schema-valid too
    if b["platform"] == "micropython":
        assert b["mpy"]["version"] == "6.3"
    else:
        assert "mpy" not in b and b["secure_element"]["type"] == "tpm2"


# Pin facts from Espressif's ESP-IDF GPIO docs and datasheets (written out here, apart from the JSON).
CHIP_FACTS = {
    "esp32": {"flash": set(range(6, 12)), "straps": {0, 2, 5, 12, 15}, "input_only": {34, 35, 36, 37, 38, 39},
              "adc": {32, 33, 34, 35, 36, 39}, "arch": "xtensawin", "i2c_ids": [0, 1]},
    "esp32-s3": {"flash": set(range(26, 33)), "straps": {0, 3, 45, 46}, "input_only": set(),
                 "adc": set(range(1, 11)), "arch": "xtensawin", "i2c_ids": [0, 1]},
    "esp32-c3": {"flash": set(range(12, 18)), "straps": {2, 8, 9}, "input_only": set(),
                 "adc": set(range(0, 5)), "arch": "rv32imc", "i2c_ids": [0]},
}


@pytest.mark.parametrize("bid", sorted(CHIP_FACTS))
def test_esp_pin_facts(bid):
    b = boards.validate(raw(bid))
    facts = CHIP_FACTS[bid]
    flash = set(p for r in b["reserved_pins"] if "flash" in r["why"] for p in r["pins"])
    assert facts["flash"] <= flash
    assert {s["pin"] for s in b["strapping_pins"]} == facts["straps"]
    assert set(b["input_only_pins"]) == facts["input_only"]
    assert set(b["adc_pins"]) == facts["adc"]
    assert b["mpy"]["arch"] == facts["arch"] and b["i2c_ids"] == facts["i2c_ids"]
    assert all(s["why"] for s in b["strapping_pins"])


def _mut(bid, fn):
    b = copy.deepcopy(raw(bid))
    fn(b)
    return b


# Broken boards both the schema and the validator must reject: (board, field path the validator names).
BOTH = [
    (_mut("esp32", lambda b: b["sensors"].__setitem__(1, {"type": "bme281"})), "sensors[1].type"),
    (_mut("esp32", lambda b: b["i2c"][0].__setitem__("freq", "fast")), "i2c[0].freq"),
    (_mut("esp32", lambda b: b["i2c"][0].__setitem__("freq", 4000000)), "i2c[0].freq"),
    (_mut("esp32", lambda b: b.__setitem__("heap_budget", "96Q")), "heap_budget"),
    (_mut("esp32", lambda b: b.__setitem__("sensor", [])), "sensor"),
    (_mut("esp32", lambda b: b.pop("mpy")), "mpy"),
    (_mut("esp32", lambda b: b.pop("name")), "name"),
    (_mut("esp32", lambda b: b.__setitem__("chip", "esp8266")), "chip"),
    (_mut("esp32", lambda b: b.__setitem__("id", "ESP 32")), "id"),
    (_mut("esp32", lambda b: b["mpy"].__setitem__("arch", "xtensa-lx6")), "mpy.arch"),
    (_mut("esp32", lambda b: b["mpy"].__setitem__("small_int_bits", 32)), "mpy.small_int_bits"),
    (_mut("esp32", lambda b: b["sensors"][0].__setitem__("address", "0x50")), "sensors[0].address"),
    (_mut("esp32", lambda b: b["i2c"][0].pop("scl")), "i2c[0].scl"),
    (_mut("esp32", lambda b: b.__setitem__("secure_element", {"type": "tpm2"})), "secure_element.type"),
    (_mut("esp32", lambda b: b["status_led"].__setitem__("kind", "rgb")), "status_led.kind"),
    (_mut("esp32", lambda b: b["sensors"][1].pop("pin")), "sensors[1].pin"),
    (_mut("rpi-4", lambda b: b.__setitem__("mpy", {"version": "6.3", "arch": "x64"})), "mpy"),
    (_mut("unix", lambda b: b.pop("flash_size")), "flash_size"),
]
# Cross-field rules only the validator knows (the schema cannot see the board's own pin tables).
VALIDATOR_ONLY = [
    (_mut("esp32", lambda b: b["i2c"][0].__setitem__("sda", 6)), "i2c[0].sda", "reserved for the SPI flash"),
    (_mut("esp32", lambda b: b["i2c"][0].__setitem__("scl", 12)), "i2c[0].scl", "strapping pin (MTDI"),
    (_mut("esp32", lambda b: b["i2c"][0].__setitem__("sda", 35)), "i2c[0].sda", "input-only"),
    (_mut("esp32", lambda b: b["sensors"][1].__setitem__("pin", 25)), "sensors[1].pin", "ADC2"),
    (_mut("esp32", lambda b: b["status_led"].__setitem__("pin", 22)), "status_led.pin", "already used"),
    (_mut("esp32-c3", lambda b: b["i2c"][0].__setitem__("id", 1)), "i2c[0].id", "no I2C controller 1"),
    (_mut("esp32-s3", lambda b: b["sensors"].append({"type": "mpu6050", "name": "imu2"})), "sensors[2].address",
     "already taken"),
    (_mut("rpi-5", lambda b: b["sensors"].append({"type": "adc", "pin": 4})), "sensors[1].type", "no ADC"),
]


@pytest.mark.parametrize("board,path", BOTH, ids=[p for _, p in BOTH])
def test_schema_and_validator_both_reject(board, path):
    assert schema_errors(board), "schema accepted a broken board (%s)" % path
    with pytest.raises(boards.BoardError) as e:
        boards.validate(board)
    assert any(err.startswith(path + ":") for err in e.value.errors), e.value.errors


@pytest.mark.parametrize("board,path,why", VALIDATOR_ONLY, ids=[p for _, p, _ in VALIDATOR_ONLY])
def test_validator_rejects_cross_field_problems(board, path, why):
    with pytest.raises(boards.BoardError) as e:
        boards.validate(board)
    assert [err for err in e.value.errors if err.startswith(path + ":") and why in err], e.value.errors


def _cli(argv):
    out = io.StringIO()
    return boards_cli.main(argv, out=out), out.getvalue()


def test_cli_list_and_show():
    rc, out = _cli(["board", "list"])
    assert rc == 0 and all(("\n%s " % bid) in out for bid in IDS), out
    rc, out = _cli(["board", "show", "esp32dev"])
    assert rc == 0 and json.loads(out)["id"] == "esp32" and json.loads(out)["heap_budget"] == 96 * 1024


def test_cli_validate(tmp_path, capsys):
    good = os.path.join(bundle.BOARDS_DIR, "esp32-c3.json")
    bad = tmp_path / "mine.json"
    bad.write_text(json.dumps(_mut("esp32", lambda b: b["i2c"][0].__setitem__("scl", 12))))
    rc, out = _cli(["board", "validate", good, str(bad)])
    assert rc == 1
    assert "%s: ok" % good in out
    assert "%s: i2c[0].scl: GPIO12 is a strapping pin (MTDI, selects flash voltage)" % bad in out
    # an empty alias: the validator and the schema both say so, with the field path
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(_mut("unix", lambda b: b.__setitem__("aliases", ["sim", ""]))))
    rc, out = _cli(["board", "validate", str(odd)])
    assert rc == 1 and "aliases[1]" in out, out
    rc, _ = _cli(["board", "show", "esp8266"])
    assert rc == 1 and "edgepoi: unknown board 'esp8266'" in capsys.readouterr().err


def test_cli_bundle(tmp_path):
    rc, out = _cli(["bundle", "--board", "esp32", "--out", str(tmp_path / "b"), "--exclude", "edgepoi/infer"])
    assert rc == 0 and "bundle for esp32 (mpy v6.3 xtensawin)" in out
    total = json.loads((tmp_path / "b" / "manifest.json").read_text())["total_bytes"]
    assert "%d bytes" % total in out and "KiB flash" in out
    rc, out = _cli(["bundle", "--board", "sim", "--out", str(tmp_path / "s"), "--exclude", "edgepoi/infer/"])
    paths = [f["path"] for f in json.loads((tmp_path / "s" / "manifest.json").read_text())["files"]]
    assert rc == 0 and "edgepoi/cbor.mpy" in paths and not [p for p in paths if p.startswith("edgepoi/infer/")]
