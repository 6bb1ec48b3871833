# Board boot (MicroPython): check the flash filesystem, load and validate board.json, then get out of the way.
#
#   Runs before main.py on every reset. Sets up nothing network-related (main.py does the rest) and never
#   raises: a broken board.json must leave the REPL reachable. The outcome is left on the edgepoi package:
#     edgepoi.BOARD       the validated board dict, or None
#     edgepoi.BOOT_ERROR  None, or one line saying what is wrong (main.py should not start the agent)
#   read them with getattr(edgepoi, "BOARD", None). The validator is unloaded again afterwards, so its
#   ~12 KB (on a 32-bit board) are free for the application.
import gc
import sys

import edgepoi


def _flash_free():
    import os
    try:
        st = os.statvfs("/" if sys.platform != "linux" else ".")
    except (OSError, AttributeError):
        return -1
    return st[0] * st[3]


def _boot():
    """-> (board or None, error or None)."""
    free = _flash_free()
    if free < 0:
        return None, "flash filesystem is not mounted"
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
except Exception as e:  # noqa: BLE001 - boot.py must never leave the board without a REPL
    _board, _error = None, "boot failed: %r" % (e,)
setattr(edgepoi, "BOARD", _board)
setattr(edgepoi, "BOOT_ERROR", _error)
if _error:
    print("boot:", _error)
del _boot, _flash_free, _board, _error
gc.collect()
