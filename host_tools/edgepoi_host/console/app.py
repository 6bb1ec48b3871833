"""The textual console: a live table of devices over a stream of decoded MQTT messages.

Usage::

    from edgepoi_host.console.app import ConsoleApp
    from edgepoi_host.console.source import Source
    ConsoleApp(Source("mqtt://127.0.0.1:1883", keys=keyring)).run()

Keys: q quit, p pause/resume the stream, c clear it, f filter the stream to the device under the table
cursor (f again shows everything). The paho client runs in its own thread (console.source); a timer polls
its queue every ``tick`` seconds, so the UI thread alone touches the model and the widgets. The status
bar shows the broker URL, the connection state and the message rate.
"""
import time

from rich.cells import cell_len
from rich.text import Text
from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Footer, RichLog, Static

from edgepoi_host.console import decode
from edgepoi_host.console.model import FleetModel

COLUMNS = (("device", "device"), ("status", "status"), ("seen", "last seen"), ("rate", "msg/s"),
           ("seq", "seq"), ("queue", "queue"), ("inference", "last inference"),
           ("attest", "attestation"), ("readings", "readings"))
STATUS_STYLE = {"online": "bold green", "offline": "bold red", "seen": "yellow"}
VERDICT_STYLE = {decode.VERIFIED: "green", decode.BAD_SIGNATURE: "bold red", decode.MALFORMED: "red",
                 decode.WRONG_DEVICE: "bold red", decode.UNKNOWN_KEY: "yellow",
                 decode.UNCHECKED: "dim"}
KIND_STYLE = {"telemetry": "cyan", "attest": "magenta", "status": "bold", "ack": "blue",
              "beacon": "blue", "cmd": "yellow", "result": "yellow", "hass": "dim cyan"}


def ago(t, now):
    if t is None:
        return "-"
    d = max(0.0, now - t)
    if d < 60:
        return "%.0fs ago" % d
    if d < 3600:
        return "%.0fm ago" % (d / 60)
    return time.strftime("%H:%M:%S", time.localtime(t))


def render_record(rec):
    """A Record as one styled line for the stream."""
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(time.strftime("%H:%M:%S", time.localtime(rec.t)) + " ", style="dim")
    if rec.device:
        line.append(rec.device.ljust(12), style="bold")
        line.append(" %-9s " % rec.kind, style=KIND_STYLE.get(rec.kind, ""))
    else:
        line.append(rec.topic, style="dim magenta")
        line.append(" %s " % rec.kind, style="dim")
    if rec.verdict:
        mark = "✔ " if rec.verdict == decode.VERIFIED else "✘ " if "bad" in rec.verdict else ""
        line.append(mark + rec.verdict + " ", style=VERDICT_STYLE.get(rec.verdict, ""))
    rest = _summary(rec)
    line.append(rest)
    if rec.error:
        line.append("  ! " + rec.error, style="red")
    return line


def _same(a, b):
    return str(a) == str(b) and getattr(a, "style", None) == getattr(b, "style", None)


def _summary(rec):
    return " ".join("%s=%s" % (k, decode._show(v)) for k, v in rec.fields.items()) + (
        "  (retained)" if rec.retain else "")


