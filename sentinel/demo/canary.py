"""The canary demos: a local fleet of 3 replicas (sentinel.local_fleet) under steady gRPC load on
each, v1 known good, v2 deployed with `--canary 1` through a sidecar's API; the lease holder judges
the canary against the rest of the fleet and aborts it (canary-bad) or promotes it in steps
(canary-good)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import requests

from monitor.config import load_config
from monitor.types import Event
from sentinel.demo.scenarios import Scenario
from sentinel.demo.session import ADMIN_KEY, TOKEN, DemoSession, wait_for
from sentinel.desired_state import DesiredStateStore
from sentinel.load import LoadGenerator
from sentinel.local_fleet import LocalFleet

MODEL = "ranker"


@dataclass
class FleetSession(DemoSession):
    """A DemoSession (versions built the same way) on a local fleet instead of one Triton."""
    replicas: int = 3
    clients: int = 1                # per replica
    rate_per_client: float = 20.0

    def __post_init__(self):
        super().__post_init__()
        self.fleet: LocalFleet | None = None
        self.loads: list[LoadGenerator] = []
        self.desired = DesiredStateStore(self.repo)

    def start(self) -> "FleetSession":
        started = time.monotonic()
        settings = {"token": TOKEN, "interval_s": 1.0, "probe_interval_s": 2.0,
                    **{f"policy.{k}": v for k, v in self.policy.items()}}
        self.fleet = LocalFleet(self.repo, self.replicas, self.workdir / "fleet", admin_key=ADMIN_KEY,
                                configure=lambda s: load_config(None, env={},
                                                                overrides={**s, **settings}))
        self.fleet.start()
        self.say(f"{self.replicas} tritonservers on one repository, their sidecars (file lease) and "
                 f"Prometheus (1 s scrapes) up in {time.monotonic() - started:.1f}s:")
        for r in self.fleet.replicas:
            self.say(f"  {r.name}: Triton gRPC {r.options.grpc_url}, sidecar {r.sidecar.url}, "
                     f"serving ranker v{', v'.join(sorted(r.ready_versions(MODEL))) or ' none'}")
        self.say(f"  Prometheus {self.fleet.prometheus.url}")
        self.loads = [LoadGenerator(r.options.grpc_url, clients=self.clients,
                                    rate_per_client=self.rate_per_client).start()
                      for r in self.fleet.replicas]
        self.say(f"replaying MovieLens users on every replica: {self.clients} gRPC client(s) × "
                 f"{self.rate_per_client:g} req/s each, 64 candidates a request")
        return self

    @property
    def pages(self) -> str:
        return f"{self.fleet.replicas[0].sidecar.url}/fleet"

    def deploy(self, version: str, reason: str = "", canary: int | None = None,
               canary_policy: dict | None = None) -> tuple[bool, str]:
        """`sentinel deploy ranker VERSION --canary K` through one sidecar (any would do)."""
        body = {"version": version, "reason": reason}
        if canary is not None:
            body |= {"canary": canary, "canary_policy": dict(canary_policy or {})}
        r = requests.post(f"{self.fleet.replicas[0].sidecar.url}/api/models/{MODEL}/deploy",
                          json=body, headers={"X-Sentinel-Token": TOKEN, "X-Sentinel-Actor": "demo"},
                          timeout=200)
        answer = r.json()
        return r.ok, answer.get("detail") or answer.get("error", "")

    def served_by_replica(self) -> dict[str, str | None]:
        """What each sidecar last saw its Triton serve (no I/O)."""
        out = {}
        for r in self.fleet.replicas:
            rt = r.sidecar.poller.models.get(MODEL)
            out[r.name] = rt.served if rt else None
        return out

    def holder(self) -> str | None:
        return next((r.name for r in self.fleet.replicas if r.sidecar.poller.lease.may_decide()),
                    None)

    def warm(self) -> bool:
        first = next(iter(self.versions))
        state = self.desired.read(MODEL)
        return (state is not None and state.is_known_good(first) and self.holder() is not None
                and set(self.served_by_replica().values()) == {first})

    def events(self, since: float, kind: str | None = None) -> list[tuple[str, Event]]:
        """Every sidecar's events, oldest first, with the replica that recorded each."""
        out = [(r.name, e) for r in self.fleet.replicas
               for e in r.sidecar.events.list(kind=kind, since=since, limit=2000)]
        return sorted(out, key=lambda x: (x[1].ts, x[0], x[1].id or 0))  # a log lists newest first

    def failures(self, since: float, until: float = float("inf")) -> dict[str, int]:
        return {r.name: load.failures(since, until) for r, load in zip(self.fleet.replicas, self.loads)}

    def status_line(self) -> str:
        now = time.time()
        ok = sum(load.served(now - 5, now) for load in self.loads) / 5
        failed = sum(load.failures(now - 5, now) for load in self.loads) / 5
        state = self.desired.read(MODEL)
        known = state.last_known_good if state else None
        canary = (f" · canary v{state.canary.version} on {', '.join(state.canary.replicas)} "
                  f"({state.canary.phase})" if state and state.canary else "")
        served = " ".join(f"v{v}" if v else "-" for v in self.served_by_replica().values())
        return (f"replicas serve {served} · {ok:4.0f} req/s ok · {failed:3.0f} req/s failed · "
                f"lease {self.holder() or 'nobody'} · known good "
                f"{f'v{known.version}' if known else 'none yet'}{canary}")

    def close(self) -> None:
        for load in self.loads:
            load.stop()
        self.loads = []
        if self.fleet is not None:
            self.fleet.stop()
            self.fleet = None
        super().close()


