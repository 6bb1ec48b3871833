"""The agent's commands: ``edgepoi/v1/<id>/cmd/<name>`` carries a CBOR map of arguments, the result map goes
to ``cmd/<name>/result`` and echoes the argument ``id``. Commands are rare, so the agent imports this module
when one arrives and forgets it afterwards: its code holds no heap in between.

    ping    -> {ok, seq, pending, stats}
    reveal  {seq} -> {ok, seq, input}: the model input of inference ``seq`` while the agent still holds it
    config  -> {ok, config}: the device config without its password
    reboot  -> {ok}: the agent leaves its loop after this cycle
"""
from edgepoi import cbor


def handle(agent, name, payload):
    """Decode the arguments, run command ``name`` and publish its result."""
    agent.stats["commands"] += 1
    try:
        args = cbor.loads(payload, max_depth=4, max_items=64) if payload else {}
    except cbor.CBORError as e:
        return agent._reply(name, {"ok": False, "error": "bad arguments: %s" % e})
    if not isinstance(args, dict):
        args = {}
    if name == "reveal":  # the input goes out in pieces: no copy of it, no input-sized block
        parts = reveal_parts(agent, args)
        if parts is not None:
            return agent._reply(name, parts)
    result = run(agent, name, args)
    if "id" in args:
        result["id"] = args["id"]
    agent._reply(name, result)


def reveal_parts(agent, args):
    """The reveal result's CBOR as pieces (the input's pieces are views of the agent's window and ring,
    sent as they are) or None when the input is no longer held. "input" sorts after the other keys ("id",
    "ok", "seq": shorter), so the map is the others' map with one more entry appended."""
    seq = args.get("seq")
    views = agent.reveal.parts(seq) if agent.reveal is not None else None
    if views is None:
        return None
    head = {"ok": True, "seq": seq}
    if "id" in args:
        head["id"] = args["id"]
    head = cbor.dumps(head)
    n = 0
    for v in views:
        n += len(v)
    from edgepoi.link.link import _head   # (loaded already: the link is running)
    return [bytes((head[0] + 1,)), head[1:], b"\x65input", _head(0x40, n)] + views


def run(agent, name, args):
    """The result map of command ``name``."""
    if name == "ping":
        return {"ok": True, "seq": agent.queue.last_id, "pending": agent.queue.pending_count,
                "stats": agent.stats}
    if name == "reveal":
        seq = args.get("seq")
        data = agent.reveal.get(seq) if agent.reveal is not None else None
        if data is not None:
            return {"ok": True, "seq": seq, "input": data}
        return {"ok": False, "error": "input of seq %r is no longer held" % (seq,)}
    if name == "config":
        return {"ok": True, "config": {k: v for k, v in agent.cfg.items() if k not in ("password",)}}
    if name == "reboot":
        agent._reboot = True
        return {"ok": True}
    return {"ok": False, "error": "unknown command %r" % name}