class ConsoleApp(App):
    """Devices table, message stream, status bar; fed by a console.source.Source."""

    TITLE = "edgepoi console"
    CSS = """
    #devices { height: auto; min-height: 5; max-height: 45%; border: round $accent; }
    #stream { height: 1fr; border: round $primary; }
    #status { height: 1; background: $boost; color: $text; padding: 0 1; }
    """
    BINDINGS = [("q", "quit", "Quit"), ("p", "pause", "Pause stream"), ("c", "clear", "Clear stream"),
                ("f", "filter", "Filter by device")]

    def __init__(self, source, model=None, tick=0.1, max_lines=2000, seconds=None, lines_per_tick=100,
                 table_every=0.5):
        super().__init__()
        self.source = source
        self.model = model or FleetModel()
        self.tick = tick
        self.max_lines = max_lines
        self.seconds = seconds
        self.paused = False
        self.hidden = 0
        self.device_filter = None
        self.lines_per_tick = lines_per_tick
        self.table_every = table_every
        self._last_table = 0.0
        self._cells = {}

    def compose(self) -> ComposeResult:
        with Vertical():
            yield DataTable(id="devices", cursor_type="row", zebra_stripes=True)
            yield RichLog(id="stream", max_lines=self.max_lines, wrap=False, markup=False)
            yield Static(id="status")
        yield Footer()

    def on_mount(self):
        table = self.query_one("#devices", DataTable)
        table.border_title = "devices"
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self.query_one("#stream", RichLog).border_title = "messages"
        self.source.start()
        self.set_interval(self.tick, self.poll)
        if self.seconds:
            self.set_timer(self.seconds, self.exit)
        self.update_status()

    def on_unmount(self):
        self.source.stop()

    # -- the timer ---------------------------------------------------------------------------
    def poll(self):
        streams = self.query("#stream")
        if not streams:                    # the screen is being torn down on exit: nothing to show
            return
        stream = streams.first(RichLog)
        records = self.source.drain(limit=20000)
        shown = []
        new_device = False
        for rec in records:
            known = len(self.model.devices)
            self.model.apply(rec)
            new_device = new_device or len(self.model.devices) != known
            if self.paused:
                self.hidden += 1
            elif self.device_filter is None or rec.device == self.device_filter:
                shown.append(rec)
        if len(shown) > self.lines_per_tick:          # nobody reads that fast: show the newest
            stream.write(Text("... %d messages not shown (too fast; --plain shows all)"
                              % (len(shown) - self.lines_per_tick), style="dim"), expand=True)
            shown = shown[-self.lines_per_tick:]
        if shown:                                      # one write per tick: RichLog.write is slow
            batch = Text("\n", no_wrap=True, overflow="ellipsis").join(render_record(r) for r in shown)
            stream.write(batch, expand=True)
        now = time.time()
        if new_device or now - self._last_table >= self.table_every:
            self.refresh_table(now)
        self.update_status(now)

    def refresh_table(self, now=None):
        now = time.time() if now is None else now
        self._last_table = now
        table = self.query_one("#devices", DataTable)
        for dev in self.model.rows():
            cells = self.cells(dev, now)
            seen = self._cells.get(dev.device_id)
            if seen is None:
                table.add_row(*cells, key=dev.device_id)
            else:
                for (key, _), value, old in zip(COLUMNS, cells, seen):
                    if _same(value, old):
                        continue
                    grow = cell_len(str(value)) > table.columns[key].content_width  # never shrink:
                    table.update_cell(dev.device_id, key, value, update_width=grow)  # that re-measures
            self._cells[dev.device_id] = cells

    @staticmethod
    def cells(dev, now):
        verdict = Text("-", style="dim")
        if dev.verdict:
            n = sum(dev.verdicts.values())
            verdict = Text("%s (%d/%d)" % (dev.verdict, dev.verdicts[dev.verdict], n),
                           style=VERDICT_STYLE.get(dev.verdict, ""))
        readings = " ".join("%s=%s" % (k, decode._show(v)) for k, v in list(dev.readings.items())[:3])
        return (Text(dev.device_id, style="bold"), Text(dev.status, style=STATUS_STYLE.get(dev.status, "")),
                ago(dev.last_seen, now), "%.1f" % dev.rate(now),
                "-" if dev.last_seq is None else str(dev.last_seq),
                "-" if dev.queue is None else str(dev.queue), dev.inference_text() or "-", verdict,
                readings or "-")

    def update_status(self, now=None):
        now = time.time() if now is None else now
        state = self.source.state
        bar = Text()
        bar.append(self.source.url + "  ", style="bold")
        bar.append(state, style="green" if state == "connected" else "bold red")
        bar.append("  %.1f msg/s  %d msgs  %d devices (%d online)  %d foreign"
                   % (self.model.rate(now), self.model.total, len(self.model.devices),
                      self.model.online(), self.model.foreign))
        if self.source.dropped:
            bar.append("  %d dropped" % self.source.dropped, style="red")
        if self.paused:
            bar.append("  PAUSED (%d hidden)" % self.hidden, style="bold yellow")
        if self.device_filter:
            bar.append("  filter: %s" % self.device_filter, style="bold cyan")
        self.query_one("#status", Static).update(bar)

    # -- key bindings ------------------------------------------------------------------------
    def action_pause(self):
        self.paused = not self.paused
        if not self.paused and self.hidden:
            self.query_one("#stream", RichLog).write(
                Text("... %d messages arrived while paused" % self.hidden, style="dim"))
            self.hidden = 0
        self.update_status()

    def action_clear(self):
        self.query_one("#stream", RichLog).clear()

    def action_filter(self):
        if self.device_filter is not None:
            self.device_filter = None
            self.notify("showing every message")
        else:
            table = self.query_one("#devices", DataTable)
            if not table.row_count:
                self.notify("no devices yet", severity="warning")
                return
            row = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key
            self.device_filter = row.value
            self.notify("showing %s only (f again: all)" % self.device_filter)
        self.update_status()

    def stream_text(self):
        """The stream's visible lines as plain text (tests, screenshots)."""
        return [strip.text for strip in self.query_one("#stream", RichLog).lines]
