"""The ``edgepoi`` command line: one entry point, one subcommand per job.

Every failure ends as one ``edgepoi: message`` line on stderr and exit status 1.
"""
import argparse
import json
import logging
import sys
import time


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
    print("started %d simulated devices in %s" % (len(fleet.devices), fleet.workdir))
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
    from edgepoi_host.edge.ingest import EdgeNode
    if args.edge_cmd == "stats":
        from edgepoi_host.edge.store import Store
        store = Store(args.db)
        s = store.stats()
        store.close()
        print(json.dumps(s, indent=2) if args.json else "\n".join("%s: %s" % kv for kv in s.items()))
        return 0
    node = EdgeNode(args.broker, args.db, client_id=args.client_id)
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
    print(json.dumps(stats["session"]))
    return 0


def cmd_model(args):
    from edgepoi_host import model_cli
    return model_cli.main(args.rest)


def build_parser():
    p = argparse.ArgumentParser(prog="edgepoi", description="edgepoi: agent firmware SDK host tool")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("demo", help="broker + edge node + simulated MicroPython fleet with a live view")
    d.add_argument("--devices", type=int, default=3)
    d.add_argument("--seconds", type=float, default=None, help="stop after N seconds (default: Ctrl-C)")
    d.add_argument("--period", type=float, default=1.0, help="seconds between readings per device")
    d.add_argument("--workdir", default=".edgepoi/demo")
    d.add_argument("--plain", action="store_true", help="one status line per second instead of a table")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("sim", help="run N simulated devices (real MicroPython processes)")
    s.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    s.add_argument("--devices", type=int, default=3)
    s.add_argument("--period", type=float, default=1.0)
    s.add_argument("--messages", type=int, default=0, help="messages per device, then exit (0: run on)")
    s.add_argument("--seconds", type=float, default=None)
    s.add_argument("--prefix", default="sim")
    s.add_argument("--workdir", default=None)
    s.set_defaults(func=cmd_sim)

    e = sub.add_parser("edge", help="the home edge node: ingest into the ledger")
    e.add_argument("edge_cmd", nargs="?", choices=["run", "stats"], default="run")
    e.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    e.add_argument("--db", default="edge.db")
    e.add_argument("--client-id", default="edgepoi-edge")
    e.add_argument("--seconds", type=float, default=None)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_edge)

    m = sub.add_parser("model", help="inspect, check and benchmark int8 .tflite models", add_help=False)
    m.add_argument("rest", nargs=argparse.REMAINDER)
    m.set_defaults(func=cmd_model)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - one line, exit 1
        if args.verbose:
            raise
        print("edgepoi: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
