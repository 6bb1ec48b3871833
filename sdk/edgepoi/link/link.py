"""The device's MQTT link: keeps a session up and drains the flash queue at QoS 1.

Usage::

    q = FlashQueue("q")
    link = Link("dev-1", "192.168.1.10", 1883, q, subscriptions=["edgepoi/v1/dev-1/cmd/#"],
                on_message=handle)
    q.append(seq, Link.record([(topic, payload, retain), ...]))   # what the agent produced
    while True:
        link.step()                  # never blocks for long; call it from the main loop

A queue record holds one or more messages (e.g. an inference's telemetry and its attestation), encoded as
a CBOR list of [topic, payload, retain]. Records go out at QoS 1, up to ``window`` records in flight.
``Link.record`` returns that encoding in pieces (the payloads themselves are not copied: the queue writes
the pieces one after another), and a record read back is parsed in place: each message's payload is a view
into it, copied only into its PUBLISH packet.

When a record leaves the queue depends on ``ack_topic``:
- without it, once the broker has acknowledged all its messages (and those of all older records);
- with it (``edgepoi/v1/<id>/ack``, what the agent uses), only once the **edge node** says it has stored
  them: the edge publishes ``{"upto": n}`` — the highest record id (the cycle's sequence number) up to
  which it holds every message of every record — and records up to n are dropped. A broker that dies
  before writing what it acknowledged therefore loses nothing: after the reconnect every record the edge
  has not confirmed is sent again.
In that mode the link also resends, while connected, the records the edge has not confirmed when its ack
does not move for ``resend_ms`` (doubling up to 5 minutes while the edge stays silent): a broker restarted
before the edge node resubscribed has nobody to deliver to. Resent records carry DUP and their original
ids, so every duplicate is a QoS 1 redelivery that its sequence number identifies.

Reconnects back off exponentially (``backoff_min_ms`` doubling to ``backoff_max_ms``) with full jitter in
[50%, 100%] of the step, so a fleet that lost its broker does not reconnect in lockstep.
"""
import socket
import time

try:
    import select
except ImportError:  # pragma: no cover
    import uselect as select

from edgepoi import cbor
from edgepoi.mqtt import codec
from edgepoi.mqtt.codec import MQTTProtocolError
from edgepoi.mqtt.session import CONNECTED, Session


def ticks_ms():
    try:
        return time.ticks_ms()
    except AttributeError:
        return int(time.monotonic() * 1000)


def _head(major, n):
    """The CBOR head of an item of major type ``major`` (0x80 array, 0x40 byte string...) and argument n: an
    unsigned integer's head with the major type bits set."""
    h = cbor.dumps(n)
    return bytes((h[0] | major,)) + h[1:]


def _arg(rec, at, major):
    """(argument, offset past the head) of the CBOR head at rec[at], which must be of major type ``major``."""
    ib = rec[at]
    ai = ib & 31
    if ib & 0xE0 != major or ai > 27:
        raise ValueError
    if ai < 24:
        return ai, at + 1
    k = 1 << (ai - 24)
    return int.from_bytes(rec[at + 1:at + 1 + k], "big"), at + 1 + k


def _messages(rec):
    """[(topic, payload, retain)] of a record made by Link.record, each payload a memoryview into rec (no
    copy); None when rec is not such a record."""
    view = memoryview(rec)
    end = len(rec)
    try:
        n, at = _arg(rec, 0, 0x80)
        out = []
        for _ in range(n):
            k, at = _arg(rec, at, 0x80)
            if k != 3:
                return None
            tlen, at = _arg(rec, at, 0x60)
            topic = str(rec[at:at + tlen], "utf-8")
            plen, at = _arg(rec, at + tlen, 0x40)
            at += plen
            if rec[at] & 0xFE != 0xF4:  # false / true
                return None
            out.append((topic, view[at - plen:at], rec[at] == 0xF5))
            at += 1
    except (IndexError, ValueError, UnicodeError):
        return None
    return out if at == end else None


def _jitter(ms):
    import os
    r = os.urandom(1)[0] / 255.0
    return int(ms * (0.5 + 0.5 * r))


