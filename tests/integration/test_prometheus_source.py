"""The Prometheus-server source: pure parts on literal vectors, then a real Prometheus (Debian's
package, started here on loopback) scraping a real tritonserver every second: it must read the same
counters as a direct scrape, and a sidecar reading it must roll back a faulty version as a sidecar
scraping Triton directly decides to."""
from __future__ import annotations

import contextlib
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
from tritonclient.utils import InferenceServerException

from monitor.act import RepositoryClient
from monitor.config import ConfigError, load_config
from monitor.prometheus_source import (TS_LABEL, PrometheusSource, SelectorError, build_query,
                                       check_selector, scrape_from_vector)
from monitor.scrape import Scraper
from monitor.sidecar import Sidecar, metrics_source
from sentinel.client import RankerClient
from sentinel.load import LoadGenerator
from sentinel.triton import free_port
from sentinel import prometheus
from sentinel.demo.session import ADMIN_KEY, BACK_TO_BACK_POLICY, sidecar_config

# ---------------------------------------------------------------------- pure: query and vector


def test_query_selects_the_counters_up_and_scrape_time_of_the_selected_targets():
    q = build_query('pod="ranker-0", namespace=~"ml|search"')
    assert q.startswith('{__name__=~"nv_inference_.+|sentinel_.+",model!="",pod="ranker-0", '
                        'namespace=~"ml|search"}')
    assert ' or up{pod="ranker-0", namespace=~"ml|search"} or label_replace(timestamp(up{' in q
    assert build_query("").split(" or ")[1] == "up"  # `up{}` is not valid PromQL


@pytest.mark.parametrize("bad", ['{pod="a"}', "pod=a", 'pod="a" job="b"', 'pod="a"}', "1pod=\"a\""])
def test_a_selector_that_is_not_label_matchers_is_refused(bad):
    with pytest.raises(SelectorError):
        check_selector(bad)
    with pytest.raises(ConfigError, match="prometheus_selector"):
        load_config(None, env={}, overrides={"prometheus_selector": bad})


def test_config_picks_the_source():
    direct = load_config(None, env={}, overrides={"repository": "/r"})
    assert isinstance(metrics_source(direct), Scraper)
    env = {"SENTINEL_PROMETHEUS_URL": "http://127.0.0.1:9090/",
           "SENTINEL_PROMETHEUS_SELECTOR": 'pod="p"'}
    via = metrics_source(load_config(None, env=env))
    assert isinstance(via, PrometheusSource)
    assert via.url == "http://127.0.0.1:9090" and 'pod="p"' in via.query
    with pytest.raises(ConfigError, match="prometheus_url"):
        load_config(None, env={"SENTINEL_PROMETHEUS_URL": "prometheus:9090"})


def _item(labels: dict, value: str, ts: float = 1000.5) -> dict:
    return {"metric": labels, "value": [ts, value]}


TARGET = {"instance": "10.0.0.1:8002", "job": "triton", "pod": "p0"}


def _series(name: str, value: str, **labels) -> dict:
    return _item({"__name__": name, "model": "ranker", "version": "1", **TARGET, **labels}, value)


def test_a_vector_becomes_the_samples_parse_metrics_gives_at_the_scrape_time():
    result = [
        _series("nv_inference_request_success", "90"),
        _series("nv_inference_request_failure", "10", reason="BACKEND"),
        _series("sentinel_request_errors_total", "3", reason="fault"),
        _series("sentinel_output_score_bucket", "4", le="0.5"),
        _series("sentinel_output_score_bucket", "6", le="+Inf"),
        _series("sentinel_output_score_sum", "2.5"),
        _series("sentinel_output_score_count", "6"),
        # a second pod of the same version: summed, like series of one Triton
        _item({"__name__": "nv_inference_request_success", "model": "ranker", "version": "1",
               "pod": "p1", "instance": "x", "job": "triton"}, "10"),
        _item({"__name__": "up", **TARGET}, "1"),
        _item({**TARGET, TS_LABEL: "1"}, "999.25"),
    ]
    scrape = scrape_from_vector(result, source="prom")
    assert scrape.ok and scrape.ts == 999.25 and scrape.source == "prom"
    (s,) = scrape.samples
    assert (s.model, s.version, s.success) == ("ranker", "1", 100.0)
    assert s.failures == (("BACKEND", 10.0),) and s.request_errors == (("fault", 3.0),)
    assert s.score.bounds == (0.5, math.inf) and s.score.counts == (4.0, 6.0)
    assert (s.score.sum, s.score.count) == (2.5, 6.0)


