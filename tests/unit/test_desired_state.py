"""Desired state in the repository: transitions, atomic writes, compare-and-swap, version policy."""
import json
import multiprocessing

import pytest

from build_scripts.specs import RANKER
from build_scripts.serving_config import model_config
from sentinel.triton_config import read_pbtxt, to_pbtxt
from sentinel import desired_state as ds


@pytest.fixture
def repo(tmp_path):
    model = tmp_path / "ranker"
    for v in ("1", "2", "3"):
        (model / v).mkdir(parents=True)
    (model / "config.pbtxt").write_text(to_pbtxt(model_config("ranker", RANKER.serving)))
    return tmp_path


def test_history_rejections_and_rollback_target():
    s = ds.initial("ranker", "1", 10.0, "build")
    s = ds.mark_known_good(s, "1", 20.0, "poller", {"signals": {}})
    s = ds.deploy(s, "2", 30.0, "alice")
    assert s.version == "2" and s.watch.version == "2" and s.generation == 3
    s = ds.mark_known_good(s, "2", 40.0, "poller")
    assert [k.version for k in s.known_good] == ["1", "2"] and s.watch is None
    s = ds.deploy(s, "3", 50.0, "alice")
    assert s.rollback_target("3") == "2"
    s = ds.reject(s, "3", s.rollback_target("3"), "errors went up", 60.0, "poller", event_id=7)
    assert s.version == "2" and s.is_rejected("3") and s.rejection("3").event_id == 7
    # 2 goes bad later: the newest known good that was not rejected since is 1
    s = ds.reject(s, "2", s.rollback_target("2"), "late leak", 70.0, "poller")
    assert s.version == "1" and s.rollback_target("1") is None
    assert s.last_known_good.version == "1"
    assert s.generation == 7  # one per transition


def test_baseline_is_the_newest_known_good_other_than_the_candidate():
    s = ds.mark_known_good(ds.initial("m", "1", 0, "b"), "1", 1, "p", {"requests": 10})
    s = ds.mark_known_good(ds.deploy(s, "2", 2, "a"), "2", 3, "p", {"requests": 20})
    assert s.baseline_for("3") == {"requests": 20}
    assert s.baseline_for("2") == {"requests": 10}


def test_write_is_atomic_round_trips_and_carries_the_version_policy(repo):
    store = ds.DesiredStateStore(repo, clock=lambda: 100.0)
    state = store.update("ranker", lambda s: ds.initial("ranker", "2", 100.0, "test"))
    assert store.read("ranker") == state
    assert store.policy_version("ranker") == "2"
    config = read_pbtxt(repo / "ranker" / "config.pbtxt")
    assert list(config.version_policy.specific.versions) == [2]
    assert config.max_batch_size == RANKER.serving.max_batch_size  # the rest is untouched
    assert not [p.name for p in (repo / "ranker").iterdir() if p.name.startswith(".")]
    on_disk = json.loads((repo / "ranker" / ds.STATE_FILE).read_text())
    assert on_disk["version"] == "2" and on_disk["generation"] == 1 and on_disk["schema"] == 1


def test_compare_and_swap_refuses_a_stale_generation(repo):
    store = ds.DesiredStateStore(repo)
    first = store.update("ranker", lambda s: ds.initial("ranker", "1", 1.0, "a"))
    store.update("ranker", lambda s: ds.deploy(s, "2", 2.0, "b"), expected_generation=1)
    with pytest.raises(ds.StaleGeneration, match="expected 1"):
        store.update("ranker", lambda s: ds.deploy(s, "3", 3.0, "c"),
                     expected_generation=first.generation)
    assert store.read("ranker").version == "2"


def _deploy_many(repo, start):
    store = ds.DesiredStateStore(repo)
    for k in range(25):
        store.update("ranker", lambda s: ds.pin(s, None, float(start + k), f"w{start}"))


