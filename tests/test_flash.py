"""``edgepoi flash``: board -> chip, ESP image checks, and esptool against a port where no ESP chip answers.

No ESP chip is attached here, so the images are built in the test following the ESP image header format and
checked against esptool's own image parser; esptool's real connect code talks to pseudo-terminals (one
silent, one with MicroPython's REPL on it) and must fail with one clear line, quickly.
"""
import os
import pty
import struct
import subprocess
import sys
import time
import tty

import pytest

from edgepoi_host import flash

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def esp_image(chip_id, segments=((0x3FCE3000, b"\x11" * 64), (0x403C9000, b"\x22" * 128)), magic=0xE9):
    """An ESP app image: 8-byte header, 16-byte extended header, segments, checksum byte padded to 16."""
    head = struct.pack("<BBBBI", magic, len(segments), 2, 0x20, 0x403C9000)
    ext = struct.pack("<B3sHBHH4sB", 0xEE, b"\x00\x00\x00", chip_id, 0, 0, 0xFFFF, b"\x00" * 4, 0)
    body, checksum = b"", 0xEF
    for addr, data in segments:
        body += struct.pack("<II", addr, len(data)) + data
        for b in data:
            checksum ^= b
    img = head + ext + body
    img += b"\x00" * (15 - len(img) % 16) + bytes([checksum])
    return img


@pytest.fixture
def image(tmp_path):
    def make(chip, **kw):
        p = tmp_path / ("fw-%s.bin" % chip)
        p.write_bytes(esp_image(flash.CHIP_IDS[chip], **kw))
        return str(p)
    return make


def test_chip_ids_agree_with_esptool():
    from esptool.cmds import CHIP_DEFS
    for chip, cid in flash.CHIP_IDS.items():
        assert CHIP_DEFS[chip].IMAGE_CHIP_ID == cid, chip


@pytest.mark.parametrize("chip", ["esp32", "esp32s3", "esp32c3"])
def test_images_built_here_are_valid_for_esptool_and_pass_the_check(image, chip):
    from esptool.bin_image import LoadFirmwareImage
    path = image(chip)
    parsed = LoadFirmwareImage(chip, path)               # esptool's parser: magic, chip id, checksum
    assert parsed.chip_id == flash.CHIP_IDS[chip] and len(parsed.segments) == 2
    info = flash.check_image(path, chip)
    assert info.chip == chip and info.segments == 2 and info.size == os.path.getsize(path)


def test_an_image_for_another_chip_is_refused_naming_both(image):
    with pytest.raises(flash.FlashError, match="built for esp32c3 but the board is an esp32s3"):
        flash.check_image(image("esp32c3"), "esp32s3")


def test_a_file_without_the_magic_byte_is_refused(tmp_path):
    p = tmp_path / "fw.bin"
    p.write_bytes(esp_image(9, magic=0x7F))
    with pytest.raises(flash.FlashError, match="first byte 0x7F, expected 0xE9"):
        flash.check_image(str(p), "esp32s3")


def test_missing_and_truncated_images_are_refused(tmp_path):
    with pytest.raises(flash.FlashError, match="cannot read firmware"):
        flash.check_image(str(tmp_path / "nope.bin"), "esp32")
    p = tmp_path / "short.bin"
    p.write_bytes(b"\xe9\x01\x02")
    with pytest.raises(flash.FlashError, match="too short"):
        flash.check_image(str(p), "esp32")


def test_board_ids_and_aliases_resolve_to_the_chip_in_their_json():
    import json
    with open(os.path.join(ROOT, "boards", "esp32-s3.json")) as f:
        want = json.load(f)["chip"]
    assert flash.board_chip("esp32-s3") == want
    for alias in json.load(open(os.path.join(ROOT, "boards", "esp32-s3.json"))).get("aliases", []):
        assert flash.board_chip(alias) == want


def test_builtin_map_without_board_files_and_clear_refusals(tmp_path):
    assert flash.board_chip("ESP32-C3", boards_dir=str(tmp_path)) == "esp32c3"
    with pytest.raises(flash.FlashError, match="unknown board 'zx81'"):
        flash.board_chip("zx81", boards_dir=str(tmp_path))
    (tmp_path / "pi.json").write_text('{"id": "pi", "chip": "bcm2711"}')
    with pytest.raises(flash.FlashError, match="not an ESP chip"):
        flash.board_chip("pi", boards_dir=str(tmp_path))


def test_chip_names_as_esptool_reports_them_normalise_to_board_chips():
    from esptool.targets import ESP32C3ROM, ESP32ROM, ESP32S3ROM
    assert [flash.chip_name(c.CHIP_NAME) for c in (ESP32ROM, ESP32S3ROM, ESP32C3ROM)] == \
        ["esp32", "esp32s3", "esp32c3"]


def silent_pty():
    master, slave = pty.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


def test_no_esp_chip_on_a_silent_port_is_one_clear_line_within_a_timeout():
    master, slave, path = silent_pty()
    try:
        t0 = time.monotonic()
        with pytest.raises(flash.FlashError) as ei:
            flash.detect(path, connect_attempts=1)
        assert time.monotonic() - t0 < 5
        msg = str(ei.value)
        assert msg.startswith("no ESP chip answered on %s" % path) and "\n" not in msg
    finally:
        os.close(master)
        os.close(slave)


def test_flashing_a_micropython_repl_port_fails_cleanly_after_the_image_checks(serial_device, image):
    t0 = time.monotonic()
    with pytest.raises(flash.FlashError) as ei:
        flash.flash(serial_device.port, image("esp32s3"), "esp32-s3", connect_attempts=1, progress=False)
    assert time.monotonic() - t0 < 5
    assert str(ei.value).startswith("no ESP chip answered on %s" % serial_device.port)


def test_image_problems_are_reported_before_the_port_is_touched(image):
    # the port does not exist: the image check must fail first, naming the image
    with pytest.raises(flash.FlashError, match="built for esp32 but the board is an esp32c3"):
        flash.flash("/dev/edgepoi-none", image("esp32"), "esp32-c3", progress=False)


def cli(*args):
    p = subprocess.run([sys.executable, "-m", "edgepoi_host.device_cli"] + list(args), capture_output=True,
                       text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def test_cli_flash_reports_one_line_and_exit_status_1(image):
    master, slave, path = silent_pty()
    try:
        code, out, err = cli("flash", "--port", path, "--firmware", image("esp32"), "--board", "esp32",
                             "--connect-attempts", "1", "--no-progress")
    finally:
        os.close(master)
        os.close(slave)
    assert code == 1
    assert err.startswith("edgepoi flash: no ESP chip answered on %s" % path) and err.count("\n") == 1
    code, out, err = cli("flash", "--port", path, "--firmware", "/nonexistent.bin", "--board", "esp32")
    assert code == 1 and err.startswith("edgepoi flash: cannot read firmware /nonexistent.bin")


def test_cli_flash_needs_its_arguments():
    code, out, err = cli("flash", "--port", "/dev/x")
    assert code == 2 and "--firmware" in err
