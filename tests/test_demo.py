"""``edgepoi demo`` end to end, real everything: Mosquitto with passwords and ACL, the edge node on SQLite,
MicroPython boards on pseudo-terminals provisioned over serial, the console (plain and textual).

Each test checks that nothing the demo started is left running: the processes listed in the work folder's
``pids.json``, anything whose command line or working directory is inside the work folder.
"""
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from edgepoi_host import demo, demo_model

PERIOD = "0.25"        # the model's 16-reading window fills in 4 s: attestations come early


@pytest.fixture(scope="module")
def model(request, tmp_path_factory):
    """The demo model, trained once and kept in pytest's cache (``ensure`` retrains it if it is not the
    current one), as the demo keeps ``models/`` across its runs: training takes seconds on a busy machine."""
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("edgepoi_demo_model") if cache is not None else tmp_path_factory.mktemp("model")
    return demo_model.ensure(str(folder / "anomaly.tflite"))


@pytest.fixture
def work(tmp_path, model):
    """A work folder as a previous demo run leaves it: the marker and the trained model."""
    w = tmp_path / "demo"
    (w / "models").mkdir(parents=True)
    (w / demo.MARKER).write_text("")
    shutil.copy(model, str(w / "models" / "anomaly.tflite"))
    return w


def demo_cmd(workdir, *args):
    return [sys.executable, "-m", "edgepoi_host.cli", "demo", "--plain", "--period", PERIOD, "--workdir",
            str(workdir)] + list(args)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def left_behind(workdir):
    """Live processes of this demo: listed in pids.json, or with the work folder in argv or as cwd."""
    workdir = str(workdir)
    with open(os.path.join(workdir, "pids.json")) as f:
        p = json.load(f)
    out = [pid for pid in [p["broker"], p["edge_worker"]] + p["boards"] if alive(pid)]
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink("/proc/%s/cwd" % entry)
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().decode(errors="replace")
        except OSError:
            continue
        if (cwd.startswith(workdir) or workdir in argv) and alive(int(entry)):
            out.append(int(entry))
    pgrep = subprocess.run(["pgrep", "-f", workdir], capture_output=True, text=True).stdout.split()
    return sorted(set(out) | set(int(p) for p in pgrep if int(p) != os.getpid()))


def summary_numbers(text):
    m = re.search(r"(\d+) telemetry messages stored\s+attestations: (\d+) accepted, (\d+) rejected", text)
    assert m, text
    return [int(x) for x in m.groups()]


