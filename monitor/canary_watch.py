"""The lease holder's side of a canary: gather the fleet's counters, tally them per canary, judge
(monitor.canary) and say what to write next. No desired-state writes here: `step` returns
`CanaryAction`s, the poller carries them out through its compare-and-swap writes, so a holder that
lost the lease in between writes nothing.

Evidence is fleet-wide: one query to a Prometheus server that scrapes every replica (`fleet_selector`
picks the replicas' Triton targets), or, without Prometheus, each live replica's own /metrics (the
URLs in the replica registry). Both give per-(model, version) counters; the canary's version and the
fleet's are the two groups.

A new holder (the old one died) reads the counters' history since the canary started from
Prometheus (query_range, one step a second) and tallies it as if it had been there; without
Prometheus it tallies afresh, and a pass needs `duration_s` of what it saw itself. The canary's age
counts from when it was asked for either way, so it still ends by `max_duration_s`."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping

from monitor.canary import CanaryPolicy, Tally, Verdict, judge
from monitor.replicas import Replica
from monitor.scrape import Scraper
from monitor.types import Scrape
from sentinel.desired_state import DesiredState

ActionKind = Literal["reject", "widen", "finish", "end"]


@dataclass(frozen=True)
class CanaryAction:
    kind: ActionKind
    model: str
    version: str
    reason: str
    replicas: tuple[str, ...] = ()          # widen: the replicas added
    evidence: Mapping = field(default_factory=dict)


@dataclass(frozen=True)
class CanaryView:
    """What the pages and the API show of a running canary on this sidecar."""
    model: str
    version: str
    against: str | None
    phase: str
    replicas: tuple[str, ...]
    verdict: Verdict | None
    judged_here: bool


class FleetEvidence:
    """One Scrape per source, this cycle; with Prometheus, also the counters' history."""

    def __init__(self, prometheus: Callable[[], Scrape] | None = None,
                 scraper_for: Callable[[str], Callable[[], Scrape]] | None = None,
                 history: Callable[[float, float, float], list[Scrape]] | None = None):
        self.prometheus = prometheus
        self._history = history
        self._scraper_for = scraper_for or (lambda url: Scraper(url, timeout=1.0).scrape)
        self._scrapers: dict[str, Callable[[], Scrape]] = {}

    def history(self, start: float, end: float, step_s: float) -> list[dict[str, Scrape]]:
        """What the sources said between start and end, oldest first ([] without Prometheus:
        replicas keep no history)."""
        if self._history is None or self.prometheus is None:
            return []
        return [{"prometheus": s} for s in self._history(start, end, step_s)]

    def collect(self, members: list[Replica]) -> dict[str, Scrape]:
        if self.prometheus is not None:
            return {"prometheus": self.prometheus()}
        out = {}
        for replica in members:
            if not replica.url:
                continue
            scrape = self._scrapers.get(replica.url)
            if scrape is None:
                scrape = self._scrapers[replica.url] = self._scraper_for(replica.url)
            out[replica.identity] = scrape()
        return out