@dataclass
class CanaryResult:
    scenario: Scenario
    version: str
    good: str
    asked_at: float
    accepted: bool
    detail: str                           # the sidecar's answer to the deploy
    canary_replicas: tuple[str, ...] = ()
    serving_at: float | None = None       # the canary replicas' Tritons list the version READY
    verdict_at: float | None = None       # the holder's first verdict other than "wait"
    verdict: dict = field(default_factory=dict)   # its evidence: both groups and the checks
    verdict_reason: str = ""
    decided_by: str | None = None
    outcome: str = "none"                 # aborted | promoted | inconclusive | none
    ended_at: float | None = None
    converged_at: float | None = None     # every replica's Triton on the fleet's version
    converged_to: str | None = None
    seen: dict = field(default_factory=dict)      # replica -> every version seen READY
    final: dict = field(default_factory=dict)     # replica -> versions READY at the end
    served_ok: int = 0
    failed: dict = field(default_factory=dict)    # replica -> failed requests
    events: list = field(default_factory=list)    # (replica, Event), oldest first
    pages: str = ""
    end: float = 0.0
    passed: bool = False


def canary_policy(scenario: Scenario) -> dict:
    """The scenario's `canary.*` settings: sent as the deploy's canary policy."""
    return {k.split(".", 1)[1]: v for k, v in scenario.settings if k.startswith("canary.")}


def run_canary(session: FleetSession, scenario: Scenario, version: str,
               live=lambda line: None) -> CanaryResult:
    good = next(iter(session.versions))
    replicas = session.fleet.replicas
    asked = time.time()
    accepted, detail = session.deploy(version, reason=scenario.story, canary=scenario.canary,
                                      canary_policy={k: int(v) if float(v).is_integer() else v
                                                     for k, v in canary_policy(scenario).items()})
    result = CanaryResult(scenario, version, good, asked, accepted, detail, pages=session.pages,
                          seen={r.name: set() for r in replicas})
    state = session.desired.read(MODEL)
    if accepted and state is not None and state.canary is not None:
        result.canary_replicas = tuple(state.canary.replicas)

    def converged() -> bool:
        live(session.status_line())
        now = time.time()
        ready = {r.name: r.ready_versions(MODEL) for r in replicas}
        for name, versions in ready.items():
            result.seen[name] |= versions
        if result.serving_at is None and result.canary_replicas and all(
                version in ready[name] for name in result.canary_replicas):
            result.serving_at = now
        s = session.desired.read(MODEL)
        done = s is not None and s.canary is None and all(v == {s.version} for v in ready.values())
        if done and result.converged_at is None:
            result.converged_at, result.converged_to = now, s.version
        return done
    if accepted:
        wait_for(converged, scenario.limit_s)
    time.sleep(3)  # the last requests of the old state land in the counts
    result.end = time.time()
    result.final = {r.name: r.ready_versions(MODEL) for r in replicas}
    result.events = session.events(asked)
    _read_verdict(result)
    result.served_ok = sum(load.served(asked, result.end) for load in session.loads)
    result.failed = session.failures(asked, result.end)
    final_version = {good} if scenario.expect == "aborted" else {version}
    others = [n for n in result.seen if n not in result.canary_replicas]
    result.passed = (accepted and result.outcome == scenario.expect and result.converged_at is not None
                     and all(v == final_version for v in result.final.values())
                     and (scenario.expect != "aborted"
                          or all(version not in result.seen[n] for n in others))
                     and (scenario.expect != "promoted" or sum(result.failed.values()) == 0))
    return result


def _read_verdict(result: CanaryResult) -> None:
    """The holder's verdict and the canary's end, from the event logs."""
    for replica, e in result.events:
        if e.version != result.version:
            continue
        if e.kind == "decision" and e.action == "rollback" and e.outcome is None \
                and "canary" in e.evidence and result.verdict_at is None:
            result.verdict_at, result.decided_by = e.ts, replica
            result.verdict, result.verdict_reason = dict(e.evidence["canary"]), e.reason
        elif e.kind == "canary" and e.outcome == "promoting" and result.verdict_at is None:
            result.verdict_at, result.decided_by = e.ts, replica
            result.verdict, result.verdict_reason = dict(e.evidence.get("canary", {})), e.reason
        elif e.kind == "canary" and e.outcome in ("aborted", "promoted", "inconclusive"):
            result.outcome, result.ended_at = e.outcome, e.ts
            if e.outcome == "inconclusive" and result.verdict_at is None:
                result.verdict_at, result.decided_by = e.ts, replica
                result.verdict = dict(e.evidence.get("canary", {}))
                result.verdict_reason = e.reason
