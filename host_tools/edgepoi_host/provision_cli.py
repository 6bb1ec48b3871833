"""``edgepoi provision``: put a MicroPython board on the network as an edgepoi device, end to end.

    edgepoi provision --port /dev/ttyUSB0 --board esp32-s3 --broker mqtt://192.168.1.10:1883 \\
        --device-id kitchen-1 --db sqlite:///edge.db --wifi-ssid home --wifi-password secret \\
        [--model model.tflite] [--key-uri URI] [--credentials-dir DIR] [--no-reset] [--timeout S] [--rotate] \\
        [--reload-broker "systemctl reload mosquitto"]

``main(argv)`` takes the words after ``provision`` and returns the exit status; a failure is one
``edgepoi provision: message`` line on stderr and status 1. See docs/PROVISIONING.md.
"""
import argparse
import json
import os
import subprocess
import sys


def build_parser():
    p = argparse.ArgumentParser(prog="edgepoi provision", description="check, sync, key, register and start "
                                "a MicroPython board over USB serial")
    p.add_argument("--port", default=os.environ.get("EDGEPOI_PORT"), help="serial port (default $EDGEPOI_PORT)")
    p.add_argument("--board", required=True, help="board id or alias from boards/, or a board JSON file")
    p.add_argument("--broker", required=True, help="mqtt://HOST[:PORT] as the board will reach it")
    p.add_argument("--device-id", required=True)
    p.add_argument("--db", required=True, help="the edge node's database: sqlite:///PATH or postgresql://...")
    p.add_argument("--wifi-ssid", default=None)
    p.add_argument("--wifi-password", default=None)
    p.add_argument("--model", default=None, help="a .tflite model to ship with the bundle")
    p.add_argument("--config", default=None, help="a JSON file of more config.json keys (period_s, sensor, ...)")
    p.add_argument("--key-uri", default=None, help="default: the board's secure element, else file:key.pem")
    p.add_argument("--credentials-dir", default=None, help="broker passwd/acl/credentials (default "
                   "$EDGEPOI_EDGE_HOME/broker, what `edgepoi edge credentials --out` writes)")
    p.add_argument("--edge-home", default=None, help="edge node home (its edge-key.pem is pinned on the board)")
    p.add_argument("--rotate", action="store_true", help="accept a new key for an already registered device")
    p.add_argument("--reload-broker", default=None, metavar="CMD",
                   help="shell command run when the broker's password file or ACL changed")
    p.add_argument("--no-reset", action="store_true", help="do not reset the board or wait for it to come online")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the board to come online")
    p.add_argument("--serial-timeout", type=float, default=10.0, help="seconds of silence on the serial line")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def main(argv=None):
    """Run ``edgepoi provision ...``; return the exit status."""
    from edgepoi_host import provision as prov
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if not args.port:
        sys.stderr.write("edgepoi provision: no port given: pass --port PORT or set EDGEPOI_PORT\n")
        return 1
    say = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))

    def reload_broker():
        r = subprocess.run(args.reload_broker, shell=True, capture_output=True, text=True)
        if r.returncode:
            raise prov.ProvisionError("--reload-broker failed (status %d): %s" % (
                r.returncode, (r.stderr or r.stdout).strip().splitlines()[-1:] or ""))
        say("broker reloaded")
    try:
        extra = None
        if args.config:
            try:
                with open(args.config) as f:
                    extra = json.load(f)
            except (OSError, ValueError) as e:
                raise prov.ProvisionError("--config %s: %s" % (args.config, e))
        r = prov.provision(args.port, args.board, args.broker, args.device_id, args.db,
                           wifi_ssid=args.wifi_ssid, wifi_password=args.wifi_password, model=args.model,
                           key_uri=args.key_uri, credentials_dir=args.credentials_dir, reset=not args.no_reset,
                           timeout=args.timeout, rotate=args.rotate, serial_timeout=args.serial_timeout,
                           progress=not (args.no_progress or args.quiet), edge_home=args.edge_home or prov.EDGE_HOME,
                           reload_broker=reload_broker if args.reload_broker else None, log=say,
                           extra_config=extra)
    except prov.ProvisionError as e:
        sys.stderr.write("edgepoi provision: %s\n" % (str(e).splitlines() or ["failed"])[0])
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("edgepoi provision: interrupted\n")
        return 130
    print("provisioned %s on %s in %.1f s: %d files sent (%d bytes), registry %s, credentials %s%s" % (
        r.device_id, args.port, r.seconds, len(r.sync.sent), r.sync.bytes_sent, r.registry_action,
        r.credentials_action, ", online after %.1f s" % r.online_after if r.online_after is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
