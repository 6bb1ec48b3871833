"""Command logic for ``edgepoi edge register|credentials|settle|hass`` and ``edgepoi verify-batch``.

Usage (what the ``edgepoi`` CLI forwards here; also ``python -m edgepoi_host.edge.edge_cli ...``)::

    main(["register", "--db", "edge.db", "--device-id", "dev-1", "--pubkey", "dev-1.pub.pem"])
    main(["credentials", "--db", "edge.db", "--out", "broker/"])
    main(["settle", "--db", "edge.db", "--epoch", "7", "--out", "batches/"])
    main(["hass", "--broker", "mqtt://127.0.0.1:1883", "--credentials", "broker/credentials/edge.json"])
    main(["verify-batch", "batches/batch-7.json", "--attestation", "att.cose"])

Every failure ends as one ``edgepoi: message`` line on stderr and exit status 1.
"""
import argparse
import json
import logging
import os
import sys
import time

EDGE_HOME = os.environ.get("EDGEPOI_EDGE_HOME", os.path.join(".edgepoi", "edge"))


class CliError(Exception):
    pass


def _db(url):
    from edgepoi_host.edge import db
    return db.connect(url)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CliError("cannot read %s: %s" % (path, e.strerror))


def cmd_register(a):
    from edgepoi_host.edge import registry
    d = _db(a.db)
    try:
        reg = registry.Registry(d)
        dev, action = reg.register(a.device_id, registry.load_public_key(_read(a.pubkey)), kind=a.kind,
                                   rotate=a.rotate, broker_username=a.broker_username)
    finally:
        d.close()
    print("%s %s: key id %s (%s), broker user %s" % (action, dev["device_id"], dev["key_id"].hex(),
                                                     dev["kind"], dev["broker_username"]))
    return 0


def cmd_credentials(a):
    from edgepoi_host.edge import broker_security, registry
    d = _db(a.db)
    try:
        devices = [(r["broker_username"], r["device_id"]) for r in registry.Registry(d).devices()]
    finally:
        d.close()
    out = broker_security.write_broker_files(
        a.out, devices, edge_user=a.edge_user, hass_user=a.hass_user, port=a.port, host=a.listen,
        tls=not a.no_tls, hostnames=a.hostname, client_certs=a.client_certs, rotate=a.rotate)
    print("%d device(s) + edge user: %s, %s, %s%s" % (len(devices), out["passwd"], out["acl"], out["config"],
                                                    ", CA %s" % out["tls"]["cafile"] if "tls" in out else ""))
    print("include %s from mosquitto.conf; credentials per user in %s (mode 0600)"
          % (out["config"], out["credentials"]))
    return 0


def cmd_settle(a):
    from edgepoi.keys import open_key
    from edgepoi_host.edge import settle
    if not (a.key and a.eth_key):
        os.makedirs(a.home, mode=0o700, exist_ok=True)
    signer = open_key(a.key or "file:" + os.path.join(a.home, "edge-key.pem"))
    eth = None if a.no_eip712 else settle.load_eth_key(a.eth_key or os.path.join(a.home, "edge-eth.key"))
    d = _db(a.db)
    try:
        t0 = time.perf_counter()
        batch = settle.settle(d, a.epoch, a.out, signer, eth_key=eth, chain_id=a.chain_id)
        if a.attestations:
            _export(d, batch, a.out)
    finally:
        d.close()
        signer.close()
    h = batch["header"]
    print("epoch %d: %d attestations, total work %d, root %s (%.2fs) -> %s" % (
        h["epoch"], h["leaf_count"], h["total_work"], h["root"].hex(), time.perf_counter() - t0,
        os.path.join(a.out, "batch-%d.json" % h["epoch"])))
    if eth is not None:
        print("EIP-712 signer %s, chain id %d" % (eth.address, a.chain_id))
    return 0


def _export(database, batch, out):
    """Write each leaf's attestation (<dev>-<seq>.cose) and inclusion proof (.proof.json)."""
    from edgepoi_host.edge import merkle
    h = batch["header"]
    folder = os.path.join(out, "epoch-%d" % h["epoch"])
    os.makedirs(folder, exist_ok=True)
    tree = merkle.Tree([leaf[2] for leaf in batch["leaves"]])
    for i, (dev, seq, _h) in enumerate(batch["leaves"]):
        msg = database.scalar("SELECT message FROM attestations WHERE device_id = ? AND seq = ?", (dev, seq))
        stem = os.path.join(folder, "%s-%d" % (dev, seq))
        with open(stem + ".cose", "wb") as f:
            f.write(msg)
        with open(stem + ".proof.json", "w") as f:
            json.dump({"epoch": h["epoch"], "root": h["root"].hex(), "leaf_count": h["leaf_count"],
                       "index": i, "leaf": _h.hex(), "path": [p.hex() for p in tree.path(i)]}, f)


