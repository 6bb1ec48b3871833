"""``edgepoi flash``: write a MicroPython firmware image to an ESP board through esptool's Python API.

Before anything is written: the board definition names the chip (``boards/<id>.json`` field ``chip``, found
by id or alias; a small built-in map otherwise), the image must be an ESP image (magic byte 0xE9) built for
that chip (the chip id in its extended header), and the chip that answers on the port must be that chip.
Every failure is a ``FlashError`` with a one-line message that says what to try.

Usage::

    from edgepoi_host.flash import flash, check_image
    check_image("ESP32_GENERIC_S3.bin", "esp32s3")       # -> ImageInfo(chip='esp32s3', ...)
    flash("/dev/ttyUSB0", "ESP32_GENERIC_S3.bin", "esp32-s3", progress=True)
"""
import glob
import json
import os
import struct

REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOARDS_DIR = os.path.join(REPO_DIR, "boards")

ESP_IMAGE_MAGIC = 0xE9
# Chip ids in the ESP image extended header (esp-idf esp_chip_id_t).
CHIP_IDS = {"esp32": 0, "esp32s2": 2, "esp32c3": 5, "esp32s3": 9, "esp32c2": 12, "esp32c6": 13,
            "esp32h2": 16, "esp32p4": 18, "esp32c61": 20, "esp32c5": 23}
# Where a MicroPython firmware .bin (bootloader first) goes: 0x1000 on the original ESP32 and the S2.
FLASH_OFFSETS = {"esp32": 0x1000, "esp32s2": 0x1000}
BUILTIN_BOARDS = {"esp32": "esp32", "esp32s3": "esp32s3", "esp32c3": "esp32c3"}


class FlashError(Exception):
    """Flashing cannot go on; the message is one line that says what to try."""


class ImageInfo:
    def __init__(self, path, size, segments, chip_id, chip):
        self.path, self.size, self.segments, self.chip_id, self.chip = path, size, segments, chip_id, chip

    def __repr__(self):
        return "ImageInfo(chip=%r, size=%d, segments=%d)" % (self.chip, self.size, self.segments)


def chip_name(name):
    """Normalise a chip name as esptool prints it ("ESP32-S3") to the boards' form ("esp32s3")."""
    return name.lower().replace("-", "").replace("_", "").replace(" ", "")


def board_chip(board, boards_dir=None):
    """The chip of ``board``: a board id or alias from ``boards/*.json``, else a built-in chip name.

    Raises:
        FlashError: unknown board, or a board that is not an ESP chip.
    """
    boards_dir = boards_dir or BOARDS_DIR
    chip = None
    for path in sorted(glob.glob(os.path.join(boards_dir, "*.json"))):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or "chip" not in data:
            continue
        names = [os.path.basename(path)[:-5], data.get("id")] + list(data.get("aliases") or [])
        if board in names:
            chip = chip_name(str(data["chip"]))
            break
    if chip is None:
        chip = BUILTIN_BOARDS.get(chip_name(board))
    if chip is None:
        raise FlashError("unknown board %r: no boards/%s.json (or alias) and not one of %s"
                         % (board, board, ", ".join(sorted(BUILTIN_BOARDS))))
    if chip not in CHIP_IDS:
        raise FlashError("board %r has chip %s, which is not an ESP chip: edgepoi flash writes ESP firmware "
                         "only" % (board, chip))
    return chip


def check_image(path, chip):
    """Check that ``path`` is an ESP firmware image for ``chip``; return ImageInfo.

    Header (esp-idf ``esp_image_header_t``): magic 0xE9, segment count, SPI mode, size/freq, entry point
    (u32), then the extended header: WP pin, 3 drive bytes, chip id (u16 little-endian), ...
    """
    try:
        with open(path, "rb") as f:
            head = f.read(24)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise FlashError("cannot read firmware %s: %s" % (path, e.strerror or e))
    if len(head) < 24:
        raise FlashError("%s is too short (%d bytes) to be an ESP firmware image" % (path, size))
    if head[0] != ESP_IMAGE_MAGIC:
        raise FlashError("%s is not an ESP firmware image (first byte 0x%02X, expected 0xE9): download the "
                         ".bin for your board from micropython.org/download" % (path, head[0]))
    segments = head[1]
    if not 1 <= segments <= 16:
        raise FlashError("%s has a corrupt ESP image header (%d segments)" % (path, segments))
    chip_id = struct.unpack("<H", head[12:14])[0]
    built_for = {v: k for k, v in CHIP_IDS.items()}.get(chip_id, "unknown chip id %d" % chip_id)
    if chip_id != CHIP_IDS[chip]:
        raise FlashError("%s is built for %s but the board is an %s: use the firmware for %s"
                         % (path, built_for, chip, chip))
    return ImageInfo(path, size, segments, chip_id, built_for)


