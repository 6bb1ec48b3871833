"""``edgepoi console``: watch a broker live — a device table and a decoded message stream (textual), or
one line per message with ``--plain``.

Usage::

    edgepoi console --broker mqtt://127.0.0.1:1883 [--db edge.db] [--keys DIR] [--plain [--json]]
                    [--topic FILTER ...] [--all] [--username U --password P] [--cafile F] [--seconds N]

    from edgepoi_host import console_cli
    console_cli.main(["--broker", "mqtt://127.0.0.1:1883", "--plain", "--seconds", "5"])

Subscribes to ``edgepoi/v1/#`` and ``homeassistant/#`` (``--topic`` replaces them, ``--all`` is ``#``).
Attestation signatures are checked against the edge node's registry (``--db``) and/or a folder of public
keys (``--keys``); without either they are shown ``unchecked``. Errors end as one ``edgepoi console:
message`` line on stderr and exit status 1.
"""
import argparse
import os
import sys

PROG = "edgepoi console"


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description="live telemetry console for an edgepoi broker")
    p.add_argument("--broker", default=os.environ.get("EDGEPOI_BROKER", "mqtt://127.0.0.1:1883"),
                   help="broker URL, mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (default %(default)s)")
    p.add_argument("--db", help="edge node database URL: attestation keys come from its registry")
    p.add_argument("--keys", metavar="DIR", help="folder of device public keys (PEM, DER or hex)")
    p.add_argument("--plain", action="store_true", help="print one line per message (no UI)")
    p.add_argument("--json", action="store_true", help="with --plain: one JSON object per line")
    p.add_argument("--topic", action="append", metavar="FILTER",
                   help="topic filter to subscribe to (repeatable; default edgepoi/v1/# homeassistant/#)")
    p.add_argument("--all", action="store_true", help="subscribe to everything (#)")
    p.add_argument("--username")
    p.add_argument("--password")
    p.add_argument("--cafile", help="CA certificate for a TLS broker")
    p.add_argument("--seconds", type=float, help="exit after this many seconds")
    p.add_argument("--count", type=int, help="with --plain: exit after this many messages")
    return p


def make_keys(args):
    """A decode.KeyRing from --db and --keys, or None when neither is given."""
    from edgepoi_host.console.decode import KeyRing
    registry = None
    if args.db:
        from edgepoi_host.edge import db, registry as reg
        registry = reg.Registry(db.connect(args.db))
        if not registry.devices():
            sys.stderr.write("%s: warning: the registry in %s has no devices: every attestation will "
                             "show 'unknown key'\n" % (PROG, args.db))
    if args.keys:
        if not os.path.isdir(args.keys):
            raise ValueError("--keys %s is not a folder" % args.keys)
        ring = KeyRing.from_dir(args.keys, registry)
        if not ring.keys:
            sys.stderr.write("%s: warning: no P-256 public key found in %s\n" % (PROG, args.keys))
        return ring
    return KeyRing(registry) if registry is not None else None


def main(argv=None):
    """Run the console; return the exit status."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from edgepoi_host.console.source import ALL_TOPICS, DEFAULT_TOPICS, Source
    try:
        keys = make_keys(args)
        topics = ALL_TOPICS if args.all else (args.topic or DEFAULT_TOPICS)
        source = Source(args.broker, topics, keys, args.username, args.password, args.cafile)
    except Exception as e:  # noqa: BLE001 - one line, exit 1
        sys.stderr.write("%s: %s\n" % (PROG, str(e).splitlines()[0] if str(e) else type(e).__name__))
        return 1
    if args.plain:
        from edgepoi_host.console.plain import run_plain
        source.start()
        try:
            run_plain(source, sys.stdout, seconds=args.seconds, as_json=args.json, err=sys.stderr,
                      count=args.count)
        finally:
            source.stop()
        return 0
    from edgepoi_host.console.app import ConsoleApp
    ConsoleApp(source, seconds=args.seconds).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
