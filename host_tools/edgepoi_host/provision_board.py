"""The board side of provisioning: firmware checks, key URIs, how a board is reset, waiting for ``online``.

Usage::

    from edgepoi_host.provision_board import adapter_for, check_board, StatusWatch
    check_board(board_info(transport), board)            # ProvisionError if the firmware cannot run the bundle
    watch = StatusWatch("127.0.0.1", 1883, "dev-1")     # subscribe before the reset
    adapter_for(board).start(transport)                 # machine.reset(), or the unix port's raw-REPL launch
    watch.online.wait(30)

A *board adapter* is what "reset the board" means on a kind of board. On a real board (ESP32) it is
``machine.reset()``: the board reboots and runs boot.py, then main.py. The MicroPython unix port on a serial
line (the simulator and the tests) has no soft reset and ignores Ctrl-C on a raw tty, so its adapter starts
the app inside a raw-REPL exec (``_UNIX_LAUNCH``) with a stdin hook that turns the Ctrl-C of the next raw-REPL
client into a clean stop.
"""
import secrets
import threading
import time

from edgepoi_host.serial import framing
from edgepoi_host.serial.errors import TransportError, TransportTimeout


class ProvisionError(RuntimeError):
    """Provisioning stopped; the message is one line that says what went wrong and what to try.
    ``detail`` holds more when there is more (e.g. the device app's whole traceback)."""

    def __init__(self, message, detail=""):
        RuntimeError.__init__(self, message)
        self.detail = detail


PLATFORMS = {"unix": ("linux", "darwin"), "esp32": ("esp32",), "esp32s3": ("esp32",), "esp32c3": ("esp32",)}
STARTED = "edgepoi: app started"
# Unix-port board: its REPL process cannot soft-reset and does not turn Ctrl-C on a raw tty into an
# interrupt, so the app is started inside a raw-REPL exec, with a hook that watches stdin for Ctrl-C (what
# every raw-REPL client sends first) and then leaves the broker cleanly and raises KeyboardInterrupt.
_UNIX_LAUNCH = r"""
import sys
for _k in list(sys.modules):
    if _k.split('.')[0] in ('edgepoi', 'main', 'boot'):
        del sys.modules[_k]
del _k
import gc
gc.collect()
import select
from edgepoi.link import link as _ep_link
_ep_poll = select.poll()
_ep_poll.register(sys.stdin, select.POLLIN)
_ep_step = _ep_link.Link.step
def _ep_step_ctrl_c(self, wait_ms=0):
    while _ep_poll.poll(0):
        if sys.stdin.buffer.read(1) == b'\x03':
            try:
                self.close()
            except Exception:
                pass
            raise KeyboardInterrupt
    return _ep_step(self, wait_ms)
_ep_link.Link.step = _ep_step_ctrl_c
print(%r)
import boot
import main
main.main()
""" % STARTED


# -- checks ------------------------------------------------------------------------------------------


def check_board(info, b):
    """Raise ProvisionError unless the board's firmware (``transport.board_info``) can run b's bundle."""
    if b["platform"] != "micropython":
        raise ProvisionError("board %s runs CPython: install edgepoi on it with pip; serial provisioning is "
                             "for MicroPython boards" % b["id"])
    want = b["mpy"]["version"]
    if info["mpy"].split(".")[0] != want.split(".")[0]:
        raise ProvisionError("the board on the port runs MicroPython %s (.mpy v%s), board %s needs .mpy v%s: "
                             "flash a matching MicroPython firmware" % (info["version"], info["mpy"], b["id"],
                                                                         want))
    if info["arch"] and info["arch"] != b["mpy"]["arch"]:
        raise ProvisionError("the board on the port is %s (%s), board %s is %s: wrong --board?"
                             % (info["arch"], info["platform"], b["id"], b["mpy"]["arch"]))
    plats = PLATFORMS.get(b["chip"])
    if plats and info["platform"] not in plats:
        raise ProvisionError("the board on the port reports sys.platform %r, board %s expects %s: wrong --board?"
                             % (info["platform"], b["id"], " or ".join(repr(p) for p in plats)))


