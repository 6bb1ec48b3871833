"""What real homes do to a simulated fleet (the device-runtime tests), and the polling wait tests share."""
import time


def wait(pred, timeout=120.0):
    """Poll pred every 50 ms until it is true (-> True) or timeout seconds pass (-> False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def restarts_and_power_cuts(broker, node, victim, per_step, timeout=120.0):
    """Five steps, each once the edge node has stored per_step more telemetry: the broker is SIGKILLed and
    restarted at steps 1, 3 and 5; at steps 2 and 4 the victim device loses power (SIGKILL) and boots
    again from its flash."""
    for step in range(5):
        assert wait(lambda: node.stats()["telemetry"] >= per_step * (step + 1), timeout), \
            (step, node.stats(), victim.log_text()[-800:])
        if step in (0, 2, 4):
            broker.kill()
            time.sleep(0.3)
            broker.start()
        else:
            victim.kill()
            victim.start()
