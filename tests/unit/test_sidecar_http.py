"""The sidecar's HTTP server and access rules over real loopback HTTP (port 0), without Triton behind
it: the poller's scrapes fail, which is all these tests need (issue 16, hardening)."""
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from monitor.config import load_config
from monitor.sidecar import Sidecar, SidecarStartError, listen_socket
from monitor.pages import CSRF_MESSAGE
from monitor.access import READ_COOKIE
from sentinel.triton import free_port

TOKEN = "c0ntrol-t0ken"
READ = "r3ad-t0ken"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sidecar(tmp_path):
    """Factory: a started sidecar on a free port; every one started is stopped after the test."""
    started: list[Sidecar] = []

    def start(env=None, **overrides) -> Sidecar:
        settings = {
            "triton_url": f"http://127.0.0.1:{free_port()}",
            "metrics_url": f"http://127.0.0.1:{free_port()}/metrics",
            "repository": str(tmp_path), "port": 0, "db_path": str(tmp_path / "ev.sqlite3"),
            "token": TOKEN, "interval_s": 0.2, **overrides}
        sc = Sidecar(load_config(None, env=env or {}, overrides=settings)).start()
        started.append(sc)
        deadline = time.monotonic() + 10
        while sc.poller.last_scrape is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return sc

    yield start
    for sc in started:
        sc.stop()


def get(sc: Sidecar, path: str, **kw) -> requests.Response:
    return requests.get(sc.url + path, timeout=5, **kw)


# ---------------------------------------------------------------------- the server


def test_served_by_waitress_on_port_0_with_one_poller_and_a_clean_stop(sidecar):
    # An unrelated SENTINEL_* variable in the environment (the benchmarks' NAB directory) must not
    # stop the sidecar.
    sc = sidecar(env={"SENTINEL_NAB_DIR": "/data/nab"})
    assert sc.port != 0 and sc.url == f"http://127.0.0.1:{sc.port}"
    r = get(sc, "/healthz")
    assert r.status_code == 200 and r.json()["ok"] is True
    assert r.headers["Server"] == "sentinel"  # waitress (ident), not Werkzeug's development server
    assert [t.name for t in threading.enumerate()].count("sentinel-poller") == 1

    # Requests are served at once by several workers (the poller thread is not one of them).
    results: list[int] = []
    workers = [threading.Thread(target=lambda: results.append(get(sc, "/api/models").status_code))
               for _ in range(12)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=20)
    assert results == [200] * 12

    keep_alive = requests.Session()
    assert keep_alive.get(sc.url + "/metrics", timeout=5).status_code == 200
    start = time.monotonic()
    sc.stop()
    assert time.monotonic() - start < 5, "an open keep-alive connection must not hold the stop"
    assert not [t for t in threading.enumerate() if t.name.startswith(("waitress", "sentinel-"))]
    with pytest.raises(requests.ConnectionError):
        keep_alive.get(sc.url + "/healthz", timeout=2)
    listen_socket("127.0.0.1", sc.port).close()  # the port is free again


def _open_under(directory: Path) -> list[str]:
    """Files under `directory` this process holds open (the event log, its -wal and -shm)."""
    out = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed between the listing and the read
            continue
        if target.startswith(str(directory)):
            out.append(target)
    return out


def _new_threads(before: set[threading.Thread]) -> list[str]:
    return [t.name for t in threading.enumerate() if t not in before]


def test_a_port_in_use_fails_at_start_with_a_clear_error_and_leaves_nothing_open(tmp_path):
    db_dir = tmp_path / "log"
    db_dir.mkdir()
    settings = {"triton_url": f"http://127.0.0.1:{free_port()}",
                "metrics_url": f"http://127.0.0.1:{free_port()}/metrics",
                "repository": str(tmp_path), "db_path": str(db_dir / "ev.sqlite3"),
                "interval_s": 0.2}
    with socket.socket() as taken:  # another process's server on the port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = set(threading.enumerate())
        sc = Sidecar(load_config(None, env={}, overrides={**settings, "port": port}))
        assert _open_under(db_dir) and _new_threads(before)  # the log, the alert sender
        with pytest.raises(SidecarStartError, match=f"cannot listen on 127.0.0.1:{port}: "
                                                    "Address already in use") as failed:
            sc.start()
        assert (failed.value.host, failed.value.port) == ("127.0.0.1", port)
        assert _open_under(db_dir) == [] and _new_threads(before) == []
        # The other server still has its port: the failed start closed only what it opened.
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    # The log is whole and free: a new sidecar on a free port opens it, starts and serves.
    with Sidecar(load_config(None, env={}, overrides={**settings, "port": 0})) as second:
        assert get(second, "/api/events").status_code == 200
    assert _open_under(db_dir) == []


def test_the_cli_says_the_port_is_taken_and_exits_1(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "sentinel.cli", "monitor", "--repository", str(tmp_path),
             "--port", str(port), "--db", str(tmp_path / "ev.sqlite3")],
            capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr.strip() == f"error: {SidecarStartError('127.0.0.1', port, 'Address already in use')}"


# ---------------------------------------------------------------------- CSRF


