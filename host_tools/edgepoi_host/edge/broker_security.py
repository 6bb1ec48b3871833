"""Mosquitto hardening for the edge node: password file, per-device ACL, and TLS from a CA it generates.

Usage::

    from edgepoi_host.edge import broker_security as bs
    users = {"edge": bs.new_password(), "dev-1": bs.new_password()}
    bs.write_password_file("passwd", users)                         # $7$ PBKDF2-SHA512 entries, 0600
    open("acl", "w").write(bs.acl_text([("dev-1", "dev-1")], edge_user="edge"))
    tls = bs.make_tls("tls", hostnames=["edge.local"])              # ca.crt, server.crt/.key
    print(bs.mosquitto_config(8883, "0.0.0.0", "passwd", "acl", tls))

Password entries use Mosquitto 2's ``$7$`` format: ``user:$7$<iterations>$<base64 salt>$<base64
PBKDF2-HMAC-SHA512(password, salt, iterations, 64)>``. ``mosquitto_passwd`` writes them when it is
installed (the broker's own tool); otherwise they are computed here (same format, tested against the
broker). ACL rules (docs/EDGE.md): a device writes only ``edgepoi/v1/<id>/{status,telemetry,attest,
cmd/+/result}`` and reads only its ``cmd/#``, ``config``, ``model/#`` and the edge beacon; the edge user
reads ``edgepoi/v1/#`` and writes commands, config, model updates, HA state and the beacon, and owns the
Home Assistant discovery prefix.
"""
import base64
import datetime
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile

TOPIC_ROOT = "edgepoi/v1"
BEACON = TOPIC_ROOT + "/edge/beacon"
_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
PBKDF2_ITERATIONS = 101          # what mosquitto_passwd 2.0 uses


class BrokerSecurityError(ValueError):
    """A name that cannot go into a password or ACL file, or a tool failure."""


def new_password():
    return secrets.token_urlsafe(24)


def _check_name(name, what):
    if not isinstance(name, str) or not _SAFE.match(name):
        raise BrokerSecurityError("%s %r: use 1-64 of A-Z a-z 0-9 _ . - (no MQTT wildcards, no ':')"
                                  % (what, name))
    return name


def hash_password(password, salt=None, iterations=PBKDF2_ITERATIONS):
    """Mosquitto ``$7$`` hash of password (PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte key)."""
    salt = os.urandom(12) if salt is None else salt
    dk = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return "$7$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(), base64.b64encode(dk).decode())


def check_password(entry_hash, password):
    """True when password matches a ``$7$`` hash (to test entries written by either path)."""
    try:
        _, seven, it, salt, dk = entry_hash.split("$")
        if seven != "7":
            return False
        got = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(it),
                                  len(base64.b64decode(dk)))
        return secrets.compare_digest(got, base64.b64decode(dk))
    except ValueError:
        return False


def _tool_hash(username, password, tool):
    with tempfile.TemporaryDirectory(prefix="edgepoi-pw-") as d:
        path = os.path.join(d, "pw")
        r = subprocess.run([tool, "-c", "-b", path, username, password], capture_output=True, timeout=30)
        if r.returncode != 0:
            raise BrokerSecurityError("mosquitto_passwd failed: %s" % r.stderr.decode(errors="replace"))
        with open(path) as f:
            line = f.read().strip()
    user, _, h = line.partition(":")
    if user != username or not h.startswith("$7$"):
        raise BrokerSecurityError("unexpected mosquitto_passwd output")
    return h


def password_entries(users, use_tool=True):
    """{username: password} -> ["user:$7$...", ...] (sorted by user)."""
    tool = shutil.which("mosquitto_passwd") if use_tool else None
    out = []
    for user in sorted(users):
        _check_name(user, "username")
        pw = users[user]
        if not pw or "\n" in pw:
            raise BrokerSecurityError("password of %r must be a non-empty single line" % user)
        out.append("%s:%s" % (user, _tool_hash(user, pw, tool) if tool else hash_password(pw)))
    return out


