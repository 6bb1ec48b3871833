# heapsize: 96K
# The store-and-forward queue on flash: ordering, acks, compaction, bounds, torn-record recovery.
import os

from checks import raises, scratch_dir

from edgepoi.link.flashq import FlashQueue, QueueError, QueueFull

def _fresh():
    return scratch_dir("flashq") + "/q"


def _cleanup(q):
    q.close()
    for name in os.listdir(q.dir):
        os.remove(q.dir + "/" + name)
    os.rmdir(q.dir)
    os.rmdir(q.dir[:-2])


def test_append_read_ack_in_order():
    q = FlashQueue(_fresh(), max_bytes=4096)
    for i in range(1, 11):
        q.append(i, b"rec%d" % i)
    assert [r[0] for r in q.pending()] == list(range(1, 11))
    assert q.read_after(4) == (5, b"rec5")
    q.ack(3)
    assert q.pending_count == 7
    assert q.read_after(0) == (4, b"rec4")
    raises(QueueError, q.append, 10, b"x")       # ids must increase
    raises(QueueError, q.ack, 99)                # cannot ack the future
    _cleanup(q)


def test_reopen_restores_pending_and_last():
    d = _fresh()
    q = FlashQueue(d, max_bytes=4096, ack_every=1)
    for i in range(1, 6):
        q.append(i, b"p%d" % i)
    q.ack(2)
    q.close()
    q = FlashQueue(d, max_bytes=4096)
    assert [r[0] for r in q.pending()] == [3, 4, 5]
    assert q.last() == (5, b"p5")
    q.ack(5)
    q.close()
    q = FlashQueue(d, max_bytes=4096)
    assert q.pending() == [] and q.last() == (5, b"p5")   # the newest record survives for state recovery
    q.append(6, b"p6")
    assert q.pending() == [(6, b"p6")]
    _cleanup(q)


def test_full_queue_refuses_and_compaction_makes_room():
    q = FlashQueue(_fresh(), max_bytes=13 * 4 + 40)   # room for 4 records of 10 bytes
    for i in range(1, 5):
        q.append(i, b"0123456789")
    e = raises(QueueFull, q.append, 5, b"0123456789")
    assert "full" in str(e)
    assert [r[0] for r in q.pending()] == [1, 2, 3, 4]    # nothing was lost or stored
    q.ack(3)
    q.append(5, b"0123456789")                            # compaction dropped 1..3 (4 is still pending)
    assert q.compactions >= 1
    assert [r[0] for r in q.pending()] == [4, 5]
    _cleanup(q)


def test_torn_last_record_is_cut_at_open():
    d = _fresh()
    q = FlashQueue(d, max_bytes=4096)
    q.append(1, b"first")
    q.append(2, b"second")
    q.close()
    with open(d + "/queue.dat", "ab") as f:        # a power cut in the middle of appending record 3
        f.write(b"\xeb\x00\x00\x00\x03\x00\x00\x00\x10abc")
    q = FlashQueue(d, max_bytes=4096)
    assert q.torn_bytes == 12
    assert q.pending() == [(1, b"first"), (2, b"second")]
    q.append(3, b"third")
    q.close()
    q = FlashQueue(d, max_bytes=4096)
    assert q.torn_bytes == 0 and [r[0] for r in q.pending()] == [1, 2, 3]
    _cleanup(q)


def test_corrupt_record_body_is_detected():
    d = _fresh()
    q = FlashQueue(d, max_bytes=4096)
    q.append(1, b"good")
    q.append(2, b"flipped")
    q.close()
    with open(d + "/queue.dat", "rb") as f:
        data = bytearray(f.read())
    data[-1] ^= 0x01
    with open(d + "/queue.dat", "wb") as f:
        f.write(data)
    q = FlashQueue(d, max_bytes=4096)
    assert q.pending() == [(1, b"good")]
    _cleanup(q)
