import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from monitor.scrape import Scraper, parse_metrics

FIXTURE = (Path(__file__).parent / "data" / "triton_metrics.txt").read_text()


def test_fixture_gives_one_sample_per_model_version():
    scrape = parse_metrics(FIXTURE, ts=123.0)
    assert scrape.phase == "ok" and scrape.error is None and scrape.ts == 123.0
    assert scrape.versions() == [("query_encoder", "1"), ("query_encoder", "2"), ("ranker", "1"), ("ranker", "2")]


def test_fixture_values_for_one_version():
    s = parse_metrics(FIXTURE, ts=0.0).sample("ranker", "1")
    assert s.success == 1200
    assert dict(s.failures) == {"BACKEND": 3, "REJECTED": 0, "CANCELED": 0, "OTHER": 0}
    assert s.failure_total == 3
    assert (s.inference_count, s.exec_count, s.pending) == (307200, 600, 2)
    assert s.request_duration_us == 5_400_000
    assert s.queue_duration_us == 600_000
    assert s.compute_input_duration_us == 120_000
    assert s.compute_infer_duration_us == 3_960_000
    assert s.compute_output_duration_us == 240_000
    # sentinel_* families are declared with `_total`; they must land in the same fields
    assert (s.nonfinite, s.requests, s.rows) == (0, 1203, 307200)
    assert dict(s.request_errors) == {"invalid_input": 4, "runtime": 1, "fault": 0}
    assert s.request_error_total == 5
    hist = s.score
    assert len(hist.bounds) == 21 and hist.bounds[0] == 0.05 and math.isinf(hist.bounds[-1])
    assert list(hist.counts) == sorted(hist.counts)  # cumulative
    assert hist.counts[-1] == hist.count == 307200
    assert hist.sum == pytest.approx(125952.0)


def test_server_wide_metrics_are_ignored():
    text = "# TYPE nv_cpu_utilization gauge\nnv_cpu_utilization 0.5\n"
    assert parse_metrics(text, 0.0).samples == ()


def test_counter_spellings_with_and_without_total_agree():
    with_total = (
        "# TYPE sentinel_requests_total counter\n"
        'sentinel_requests_total{model="m",version="1"} 7\n'
        "# TYPE sentinel_request_errors_total counter\n"
        'sentinel_request_errors_total{model="m",version="1",reason="runtime"} 2\n'
    )
    without = with_total.replace("_total", "")
    untyped = "\n".join(line for line in with_total.splitlines() if not line.startswith("#")) + "\n"
    for text in (with_total, without, untyped):
        s = parse_metrics(text, 0.0).sample("m", "1")
        assert s.requests == 7, text
        assert dict(s.request_errors) == {"runtime": 2}, text


def test_series_differing_in_extra_labels_are_summed():
    text = (
        "# TYPE sentinel_output_rows counter\n"
        'sentinel_output_rows{model="m",version="1",instance="a"} 10\n'
        'sentinel_output_rows{model="m",version="1",instance="b"} 5\n'
    )
    assert parse_metrics(text, 0.0).sample("m", "1").rows == 15


def test_a_model_without_custom_metrics_has_none_not_zero():
    text = "# TYPE nv_inference_request_success counter\n" 'nv_inference_request_success{model="m",version="3"} 4\n'
    s = parse_metrics(text, 0.0).sample("m", "3")
    assert s.success == 4
    assert s.score is None and s.rows is None and s.nonfinite is None and s.failures == ()
    assert s.failure_total is None


@pytest.mark.parametrize("text", ["<html><body>502 Bad Gateway</body></html>", "not a metric at all\n", 'x{a="b" 1\n'])
def test_garbage_is_an_error_scrape(text):
    scrape = parse_metrics(text, 5.0)
    assert scrape.phase == "error" and "unparseable" in scrape.error and scrape.samples == ()


def test_empty_page_is_ok_without_samples():
    scrape = parse_metrics("", 0.0)
    assert scrape.phase == "ok" and scrape.samples == ()


# ---------------------------------------------------------------- the real I/O path, on loopback


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        try:
            if self.path == "/metrics":
                self._reply(200, FIXTURE.encode())
            elif self.path == "/500":
                self._reply(500, b"internal error")
            elif self.path == "/garbage":
                self._reply(200, b"<html>surprise</html>")
            elif self.path == "/slow":
                time.sleep(1.0)
                self._reply(200, FIXTURE.encode())
            elif self.path == "/trickle":
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                for _ in range(20):
                    self.wfile.write(b"#")
                    self.wfile.flush()
                    time.sleep(0.05)
            else:
                self._reply(404, b"no")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the scraper gave up on a slow answer, which is what those cases test

    def _reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_scraper_ok(server):
    scrape = Scraper(f"{server}/metrics", clock=lambda: 42.0).scrape()
    assert scrape.phase == "ok", scrape.error
    assert scrape.ts == 42.0 and len(scrape.samples) == 4 and scrape.source.endswith("/metrics")
    assert scrape.duration_s > 0


@pytest.mark.parametrize(
    "path,fragment",
    [("/500", "HTTP 500"), ("/404", "HTTP 404"), ("/garbage", "unparseable")],
)
def test_scraper_bad_answers_become_error_scrapes(server, path, fragment):
    scrape = Scraper(server + path, clock=lambda: 7.0).scrape()
    assert scrape.phase == "error" and fragment in scrape.error
    assert scrape.ts == 7.0 and scrape.samples == ()


@pytest.mark.parametrize("path", ["/slow", "/trickle"])
def test_scraper_gives_up_after_its_timeout(server, path):
    started = time.monotonic()
    scrape = Scraper(server + path, timeout=0.2).scrape()
    elapsed = time.monotonic() - started
    assert scrape.phase == "error" and "timeout" in scrape.error.lower()
    assert elapsed < 0.8


def test_scraper_closed_port_is_an_error_scrape():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scrape = Scraper(f"http://127.0.0.1:{port}/metrics", timeout=0.5).scrape()
    assert scrape.phase == "error" and "Connection" in scrape.error


def test_fast_path_gives_exactly_what_prometheus_clients_parser_gives():
    from pathlib import Path

    from monitor.scrape import _fast_samples, _full_samples, _parse
    text = (Path(__file__).parent / "data" / "triton_metrics.txt").read_text()
    fast = _parse(_fast_samples(text), 1.0, "x")
    full = _parse(_full_samples(text), 1.0, "x")
    assert fast == full and len(fast.samples) >= 4


def test_unusual_lines_fall_back_to_the_full_parser():
    from monitor.scrape import parse_metrics
    escaped = 'nv_inference_count{model="we\\"ird",version="1"} 5\n'
    scrape = parse_metrics(escaped, 1.0)
    assert scrape.ok and scrape.samples[0].model == 'we"ird' and scrape.samples[0].inference_count == 5
    garbage = parse_metrics('nv_inference_count{model="m",version="1"} five\n', 1.0)
    assert garbage.phase == "error"
