"""``edgepoi device ls|cat|put|sync|exec|info|reset --port P`` and ``edgepoi flash``: a board over USB serial.

    edgepoi device ls [PATH] --port /dev/ttyUSB0            # recursive, with sizes ('/' ends a directory)
    edgepoi device cat main.py --port /dev/ttyUSB0
    edgepoi device put model.tflite [lib/model.tflite] --port /dev/ttyUSB0
    edgepoi device sync build/bundle [/] --port /dev/ttyUSB0 --delete
    edgepoi device exec "import os; print(os.uname())" --port /dev/ttyUSB0
    edgepoi device info --port /dev/ttyUSB0                 # MicroPython and .mpy version, arch, free heap
    edgepoi device reset --port /dev/ttyUSB0 [--hard]
    edgepoi flash --port /dev/ttyUSB0 --firmware ESP32_GENERIC_S3.bin --board esp32-s3

``main(argv)`` takes the words after ``edgepoi`` (starting with ``device`` or ``flash``) and returns the exit
status; every failure is one ``edgepoi device: message`` (or ``edgepoi flash: ...``) line on stderr. The
port may also come from the environment variable EDGEPOI_PORT.
"""
import argparse
import os
import sys

from edgepoi_host.serial.errors import DeviceError, SerialError


def _port_args(p):
    p.add_argument("--port", default=os.environ.get("EDGEPOI_PORT"),
                   help="serial port of the board (default: $EDGEPOI_PORT)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds of silence before giving up")
    p.add_argument("--no-raw-paste", action="store_true", help="use plain raw REPL (old firmware)")


def build_parser():
    top = argparse.ArgumentParser(prog="edgepoi")
    sub = top.add_subparsers(dest="group", required=True)
    dev = sub.add_parser("device", help="files and code on a MicroPython board over serial")
    dsub = dev.add_subparsers(dest="cmd", required=True)
    p = dsub.add_parser("ls", help="list files recursively with sizes")
    p.add_argument("path", nargs="?", default=".")
    p.add_argument("--flat", action="store_true", help="only the top level")
    _port_args(p)
    p = dsub.add_parser("cat", help="print a remote file")
    p.add_argument("path")
    _port_args(p)
    p = dsub.add_parser("put", help="copy one local file to the board")
    p.add_argument("local")
    p.add_argument("remote", nargs="?")
    _port_args(p)
    p = dsub.add_parser("sync", help="make a remote folder hold a local folder (only changed files)")
    p.add_argument("local")
    p.add_argument("remote", nargs="?", default=".")
    p.add_argument("--delete", action="store_true", help="remove remote files that are not in LOCAL")
    p.add_argument("--no-progress", action="store_true")
    _port_args(p)
    p = dsub.add_parser("exec", help="run Python code on the board and print its output")
    p.add_argument("code")
    _port_args(p)
    p = dsub.add_parser("info", help="MicroPython version, .mpy version and arch, platform, free heap")
    _port_args(p)
    p = dsub.add_parser("reset", help="soft-reset the board (Ctrl-D), or --hard (machine.reset())")
    p.add_argument("--hard", action="store_true")
    _port_args(p)

    fl = sub.add_parser("flash", help="write MicroPython firmware to an ESP board (esptool)")
    fl.add_argument("--port", default=os.environ.get("EDGEPOI_PORT"))
    fl.add_argument("--firmware", required=True, help="MicroPython .bin for the board")
    fl.add_argument("--board", required=True, help="board id or alias from boards/, or esp32/esp32s3/esp32c3")
    fl.add_argument("--baud", type=int, default=460800)
    fl.add_argument("--connect-attempts", type=int, default=3)
    fl.add_argument("--address", type=lambda s: int(s, 0), default=None, help="flash offset (default by chip)")
    fl.add_argument("--erase", action="store_true", help="erase the whole flash first")
    fl.add_argument("--no-progress", action="store_true")
    fl.add_argument("--verbose", action="store_true", help="show esptool's own messages")
    return top