class CanaryWatch:
    def __init__(self, evidence: FleetEvidence, policy: CanaryPolicy = CanaryPolicy(),
                 clock: Callable[[], float] = time.time):
        self.evidence = evidence
        self.policy = policy
        self.clock = clock
        self._tallies: dict[tuple[str, str, float], Tally] = {}
        self.verdicts: dict[str, Verdict] = {}
        self.backfilled: dict[str, int] = {}  # bins read from history when a tally began

    def policy_for(self, desired: DesiredState) -> CanaryPolicy:
        assert desired.canary is not None
        try:
            return self.policy.with_overrides(desired.canary.policy)
        except ValueError:
            return self.policy  # refused when the canary was asked for; a hand edit gets defaults

    def step(self, states: Mapping[str, DesiredState], members: list[Replica]) -> list[CanaryAction]:
        """One cycle of the holder (network I/O: call without the poller's lock)."""
        running = {m: s for m, s in states.items() if s.canary is not None and s.version}
        live = {(m, s.canary.version, s.canary.since) for m, s in running.items()}
        for key in [k for k in self._tallies if k not in live]:
            del self._tallies[key]  # ended (by us, an operator or another holder)
        for model in [m for m in self.verdicts if m not in running]:
            del self.verdicts[model]
            self.backfilled.pop(model, None)
        if not running:
            return []
        scrapes = self.evidence.collect(members)
        now = self.clock()
        actions = []
        for model, state in sorted(running.items()):
            action = self._one(model, state, members, scrapes, now)
            if action is not None:
                actions.append(action)
        return actions

    def _one(self, model: str, state: DesiredState, members: list[Replica],
             scrapes: Mapping[str, Scrape], now: float) -> CanaryAction | None:
        canary = state.canary
        assert canary is not None and state.version is not None
        policy = self.policy_for(state)
        key = (model, canary.version, canary.since)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = Tally(model, canary.version, state.version,
                                               policy.look_every_s)
            # A holder that took over mid-canary reads what happened since it started, where
            # the source keeps it (Prometheus); else it tallies from now on.
            for past in self.evidence.history(canary.since, now - 1.0, 1.0):
                tally.add(past, min(s.ts for s in past.values()))
            self.backfilled[model] = len(tally.bins)
        tally.add(scrapes, now)
        age = now - canary.since
        live = {r.identity: r for r in members}
        on_canary = [r for r in canary.replicas if r in live]
        serving = [r for r in on_canary if live[r].serves.get(model) == canary.version]
        verdict = judge(tally, policy, age)
        self.verdicts[model] = verdict
        evidence = {"canary": verdict.evidence(), "replicas": list(canary.replicas),
                    "serving": serving, "against": state.version,
                    "bins_from_history": self.backfilled.get(model, 0)}
        if verdict.outcome == "fail":
            return CanaryAction("reject", model, canary.version,
                                f"canary of version {canary.version} failed against version "
                                f"{state.version} on the rest of the fleet: {verdict.reason}",
                                evidence=evidence)
        if not on_canary:
            if age > policy.load_timeout_s:  # its replicas left the fleet: nothing to judge on
                return CanaryAction("end", model, canary.version,
                                    f"canary of version {canary.version} ended, not promoted: none "
                                    f"of its replicas {list(canary.replicas)} is alive",
                                    evidence=evidence)
            return None
        if len(serving) < len(on_canary):
            if age > policy.load_timeout_s:
                missing = sorted(set(canary.replicas) - set(serving))
                return CanaryAction("reject", model, canary.version,
                                    f"canary of version {canary.version}: not serving on "
                                    f"{missing} {age:.0f}s after it was asked for "
                                    f"(load timeout {policy.load_timeout_s:g}s)", evidence=evidence)
            return None  # still loading; a promotion step waits for its replicas too
        if canary.phase == "promoting" or verdict.outcome == "pass":
            rest = [r.identity for r in members if r.identity not in canary.replicas]
            if not rest:
                return CanaryAction("finish", model, canary.version,
                                    f"canary of version {canary.version} promoted: every replica "
                                    f"({len(canary.replicas)}) serves it", evidence=evidence)
            step = policy.step or canary.size
            add = tuple(rest[:step])
            why = verdict.reason if canary.phase == "running" else "previous step serves"
            return CanaryAction("widen", model, canary.version,
                                f"canary of version {canary.version}: promoting to {list(add)} "
                                f"({why})", replicas=add, evidence=evidence)
        if verdict.outcome == "inconclusive":
            return CanaryAction("end", model, canary.version,
                                f"canary of version {canary.version} inconclusive, not promoted: "
                                f"{verdict.reason}", evidence=evidence)
        return None

    def views(self, states: Mapping[str, DesiredState], judged_here: bool) -> list[CanaryView]:
        return [CanaryView(m, s.canary.version, s.version, s.canary.phase, s.canary.replicas,
                           self.verdicts.get(m) if judged_here else None, judged_here)
                for m, s in sorted(states.items()) if s.canary is not None]