def test_label_values_that_need_escaping_survive():
    result = [_item({"__name__": "nv_inference_count", "model": 'we"ird\\na\nme', "version": "2"},
                    "7"),
              _item({"__name__": "up", "job": "t"}, "1"), _item({"job": "t", TS_LABEL: "1"}, "5")]
    (s,) = scrape_from_vector(result).samples
    assert s.model == 'we"ird\\na\nme' and s.inference_count == 7.0


@pytest.mark.parametrize("result,error", [
    ([], "no scrape target matches"),
    ([_item({"__name__": "up", **TARGET}, "0"), _item({**TARGET, TS_LABEL: "1"}, "5")],
     "up == 0 for instance=10.0.0.1:8002,job=triton,pod=p0"),
    ([_item({"__name__": "up", **TARGET}, "1")], "no scrape timestamp"),
    ([{"metric": {"__name__": "up"}}], "malformed vector item"),
])
def test_no_usable_target_is_an_error_scrape(result, error):
    scrape = scrape_from_vector(result)
    assert scrape.phase == "error" and error in scrape.error and math.isnan(scrape.ts)


@contextlib.contextmanager
def _canned(status: int, body: bytes, delay_s: float = 0.0) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(delay_s)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the timeout test's client has given up already, as it should

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status,body,error", [
    (400, b'{"status":"error","errorType":"bad_data","error":"parse error"}', "bad_data: parse error"),
    (200, b'{"status":"success","data":{"resultType":"matrix","result":[]}}', "instant vector"),
    (200, b"<html>not prometheus</html>", "not JSON"),
    (502, b"bad gateway", "HTTP 502"),
])
def test_every_failure_of_the_server_is_an_error_scrape_not_an_exception(status, body, error):
    with _canned(status, body) as url:
        scrape = PrometheusSource(url, clock=lambda: 42.0).scrape()
    assert scrape.phase == "error" and error in scrape.error, scrape.error
    assert scrape.ts == 42.0


def test_a_slow_or_absent_server_is_an_error_scrape():
    with _canned(200, b"{}", delay_s=1.0) as url:
        slow = PrometheusSource(url, timeout=0.2).scrape()
    assert slow.phase == "error" and "timeout" in slow.error.lower(), slow.error
    absent = PrometheusSource(f"http://127.0.0.1:{free_port()}").scrape()
    assert absent.phase == "error" and "ConnectionError" in absent.error


# ---------------------------------------------------------------------- a real Prometheus


