"""The crash-safe counter: processes that hand out numbers are SIGKILLed at random moments (CPython and the
real MicroPython); no number is ever handed out twice and the counter file always reopens."""
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from edgepoi.counter import CounterError, FileCounter, MemoryCounter

WORKER = """
import sys
from edgepoi.counter import FileCounter
c = FileCounter(sys.argv[1], block=int(sys.argv[2]))
while True:
    sys.stdout.write("%d\\n" % c.next())
"""


def test_counts_up_and_resumes_past_the_reservation(tmp_path):
    path = str(tmp_path / "seq")
    c = FileCounter(path, block=4)
    assert c.peek() == 1 and [c.next() for _ in range(6)] == [1, 2, 3, 4, 5, 6]
    assert c.peek() == 7
    again = FileCounter(path, block=4)         # a "crash": numbers 7, 8 were reserved, skip them
    assert again.next() == 9
    assert FileCounter(str(tmp_path / "other"), start=100).next() == 100
    m = MemoryCounter(5)
    assert (m.next(), m.next(), m.peek()) == (5, 6, 7)


def test_corrupt_counter_file_is_an_error_not_a_reset(tmp_path):
    path = tmp_path / "seq"
    c = FileCounter(str(path), block=2)
    c.next()
    data = path.read_bytes()
    for bad in (b"", data[:-3], data.replace(b"3", b"4"), b"\xff\xfe", b"edgepoi-counter-v1 -5 00\n"):
        path.write_bytes(bad)
        with pytest.raises(CounterError):
            FileCounter(str(path))
    with pytest.raises(CounterError):
        FileCounter(str(tmp_path / "x"), block=0)


def test_torn_tmp_file_is_ignored_and_a_complete_one_recovers_a_missing_file(tmp_path):
    path = tmp_path / "seq"
    c = FileCounter(str(path), block=10)
    assert c.next() == 1
    good = path.read_bytes()
    (tmp_path / "seq.tmp").write_bytes(good[:7])            # killed while writing the tmp file
    assert FileCounter(str(path)).next() == 11
    assert not (tmp_path / "seq.tmp").exists()
    # FAT-style rename (unlink target, then rename) interrupted in between: only a complete tmp is left
    data = path.read_bytes()
    path.unlink()
    (tmp_path / "seq.tmp").write_bytes(data)
    c = FileCounter(str(path))
    assert c.next() >= 21 and path.exists() and not (tmp_path / "seq.tmp").exists()


def kill_loop(argv_for, path, kills, env=None, min_run=0.002, max_run=0.05):
    """Start the worker, SIGKILL it after a random time, collect the complete lines; repeat."""
    seen = []
    for _ in range(kills):
        p = subprocess.Popen(argv_for(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        first = p.stdout.readline()          # running (whatever the machine's load), then a random wait
        time.sleep(random.uniform(min_run, max_run))
        p.send_signal(signal.SIGKILL)
        out, err = p.communicate()
        assert b"Traceback" not in err, err.decode()
        text = (first + out).decode()
        lines = text.split("\n")[:-1]          # the last, unterminated piece may be cut mid-number
        seen.extend(int(x) for x in lines)
        # the file must always reopen (never unreadable, never torn)
        FileCounter(path, block=1).peek()
    return seen


def test_sigkill_many_times_never_reuses_a_number_cpython(tmp_path):
    path = str(tmp_path / "seq")
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "sdk"))
    random.seed(4)
    seen = []
    for block in (1, 3, 64):
        seen += kill_loop(lambda p: [sys.executable, "-u", str(worker), p, str(block)], path, 20, env=env,
                          min_run=0.0, max_run=0.06)
    assert len(seen) > 100, "the workers printed too little to test anything"
    assert len(seen) == len(set(seen)), "a sequence number was handed out twice"
    assert seen == sorted(seen)


def test_sigkill_never_reuses_a_number_micropython(micropython, tmp_path):
    path = str(tmp_path / "seq")
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    mp = micropython(heapsize="96K")
    random.seed(5)
    seen = kill_loop(lambda p: mp.argv([str(worker), p, "2"]), path, 15, env=mp.environ(),
                     min_run=0.0, max_run=0.05)
    assert len(seen) > 50
    assert len(seen) == len(set(seen)) and seen == sorted(seen)
