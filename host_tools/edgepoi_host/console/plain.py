"""``edgepoi console --plain``: one line per message on stdout, for scripts and pipes.

Usage::

    from edgepoi_host.console.plain import run_plain
    run_plain(source, sys.stdout, seconds=10)           # logfmt-style lines (split them with shlex)
    run_plain(source, sys.stdout, as_json=True)         # one JSON object per line

Line format (``Record.line()``)::

    2026-11-29T17:00:00.123Z edgepoi/v1/sim-01/telemetry telemetry dev=sim-01 seq=7 temp_c=21.9 q=0

Connection changes go to ``err`` (stderr) as ``console: ...`` lines, so stdout holds messages only.
"""
import json
import time


def run_plain(source, out, seconds=None, as_json=False, err=None, count=None):
    """Print records from source until seconds pass, count lines are printed, or Ctrl-C.

    Returns:
        the number of lines printed.
    """
    deadline = None if seconds is None else time.monotonic() + seconds
    printed = 0
    state = None
    try:
        while deadline is None or time.monotonic() < deadline:
            if err is not None and source.state != state:
                state = source.state
                err.write("console: %s %s\n" % (source.url, state))
                err.flush()
            wait = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
            rec = source.get(timeout=wait)
            while rec is not None:
                out.write((json.dumps(rec.as_json(), sort_keys=True) if as_json else rec.line()) + "\n")
                printed += 1
                if count is not None and printed >= count:
                    out.flush()
                    return printed
                rec = source.get(timeout=0)
            out.flush()
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:        # `edgepoi console --plain | head`
        pass
    return printed