def test_demo_for_n_seconds_provisions_three_boards_and_leaves_nothing_running(work):
    (work / "boards" / "demo-09").mkdir(parents=True)       # what a previous run left is wiped, the model kept
    model = (work / "models" / "anomaly.tflite").read_bytes()
    t0 = time.monotonic()
    res = subprocess.run(demo_cmd(work, "--seconds", "16"), capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert "3 devices seen (demo-01, demo-02, demo-03)" in out, out
    telemetry, accepted, rejected = summary_numbers(out)
    assert telemetry >= 10 and accepted >= 1 and rejected == 0, out
    first = float(re.search(r"time to first telemetry: ([\d.]+) s", out).group(1))
    assert 0 < first < 16, out
    # The real provisioning path ran for every board: a key made on the board, the registry, the broker.
    for dev in ("demo-01", "demo-02", "demo-03"):
        assert re.search(r"%s +provision +provisioned in [\d.]+ s: \d+ files" % dev, out), out
        assert b"PRIVATE KEY" in (work / "boards" / dev / "key.pem").read_bytes()
        assert "user %s\n" % dev in (work / "broker" / "acl").read_text()
    # plain lines of device events (the console's format) and a status line a second
    assert re.search(r"edgepoi/v1/demo-0\d/attest attest dev=demo-0\d verdict=verified", out), out
    assert len(re.findall(r"demo +status +\d/3 online", out)) >= 10
    assert "nothing left running" in out and took < 40, (took, out)
    assert left_behind(work) == []
    assert not (work / "boards" / "demo-09").exists()
    assert (work / "models" / "anomaly.tflite").read_bytes() == model
    print("\ndemo: first telemetry after %.1f s, %d telemetry, %d attestations accepted in %.1f s"
          % (first, telemetry, accepted, took))


def test_ctrl_c_while_a_board_is_being_provisioned_stops_everything_with_the_summary(work):
    proc = subprocess.Popen(demo_cmd(work, "--devices", "2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lines = []
    try:
        for line in proc.stdout:            # wait until demo-01 is online and demo-02 is on its way
            lines.append(line)
            if re.search(r"demo-02 +provision +board: MicroPython", line) and \
                    any("first telemetry stored" in x for x in lines):
                break
        else:
            raise AssertionError("the demo ended before demo-02 was being provisioned:\n" + "".join(lines))
        t_int = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    stop_s = time.monotonic() - t_int
    out = "".join(lines) + rest
    assert proc.returncode == 0, out + err
    assert "Traceback" not in out + err, out + err
    assert "edgepoi demo summary" in out and "demo-01" in out.split("edgepoi demo summary")[1], out
    assert "was not provisioned" not in out and "FAILED" not in out      # a stop is not a failure
    assert summary_numbers(out)[0] >= 1
    assert "nothing left running" in out and stop_s < 10, (stop_s, out)
    assert left_behind(work) == []
    print("\ndemo: stopped %.1f s after SIGINT, mid-provisioning" % stop_s)


def test_the_textual_view_shows_a_board_its_verified_attestations_and_audits(work):
    from textual.widgets import DataTable, Static
    d = demo.Demo(str(work), devices=1, period_s=0.25, audit_rate=1.0)
    left = None
    try:
        d.prepare()
        d.launch()
        app = demo.make_app(d)

        def row(dev):
            return [str(c) for c in app.query_one("#devices", DataTable).get_row(dev)]

        def verified(dev):
            table = app.query_one("#devices", DataTable)
            return dev in [k.value for k in table.rows] and row(dev)[7].startswith("verified")

        async def scenario():
            async with app.run_test(size=(160, 45)) as pilot:
                deadline = time.monotonic() + 30
                while not (verified("demo-01") and
                           any(" audit " in line and "verified" in line for line in app.stream_text())):
                    assert time.monotonic() < deadline, "\n".join(app.stream_text())
                    await pilot.pause(0.2)
                assert row("demo-01")[1] == "online"
                stream = "\n".join(app.stream_text())
                assert re.search(r"demo-01 +provision +sync: \d+ files sent", stream), stream
                assert " ack " not in stream                      # the edge's acks are left out of the view
                edge = str(app.query_one("#edge", Static).render())
                assert re.search(r"edge ledger: 1/1 online · \d+ telemetry · attestations [1-9]\d* accepted, "
                                 r"0 rejected · audits [1-9]\d* verified, 0 fraudulent", edge), edge
                assert app.return_code is None
                await pilot.press("ctrl+c")                       # the demo quits on Ctrl-C too
                assert app.return_code == 0
        asyncio.run(scenario())
    finally:
        left = d.stop()
    s = d.summary()
    assert left == [] and s["devices"] == ["demo-01"] and s["accepted"] >= 1, (left, s)
    assert s["audits"].get("verified", 0) >= 1 and not s["audits"].get("fraudulent")
    assert left_behind(work) == []


def test_a_work_folder_the_demo_did_not_make_is_refused(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    res = subprocess.run(demo_cmd(tmp_path, "--seconds", "1"), capture_output=True, text=True, timeout=30)
    assert res.returncode == 1 and res.stderr.strip().splitlines()[-1] == (
        "edgepoi: --workdir %s exists and was not made by edgepoi demo: name a new folder" % tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