def test_non_ascii_csrf_value_is_a_400_not_a_500(sidecar):
    sc = sidecar()
    for value in ("é", "\u2603" * 40):
        r = requests.post(f"{sc.url}/models/ranker/action", timeout=5,
                          data={"csrf": value, "token": TOKEN, "action": "rollback"})
        assert r.status_code == 400, (value, r.status_code, r.text[:300])
        assert r.json()["error"] == CSRF_MESSAGE
    # Bytes that are not UTF-8 at all.
    r = requests.post(f"{sc.url}/models/ranker/action", timeout=5, data=b"csrf=abc%FF%FE&token=x",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and r.json()["error"] == CSRF_MESSAGE
    # Against a real session value too (the page sets it; here the test client does).
    client = sc.app.test_client()
    with client.session_transaction() as session:
        session["csrf"] = "AbC123_-"
    r = client.post("/models/ranker/action", data={"csrf": "AbC123_é", "token": TOKEN})
    assert r.status_code == 400 and r.get_json()["error"] == CSRF_MESSAGE
    assert sc.events.list(kind="operator") == []


# ---------------------------------------------------------------------- read token

READ_PATHS = ("/", "/events", "/config", "/models/ranker", "/api/models", "/api/models/ranker",
              "/api/events", "/api/openapi.json", "/no-such-page")


def test_without_a_read_token_everything_is_open_as_before(sidecar):
    sc = sidecar()
    for path in ("/", "/events", "/config", "/api/models", "/api/events", "/metrics"):
        assert get(sc, path).status_code == 200, path
    assert "Connection refused" in get(sc, "/healthz").json()["last_scrape"]["error"]


def test_read_token_guards_pages_and_read_api_but_not_metrics_and_health(sidecar):
    sc = sidecar(read_token=READ)
    for path in READ_PATHS:
        r = get(sc, path)
        assert r.status_code == 401, (path, r.status_code)
        assert "X-Sentinel-Token" in r.json()["error"], path
        for wrong in ("nope", READ + "x", "é"):  # é: a latin-1 header byte, not a 500
            assert get(sc, path, headers={"X-Sentinel-Token": wrong}).status_code == 401, path
    # Prometheus and health checks carry no token; health hides the error (it names hosts).
    assert get(sc, "/metrics").status_code == 200
    health = get(sc, "/healthz")
    assert health.status_code == 200
    assert health.json()["last_scrape"]["error"].startswith("(hidden")
    assert "127.0.0.1" not in health.text
    shown = get(sc, "/healthz", headers={"X-Sentinel-Token": READ}).json()["last_scrape"]["error"]
    assert "Connection refused" in shown


def test_read_or_control_token_in_the_header_reads(sidecar):
    sc = sidecar(read_token=READ)
    for token in (READ, TOKEN):
        for path in ("/", "/events", "/config", "/api/models", "/api/events", "/api/openapi.json"):
            r = get(sc, path, headers={"X-Sentinel-Token": token})
            assert r.status_code == 200, (path, r.status_code)
        assert get(sc, "/api/models/ranker", headers={"X-Sentinel-Token": token}).status_code == 404
    # Control still needs the control token: the read token is not enough to act.
    url = f"{sc.url}/api/models/ranker/pin"
    assert requests.post(url, json={"version": "1"}, timeout=5).status_code == 401
    assert requests.post(url, json={"version": "1"}, timeout=5,
                         headers={"X-Sentinel-Token": READ}).status_code == 401
    assert requests.post(url, json={"version": "1"}, timeout=5,
                         headers={"X-Sentinel-Token": TOKEN}).status_code == 404  # unknown model


def test_a_browser_opens_a_page_once_with_the_token_then_has_a_cookie(sidecar):
    sc = sidecar(read_token=READ)
    browser = requests.Session()
    r = browser.get(f"{sc.url}/events?token={READ}&kind=action", timeout=5, allow_redirects=False)
    assert r.status_code == 303
    location = urlsplit(r.headers["Location"])
    assert location.path == "/events" and parse_qs(location.query) == {"kind": ["action"]}
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith(f"{READ_COOKIE}=") and "HttpOnly" in cookie
    assert READ not in cookie and TOKEN not in cookie  # a value derived from the token
    for path in ("/events?kind=action", "/", "/config", "/api/events"):
        assert browser.get(sc.url + path, timeout=5).status_code == 200, path
    assert get(sc, "/events?token=wrong").status_code == 401
    forged = requests.Session()
    forged.cookies.set(READ_COOKIE, "0" * 64)
    assert forged.get(sc.url + "/", timeout=5).status_code == 401


def test_config_page_never_shows_the_tokens(sidecar):
    sc = sidecar(read_token=READ)
    page = get(sc, "/config", headers={"X-Sentinel-Token": READ})
    assert page.status_code == 200
    assert READ not in page.text and TOKEN not in page.text
    assert "read_token" in page.text


def test_stop_right_after_requests_never_fails(tmp_path):
    # Waitress's workers wake its event loop through a pipe when a response is ready; a stop that
    # closed that pipe while a worker could still write to it failed now and then with EBADF
    # (here: in 1 of 5 runs of 30 stops, in 5 of 5 runs of 150), so: many stops, each right after
    # requests.
    for i in range(120):
        config = load_config(None, env={}, overrides={
            "triton_url": f"http://127.0.0.1:{free_port()}",
            "metrics_url": f"http://127.0.0.1:{free_port()}/metrics", "repository": str(tmp_path),
            "port": 0, "db_path": str(tmp_path / f"ev{i}.sqlite3"), "interval_s": 60})
        sc = Sidecar(config).start()
        with requests.Session() as client:
            for path in ("/api/models", "/api/events", "/healthz"):
                assert client.get(sc.url + path, timeout=5).status_code == 200
        sc.stop()