def test_concurrent_writers_lose_no_generation(repo):
    store = ds.DesiredStateStore(repo)
    store.update("ranker", lambda s: ds.initial("ranker", "1", 0.0, "a"))
    procs = [multiprocessing.Process(target=_deploy_many, args=(repo, n * 100)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    # every read-modify-write held the lock: 1 + 4 x 25 generations, none overwritten
    assert store.read("ranker").generation == 101


def test_a_broken_state_file_is_an_error_that_names_the_file(repo):
    (repo / "ranker" / ds.STATE_FILE).write_text("{not json")
    with pytest.raises(ds.DesiredStateError, match="sentinel.json: not valid JSON"):
        ds.DesiredStateStore(repo).read("ranker")
    (repo / "ranker" / ds.STATE_FILE).write_text(json.dumps({"version": "1"}))
    with pytest.raises(ds.DesiredStateError, match="malformed"):
        ds.DesiredStateStore(repo).read("ranker")


def test_a_failed_write_leaves_the_old_state(repo, monkeypatch):
    store = ds.DesiredStateStore(repo)
    store.update("ranker", lambda s: ds.initial("ranker", "1", 0.0, "a"))

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(ds.os, "replace", boom)
    with pytest.raises(OSError):
        store.update("ranker", lambda s: ds.deploy(s, "2", 1.0, "b"))
    monkeypatch.undo()
    assert store.read("ranker").version == "1"
    assert not [p.name for p in (repo / "ranker").iterdir() if p.name.endswith(".tmp")]


def test_rollbacks_are_kept_for_the_rate_limits_and_survive_a_redeploy():
    s = ds.mark_known_good(ds.initial("ranker", "1", 10.0, "build"), "1", 20.0, "poller")
    for i, at in enumerate((100.0, 200.0, 300.0)):
        s = ds.deploy(s, "2", at - 50.0, "ci")  # the same bad version, deployed again and again
        s = ds.roll_back(s, "2", "1", "errors went up", at, f"sidecar-{i}", event_id=i)
        assert s.version == "1" and s.is_rejected("2")
    # each redeploy took 2 off `rejected`; the rollbacks all stay
    assert [r.version for r in s.rejected] == ["2"]
    assert [(r.version, r.target, r.at, r.by) for r in s.rollbacks] == [
        ("2", "1", 100.0, "sidecar-0"), ("2", "1", 200.0, "sidecar-1"), ("2", "1", 300.0, "sidecar-2")]
    # a rejection that is not a rollback (a failed load, an aborted canary) is not counted
    s = ds.reject(ds.deploy(s, "3", 400.0, "ci"), "3", "1", "failed to load", 410.0, "poller")
    assert len(s.rollbacks) == 3
    # the record stays bounded
    for i in range(ds.ROLLBACK_LIMIT + 5):
        s = ds.roll_back(ds.deploy(s, "2", 1000.0 + i, "ci"), "2", "1", "again", 1000.5 + i, "p")
    assert len(s.rollbacks) == ds.ROLLBACK_LIMIT and s.rollbacks[-1].at == 1000.5 + ds.ROLLBACK_LIMIT + 4


def test_rollbacks_round_trip_and_older_files_without_them_load(repo):
    store = ds.DesiredStateStore(repo)
    s = ds.mark_known_good(ds.initial("ranker", "1", 10.0, "build"), "1", 20.0, "poller")
    s = ds.roll_back(ds.deploy(s, "2", 30.0, "ci"), "2", "1", "errors", 40.0, "sidecar-a")
    store.update("ranker", lambda _: s)
    assert store.read("ranker").rollbacks == (ds.Rollback("2", "1", 40.0, "sidecar-a"),)
    raw = json.loads(store.path("ranker").read_text())
    del raw["rollbacks"]  # a state file written before rollbacks were recorded
    store.path("ranker").write_text(json.dumps(raw))
    assert store.read("ranker").rollbacks == ()
    raw["rollbacks"] = [{"version": "2"}]  # no time: refused with the file named, not guessed
    store.path("ranker").write_text(json.dumps(raw))
    with pytest.raises(ds.DesiredStateError, match="sentinel.json.*malformed"):
        store.read("ranker")
