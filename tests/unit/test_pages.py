"""What a person reads on the pages, rendered by Flask from a synthetic fleet (tests/unit/page_fleet):
no Python None for a missing version, models with no version published said as such and kept out
of the fleet's phase, charts only where there is data."""
import html
import re

import pytest
import schemathesis

from monitor import views
from monitor.types import Decision
from tests.unit.page_fleet import build_app

PAGES = ["/", "/models/ranker", "/models/recommender", "/models/empty", "/models/broken",
         "/events", "/config", "/fleet"]


@pytest.fixture
def fleet():
    app, poller, events, story = build_app()
    return app.test_client(), poller, events


def visible_text(page: str) -> str:
    """The text of a page as shown: no tags, no <title> tooltips, entities decoded."""
    page = re.sub(r"<(style|title|script)\b.*?</\1>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def get(client, path: str) -> str:
    r = client.get(path + ("&" if "?" in path else "?") + "refresh=0")
    assert r.status_code == 200, (path, r.status_code)
    return r.get_data(as_text=True)


@pytest.mark.parametrize("path", PAGES)
def test_no_page_prints_python_none(fleet, path):
    client, *_ = fleet
    text = visible_text(get(client, path))
    assert "vNone" not in text
    assert not re.search(r"\bNone\b", text), re.search(r".{60}\bNone\b.{20}", text, re.S)


def test_recorded_reasons_that_say_none_read_as_words(fleet):
    client, *_ = fleet
    text = visible_text(get(client, "/events"))
    assert "(deploy by alice; nothing served before)" in text
    assert "version 1 failed to load; nothing serves" in text
    assert views.reason_text("version 3 now serves (was None)") == \
        "version 3 now serves (nothing served before)"


def _row(page: str, model: str) -> str:
    m = re.search(rf'<tr id="model-{model}">(.*?)</tr>', page, re.S)
    assert m, f"no overview row for {model}"
    return visible_text(m.group(1))


def test_a_model_with_no_version_published_says_so_and_is_not_inconclusive(fleet):
    client, *_ = fleet
    row = _row(get(client, "/"), "empty")
    assert "no version published" in row and "inconclusive" not in row
    page = get(client, "/models/empty")
    assert re.search(r'id="phase">no version published<', page)
    assert "No version published" in visible_text(page)
    assert 'id="charts"' not in page and 'id="no-metrics"' in page  # not six empty frames


def test_a_model_with_no_version_published_does_not_change_the_fleets_phase(fleet):
    client, poller, _ = fleet
    del poller.models["broken"]  # the one judged model that is not healthy
    page = get(client, "/")
    fleet_line = visible_text(re.search(r'<p id="fleet">.*?</p>', page, re.S).group(0))
    assert "healthy" in fleet_line and "inconclusive" not in fleet_line, fleet_line
    assert "2 models judged" in fleet_line and "empty" in fleet_line
    assert re.search(r'<p id="fleet">Fleet: <span class="phase phase-healthy">', page)


def test_a_published_model_that_serves_nothing_still_counts(fleet):
    client, *_ = fleet
    page = get(client, "/")
    assert re.search(r'<p id="fleet">Fleet: <span class="phase phase-inconclusive">', page)
    assert "nothing serves" in _row(page, "broken")
    assert "Nothing serves" in visible_text(get(client, "/models/broken"))


def test_the_api_says_what_the_pages_say_and_keeps_to_its_document(fleet):
    client, *_ = fleet
    page = get(client, "/")
    listed = client.get("/api/models")
    models = {m["model"]: m for m in listed.get_json()["models"]}
    assert set(models) == {"ranker", "recommender", "empty", "broken"}
    for name, m in models.items():
        row = re.search(rf'<tr id="model-{name}">.*?<span class="phase phase-[\w-]+">([^<]*)</span>',
                        page, re.S)
        assert m["status"] == row.group(1), name
        assert client.get(f"/api/models/{name}").get_json() == m
    empty = models["empty"]  # its judge said "inconclusive": the API does not repeat it
    assert (empty["status"], empty["phase"], empty["judged"], empty["published"]) == \
        ("no version published", None, False, [])
    assert empty["reason"] == views.NOTHING_TO_WATCH
    # Published but failed to load: judged, and inconclusive as the page says.
    assert (models["broken"]["phase"], models["broken"]["judged"]) == ("inconclusive", True)
    assert models["broken"]["published"] == ["1"]
    # Every field written is one the OpenAPI document names, with the type and values it allows
    # (schemathesis's own check; the fuzz run in tests/integration has no unpublished model).
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", client.application)
    schema["/api/models"]["GET"].validate_response(listed)
    schema["/api/models/{model}"]["GET"].validate_response(client.get("/api/models/empty"))


def test_fleet_phase_is_the_worst_judged_phase():
    def row(model, status, judged=True):
        return {"model": model, "status": status, "judged": judged}
    rows = [row("a", "healthy"), row("b", "degraded"), row("c", "no version published", False)]
    assert views.fleet_phase(rows)["phase"] == "degraded"
    assert views.fleet_phase(rows)["unpublished"] == ["c"]
    assert views.fleet_phase([rows[0], rows[2]])["phase"] == "healthy"
    assert views.fleet_phase([rows[2]])["phase"] is None


def test_model_view_needs_a_published_version_to_be_judged(fleet):
    _, poller, _ = fleet
    empty = poller.models["empty"]
    assert views.model_view(empty)["status"] == "no version published"
    assert views.model_view(empty, ["3"])["status"] == "inconclusive"  # on disk, not loaded
    empty.decision = Decision("empty", None, 0.0, "error", "alert", "x")
    assert views.model_view(empty)["judged"] is False


def test_model_page_of_a_served_model_has_its_six_charts_and_markers(fleet):
    client, *_ = fleet
    page = get(client, "/models/ranker")
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart"') == 6
    assert 'class="marker marker-rollback"' in page and "rollback → v1 (ok)" in page
    assert "change: error_rate ↑ (v2)" in page


def test_config_page_lists_each_detector_setting_once_per_signal(fleet):
    client, poller, _ = fleet
    page = get(client, "/config")
    table = re.search(r'<table id="detectors">(.*?)</table>', page, re.S).group(1)
    header = re.findall(r'<th class="signal">(.*?)</th>', table)
    assert header == list(poller.detector_configs)
    fields = next(iter(poller.detector_configs.values())).__dataclass_fields__
    assert table.count("<tr>") == len(fields) + 1


@pytest.mark.parametrize("value,shown", [(None, "—"), (True, "true"), (0.1, "0.1"),
                                         (2.0546448900644246e-31, "2.055e-31"), (300, "300"),
                                         (0.010000000000000009, "0.01"), (30.0, "30"),
                                         ({"a": None, "b": 1.5}, "a: —, b: 1.5")])
def test_settings_are_shown_without_python_spellings(value, shown):
    assert views.show(value) == shown


def test_the_action_form_is_not_on_a_page_that_reloads_itself(fleet):
    client, *_ = fleet
    live = client.get("/models/ranker").get_data(as_text=True)  # refreshes every 5 s
    assert '<meta http-equiv="refresh"' in live
    assert 'id="action-form"' not in live and 'href="?window=900&amp;refresh=0#actions"' in live
    paused = get(client, "/models/ranker")
    assert '<meta http-equiv="refresh"' not in paused and 'id="action-form"' in paused


def test_model_page_shows_online_quality_per_version_beside_the_manifests_test_auc(fleet):
    client, *_ = fleet
    page = get(client, "/models/ranker")
    rows = dict(re.findall(r'<tr id="quality-(\d+)">(.*?)</tr>', page, flags=re.S))
    assert sorted(rows) == ["1", "2"]
    v1, v2 = visible_text(rows["1"]), visible_text(rows["2"])
    assert "3000 (" in v1 and "400 (" in v2
    online = {v: float(re.search(r"(\d\.\d{3}) ± ", t).group(1)) for v, t in (("1", v1), ("2", v2))}
    assert online["1"] > 0.7 and online["2"] < 0.3  # v2's outcomes were reversed
    empty_page = get(client, "/models/recommender")
    assert "No feedback received for this model" in visible_text(empty_page)


def test_the_fleet_page_shows_the_replicas_the_lease_and_a_canarys_two_groups(fleet):
    from monitor.canary_watch import CanaryWatch, FleetEvidence
    from monitor.fleet import LeaseKeeper
    from monitor.lease import LeaseStatus
    from monitor.replicas import Replica
    from sentinel import desired_state as ds
    from tests.unit.test_canary import FAST, FakeFleet
    client, poller, _ = fleet
    assert "runs alone" in visible_text(get(client, "/fleet"))
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", client.application)
    schema["/api/fleet"]["GET"].validate_response(client.get("/api/fleet"))

    class Held:  # a lease this sidecar holds (the lease engines have their own tests)
        backend, identity = "etcd", "sidecar-0"
        def acquire(self): return LeaseStatus("etcd", "sidecar-0", True, "sidecar-0", ttl_s=5)
        def held(self): return True
        def release(self): pass
    poller.lease = LeaseKeeper(Held())
    poller.lease.step()
    state = ds.start_canary(ds.initial("ranker", "1", 0.0, "t"), "2", ("sidecar-1",), 0.0, "op")
    poller.models["ranker"].desired = state
    poller.members = [Replica("sidecar-0", "", 1e9, {"ranker": "1"}, holder=True),
                      Replica("sidecar-1", "", 1e9, {"ranker": "2"},
                              switches={"ranker": {"kind": "reconcile", "version": "2",
                                                   "from": "1", "at": 5.0, "outcome": "ok"}}),
                      Replica("sidecar-2", "", 1e9, {"ranker": "1"})]
    counters = FakeFleet()
    poller.canary = CanaryWatch(FleetEvidence(prometheus=counters.scrape), FAST,
                                clock=lambda: counters.t)
    for t in range(12):
        counters.t = float(t)
        counters.c.serve(20, errors=1)
        counters.f.serve(40)
        poller.canary.step({"ranker": state}, poller.members)
    page = get(client, "/fleet")
    text = visible_text(page)
    assert "held by sidecar-0 (this sidecar decides)" in " ".join(text.split())
    rows = {m.group(1): visible_text(m.group(2)) for m in re.finditer(
        r'<tr class="replica" data-replica="([^"]+)">(.*?)</tr>', page, re.S)}
    assert set(rows) == {"sidecar-0", "sidecar-1", "sidecar-2"}
    assert "lease holder" in rows["sidecar-0"] and "v2 / v2" in rows["sidecar-1"]
    assert "v1 / v1" in rows["sidecar-2"]
    groups = re.search(r'<table class="groups">(.*?)</table>', page, re.S).group(1)
    canary_row, fleet_row = [visible_text(r) for r in re.findall(r"<tr><td>(.*?)</tr>", groups, re.S)]
    assert canary_row.split()[:4] == ["canary", "v2", "200", "10"], canary_row
    assert fleet_row.split()[:4] == ["fleet", "v1", "400", "0"], fleet_row
    assert "errors" in visible_text(re.search(r'<table class="checks">(.*?)</table>', page,
                                              re.S).group(1))
    api = client.get("/api/fleet")
    schema["/api/fleet"]["GET"].validate_response(api)
    (canary,) = api.get_json()["canaries"]
    assert canary["verdict"]["canary"]["failures"] == 10 and canary["judged_here"]
    reconciles = visible_text(re.search(r'<table class="reconciles">(.*?)</table>', page,
                                        re.S).group(1))
    assert "sidecar-1 reconcile v2 v1 ok 5.0s" in " ".join(reconciles.split())



def test_the_action_form_starts_a_canary_only_in_a_fleet_and_says_why_not(fleet):
    client, poller, _ = fleet
    from tests.unit.page_fleet import TOKEN
    page = get(client, "/models/ranker?window=900")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    assert 'name="canary"' in page

    def post(**form) -> str:
        r = client.post("/models/ranker/action", data={"csrf": csrf, "token": TOKEN, **form},
                        follow_redirects=True)
        assert r.status_code == 200
        return visible_text(r.get_data(as_text=True))
    assert "canary replicas: a whole number, with deploy only" in \
        post(action="rollback", version="1", canary="1")
    assert "canary replicas: a whole number" in post(action="deploy", version="3", canary="x")
    text = post(action="deploy", version="3", canary="1")
    assert "refused: a canary needs a fleet" in text and poller.models["ranker"].pending is None