class Link:
    def __init__(self, client_id, host, port, queue, keepalive=30, username=None, password=None,
                 status_topic=None, subscriptions=(), on_message=None, window=8,
                 backoff_min_ms=250, backoff_max_ms=30000, timeout_ms=5000, ssl_params=None,
                 ack_topic=None, resend_ms=5000):
        will = (status_topic, b"offline", 1, True) if status_topic else None
        self.session = Session(client_id, keepalive, will, username, password, clean_session=False)
        self.host = host
        self.port = port
        self.queue = queue
        self.status_topic = status_topic
        self.subscriptions = list(subscriptions)
        self.ack_topic = ack_topic
        self.edge_acked = -1
        self.resend_ms = resend_ms
        self._resend_wait = resend_ms
        self._resend_at = None
        if ack_topic and ack_topic not in self.subscriptions:
            self.subscriptions.append(ack_topic)
        self.on_message = on_message
        self.window = window
        self.backoff_min_ms = backoff_min_ms
        self.backoff_max_ms = backoff_max_ms
        self.timeout_ms = timeout_ms
        self.ssl_params = ssl_params
        self.sock = None
        self._poll = None
        self.decoder = codec.Decoder()
        self._backoff = 0
        self._next_attempt = 0
        self._sent_upto = queue.acked     # highest record id handed to the session
        self._ever_sent = queue.last_id   # records up to here may have been sent before (DUP)
        self._open = []                   # rec_id, messages_left, rec_id, ... in id order (ints: no
                                          # object per record lives on in the heap while the loop runs)
        self.stats = {"connects": 0, "failures": 0, "published": 0, "resent": 0, "acked_records": 0}
        self.last_error = None

    @staticmethod
    def record(messages):
        """Encode [(topic, payload, retain), ...] as one queue record: a list of byte strings that together
        are the CBOR of [[topic, payload, retain], ...] (``b"".join`` it for the bytes; FlashQueue.append
        takes the list as it is). The payloads are pieces of it, not copies."""
        out = [_head(0x80, len(messages))]
        for t, p, r in messages:
            out.append(b"\x83" + cbor.dumps(t) + _head(0x40, len(p)))
            out.append(p)
            out.append(b"\xf5" if r else b"\xf4")
        return out

    @property
    def connected(self):
        return self.session.state == CONNECTED

    # -- connection management -----------------------------------------------------------------
    def _connect(self, now):
        self.stats["connects"] += 1
        addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout_ms / 1000)
            s.connect(addr)
            if self.ssl_params is not None:
                import ssl
                s = ssl.wrap_socket(s, **self.ssl_params)
        except OSError:
            s.close()
            raise
        self.sock = s
        self._poll = select.poll()
        self._poll.register(s, select.POLLIN)
        self.decoder = codec.Decoder()
        self._send(self.session.connect(now))

    def _drop(self, why):
        self.last_error = why
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self._poll = None
        self.session.lost()
        del self._open[:]
        self._sent_upto = self.queue.acked
        self.stats["failures"] += 1
        self._backoff = min(self.backoff_max_ms, max(self.backoff_min_ms, self._backoff * 2))
        self._next_attempt = ticks_ms() + _jitter(self._backoff)

    def _send(self, data):
        if not data:
            return
        view = memoryview(data)
        while view:
            n = self.sock.send(view)
            if not n:
                raise OSError("connection closed while sending")
            view = view[n:]

    def publish_now(self, topic, parts, retain=False):
        """Send a QoS 1 PUBLISH outside the queue (a command's result) whose payload is the pieces in
        ``parts`` (bytes-like) joined, sent one after another: no payload-sized block is made."""
        n = 0
        for p in parts:
            n += len(p)
        self._send(self.session.publish_head(topic, n, 1, retain, ticks_ms()))
        for p in parts:
            self._send(p)

    def close(self):
        """Leave cleanly: publish offline status, DISCONNECT (the Last Will is not sent)."""
        if self.connected and self.status_topic:
            try:
                self._send(self.session.publish(self.status_topic, b"offline", 0, True, ticks_ms()))
                self._send(codec.DISCONNECT_BYTES)
            except OSError:
                pass
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.session.lost()
        self.queue.flush()

    # -- the pump ------------------------------------------------------------------------------
    def step(self, wait_ms=0):
        """Do whatever is due: (re)connect, read, send queued records, keepalive. Returns quickly."""
        now = ticks_ms()
        if self.sock is None:
            if now - self._next_attempt < 0 and self._backoff:
                return False
            try:
                self._connect(now)
            except (OSError, MQTTProtocolError) as e:
                self._drop("connect: %s" % e)
                return False
        try:
            self._read(wait_ms)
            if self.connected:
                self._check_resend(now)
                self._fill_window(now)
                self._send(self.session.tick(ticks_ms()))
            if self.session.dead(ticks_ms()):
                self._drop("broker silent past keepalive")
        except (OSError, MQTTProtocolError) as e:
            self._drop(str(e) or type(e).__name__)
        except MemoryError:
            import gc
            self.decoder = codec.Decoder()
            gc.collect()
            self._drop("out of memory")
        return self.connected

    def _read(self, wait_ms):
        while self._poll is not None and self._poll.poll(wait_ms):
            wait_ms = 0
            data = self.sock.recv(128)  # small: the port allocates the whole size for every read
            if not data:
                raise OSError("connection closed by broker")
            self.decoder.feed(data)
            while True:
                pkt = self.decoder.next()
                if pkt is None:
                    break
                events, out = self.session.receive(pkt, ticks_ms())
                for ev in events:
                    self._event(ev)
                # acknowledged once handled: a message whose handler failed (the link drops on a
                # MemoryError) is delivered again after the reconnect, not lost
                self._send(out)

    def _event(self, ev):
        kind = ev[0]
        if kind == "connected":
            self._backoff = 0
            now = ticks_ms()
            if self.status_topic:
                self._send(self.session.publish(self.status_topic, b"online", 1, True, now, tag=None))
            if self.subscriptions:
                _pid, data = self.session.subscribe([(t, 1) for t in self.subscriptions], now)
                self._send(data)
        elif kind == "refused":
            raise OSError("broker refused the connection (code %d)" % ev[1])
        elif kind == "acked":
            self._acked(ev[1])
        elif kind == "message":
            if ev[1] == self.ack_topic:
                self._edge_ack(ev[2])
            elif self.on_message is not None:
                self.on_message(ev[1], ev[2], ev[3])

    def _edge_ack(self, payload):
        try:
            acks = cbor.loads(payload, max_depth=2, max_items=16)
        except cbor.CBORError:
            return
        upto = acks.get("upto") if isinstance(acks, dict) else None
        if not isinstance(upto, int) or isinstance(upto, bool):
            return
        self.edge_acked = max(self.edge_acked, upto)
        upto = min(upto, self.queue.last_id)
        if upto > self.queue.acked:
            self.queue.ack(upto)
            self._resend_wait = self.resend_ms
            self._resend_at = ticks_ms() + self.resend_ms

    def _check_resend(self, now):
        """Edge-ack mode: rewind to the oldest unconfirmed record when the edge's ack stalls."""
        if not self.ack_topic or self.queue.pending_count == 0:
            self._resend_at = None
            return
        if self._resend_at is None:
            self._resend_at = now + self._resend_wait
        elif now - self._resend_at >= 0 and not self._open:
            self._sent_upto = self.queue.acked
            self._resend_wait = min(self._resend_wait * 2, 300000)
            self._resend_at = now + self._resend_wait

    def _fill_window(self, now):
        while len(self._open) < 2 * self.window:
            rec = self.queue.read_after(self._sent_upto)
            if rec is None:
                return
            rec_id, payload = rec
            # unreadable record: count it delivered rather than block the queue
            messages = _messages(payload) or []
            dup = rec_id <= self._ever_sent
            self._open.append(rec_id)
            self._open.append(len(messages))
            for topic, body, retain in messages:
                self._send(self.session.publish(topic, body, 1, retain, now, tag=rec_id, dup=dup))
                self.stats["published"] += 1
                if dup:
                    self.stats["resent"] += 1
            self._sent_upto = rec_id
            if rec_id > self._ever_sent:
                self._ever_sent = rec_id
            if not messages:
                self._acked(rec_id, count=0)

    def _acked(self, rec_id, count=1):
        if rec_id is None:
            return
        o = self._open
        for i in range(0, len(o), 2):
            if o[i] == rec_id:
                o[i + 1] -= count
                break
        done = None
        while o and o[1] <= 0:
            done = o[0]
            del o[0:2]
            self.stats["acked_records"] += 1
        if done is not None and not self.ack_topic:
            self.queue.ack(done)

    def drained(self):
        return self.queue.pending_count == 0