def default_key_uri(b):
    """The key URI for a board: its secure element when it has one, else a key file in its flash."""
    se = b.get("secure_element", {"type": "none"})
    if se["type"] == "atecc608":
        return "atecc608:bus=%d;addr=0x%02x;slot=%d" % (se["i2c"], se["address"], se["slot"])
    return "file:key.pem"


# -- board adapters: how "reset" is done ----------------------------------------------------------------


class MachineResetAdapter:
    """A real board (ESP32...): ``machine.reset()``; the board boots and runs boot.py, then main.py."""

    name = "machine.reset"

    def start(self, t):
        try:
            res = t.exec_raw("import machine\nmachine.reset()", timeout=2.0)
        except TransportError:
            return                      # the board rebooted under us: that is the point
        raise ProvisionError("the board did not reset: %s" % _last_line(res.stderr or b"machine.reset() returned"))

    def poll(self, t, seconds):
        time.sleep(seconds)


class _Started(Exception):
    pass


class UnixReplAdapter:
    """The MicroPython unix port on a serial line: run the app inside a raw-REPL exec (see _UNIX_LAUNCH).

    ``poll`` keeps reading the app's output while the host waits; if the app ends (a traceback), it raises
    ProvisionError with its last line.
    """

    name = "unix raw-REPL launch"

    def __init__(self):
        self.output = bytearray()

    def start(self, t):
        def first(chunk):
            self.output += chunk
            if STARTED.encode() in self.output:
                raise _Started()
        try:
            res = t.exec_raw(_UNIX_LAUNCH, on_output=first)
        except _Started:
            return
        raise ProvisionError("the device app did not start: %s" % _last_line(res.stderr or res.stdout))

    def poll(self, t, seconds):
        deadline = time.monotonic() + seconds

        def done(ev):
            if isinstance(ev, framing.Output):
                self.output = (self.output + ev.data)[-4096:]
            return isinstance(ev, framing.ExecResult) or time.monotonic() > deadline
        try:
            ev = t._until(done, seconds)
        except TransportTimeout:
            return                       # silence: the app runs and prints nothing
        if isinstance(ev, framing.ExecResult):
            raise ProvisionError("the device app stopped: %s" % _last_line(ev.stderr or ev.stdout),
                                 (bytes(self.output) + ev.stderr).decode("utf-8", "replace"))


def adapter_for(b):
    return UnixReplAdapter() if b["chip"] == "unix" else MachineResetAdapter()


def _last_line(data):
    lines = [x for x in bytes(data).decode("utf-8", "replace").strip().splitlines() if x.strip()]
    return lines[-1].strip() if lines else "(no output)"


# -- waiting for online --------------------------------------------------------------------------------


class StatusWatch:
    """Subscribe to a device's status topic; ``online`` is set by a live (not retained) ``online``."""

    def __init__(self, host, port, device_id, username=None, password=None, timeout=10.0):
        import paho.mqtt.client as mqtt
        self.topic = "edgepoi/v1/%s/status" % device_id
        self.online, self.subscribed = threading.Event(), threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id="edgepoi-provision-" + secrets.token_hex(4))
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, rc, p=None: rc.is_failure or c.subscribe(self.topic, 1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p=None: self.subscribed.set()
        self.client.on_message = self._on_message
        try:
            self.client.connect(host, port, keepalive=30)
        except OSError as e:
            raise ProvisionError("cannot reach the broker at %s:%d: %s: is it running?" % (host, port, e))
        self.client.loop_start()
        if not self.subscribed.wait(timeout):
            self.close()
            raise ProvisionError("the broker at %s:%d did not accept a subscription to %s within %.0f s: check "
                                 "the edge user's credentials" % (host, port, self.topic, timeout))

    def _on_message(self, client, userdata, msg):
        if msg.payload == b"online" and not msg.retain:
            self.online.set()

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()