def _logger(on_progress, verbose):
    from esptool.logger import TemplateLogger

    class _Log(TemplateLogger):
        """esptool's output: progress to our bar, the rest only with --verbose."""

        def print(self, *args, **kwargs):
            if verbose:
                print(*args, **{k: v for k, v in kwargs.items() if k in ("end", "sep", "flush")})

        def note(self, message):
            self.print("note: " + message)

        def warning(self, message):
            self.print("warning: " + message)

        def error(self, message):
            self.print("error: " + message)

        def stage(self, finish=False):
            pass

        def progress_bar(self, cur_iter, total_iters, prefix="", suffix="", bar_length=30):
            on_progress(cur_iter, total_iters)

        def set_verbosity(self, verbosity):
            pass

    return _Log()


class _esptool_output:
    """Install our logger for esptool while flashing, restore esptool's own afterwards."""

    def __init__(self, on_progress, verbose):
        self.on_progress, self.verbose = on_progress, verbose

    def __enter__(self):
        import contextlib
        import io
        from esptool.logger import EspLog, log
        self.saved = EspLog.instance
        log.set_logger(_logger(self.on_progress, self.verbose))
        self.quiet = contextlib.ExitStack()
        if not self.verbose:      # some esptool warnings bypass the logger (bound before we swapped it)
            self.quiet.enter_context(contextlib.redirect_stderr(io.StringIO()))

    def __exit__(self, *exc):
        from esptool.logger import EspLog
        EspLog.instance = self.saved
        self.quiet.close()


def detect(port, connect_attempts=3, baud=115200):
    """Connect to the ESP bootloader on ``port``; return esptool's loader (a context manager).

    Raises:
        FlashError: "no ESP chip answered on PORT: ..." when nothing speaks the bootloader protocol.
    """
    import serial
    from esptool.cmds import detect_chip
    from esptool.util import FatalError
    if not os.path.exists(port) and not port.upper().startswith("COM"):
        raise FlashError("could not open %s: no such port: is the board plugged in and the path right?" % port)
    try:
        return detect_chip(port, baud=baud, connect_attempts=connect_attempts)
    except (FatalError, serial.SerialException, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise FlashError("no ESP chip answered on %s (%s): hold BOOT while pressing RESET to start the "
                         "bootloader, check the cable, and that no other program holds the port"
                         % (port, first.rstrip(".")))


def flash(port, firmware, board, baud=460800, connect_attempts=3, progress=True, verbose=False,
          erase=False, address=None, boards_dir=None):
    """Check everything, then write ``firmware`` to the ESP board on ``port`` and hard-reset it.

    Args:
        port: serial port of the board.
        firmware: path of the MicroPython .bin.
        board: board id or alias (``boards/*.json``) or a chip name (esp32, esp32s3, esp32c3).
        baud: speed for the transfer once the stub runs.
        progress: show a rich progress bar (or pass a callable(done, total)).
        erase: erase the whole flash first (loses the board's files).
        address: flash offset (default: 0x1000 on esp32/esp32s2, else 0).
    Returns:
        dict with chip, address, bytes.
    Raises:
        FlashError
    """
    from esptool.cmds import attach_flash, reset_chip, run_stub, write_flash
    from esptool.util import FatalError
    chip = board_chip(board, boards_dir)
    info = check_image(firmware, chip)
    address = FLASH_OFFSETS.get(chip, 0) if address is None else address
    bar, on_progress = _progress(progress)
    try:
        with _esptool_output(on_progress, verbose):
            esp = detect(port, connect_attempts)
            with esp:
                found = chip_name(esp.CHIP_NAME)
                if found != chip:
                    raise FlashError("the chip on %s is an %s but board %s is an %s: pick the right --board or "
                                     "the right port" % (port, found, board, chip))
                try:
                    esp = run_stub(esp)
                    if baud and baud != 115200:
                        esp.change_baud(baud)
                    attach_flash(esp)
                    write_flash(esp, [(address, firmware)], erase_all=erase)
                    reset_chip(esp, "hard-reset")
                except (FatalError, OSError) as e:
                    raise FlashError("flashing %s on %s failed: %s: retry at a lower --baud"
                                     % (firmware, port, (str(e).splitlines() or ["error"])[0]))
    finally:
        if bar is not None:
            bar.stop()
    return {"chip": chip, "address": address, "bytes": info.size}


def _progress(progress):
    if callable(progress):
        return None, progress
    if not progress:
        return None, lambda done, total: None
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
    bar = Progress(TextColumn("flash"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    bar.start()
    task = bar.add_task("flash", total=None)

    def on_progress(done, total):
        bar.update(task, completed=done, total=total)
    return bar, on_progress