def _write_private(path, text):
    """Write text to path atomically with mode 0600."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = "%s.tmp%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def write_password_file(path, users, use_tool=True):
    return _write_private(path, "\n".join(password_entries(users, use_tool)) + "\n")


def device_rules(device_id):
    """ACL lines for one device's own topic root."""
    root = "%s/%s" % (TOPIC_ROOT, _check_name(device_id, "device id"))
    return ["topic write %s/status" % root, "topic write %s/telemetry" % root,
            "topic write %s/attest" % root, "topic write %s/cmd/+/result" % root,
            "topic read %s/cmd/#" % root, "topic read %s/ack" % root, "topic read %s/config" % root,
            "topic read %s/model/#" % root, "topic read %s" % BEACON]


def acl_text(devices, edge_user="edge", hass_user=None, discovery_prefix="homeassistant"):
    """Mosquitto acl_file text. devices: iterable of (broker username, device id)."""
    lines = ["# generated by edgepoi: devices publish only under their own topic root", ""]
    lines += ["user %s" % _check_name(edge_user, "edge username"),
              "topic read %s/#" % TOPIC_ROOT,
              "topic write %s/+/cmd/+" % TOPIC_ROOT,
              "topic write %s/+/config" % TOPIC_ROOT,
              "topic write %s/+/model/#" % TOPIC_ROOT,
              "topic write %s/+/state" % TOPIC_ROOT,
              "topic write %s/+/ack" % TOPIC_ROOT,
              "topic write %s" % BEACON,
              "topic readwrite %s/#" % discovery_prefix, ""]
    if hass_user:
        lines += ["user %s" % _check_name(hass_user, "Home Assistant username"),
                  "topic read %s/+/state" % TOPIC_ROOT, "topic read %s/+/status" % TOPIC_ROOT,
                  "topic read %s/#" % discovery_prefix, "topic write %s/status" % discovery_prefix, ""]
    for user, device_id in sorted(devices):
        lines += ["user %s" % _check_name(user, "device username")] + device_rules(device_id) + [""]
    return "\n".join(lines)


# -- TLS ---------------------------------------------------------------------------------------------

def _ec_key():
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1())


def _save_key(path, key):
    from cryptography.hazmat.primitives import serialization
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return _write_private(path, pem.decode())


def _save_cert(path, cert):
    from cryptography.hazmat.primitives import serialization
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _builder(subject_cn, issuer, pub, days):
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgepoi"),
                      x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))), name


