"""Provision a MicroPython board over USB serial: check it, sync its bundle, key it, register it, start it.

Usage::

    from edgepoi_host.provision import provision
    r = provision("/dev/ttyUSB0", "esp32-s3", "mqtt://192.168.1.10:1883", "kitchen-1", "sqlite:///edge.db",
                  credentials_dir="edge/broker", wifi_ssid="home", wifi_password="...")
    r.sync.sent, r.registry_action, r.credentials_action, r.online_after    # what it did

Steps (docs/PROVISIONING.md): (1) raw REPL, check MicroPython/.mpy version, arch and platform against the
board definition; (2) the board's broker password (reused from ``<credentials_dir>/credentials/<user>.json``),
the bundle with its ``config.json``, a hash-based sync of what differs (files a previous bundle had and
this one does not are removed; the key, the queue and other files the board made are left alone;
``manifest.json`` goes last); (3) the board creates its own key (file or secure element) and prints only
its public key, which is registered in the edge registry (same key: no change; another key: refused
unless ``rotate``); broker password file and ACL are rewritten only when they lack this device;
(4) subscribe to ``edgepoi/v1/<id>/status``, reset the board through its ``BoardAdapter`` and wait for a
live ``online``. Every failure is a ``ProvisionError`` with a one-line message.
"""
import hashlib
import json
import os
import shutil
import tempfile
import time
from urllib.parse import urlparse

from edgepoi_host import bundle
from edgepoi_host.provision_board import (ProvisionError, StatusWatch, adapter_for, check_board,  # noqa: F401
                                          default_key_uri)
from edgepoi_host.serial.errors import DeviceError, SerialError

EDGE_HOME = os.environ.get("EDGEPOI_EDGE_HOME", os.path.join(".edgepoi", "edge"))
# Inside a function, so nothing of the key backend stays referenced from the REPL's globals afterwards.
_KEY_CODE = """
def _ep_key(uri):
    from edgepoi.keys import open_key
    k = open_key(uri)
    try:
        return k.public_key().hex()
    finally:
        k.close()
print(_ep_key(%r))
del _ep_key
"""


class ProvisionResult:
    """What a run did. Attributes: device_id, board (id), info (board_info), sync (SyncReport),
    removed (stale files), public_key (65 bytes), key_id, registry_action ("created"/"unchanged"/"rotated"),
    credentials_action ("created"/"updated"/"unchanged"), online_after (s from reset to online, or None),
    seconds (whole run), wire_bytes (bytes written to the serial port)."""

    def __init__(self, device_id, board):
        self.device_id, self.board = device_id, board
        self.info = self.sync = self.public_key = self.key_id = self.online_after = None
        self.registry_action = self.credentials_action = None
        self.removed, self.seconds, self.wire_bytes = [], 0.0, 0


def parse_broker(url):
    """mqtt://HOST[:PORT] -> (host, port)."""
    u = urlparse(url if "://" in url else "mqtt://" + url)
    if u.scheme not in ("mqtt", "tcp") or not u.hostname:
        raise ProvisionError("--broker must look like mqtt://HOST[:PORT], got %r" % url)
    return u.hostname, u.port or 1883


# -- broker credentials -------------------------------------------------------------------------------


def _write_private(path, text):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = "%s.tmp%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_credentials(creds_dir, user):
    """(username, password) from ``<creds_dir>/credentials/<user>.json``, or None."""
    path = os.path.join(creds_dir, "credentials", user + ".json")
    try:
        with open(path) as f:
            c = json.load(f)
        return c["username"], c["password"]
    except (OSError, ValueError, KeyError):
        return None


def _hass_user(acl_path):
    """The Home Assistant user of an ACL written by ``edgepoi edge credentials --hass-user``, or None."""
    try:
        with open(acl_path) as f:
            lines = [line.strip() for line in f]
    except OSError:
        return None
    for i, line in enumerate(lines[:-1]):
        if line.startswith("user ") and lines[i + 1] == "topic read edgepoi/v1/+/state":
            return line[5:]
    return None