class CliError(Exception):
    pass


def _transport(args):
    from edgepoi_host.serial.transport import SerialTransport
    if not args.port:
        raise CliError("no port given: pass --port PORT or set EDGEPOI_PORT")
    return SerialTransport(args.port, timeout=args.timeout, raw_paste=not args.no_raw_paste)


def run_device(args, out):
    from edgepoi_host.serial.fs import DeviceFS
    with _transport(args) as t:
        fs = DeviceFS(t)
        if args.cmd == "ls":
            kind = fs.isdir(args.path)
            if kind is None:
                raise CliError("%s: no such file or directory on the board" % args.path)
            if kind is False:
                out.write(("%10d %s\n" % (fs.size(args.path), args.path)).encode())
                return 0
            for path, size in fs.ls(args.path, recursive=not args.flat):
                out.write(("%10s %s\n" % ("" if size < 0 else size, path + ("/" if size < 0 else ""))).encode())
        elif args.cmd == "cat":
            if fs.isdir(args.path) is not False:
                raise CliError("%s: not a file on the board" % args.path)
            out.write(fs.cat(args.path))
        elif args.cmd == "put":
            try:
                with open(args.local, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise CliError("%s: %s" % (args.local, e.strerror or e))
            remote = args.remote or os.path.basename(args.local)
            if remote.endswith("/") or fs.isdir(remote):
                remote = remote.rstrip("/") + "/" + os.path.basename(args.local)
            fs.put(data, remote)
            out.write(("%s -> :%s (%d bytes)\n" % (args.local, remote, len(data))).encode())
        elif args.cmd == "sync":
            r = fs.sync(args.local, args.remote, delete=args.delete, progress=not args.no_progress)
            out.write(("sent %d files (%d bytes), %d unchanged, %d deleted\n"
                       % (len(r.sent), r.bytes_sent, len(r.unchanged), len(r.deleted))).encode())
        elif args.cmd == "exec":
            res = t.exec_raw(args.code, on_output=lambda b: (out.write(b), out.flush()))
            if res.stderr:
                sys.stderr.write(res.stderr.decode("utf-8", "replace"))
                raise DeviceError.from_stderr(res.stderr)
        elif args.cmd == "info":
            from edgepoi_host.serial.transport import board_info
            for k, v in board_info(t).items():
                out.write(("%-9s %s\n" % (k, v)).encode())
        elif args.cmd == "reset":
            if args.hard:
                from edgepoi_host.serial.errors import TransportError
                try:
                    t.exec("import machine\nmachine.reset()", timeout=1.0)
                except TransportError:
                    pass        # the board rebooted under us: that is the point
            else:
                t.soft_reset()
            out.write(b"reset\n")
    return 0


def run_flash(args):
    from edgepoi_host import flash
    if not args.port:
        raise CliError("no port given: pass --port PORT or set EDGEPOI_PORT")
    r = flash.flash(args.port, args.firmware, args.board, baud=args.baud, connect_attempts=args.connect_attempts,
                    progress=not args.no_progress, verbose=args.verbose, erase=args.erase, address=args.address)
    print("flashed %s (%d bytes) to the %s on %s at 0x%X" % (args.firmware, r["bytes"], r["chip"], args.port,
                                                             r["address"]))
    return 0


def main(argv=None):
    """Run ``edgepoi device ...`` or ``edgepoi flash ...``; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    prog = "edgepoi " + args.group
    from edgepoi_host.flash import FlashError
    try:
        if args.group == "flash":
            return run_flash(args)
        return run_device(args, sys.stdout.buffer)
    except (CliError, SerialError, FlashError) as e:
        sys.stderr.write("%s: %s\n" % (prog, str(e).splitlines()[0] if str(e) else type(e).__name__))
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("%s: interrupted\n" % prog)
        return 130


if __name__ == "__main__":
    sys.exit(main())
