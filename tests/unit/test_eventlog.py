import sqlite3
import threading

import numpy as np
import pytest

from monitor.decide import decide
from monitor.eventlog import SCHEMA_VERSION, EventLog, EventLogError, event_from_decision
from monitor.types import DecisionInputs, Detection, Event, ScrapeOutcome


def ev(ts, model="ranker", kind="decision", **kw):
    base = dict(version="2", phase="healthy", action="none", reason=f"at {ts}", evidence={"n": ts})
    base.update(kw)
    return Event(ts=ts, model=model, kind=kind, **base)


def test_append_and_list_newest_first():
    log = EventLog()
    ids = [log.append(ev(t)) for t in (1.0, 2.0, 3.0)]
    assert ids == sorted(ids)
    events = log.list()
    assert [e.ts for e in events] == [3.0, 2.0, 1.0]
    assert events[0].id == ids[-1] and events[0].evidence == {"n": 3.0} and events[0].actor == "poller"


def test_filters_and_limit():
    log = EventLog()
    for t in range(10):
        log.append(ev(float(t), model="ranker" if t % 2 else "encoder", kind="action" if t >= 5 else "decision"))
    assert {e.model for e in log.list(model="encoder")} == {"encoder"}
    assert [e.ts for e in log.list(kind="action", model="ranker")] == [9.0, 7.0, 5.0]
    assert [e.ts for e in log.list(since=3.0, until=6.0)] == [5.0, 4.0, 3.0]
    assert len(log.list(limit=4)) == 4


def test_survives_a_restart(tmp_path):
    path = tmp_path / "events.sqlite3"
    with EventLog(path) as log:
        log.append(ev(1.0, kind="action", action="rollback", outcome="ok", actor="operator:alice",
                      evidence={"from": "2", "to": "1", "detections": [{"signal": "error_rate"}]}))
    reopened = EventLog(path)
    [event] = reopened.list()
    assert (event.kind, event.action, event.outcome, event.actor) == ("action", "rollback", "ok", "operator:alice")
    assert event.evidence == {"from": "2", "to": "1", "detections": [{"signal": "error_rate"}]}
    assert reopened.schema_version == SCHEMA_VERSION
    reopened.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "events.sqlite3"
    EventLog(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(EventLogError, match="newer"):
        EventLog(path)


def test_not_a_database_is_a_named_error(tmp_path):
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(EventLogError, match="cannot open"):
        EventLog(path)


def test_evidence_nan_and_numpy_values_are_stored_as_json():
    log = EventLog()
    log.append(ev(1.0, evidence={"p": float("nan"), "x": np.float32(0.5), "n": np.int64(3)}))
    assert log.list()[0].evidence == {"p": None, "x": 0.5, "n": 3}
    with pytest.raises(EventLogError, match="JSON"):
        log.append(ev(2.0, evidence={"bad": object()}))


def test_event_from_decision_keeps_the_evidence():
    detection = Detection("ranker", "2", "latency_ms", 950.0, 960.0, "up", 4.0, 9.0, method="cusum")
    decision = decide(
        DecisionInputs(
            model="ranker", served_version="2", now=1000.0, detections=(detection,),
            scrape_outcomes=(ScrapeOutcome(999.0, True),), last_sample_at=999.0, activated_at=900.0,
            last_known_good="1",
        )
    )
    log = EventLog()
    log.append(event_from_decision(decision))
    [stored] = log.list(kind="decision")
    assert (stored.phase, stored.action, stored.version) == ("degraded", "rollback", "2")
    assert stored.evidence["target_version"] == "1"
    [item] = stored.evidence["items"]
    assert item["type"] == "Detection" and item["signal"] == "latency_ms" and item["p_value"] is None


def test_poller_writes_while_readers_read(tmp_path):
    log = EventLog(tmp_path / "events.sqlite3")
    errors: list[BaseException] = []

    def writer(model):
        try:
            for t in range(200):
                log.append(ev(float(t), model=model))
        except EventLogError as exc:
            errors.append(exc)

    def reader():
        try:
            for _ in range(200):
                log.list(limit=20)
        except sqlite3.Error as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(m,)) for m in ("a", "b")]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(log.list(model="a", limit=1000)) == 200 and len(log.list(model="b", limit=1000)) == 200