def update_broker_files(creds_dir, devices, edge_user="edge", broker_port=1883):
    """Make ``passwd``, ``acl`` and ``credentials/*.json`` in creds_dir cover devices [(user, device id)].

    Existing passwords are kept; files are rewritten only when a user or an ACL rule is missing.
    Returns "created" (first files), "updated" or "unchanged".
    """
    from edgepoi_host.edge import broker_security as bs
    passwd, acl = os.path.join(creds_dir, "passwd"), os.path.join(creds_dir, "acl")
    hass = _hass_user(acl)
    users = [edge_user] + ([hass] if hass else []) + [u for u, _ in devices]
    passwords, fresh = {}, False
    for user in users:
        c = read_credentials(creds_dir, user)
        if c is None:
            c, fresh = (user, bs.new_password()), True
            _write_private(os.path.join(creds_dir, "credentials", user + ".json"),
                           json.dumps({"username": user, "password": c[1]}) + "\n")
        passwords[user] = c[1]
    acl_text = bs.acl_text(devices, edge_user=edge_user, hass_user=hass)
    existed = os.path.exists(passwd)
    if not fresh and existed and _passwd_ok(passwd, passwords) and _read(acl) == acl_text:
        return "unchanged"
    bs.write_password_file(passwd, passwords)
    _write_private(acl, acl_text)
    conf = os.path.join(creds_dir, "mosquitto.conf")
    if not os.path.exists(conf):
        with open(conf, "w") as f:
            f.write(bs.mosquitto_config(broker_port, None, os.path.abspath(passwd), os.path.abspath(acl)))
    return "updated" if existed else "created"


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _passwd_ok(path, passwords):
    from edgepoi_host.edge.broker_security import check_password
    entries = dict(line.strip().split(":", 1) for line in (_read(path) or "").splitlines() if ":" in line)
    return all(u in entries and check_password(entries[u], pw) for u, pw in passwords.items())


# -- the whole run ---------------------------------------------------------------------------------------


