"""The poller's cycle goes on when one model's part of it raises, and does no I/O under its lock."""
import threading
import time

from monitor.poller import Poller
from monitor.types import ProbeResult, Scrape, VersionState


class _Scraper:
    def scrape(self):
        return Scrape(ts=time.time(), phase="ok")


class _Repo:
    def index(self):
        return [("a", VersionState("1", "READY")), ("b", VersionState("1", "READY"))]


class _Prober:
    def __init__(self, poller_ref, held):
        self.poller_ref, self.held = poller_ref, held

    def probe(self, model, version):
        # a probe is network I/O: the lock pages take must be free while it runs
        lock, free = self.poller_ref[0].lock, []

        def try_lock():  # from another thread, as a page would (the lock is reentrant)
            got = lock.acquire(timeout=0.5)
            free.append(got)
            if got:
                lock.release()
        t = threading.Thread(target=try_lock)
        t.start()
        t.join()
        self.held.append(not free[0])
        if model == "b":
            raise RuntimeError("manifest of b is broken in a way nobody foresaw")
        return ProbeResult(model, version, time.time(), "ok")


class _Events(list):
    def append(self, event):
        super().append(event)
        return len(self)


def test_one_models_exception_is_its_error_event_and_the_others_go_on():
    ref, held = [], []
    events = _Events()
    poller = Poller(scraper=_Scraper(), repo=_Repo(), prober=_Prober(ref, held), events=events,
                    probe_interval_s=0.0)
    ref.append(poller)
    for _ in range(3):
        poller.cycle()
    errors = [e for e in events if e.kind == "error"]
    assert errors and {e.model for e in errors} == {"b"}
    assert "probe failed: RuntimeError: manifest of b is broken" in errors[0].reason
    assert poller.models["a"].decision is not None and poller.models["b"].decision is not None
    assert [p.status for p in poller.models["a"].probes] == ["ok"] * 3
    assert held and not any(held), "a probe ran while the poller's lock was held"
    assert poller.metrics.model_errors.labels("b")._value.get() == 3
