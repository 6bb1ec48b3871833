"""The ``edgepoi`` command line: one entry point, one table of subcommands.

Commands whose logic lives in their own module (``model``, ``board``, ``bundle``, ``device``, ``flash``,
``edge register|credentials|settle|hass``, ``verify-batch``) are forwarded with their arguments; the rest
are parsed here. Every failure ends as one ``edgepoi: message`` line on stderr and exit status 1.
"""
import argparse
import json
import logging
import sys
import time

# command -> (module, prefix of argv for its main(), one-line help)
FORWARDED = {
    "model": ("edgepoi_host.model_cli", [], "inspect, check (bit-exact against TFLM) and benchmark .tflite models"),
    "board": ("edgepoi_host.boards_cli", ["board"], "list, show and validate board definitions"),
    "bundle": ("edgepoi_host.boards_cli", ["bundle"], "build the firmware bundle (.mpy, board, config, model)"),
    "device": ("edgepoi_host.device_cli", ["device"], "files and code on a MicroPython board over serial"),
    "flash": ("edgepoi_host.device_cli", ["flash"], "write MicroPython firmware to an ESP board (esptool)"),
    "provision": ("edgepoi_host.provision_cli", [],
                  "check, sync, key, register and start a MicroPython board over USB serial"),
    "console": ("edgepoi_host.console_cli", [], "live telemetry console (textual; --plain for scripts)"),
    "verify-batch": ("edgepoi_host.edge.edge_cli", ["verify-batch"],
                     "check a settlement batch: inclusion proof and signatures, no database needed"),
}
EDGE_FORWARDED = ("register", "credentials", "settle", "hass")


def cmd_demo(args):
    from edgepoi_host import demo
    stats = demo.run(devices=args.devices, seconds=args.seconds, workdir=args.workdir,
                     period_s=args.period, plain=args.plain)
    return 0 if stats["telemetry"] else 1


def cmd_sim(args):
    from edgepoi_host.sim import Fleet
    fleet = Fleet(args.broker, count=args.devices, workdir=args.workdir, period_s=args.period,
                  messages=args.messages, prefix=args.prefix)
    fleet.start()
    print("started %d simulated devices in %s" % (len(fleet.devices), fleet.workdir), flush=True)
    try:
        if args.messages:
            fleet.wait()
        else:
            deadline = time.time() + args.seconds if args.seconds else None
            while deadline is None or time.time() < deadline:
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        fleet.stop()
    return 0


def cmd_edge(args):
    if args.edge_cmd == "stats":
        from edgepoi_host.edge.store import Ledger
        ledger = Ledger(args.db)
        s = ledger.stats()
        ledger.close()
        if args.json:
            print(json.dumps(s, indent=2, sort_keys=True))
        else:
            for k, v in s.items():
                print("%s: %s" % (k, v))
        return 0
    from edgepoi_host.edge.ingest import EdgeNode
    node = EdgeNode(args.broker, args.db, client_id=args.client_id, username=args.username,
                    password=args.password, epoch_seconds=args.epoch_seconds, beacon_keep=args.beacon_keep,
                    shared=args.shared, beacon=not args.no_beacon, models_dir=args.models,
                    audit_rate=args.audit_rate)
    node.start()
    print("edge node: broker %s:%d, ledger %s" % (node.host, node.port, args.db), flush=True)
    try:
        deadline = time.time() + args.seconds if args.seconds else None
        while deadline is None or time.time() < deadline:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stats = node.stats()
        node.stop()
    print(json.dumps(stats["session"]), flush=True)
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="edgepoi", description="edgepoi: agent firmware SDK host tool",
                                epilog="also: " + "; ".join("%s — %s" % (k, v[2]) for k, v in FORWARDED.items())
                                + "; edge register|credentials|settle|hass")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("demo", help="broker + edge node + simulated MicroPython fleet with a live view")
    d.add_argument("--devices", type=int, default=3)
    d.add_argument("--seconds", type=float, default=None, help="stop after N seconds (default: Ctrl-C)")
    d.add_argument("--period", type=float, default=0.5, help="seconds between readings per device")
    d.add_argument("--workdir", default=".edgepoi/demo")
    d.add_argument("--plain", action="store_true", help="one status line per second instead of a table")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("sim", help="run N simulated devices (real MicroPython processes)")
    s.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    s.add_argument("--devices", type=int, default=3)
    s.add_argument("--period", type=float, default=1.0)
    s.add_argument("--messages", type=int, default=0, help="cycles per device, then exit (0: run on)")
    s.add_argument("--seconds", type=float, default=None)
    s.add_argument("--prefix", default="sim")
    s.add_argument("--workdir", default=None)
    s.set_defaults(func=cmd_sim)

    e = sub.add_parser("edge", help="the home edge node: verified ingest into the ledger (run | stats)")
    e.add_argument("edge_cmd", nargs="?", choices=["run", "stats"], default="run")
    e.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    e.add_argument("--db", default="edge.db", help="SQLite path or sqlite:///path or postgresql://...")
    e.add_argument("--client-id", default="edgepoi-edge")
    e.add_argument("--username")
    e.add_argument("--password")
    e.add_argument("--shared", metavar="GROUP",
                   help="MQTT v5 shared subscription group: several nodes on one ledger split the load")
    e.add_argument("--epoch-seconds", type=float, default=600.0, help="beacon epoch length")
    e.add_argument("--beacon-keep", type=int, default=2, help="beacons accepted (freshness window)")
    e.add_argument("--no-beacon", action="store_true", help="a worker that does not publish beacons")
    e.add_argument("--models", metavar="DIR", help="the .tflite models devices run: enables re-execution audits")
    e.add_argument("--audit-rate", type=float, default=0.05, help="share of attestations audited (0..1)")
    e.add_argument("--seconds", type=float, default=None)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_edge)
    return p


def _forward(module, argv):
    import importlib
    return importlib.import_module(module).main(argv)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv[:1] or "--verbose" in argv[:1]
    rest = argv[1:] if verbose else argv
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if rest and rest[0] in FORWARDED:
            module, prefix, _help = FORWARDED[rest[0]]
            return _forward(module, prefix + rest[1:])
        if len(rest) > 1 and rest[0] == "edge" and rest[1] in EDGE_FORWARDED:
            return _forward("edgepoi_host.edge.edge_cli", rest[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - one line, exit 1
        if verbose:
            raise
        print("edgepoi: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
