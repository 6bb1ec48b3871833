"""`edgepoi board list|show|validate` and `edgepoi bundle`: board definitions and firmware bundles.

Usage::

    edgepoi board list
    edgepoi board show esp32dev            # aliases resolve; prints the normalised board as JSON
    edgepoi board validate my-board.json   # every problem as "FILE: field.path: reason", exit 1
    edgepoi bundle --board esp32 --out build/esp32 [--model M] [--config C] [--native edgepoi.cbor]
                   [--exclude edgepoi/keys/atecc608.py]

From Python: ``boards_cli.main(["board", "list"])`` returns the exit status (0 ok, 1 error).
"""
import argparse
import json
import os
import sys

from edgepoi import boards as boardlib
from edgepoi_host import bundle


def _schema_errors(raw):
    """Schema findings for a board (the editor's view), or [] when jsonschema is not installed."""
    try:
        import jsonschema
    except ImportError:
        return []
    with open(os.path.join(bundle.BOARDS_DIR, "schema.json")) as f:
        schema = json.load(f)
    out = []
    for e in sorted(jsonschema.Draft202012Validator(schema).iter_errors(raw), key=lambda e: list(e.path)):
        path = "".join("[%d]" % p if isinstance(p, int) else ".%s" % p for p in e.path).lstrip(".")
        out.append("%s: %s (schema)" % (path or "board", e.message))
    return out


def _human(n):
    return "%dM" % (n >> 20) if n >= 1 << 20 and not n & 0xFFFFF else "%dK" % (n >> 10)


def cmd_list(args, out):
    rows = [boardlib.validate(raw) for raw in bundle.load_boards(args.dir).values()]
    out.write("%-12s %-12s %-10s %-10s %9s  %s\n" % ("id", "platform", "chip", "mpy arch", "heap", "aliases"))
    for b in rows:
        arch = b["mpy"]["arch"] if b.get("mpy") else "-"
        out.write("%-12s %-12s %-10s %-10s %9s  %s\n" % (b["id"], b["platform"], b["chip"], arch,
                                                        _human(b["heap_budget"]), ", ".join(b["aliases"])))
    return 0


def cmd_show(args, out):
    b = bundle.get_board(args.board, args.dir)
    out.write(json.dumps(b, indent=2, sort_keys=True) + "\n")
    return 0


def cmd_validate(args, out):
    status = 0
    for path in args.files:
        try:
            with open(path) as f:
                raw = json.load(f)
        except (OSError, ValueError) as e:
            out.write("%s: cannot read: %s\n" % (path, e))
            status = 1
            continue
        problems = []
        try:
            boardlib.validate(raw)
        except boardlib.BoardError as e:
            problems = list(e.errors)
        if not problems and not args.no_schema:      # the validator is the truth; the schema is a backstop
            problems = _schema_errors(raw)
        for p in problems:
            out.write("%s: %s\n" % (path, p))
        if problems:
            status = 1
        else:
            out.write("%s: ok\n" % path)
    return status


def cmd_bundle(args, out):
    res = bundle.build(args.board, args.out, config=args.config, model=args.model, native=args.native or (),
                       exclude=args.exclude or (), romfs=args.romfs)
    b = res.board
    target = "mpy v%s %s" % (b["mpy"]["version"], b["mpy"]["arch"]) if b.get("mpy") else "python source"
    out.write("bundle for %s (%s) in %s\n" % (b["id"], target, res.out_dir))
    if args.verbose:
        for f in res.files:
            out.write("  %8d  %s\n" % (f["size"], f["path"]))
    flash = b.get("flash_size")
    share = " (%.1f%% of %d KiB flash)" % (100.0 * res.total_bytes / flash, flash // 1024) if flash else ""
    out.write("%d files, %d bytes%s; manifest %s\n" % (len(res.files), res.total_bytes, share,
                                                     res.manifest_path))
    if res.romfs_image:
        out.write("ROMFS image %s: %d bytes (write it with: mpremote romfs deploy %s)\n"
                  % (res.romfs_image, os.path.getsize(res.romfs_image), res.romfs_image))
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="edgepoi", add_help=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    bp = sub.add_parser("board", help="board definitions (boards/*.json)")
    bp.add_argument("--dir", default=bundle.BOARDS_DIR, help="folder of board files")
    bs = bp.add_subparsers(dest="board_cmd", required=True)
    bs.add_parser("list", help="list known boards").set_defaults(func=cmd_list)
    s = bs.add_parser("show", help="print a board (id, alias or file), normalised")
    s.add_argument("board")
    s.set_defaults(func=cmd_show)
    v = bs.add_parser("validate", help="check board files; every problem names its field and why")
    v.add_argument("files", nargs="+")
    v.add_argument("--no-schema", action="store_true", help="skip the JSON-schema pass")
    v.set_defaults(func=cmd_validate)
    u = sub.add_parser("bundle", help="build the firmware bundle for a board")
    u.add_argument("--board", required=True, help="board id, alias or JSON file")
    u.add_argument("--out", required=True, help="output folder (replaced)")
    u.add_argument("--model", help="model file to include")
    u.add_argument("--config", help="device config JSON, shipped as config.json")
    u.add_argument("--native", action="append", metavar="MODULE",
                   help="compile MODULE with the native emitter (repeatable)")
    u.add_argument("--exclude", action="append", metavar="PATH",
                   help="leave out an sdk file or folder, e.g. edgepoi/keys/atecc608.py or edgepoi/infer/ "
                        "(repeatable)")
    u.add_argument("--romfs", action="store_true",
                   help="pack the compiled package into romfs.img for the board's ROMFS partition "
                        "(MicroPython >= 1.25): its bytecode then runs from flash, not the heap")
    u.add_argument("-v", "--verbose", action="store_true", help="list every file")
    u.set_defaults(func=cmd_bundle)
    return p


def main(argv=None, out=None):
    """Run `board ...` or `bundle ...`; returns the exit status. Errors end as one "edgepoi: ..." line."""
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, out)
    except (bundle.BundleError, boardlib.BoardError, KeyError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) else str(e)
        sys.stderr.write("edgepoi: %s\n" % msg)
        return 1


if __name__ == "__main__":
    sys.exit(main())
