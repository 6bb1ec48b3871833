# heapsize: 128K
# Board validation, portable: the same checks the board runs at boot (firmware/boot.py) and the host runs
# in `edgepoi board validate`. 128K because the validator is compiled from source here (a board imports
# the .mpy: ~28 KB on the 64-bit unix port, see tests/test_bundle.py).
import json

import checks
from edgepoi import boards

_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
BOARDS_DIR = _HERE + "/../../boards/"
IDS = ("esp32", "esp32-s3", "esp32-c3", "rpi-zero-2w", "rpi-4", "rpi-5", "unix")


def _load(bid):
    with open(BOARDS_DIR + bid + ".json") as f:
        return json.load(f)


def _errors(board):
    e = checks.raises(boards.BoardError, boards.validate, board)
    return e.errors


def test_every_board_file_validates_and_is_a_fixed_point():
    for bid in IDS:
        b = boards.validate(_load(bid))
        assert b["id"] == bid
        assert boards.validate(json.loads(json.dumps(b))) == b


def test_units_are_parsed():
    assert boards.parse_freq("400k") == 400000
    assert boards.parse_freq("100kHz") == 100000
    assert boards.parse_freq("1 MHz") == 1000000
    assert boards.parse_freq(100000) == 100000
    assert boards.parse_size("96K") == 96 * 1024
    assert boards.parse_size("4M") == 4 * 1024 * 1024
    assert boards.parse_size("1.5K") == 1536
    checks.raises(ValueError, boards.parse_freq, "fast")
    checks.raises(ValueError, boards.parse_size, "96Q")
    checks.raises(ValueError, boards.parse_size, True)


def test_defaults_are_applied():
    b = _load("esp32")
    del b["i2c"][0]["freq"]
    del b["status_led"]
    del b["sensors"][0]["name"]
    n = boards.validate(b)
    assert n["i2c"][0]["freq"] == 100000
    assert n["status_led"] == {"kind": "none"}
    assert n["sensors"][0]["name"] == "bme280"
    assert n["secure_element"]["address"] == 0x60


def test_flash_pin_is_rejected_with_path_and_reason():
    b = _load("esp32")
    b["i2c"][0]["sda"] = 6
    assert _errors(b) == ["i2c[0].sda: GPIO6 is reserved for the SPI flash on esp32"]


def test_strapping_pin_on_i2c_names_the_strap():
    b = _load("esp32")
    b["i2c"][0]["scl"] = "GPIO12"
    err = _errors(b)
    assert len(err) == 1 and err[0].startswith("i2c[0].scl: GPIO12 is a strapping pin (MTDI, selects flash voltage)")
    assert err[0].endswith("pick another")


def test_unknown_sensor_lists_the_known_ones():
    b = _load("esp32")
    b["sensors"][1] = {"type": "bme281"}
    err = _errors(b)
    assert err == ["sensors[1].type: unknown sensor 'bme281' (known: adc, bme280, lsm6ds, mpu6050, replay, "
                   "synthetic)"], err


def test_chip_specific_pins():
    s3 = _load("esp32-s3")
    s3["i2c"][0]["sda"] = 35
    assert _errors(s3) == ["i2c[0].sda: GPIO35 is reserved for the octal PSRAM (N8R8 module) on esp32s3"]
    c3 = _load("esp32-c3")
    c3["i2c"][0]["scl"] = 9
    assert "GPIO9 is a strapping pin (GPIO9, boot mode" in _errors(c3)[0]
    c3 = _load("esp32-c3")
    c3["i2c"].append({"id": 1, "sda": 4, "scl": 5})
    assert _errors(c3) == ["i2c[1].id: no I2C controller 1 on esp32c3 (controllers: 0)"]
    e = _load("esp32")
    e["i2c"][0]["sda"] = 36
    assert _errors(e)[0].startswith("i2c[0].sda: GPIO36 is input-only on esp32")


def test_adc_rules():
    b = _load("esp32")
    b["sensors"][1]["pin"] = 26
    assert _errors(b) == ["sensors[1].pin: GPIO26 is on ADC2, which is unavailable while Wi-Fi is on"]
    pi = _load("rpi-4")
    pi["sensors"].append({"type": "adc", "pin": 4})
    assert _errors(pi) == ["sensors[1].type: rpi-4 has no ADC (bcm2711); use an external I2C ADC"]


def test_i2c_addresses_buses_and_pins_clash():
    b = _load("esp32")
    b["sensors"][0]["address"] = "0x50"
    assert _errors(b) == ["sensors[0].address: 0x50 is not a bme280 address (0x76 or 0x77)"]
    b = _load("esp32")
    b["sensors"].append({"type": "bme280", "address": 0x76})
    assert _errors(b) == ["sensors[2].address: address 0x76 on I2C bus 0 is already taken by sensors[0] (bme280)"]
    b = _load("esp32")
    b["sensors"][0]["i2c"] = 1
    assert _errors(b) == ["sensors[0].i2c: no I2C bus 1 on this board (buses: 0)"]
    b = _load("esp32")
    b["status_led"]["pin"] = 21
    assert _errors(b) == ["status_led.pin: GPIO21 is already used by i2c[0].sda"]


def test_frequency_and_structure_errors_collect():
    b = _load("esp32")
    b["i2c"][0]["freq"] = "4MHz"
    b["sensor"] = []
    b["heap_budget"] = "lots"
    err = _errors(b)
    assert len(err) == 3, err
    assert err[0].startswith("sensor: unknown field \u2014 did you mean 'sensors'?")
    assert err[1] == "heap_budget: cannot read 'lots' as a size like '96K' or '4M'"
    assert err[2].startswith("i2c[0].freq: 4000000 Hz is outside 10000..1000000 Hz")


def test_platform_rules():
    b = _load("esp32")
    b["secure_element"] = {"type": "tpm2"}
    assert _errors(b) == ["secure_element.type: tpm2 needs a Linux host (CPython); esp32 is a micropython board"]
    b = _load("esp32")
    del b["mpy"]
    assert _errors(b)[0].startswith("mpy: missing")
    pi = _load("rpi-5")
    pi["mpy"] = {"version": "6.3", "arch": "x64"}
    assert _errors(pi) == ["mpy: a cpython board runs .py source, it has no .mpy format"]


def test_aliases_resolve():
    table = {}
    for bid in IDS:
        table[bid] = _load(bid)
    assert boards.resolve("esp32dev", table)["id"] == "esp32"
    assert boards.resolve("ESP32S3", table)["id"] == "esp32-s3"
    assert boards.resolve("sim", table)["id"] == "unix"
    e = checks.raises(KeyError, boards.resolve, "esp8266", table)
    assert "unknown board 'esp8266'" in str(e)