def cmd_hass(a):
    from edgepoi_host.edge.hass import HassBridge
    user, password = a.username, None
    if a.credentials:
        c = json.loads(_read(a.credentials))
        user, password = c["username"], c["password"]
    bridge = HassBridge(a.broker, username=user, password=password, cafile=a.cafile,
                        client_id=a.client_id, follow_telemetry=True).start()
    print("Home Assistant bridge on %s:%d: following edgepoi/v1/+/telemetry" % (bridge.host, bridge.port),
          flush=True)
    try:
        deadline = time.time() + a.seconds if a.seconds else None
        while deadline is None or time.time() < deadline:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        bridge.flush()
        bridge.stop()
    print(json.dumps(bridge.counters))
    return 0


def cmd_verify_batch(a):
    from edgepoi_host.edge import registry, settle
    att = _read(a.attestation)
    if att[:1] not in (b"\xd2", b"\x84"):       # hex text of the COSE bytes is accepted too
        try:
            att = bytes.fromhex(att.decode().strip())
        except ValueError:
            raise CliError("%s is neither a COSE_Sign1 nor its hex" % a.attestation)
    pub = registry.load_public_key(_read(a.edge_pubkey)) if a.edge_pubkey else None
    ok, verdict = settle.verify_batch(_read(a.batch), att, edge_pubkey=pub, eth_address=a.eth_address)
    print(("verify-batch: " if ok else "verify-batch: FAIL ") + verdict)
    return 0 if ok else 1


def build_parser():
    p = argparse.ArgumentParser(prog="edgepoi", description="edgepoi edge node: registry, broker "
                                "credentials, settlement, Home Assistant, batch verification")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("register", prog="edgepoi edge register", help="register a device's P-256 public key")
    r.add_argument("--db", required=True, help="sqlite:///PATH, a path, or postgresql://...")
    r.add_argument("--device-id", required=True)
    r.add_argument("--pubkey", required=True, help="PEM, DER, hex text or raw 65-byte point")
    r.add_argument("--kind", default="unknown", help="key backend: file, tpm2, pkcs11, atecc608")
    r.add_argument("--broker-username", default=None, help="default: the device id")
    r.add_argument("--rotate", action="store_true", help="replace the key of a registered device")
    r.set_defaults(func=cmd_register)
    c = sub.add_parser("credentials", prog="edgepoi edge credentials",
                       help="Mosquitto password file, ACL, TLS CA and config")
    c.add_argument("--db", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--edge-user", default="edge")
    c.add_argument("--hass-user", default=None)
    c.add_argument("--port", type=int, default=8883)
    c.add_argument("--listen", default=None, help="listener address (default: all)")
    c.add_argument("--hostname", action="append", default=[], help="extra server certificate name")
    c.add_argument("--no-tls", action="store_true")
    c.add_argument("--client-certs", action="store_true", help="issue and require client certificates")
    c.add_argument("--rotate", action="store_true", help="new passwords for every user")
    c.set_defaults(func=cmd_credentials)
    s = sub.add_parser("settle", prog="edgepoi edge settle",
                       help="close an epoch into a signed settlement batch")
    s.add_argument("--db", required=True)
    s.add_argument("--epoch", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--home", default=EDGE_HOME, help="where the edge keys live (default %(default)s)")
    s.add_argument("--key", default=None, help="edge P-256 key URI (default file:HOME/edge-key.pem)")
    s.add_argument("--eth-key", default=None, help="secp256k1 key file (default HOME/edge-eth.key)")
    s.add_argument("--chain-id", type=int, default=1)
    s.add_argument("--no-eip712", action="store_true")
    s.add_argument("--attestations", action="store_true", help="also write each attestation and proof")
    s.set_defaults(func=cmd_settle)
    h = sub.add_parser("hass", prog="edgepoi edge hass", help="Home Assistant discovery bridge")
    h.add_argument("--broker", required=True)
    h.add_argument("--username", default=None)
    h.add_argument("--credentials", default=None, help="a credentials/<user>.json from `credentials`")
    h.add_argument("--cafile", default=None)
    h.add_argument("--client-id", default="edgepoi-hass")
    h.add_argument("--seconds", type=float, default=None)
    h.set_defaults(func=cmd_hass)
    v = sub.add_parser("verify-batch", prog="edgepoi verify-batch",
                       help="check an attestation's inclusion and the batch signatures")
    v.add_argument("batch")
    v.add_argument("--attestation", required=True, help="COSE_Sign1 file (binary or hex)")
    v.add_argument("--edge-pubkey", default=None, help="pin the edge node's P-256 key (PEM/hex)")
    v.add_argument("--eth-address", default=None, help="pin the EIP-712 signer address")
    v.set_defaults(func=cmd_verify_batch)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as e:  # noqa: BLE001 - every failure is one line and status 1
        if logging.getLogger().isEnabledFor(logging.DEBUG):     # edgepoi -v: show the traceback
            raise
        print("edgepoi: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
