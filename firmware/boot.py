# Board boot (MicroPython): check the flash filesystem, load and validate board.json, then get out of the way.
#
#   Runs before main.py on every reset. Sets up nothing network-related (main.py does the rest) and never
#   raises: a broken board.json must leave the REPL reachable. The outcome is left on the edgepoi package:
#     edgepoi.BOARD       the validated board's identity {id, chip, platform, heap_budget, flash_size}, or
#                         None (only these: the whole parsed board.json would hold ~3.5K of heap for good;
#                         whatever else is needed later is read from board.json on flash then)
#     edgepoi.BOOT_ERROR  None, or one line saying what is wrong (main.py should not start the agent)
#   read them with getattr(edgepoi, "BOARD", None). When board.json is byte for byte the file the host
#   validated when it built the bundle (its SHA-256 is in manifest.json) it is only parsed; otherwise the
#   on-board validator runs, and is unloaded again afterwards so its code is free for the application
#   (its interned names stay: that is why the validator is not run when it need not be).
#     edgepoi.BOARD_CHECK "manifest" or "validated": which of the two happened
import gc
import sys

import edgepoi

_KEEP = ("id", "chip", "platform", "heap_budget", "flash_size")  # what edgepoi.BOARD keeps of the board


def _flash_free():
    import os
    try:
        st = os.statvfs("/" if sys.platform != "linux" else ".")
    except (OSError, AttributeError):
        return -1
    return st[0] * st[3]


def _as_built(path="board.json"):
    """The board dict when path is the file the bundle's manifest lists (host-validated), else None."""
    import binascii
    import hashlib
    import json
    try:
        with open("manifest.json") as f:
            want = [e["sha256"] for e in json.load(f)["files"] if e["path"] == path]
        with open(path, "rb") as f:
            data = f.read()
        if not want or binascii.hexlify(hashlib.sha256(data).digest()).decode() != want[0]:
            return None
        board = json.loads(data)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return board if isinstance(board, dict) and "id" in board else None


def _boot():
    """-> (board or None, error or None)."""
    free = _flash_free()
    if free < 0:
        return None, "flash filesystem is not mounted"
    board = _as_built()
    if board is not None:
        setattr(edgepoi, "BOARD_CHECK", "manifest")
        print("boot: board %s (%s), flash free %d bytes" % (board["id"], board.get("chip"), free))
        return board, None
    setattr(edgepoi, "BOARD_CHECK", "validated")
    try:
        from edgepoi import boards
        board = boards.load("board.json")
    except OSError:
        return None, "no board.json on flash"
    except ValueError as e:          # BoardError (and bad JSON) are ValueErrors
        return None, str(e)
    except MemoryError:
        return None, "out of memory while validating board.json"
    finally:
        sys.modules.pop("edgepoi.boards", None)
        if "boards" in dir(edgepoi):
            delattr(edgepoi, "boards")
    print("boot: board %s (%s), flash free %d bytes" % (board["id"], board["chip"], free))
    return board, None


try:
    _board, _error = _boot()
    if _board is not None:
        _board = {k: _board[k] for k in _KEEP if k in _board}
except Exception as e:  # noqa: BLE001 - boot.py must never leave the board without a REPL
    _board, _error = None, "boot failed: %r" % (e,)
setattr(edgepoi, "BOARD", _board)
setattr(edgepoi, "BOOT_ERROR", _error)
if _error:
    print("boot:", _error)
del _boot, _as_built, _flash_free, _KEEP, _board, _error
gc.collect()