def provision(port, board, broker, device_id, db, wifi_ssid=None, wifi_password=None, model=None,
              key_uri=None, credentials_dir=None, reset=True, timeout=60.0, rotate=False, progress=False,
              serial_timeout=10.0, edge_home=EDGE_HOME, edge_user="edge", reload_broker=None, log=None,
              extra_config=None):
    """Provision the board on ``port`` as ``device_id`` (see the module docstring). Returns ProvisionResult.

    Args:
        board: board id, alias or JSON path; broker: mqtt://HOST[:PORT] as the board will reach it;
        db: the edge node's database URL; credentials_dir: broker files (default <edge_home>/broker);
        reset: start the board's app and wait up to ``timeout`` s for ``online``; progress: True for a bar
        or a callable(n_bytes); reload_broker: called after the password file/ACL changed (e.g. SIGHUP);
        log: callable(str) for step messages; extra_config: more config.json keys (period_s, sensor, ...),
        under the ones provisioning sets.
    Raises:
        ProvisionError.
    """
    from edgepoi_host.edge import db as dblib
    from edgepoi_host.edge.registry import Registry, RegistryError, check_device_id
    from edgepoi_host.serial.fs import DeviceFS, load_manifest
    from edgepoi_host.serial.transport import SerialTransport, board_info
    t0 = time.monotonic()
    say = log or (lambda s: None)
    try:
        b = bundle.get_board(board)
        check_device_id(device_id)
    except (bundle.BundleError, RegistryError) as e:
        raise ProvisionError(str(e))
    if b["platform"] != "micropython":
        check_board({}, b)                           # says why: a CPython board is not provisioned over serial
    host, bport = parse_broker(broker)
    creds_dir = credentials_dir or os.path.join(edge_home, "broker")
    key_uri = key_uri or default_key_uri(b)
    res = ProvisionResult(device_id, b["id"])
    try:
        database = dblib.connect(db)
        reg = Registry(database)
    except Exception as e:  # noqa: BLE001 - any database failure is one line
        raise ProvisionError("cannot open the edge database %s: %s" % (db, e))
    build_dir = tempfile.mkdtemp(prefix="edgepoi-provision-")
    t = SerialTransport(port, timeout=serial_timeout)
    step = "connecting"
    try:
        t.open()
        res.info = info = board_info(t)
        say("board: MicroPython %s, .mpy v%s %s, %s" % (info["version"], info["mpy"], info["arch"],
                                                       info["platform"]))
        check_board(info, b)
        step = "building the bundle"
        cur = reg.get(device_id)
        user = cur["broker_username"] if cur else device_id
        known = read_credentials(creds_dir, user)
        password = known[1] if known else None
        if password is None:
            from edgepoi_host.edge.broker_security import new_password
            password = new_password()
        cfg = dict(extra_config or {})
        cfg.update({"device_id": device_id, "broker_host": host, "broker_port": bport, "username": user,
                    "password": password, "key": key_uri})
        if wifi_ssid:
            cfg["wifi_ssid"], cfg["wifi_password"] = wifi_ssid, wifi_password or ""
        if model:
            cfg["model"] = os.path.basename(model)
        edge_pub = _edge_public_key(edge_home)
        if edge_pub:
            cfg["edge_pubkey"] = edge_pub
        cfg_path = os.path.join(build_dir, "config.json")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        out = bundle.build(b, os.path.join(build_dir, "bundle"), config=cfg_path, model=model)
        files = load_manifest(out.out_dir)
        manifest = files.pop("manifest.json")
        fs = DeviceFS(t)
        step = "syncing the bundle"
        res.removed = _stale(fs, files)
        for path in res.removed:
            fs.rm(path)
        res.sync = fs.sync(files, ".", progress=progress)
        if fs.isdir("manifest.json") is not False or fs.sha256("manifest.json") != _sha(manifest):
            fs.put(manifest, "manifest.json")
            res.sync.sent.append("manifest.json")
            res.sync.bytes_sent += len(manifest)
        say("sync: %d files sent (%d bytes), %d unchanged, %d removed" % (
            len(res.sync.sent), res.sync.bytes_sent, len(res.sync.unchanged), len(res.removed)))
        step = "creating the key on the board"
        out = t.exec(_KEY_CODE % key_uri, timeout=max(serial_timeout, 60.0))
        try:
            res.public_key = bytes.fromhex(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise ProvisionError("%s: the board printed %r, not a public key" % (step, out[-80:]))
        step = "registering the device"
        try:
            dev, res.registry_action = reg.register(device_id, res.public_key, kind=key_uri.split(":")[0],
                                                    rotate=rotate, broker_username=user)
        except RegistryError as e:
            if e.reason == "key_mismatch":
                raise ProvisionError("%s is registered with key %s but the board holds key %s: pass --rotate "
                                     "to replace it" % (device_id, cur["key_id"].hex(),
                                                        hashlib.sha256(res.public_key).hexdigest()[:32]))
            raise ProvisionError("%s: %s" % (step, e))
        res.key_id = dev["key_id"]
        say("registry: %s, key id %s" % (res.registry_action, res.key_id.hex()))
        step = "writing the broker credentials"
        if not known:
            _write_private(os.path.join(creds_dir, "credentials", user + ".json"),
                           json.dumps({"username": user, "password": password}) + "\n")
        devices = [(d["broker_username"], d["device_id"]) for d in reg.devices()]
        res.credentials_action = update_broker_files(creds_dir, devices, edge_user, bport)
        say("broker credentials: %s (%s)" % (res.credentials_action, creds_dir))
        if res.credentials_action != "unchanged" and reload_broker:
            reload_broker()
        if reset:
            step = "starting the board"
            _start_and_wait(t, adapter_for(b), host, bport, device_id, read_credentials(creds_dir, edge_user),
                            timeout, res, say)
    except DeviceError as e:
        raise ProvisionError("%s: the board raised %s" % (step, _one_line(e)))
    except SerialError as e:
        raise ProvisionError("%s: %s" % (step, _one_line(e)))
    except (bundle.BundleError, OSError) as e:
        raise ProvisionError("%s: %s" % (step, _one_line(e)))
    finally:
        res.wire_bytes = t.bytes_sent
        t.close()
        database.close()
        shutil.rmtree(build_dir, ignore_errors=True)
    res.seconds = time.monotonic() - t0
    return res


def _start_and_wait(t, adapter, host, port, device_id, edge_creds, timeout, res, say):
    user, pw = edge_creds if edge_creds else (None, None)
    watch = StatusWatch(host, port, device_id, user, pw)
    try:
        t_reset = time.monotonic()
        adapter.start(t)
        say("board: started (%s), waiting for online" % adapter.name)
        while not watch.online.is_set():
            if time.monotonic() - t_reset > timeout:
                raise ProvisionError("%s did not report online at %s:%d within %.0f s: is the broker reachable "
                                     "from the board, and were new broker credentials loaded (--reload-broker)?"
                                     % (device_id, host, port, timeout))
            adapter.poll(t, 0.1)
        res.online_after = time.monotonic() - t_reset
        say("online after %.2f s" % res.online_after)
    finally:
        watch.close()


def _stale(fs, files):
    """Files the previous bundle (the board's manifest.json) had and this one does not."""
    if fs.isdir("manifest.json") is not False:
        return []
    try:
        old = json.loads(fs.cat("manifest.json").decode())
        return sorted(set(e["path"] for e in old["files"]) - set(files) - {"config.json"})
    except (ValueError, KeyError, TypeError):
        return []


def _edge_public_key(edge_home):
    path = os.path.join(edge_home, "edge-key.pem")
    if not os.path.exists(path):
        return None
    from edgepoi.keys import open_key
    k = open_key("file:" + path, create=False)
    try:
        return k.public_key().hex()
    finally:
        k.close()


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def _one_line(e):
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