def make_tls(out_dir, hostnames=(), ips=("127.0.0.1",), clients=(), days=825, ca_name="edgepoi edge CA"):
    """Create (or reuse) a CA in out_dir, then a server certificate (SAN: localhost, this host's name,
    ``hostnames``, ``ips``) and a client certificate per name in ``clients``. Keys are 0600 PEM files.

    Returns {"cafile", "certfile", "keyfile", "clients": {name: (cert, key)}}.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    ca_crt, ca_key_path = os.path.join(out_dir, "ca.crt"), os.path.join(out_dir, "ca.key")
    if os.path.exists(ca_crt) and os.path.exists(ca_key_path):
        with open(ca_key_path, "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), None)
        with open(ca_crt, "rb") as f:
            ca_cert = x509.load_pem_x509_certificate(f.read())
    else:
        ca_key = _ec_key()
        b, _ = _builder(ca_name, None, ca_key.public_key(), 3650)
        ca_cert = (b.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                  critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
                   .sign(ca_key, hashes.SHA256()))
        _save_key(ca_key_path, ca_key)
        _save_cert(ca_crt, ca_cert)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    def issue(cn, stem, usage, san=None):
        key = _ec_key()
        b, _ = _builder(cn, ca_cert.subject, key.public_key(), days)
        b = (b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                            critical=True)
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
             .add_extension(aki, critical=False))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        return (_save_cert(os.path.join(out_dir, stem + ".crt"), cert),
                _save_key(os.path.join(out_dir, stem + ".key"), key))

    names = ["localhost", socket.gethostname()] + list(hostnames)
    san = [x509.DNSName(n) for n in dict.fromkeys(names) if n]
    san += [x509.IPAddress(ipaddress.ip_address(i)) for i in dict.fromkeys(ips)]
    certfile, keyfile = issue(names[-1] if hostnames else "localhost", "server",
                              ExtendedKeyUsageOID.SERVER_AUTH, san)
    out = {"cafile": ca_crt, "certfile": certfile, "keyfile": keyfile, "clients": {}}
    for name in clients:
        out["clients"][name] = issue(_check_name(name, "client name"), "client-" + name,
                                     ExtendedKeyUsageOID.CLIENT_AUTH)
    return out


def auth_config(password_file, acl_file):
    """Global security lines (no listener): what a broker that already has listeners appends."""
    return "allow_anonymous false\npassword_file %s\nacl_file %s\n" % (password_file, acl_file)


def listener_config(port, host=None, tls=None, require_certificate=False):
    """A listener block; with ``tls`` (make_tls()'s result) it speaks TLS only."""
    lines = ["listener %d %s" % (port, host) if host else "listener %d" % port]
    if tls:
        lines += ["cafile %s" % tls["cafile"], "certfile %s" % tls["certfile"],
                  "keyfile %s" % tls["keyfile"],
                  "require_certificate %s" % ("true" if require_certificate else "false")]
    return "\n".join(lines) + "\n"


def mosquitto_config(port, host, password_file, acl_file, tls=None, require_certificate=False):
    """A whole mosquitto.conf security snippet: authenticated (and with ``tls``, encrypted) listener."""
    return ("# edgepoi edge broker (generated)\nper_listener_settings false\n"
            + auth_config(password_file, acl_file)
            + listener_config(port, host, tls, require_certificate))


def write_broker_files(out_dir, devices, edge_user="edge", hass_user=None, port=8883, host=None,
                       tls=True, hostnames=(), client_certs=False, rotate=False, use_tool=True):
    """Everything a hardened broker needs, in out_dir: ``passwd``, ``acl``, ``tls/``, ``mosquitto.conf``
    and one 0600 ``credentials/<user>.json`` per user ({"username", "password"}), reused on later runs
    unless ``rotate``. devices: iterable of (broker username, device id). Returns {path names}."""
    creds_dir = os.path.join(out_dir, "credentials")
    users = [edge_user] + ([hass_user] if hass_user else []) + [u for u, _d in devices]
    passwords = {}
    for user in users:
        _check_name(user, "username")
        path = os.path.join(creds_dir, user + ".json")
        if os.path.exists(path) and not rotate:
            with open(path) as f:
                passwords[user] = json.load(f)["password"]
        else:
            passwords[user] = new_password()
            _write_private(path, json.dumps({"username": user, "password": passwords[user]}) + "\n")
    out = {"passwd": write_password_file(os.path.join(out_dir, "passwd"), passwords, use_tool),
           "acl": os.path.join(out_dir, "acl"), "credentials": creds_dir}
    with open(out["acl"], "w") as f:
        f.write(acl_text(devices, edge_user=edge_user, hass_user=hass_user))
    t = None
    if tls:
        t = make_tls(os.path.join(out_dir, "tls"), hostnames=hostnames,
                     clients=[u for u, _d in devices] if client_certs else ())
        out["tls"] = t
    out["config"] = os.path.join(out_dir, "mosquitto.conf")
    with open(out["config"], "w") as f:
        f.write(mosquitto_config(port, host, os.path.abspath(out["passwd"]), os.path.abspath(out["acl"]),
                                 t, require_certificate=bool(client_certs)))
    return out