class PrometheusServer(prometheus.PrometheusServer):
    """The project's Prometheus (sentinel/prometheus.py) with what these tests ask of it."""

    def last_scrape(self, pod: str) -> float:
        result = self.query(f'timestamp(up{{pod="{pod}"}})')
        return float(result[0]["value"][1]) if result else float("-inf")

    def wait_scraped_after(self, pod: str, after: float, timeout: float = 20.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ts = self.last_scrape(pod)
            if ts > after:
                return ts
            time.sleep(0.2)
        raise AssertionError(f"Prometheus did not scrape pod {pod} after {after} within {timeout}s:"
                             f"\n{self.log.read_text()[-2000:]}")


@contextlib.contextmanager
def running_prometheus(workdir: Path, targets: dict[str, str]) -> Iterator[PrometheusServer]:
    """Prometheus on a free loopback port scraping `targets` (host:port -> pod label) every 1 s."""
    server = PrometheusServer(workdir)
    try:
        server.start({addr: {"pod": pod} for addr, pod in targets.items()})
    except prometheus.PrometheusMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.integration
def test_prometheus_source_reads_the_counters_a_direct_scrape_reads(repo_copy, start_triton,
                                                                    tmp_path):
    server = start_triton(repo_copy)
    metrics = f"127.0.0.1:{server.options.metrics_port}"
    dead = f"127.0.0.1:{free_port()}"
    with running_prometheus(tmp_path / "prom", {metrics: "triton-0", dead: "gone-0"}) as prom:
        client = RankerClient(server.options.grpc_url, "grpc")
        try:
            for user in range(1, 41):
                client.rank(user, [1, 2, 3, 50])
            with pytest.raises(InferenceServerException, match="out of range"):
                client.rank(5000, [1])  # counted in sentinel_request_errors_total{invalid_input}
            # Each model instance pushes its own counters at the end of an execute, at most every
            # 100 ms: keep a little traffic going until the error has been pushed.
            direct = Scraper(server.options.metrics_url)
            for _ in range(30):
                time.sleep(0.15)
                client.rank(1, [1])
                if any(dict(s.request_errors).get("invalid_input") for s in direct.scrape().samples):
                    break
        finally:
            client.close()
        quiet = time.time() + 0.5
        time.sleep(0.5)
        scraped_at = prom.wait_scraped_after("triton-0", quiet)

        direct = direct.scrape()
        via = PrometheusSource(prom.url, 'pod="triton-0"').scrape()
        assert direct.ok and via.ok, (direct.error, via.error)
        assert via.ts >= scraped_at
        assert via.samples == direct.samples
        # default flags serve the repository's desired version (v1), not the newest
        (s,) = [s for s in via.samples if s.version == "1"]
        # Triton counts the refused request as a success; only the backend's own counter has it.
        assert s.success == s.inference_count > 40
        assert dict(s.request_errors).get("invalid_input") == 1
        # Every target of the job, the dead one included: the live one still gives data.
        assert PrometheusSource(prom.url).scrape().samples == direct.samples
        down = PrometheusSource(prom.url, 'pod="gone-0"').scrape()
        assert down.phase == "error" and "up == 0" in down.error
        nothing = PrometheusSource(prom.url, 'pod="no-such-pod"').scrape()
        assert nothing.phase == "error" and "no scrape target" in nothing.error


def _wait(predicate, timeout: float, step: float = 0.5) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(step)
    return None


def _error_rate_warm(sidecar: Sidecar) -> bool:
    rt = sidecar.poller.models.get("ranker")
    if rt is None or rt.served != "1" or rt.known.known_good != "1":
        return False
    det = rt.detectors["error_rate"]
    return det.samples_seen >= det.config.warmup + 2


def _detections(sidecar: Sidecar, since: float, version: str) -> list:
    return [e for e in sidecar.events.list(kind="detection", since=since, limit=1000)
            if e.version == version]


@pytest.mark.integration
def test_sidecar_reading_prometheus_detects_what_a_direct_scraper_detects_and_rolls_back(
        repo_copy, trained_ranker, start_triton, tmp_path):
    from build_scripts.ranker_build import build_ranker
    bad = str(build_ranker(repo_copy, fault="errors", trained=trained_ranker).version)
    server = start_triton(repo_copy, admin_key=ADMIN_KEY, models=())
    repo = RepositoryClient(server.options.http_url, repo_copy, admin_key=ADMIN_KEY)
    assert repo.load("ranker", "1").ok
    metrics = f"127.0.0.1:{server.options.metrics_port}"
    # Golden probes would catch this fault on their own; without them only the metrics decide, so
    # the two sources are compared on what they read. A short known-good delay keeps this quick.
    common = {"probe_interval_s": 3600, "policy.known_good_after_s": 5}
    with running_prometheus(tmp_path / "prom", {metrics: "triton-0"}) as prom:
        via_prom = sidecar_config(
            server.options, policy=BACK_TO_BACK_POLICY, db=tmp_path / "prom.sqlite3", **common,
            prometheus_url=prom.url, prometheus_selector='pod="triton-0"')
        # The direct scraper decides but never acts (policy freeze).
        direct = sidecar_config(
            server.options, policy=BACK_TO_BACK_POLICY, db=tmp_path / "direct.sqlite3", **common,
            **{"policy.freeze": True})
        with Sidecar(via_prom) as sc_prom, Sidecar(direct) as sc_direct, \
                LoadGenerator(server.options.grpc_url, clients=4, rate_per_client=25) as load:
            warm = _wait(lambda: _error_rate_warm(sc_prom) and _error_rate_warm(sc_direct), 120)
            assert warm is not None, "the error-rate detectors never warmed up"
            assert sc_prom.poller.last_scrape.source.startswith(prom.url)
            # Both only watch until both have judged the bad version: whichever acted first would
            # swap the version under the other's detector in the middle of its test window.
            with sc_prom.poller.lock:
                sc_prom.poller.runtime("ranker").frozen = True

            activated = time.time()
            assert repo.load("ranker", bad).ok
            both = _wait(lambda: _detections(sc_prom, activated, bad)
                         and _detections(sc_direct, activated, bad), 30)
            thawed = time.time()
            with sc_prom.poller.lock:
                sc_prom.poller.runtime("ranker").frozen = False
            acted = _wait(lambda: sc_prom.events.list(kind="action", since=activated), 15)
            time.sleep(2)
            settled = time.time()
            time.sleep(3)

            for name, sc in (("prometheus", sc_prom), ("direct", sc_direct)):
                for e in reversed(sc.events.list(since=activated, limit=100)):
                    print(f"[{name}] +{e.ts - activated:5.1f}s {e.kind:<10} v{e.version} "
                          f"{e.phase or ''} {e.action or ''} {e.outcome or ''} {e.reason[:120]}")
            assert both is not None, "both sidecars must detect the failing version"
            seen = {name: {e.evidence["signal"]: e for e in _detections(sc, activated, bad)}
                    for name, sc in (("prometheus", sc_prom), ("direct", sc_direct))}
            assert set(seen["prometheus"]) == set(seen["direct"]) == {"error_rate"}, seen
            for name, by_signal in seen.items():
                d = by_signal["error_rate"].evidence
                print(f"[{name}] error_rate {d['baseline_mean']:.3f} -> {d['recent_mean']:.3f} "
                      f"detected {by_signal['error_rate'].ts - activated:.1f}s after activation")
                assert d["direction"] == "up" and 0.15 <= d["recent_mean"] <= 0.45
            for sc in (sc_prom, sc_direct):
                verdicts = [e for e in sc.events.list(kind="decision", since=activated)
                            if e.version == bad and e.phase == "degraded"]
                assert verdicts and "frozen: no rollback" in verdicts[-1].reason

            assert acted is not None, "the sidecar reading Prometheus did not act once allowed to"
            (action,) = sc_prom.events.list(kind="action", since=activated)
            assert (action.action, action.version, action.outcome) == ("rollback", "1", "ok")
            assert action.evidence["from_version"] == bad
            print(f"warm after {warm:.0f}s; both detected {both:.1f}s after activation; rolled "
                  f"back {action.ts - thawed:.1f}s after the freeze was lifted")
            assert not sc_direct.events.list(kind="action", since=activated)
            assert sc_prom.poller.models["ranker"].served == "1"
            assert load.failures(settled) == 0, "client failures must stop after the rollback"
