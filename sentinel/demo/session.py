"""A demo session: published versions, a real tritonserver, the real sidecar and a steady gRPC
load of MovieLens users, on free loopback ports. Several scenarios can run in one session."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests

from monitor.act import RepositoryClient
from monitor.config import load_config
from monitor.sidecar import Sidecar
from sentinel.load import LoadGenerator
from sentinel.triton import TritonOptions, TritonServer, free_port

ADMIN_KEY = "demo-admin-key"
TOKEN = "demo-token"
Say = Callable[[str], None]
# For scenarios that follow each other within minutes on one server (the scenario and integration
# tests): more actions than production allows, sooner. The demo itself runs the shipped policy.
BACK_TO_BACK_POLICY = {"cooldown_s": 5, "max_rollbacks_per_hour": 20, "max_reloads_per_hour": 20}


def sidecar_config(opts: TritonOptions, db: Path, policy: dict | None = None, **extra):
    """The sidecar's config for a Triton started with `opts`: loopback, any free port, 1 s cycles
    and golden probes every 2 s; `policy` and `extra` override settings by name."""
    overrides = {"triton_url": opts.http_url, "metrics_url": opts.metrics_url,
                 "admin_key": ADMIN_KEY, "repository": str(opts.repository), "port": 0,
                 "db_path": str(db), "token": TOKEN, "interval_s": 1.0, "probe_interval_s": 2.0}
    overrides.update({f"policy.{k}": v for k, v in (policy or {}).items()})
    overrides.update(extra)
    return load_config(None, env={}, overrides=overrides)


@dataclass
class DemoSession:
    """Owns every process and port it starts; close() leaves nothing behind."""
    versions: dict[str, str | None]           # version -> fault (None = good)
    workdir: Path | None = None
    clients: int = 4
    rate_per_client: float = 25.0
    policy: dict = field(default_factory=dict)  # extra "policy.*" config overrides
    say: Say = print
    config: dict = field(default_factory=dict)  # other sidecar settings by name (retrain_command)
    # Replay real MovieLens outcomes of served lists as feedback (sentinel.feedback_replay).
    feedback: bool = False
    feedback_lists_per_s: float = 10.0
    feedback_delay_s: float = 5.0

    def __post_init__(self):
        self._tmp = None
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sentinel-demo-")
            self.workdir = Path(self._tmp.name)
        self.workdir = Path(self.workdir)
        self.repo = self.workdir / "model_repository"
        self.triton: TritonServer | None = None
        self.sidecar: Sidecar | None = None
        self.load: LoadGenerator | None = None
        self.repo_client: RepositoryClient | None = None
        self.replayer = None
        self.trained = None

    # ------------------------------------------------------------------ set-up

    def build(self, trained=None) -> None:
        from build_scripts.ranker_build import build_ranker
        from build_scripts.train_ranker import train_ranker
        if trained is None:
            self.say("training the ranker (DCN-v2 on MovieLens-100k)")
            trained = train_ranker(progress=lambda m: self.say(f"  {m}"))
        self.trained = trained
        for version, fault in self.versions.items():
            published = build_ranker(self.repo, fault=fault, trained=trained)
            assert str(published.version) == version, (published.version, version)
            what = f"fault '{fault}'" if fault else "good"
            self.say(f"published ranker v{version} ({what}): export → ONNX, parity with torch "
                     f"{published.manifest['parity']['max_abs_diff']['score']:.1e}, "
                     f"{len(published.manifest['golden'])} golden requests")

    def start(self) -> "DemoSession":
        # Default flags: Triton loads the version the repository's desired state names (v1, written
        # when it was published), not the newest one.
        opts = TritonOptions(self.repo, free_port(), free_port(), free_port(), admin_key=ADMIN_KEY,
                             log_path=self.workdir / "triton.log")
        started = time.monotonic()
        self.triton = TritonServer(opts).start()
        self.repo_client = RepositoryClient(opts.http_url, self.repo, admin_key=ADMIN_KEY)
        ready = sorted(e["version"] for e in self.triton.index() if e.get("state") == "READY")
        self.say(f"tritonserver up (HTTP {opts.http_port}, gRPC {opts.grpc_port}, metrics "
                 f"{opts.metrics_port}) in {time.monotonic() - started:.1f}s; serving ranker "
                 f"v{', v'.join(ready) or ' none'} (the desired version)")
        self.sidecar = Sidecar(sidecar_config(opts, self.workdir / "events.sqlite3",
                                              self.policy, **self.config)).start()
        self.say(f"sidecar up: {self.sidecar.url}")
        self.load = LoadGenerator(opts.grpc_url, clients=self.clients,
                                  rate_per_client=self.rate_per_client).start()
        self.say(f"replaying MovieLens users: {self.clients} gRPC clients × "
                 f"{self.rate_per_client:g} req/s, 64 candidates each")
        if self.feedback:
            self.start_feedback()
        return self

    def start_feedback(self) -> None:
        from sentinel.client import FeedbackClient
        from sentinel.feedback_replay import FeedbackReplayer, labelled_lists
        lists = labelled_lists(self.trained.split.test)
        self.replayer = FeedbackReplayer(
            self.triton.options.grpc_url, FeedbackClient(self.sidecar.url, TOKEN), lists,
            lists_per_s=self.feedback_lists_per_s, delay_s=self.feedback_delay_s).start()
        self.say(f"replaying outcomes: {self.feedback_lists_per_s:g} lists/s of the users' real "
                 f"test-period ratings (≥ 4 = positive), sent as feedback {self.feedback_delay_s:g}s "
                 f"after they were served")

    def published(self) -> list[str]:
        return [p.name for p in (self.repo / "ranker").iterdir() if p.is_dir() and p.name.isdigit()]

    def labelled(self, version: str) -> int:
        """Labelled events the sidecar holds for a ranker version."""
        return int(self.sidecar.feedback.stats("ranker", version).n)

    def deploy(self, version: str, reason: str = "") -> tuple[bool, str]:
        """`sentinel deploy` through the sidecar's API: intent first, then activation under watch."""
        r = requests.post(f"{self.sidecar.url}/api/models/ranker/deploy",
                          json={"version": version, "reason": reason},
                          headers={"X-Sentinel-Token": TOKEN, "X-Sentinel-Actor": "demo"},
                          timeout=200)
        body = r.json()
        return r.ok, body.get("detail") or body.get("error", "")

    # ------------------------------------------------------------------ state

    @property
    def runtime(self):
        return self.sidecar.poller.models.get("ranker")

    def served(self) -> str | None:
        rt = self.runtime
        return rt.served if rt else None

    def events(self, since: float, kind: str | None = None):
        return self.sidecar.events.list(kind=kind, since=since, limit=2000)

    def warm(self) -> bool:
        rt = self.runtime
        first = next(iter(self.versions))
        warm = (rt is not None and rt.served == first and rt.known.known_good == first
                and all(d.samples_seen >= d.config.warmup + 2 for d in rt.detectors.values()))
        if warm and self.feedback:  # the reference a new version's quality is compared with
            warm = self.labelled(first) >= self.sidecar.config.policy.quality_min_labels
        return warm

    def status_line(self) -> str:
        rt = self.runtime
        now = time.time()
        served = self.load.served(now - 5, now) / 5 if self.load else 0
        failed = self.load.failures(now - 5, now) / 5 if self.load else 0
        phase = rt.decision.phase if rt and rt.decision else "starting"
        known = rt.known.known_good if rt else None
        line = (f"serving v{self.served()} · {served:5.0f} req/s ok · {failed:4.0f} req/s failed · "
                f"phase {phase} · known good {f'v{known}' if known else 'none yet'}")
        if self.replayer is not None and self.served():
            line += f" · {self.labelled(self.served())} outcomes for v{self.served()}"
        return line

    def kill_stubs(self) -> list[int]:
        out = subprocess.run(["pgrep", "-f", f"triton_python_backend_stub.*{self.triton.shm_prefix}"],
                             capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split()]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return pids

    # ------------------------------------------------------------------ tear-down

    def close(self) -> None:
        for part in (self.replayer, self.load, self.sidecar, self.triton):
            if part is not None:
                part.stop()
        self.replayer = self.load = self.sidecar = self.triton = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "DemoSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def wait_for(predicate, timeout_s: float, tick: Callable[[], None] | None = None,
             step: float = 0.5) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        if tick:
            tick()
        time.sleep(step)
    return None


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
