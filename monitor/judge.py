"""Judging one model in one cycle: feed the served stream to the detectors, compare a version under
watch with the last known-good baseline, decide, and advance the known-good clock. Computation only
(the poller holds its lock around it); what must be done about it comes back as a `Judgement`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from monitor import baseline as baseline_mod
from monitor import drift as drift_mod
from monitor import quality as quality_mod
from monitor.decide import decide, update_known_good
from monitor.detect import PRESET_SIGNAL, DetectorConfig, OnlineDetector, with_objective
from monitor.types import (Decision, DecisionInputs, Detection, Event, KnownGoodState, Policy,
                             detection_from_change_point)
from monitor.resource_watch import ResourceWatch
from monitor.runtime import PHASES, ModelRuntime, MonitorMetrics
from monitor.store import SeriesStore

if TYPE_CHECKING:
    from monitor.feedback_store import FeedbackStore


@dataclass
class Judgement:
    decision: Decision
    events: list[Event] = field(default_factory=list)
    decision_event: Event | None = None  # recorded first: its id goes into a rejection
    promote: str | None = None           # version that just became known good
    promote_baseline: dict = field(default_factory=dict)
    # Quality fell or scores moved with no new version to blame: (reason, evidence) for a
    # `retrain` event (monitor.poller runs the configured command, with its cooldown).
    retrain: tuple[str, dict] | None = None


RETRAIN_CHECK_S = 15.0


class Judge:
    def __init__(self, store: SeriesStore, policy: Policy,
                 detector_configs: dict[str, DetectorConfig], metrics: MonitorMetrics,
                 interval_s: float, baseline_config: baseline_mod.BaselineConfig | None = None,
                 objectives: Mapping[str, float] | None = None,
                 feedback: "FeedbackStore | None" = None,
                 resources: ResourceWatch | None = None):
        self.store, self.policy, self.metrics = store, policy, metrics
        self.resources = resources or ResourceWatch(store)
        self.feedback, self.quality_config = feedback, quality_config(policy)
        self.quality_reference_s = policy.quality_reference_s
        self.drift_config = drift_mod.DriftConfig(policy.drift_min_samples,
                                                  policy.drift_max_p_value, policy.drift_min_psi)
        self.scores = drift_mod.ScoreWindows(retention_s=max(policy.quality_reference_s, 3600.0))
        self.detector_configs = detector_configs
        self.baseline_config = baseline_config or baseline_mod.BaselineConfig()
        self.objectives = dict(objectives or {})
        # A version cannot count as healthy before the detectors could have seen a change in it.
        # The error budget's 60-sample window is left out: it is the slow channel for small error
        # rates, and the known-good delay after this (known_good_after_s) covers it.
        self.judgement_s = interval_s * max(
            c.test_window + c.persistence + 5 for name, c in detector_configs.items()
            if name != "error_budget")

    def new_detectors(self, model: str | None = None) -> dict[str, OnlineDetector]:
        """Fresh detectors; the error presets judge against the model's own success objective."""
        configs = with_objective(self.detector_configs, self.objectives.get(model)) \
            if model is not None else self.detector_configs
        return {s: OnlineDetector(c) for s, c in configs.items()}

    # ------------------------------------------------------------ evidence

    def feed(self, rt: ModelRuntime) -> list[Event]:
        """The served version's newest interval into the model's detectors. Detectors follow the
        model's served stream, so a new version's step away from the old one's level is a change
        point at its activation."""
        if rt.served is None:
            return []
        point = self.store.latest(rt.name, rt.served)
        if point is None or point.ts <= rt.last_fed_ts:
            return []
        rt.last_fed_ts = point.ts
        rt.index_ts.append((rt.fed, point.ts))
        rt.fed += 1
        events = []
        for preset, det in rt.detectors.items():
            signal = PRESET_SIGNAL.get(preset, preset)  # error_budget watches error_rate
            value = float("nan") if point.reset else getattr(point, signal)
            cp = det.update(value)
            if cp is None:
                continue
            d = detection_from_change_point(cp, model=rt.name, version=rt.served, signal=signal,
                                            changed_at=self._ts_of(rt, cp.index),
                                            detected_at=point.ts)
            via = f" ({preset} preset)" if preset != signal else ""
            events.append(self._detected(rt, d, f"{signal}{via} changed {cp.direction} from "
                                                f"{cp.baseline_mean:.4g} to {cp.recent_mean:.4g} "
                                                f"(p={cp.p_value:.2g})"))
        return events

    def needs_baseline(self, rt: ModelRuntime, started_at: float) -> bool:
        """A version under watch that began serving before this sidecar could watch it: the
        online detectors never saw the known-good level before it, so only the persisted
        baseline can tell. (A deploy watched from its start is judged by the detectors, on
        adjacent windows under the same conditions, which a baseline from another hour is not.)"""
        return rt.under_watch and rt.desired is not None and \
            rt.desired.watch.since < started_at and bool(rt.desired.baseline_for(rt.served))

    def compare_with_baseline(self, rt: ModelRuntime, now: float,
                              started_at: float = float("inf")) -> list[Event]:
        """A version under watch against the newest known-good baseline (persisted, so this works
        with fresh detectors after a sidecar restart)."""
        if not self.needs_baseline(rt, started_at):
            return []
        base = rt.desired.baseline_for(rt.served)
        if not base:
            return []
        since = rt.desired.watch.since
        frame = self.store.signals(rt.name, rt.served, since=since)
        if frame.height < self.baseline_config.min_samples:
            return []
        columns = {s: frame[s].to_numpy() for s in baseline_mod.SIGNALS}
        findings = baseline_mod.compare(base, columns, frame["requests"].to_numpy(),
                                        frame["reset"].to_numpy(), self.baseline_config)
        events = []
        for f in findings:
            key = (rt.served, f.signal)
            if key in rt.baseline_reported:
                continue
            rt.baseline_reported.add(key)
            d = Detection(model=rt.name, version=rt.served, signal=f.signal, changed_at=since,
                          detected_at=now, direction=f.direction, baseline_mean=f.baseline_mean,
                          recent_mean=f.recent_mean, effect=f.effect, rel_effect=f.rel_effect,
                          p_value=f.p_value, method="known-good baseline", index=f.samples)
            events.append(self._detected(rt, d, f"{f.signal} of version {rt.served} is "
                                                f"{f.recent_mean:.4g} against {f.baseline_mean:.4g} "
                                                f"for the last known-good version "
                                                f"(p={f.p_value:.2g}, {f.samples} samples)"))
        return events

    def baseline_of(self, rt: ModelRuntime, now: float) -> dict:
        """The summary a version carries into the known-good history."""
        window = max(self.policy.known_good_after_s, 120.0)
        frame = self.store.signals(rt.name, rt.served, since=now - window)
        if frame.height == 0:
            return {}
        out = baseline_mod.summarise({s: frame[s].to_numpy() for s in baseline_mod.SIGNALS},
                                     frame["requests"].to_numpy(), frame["reset"].to_numpy())
        out.update(at=now, window_s=window)
        # Its score histogram over the span drift compares a candidate with (assess_drift): a
        # sidecar restarted after this version stopped serving has no other.
        scores = self.scores.counts(rt.name, rt.served, since=now - self.policy.retrain_recent_s)
        bounds = self.scores.bounds.get((rt.name, rt.served), ())
        if scores is not None and len(bounds) == scores.size:
            out["scores"] = drift_mod.to_record(bounds, scores)
        return out

    def assess_quality(self, rt: ModelRuntime, now: float) -> list[Event]:
        """Online quality of a served version that is not yet known good, against the version a
        rollback would return to, from the feedback sums. The served side counts from its
        activation; the reference side is its newest `quality_reference_s` of serving time. Once
        a version is known good it is no longer compared (the reference served other hours):
        its quality over time is the retrain check's business."""
        previous = rt.quality
        rt.quality = None
        if self.feedback is None or rt.served is None or rt.desired is None \
                or rt.desired.is_known_good(rt.served):
            return []
        reference = rt.rollback_target
        since = None
        if rt.activated_at is not None:
            since = rt.activated_at - self.feedback.window_s  # the window it was activated in
        served = self.feedback.stats(rt.name, rt.served, since=since)
        ref_stats, latest = None, None
        if reference is not None:
            latest = self.feedback.latest_window(rt.name, reference)
        if latest is not None:
            ref_stats = self.feedback.stats(rt.name, reference,
                                            since=latest - self.quality_reference_s)
        q = quality_mod.compare(rt.name, rt.served, served, reference, ref_stats,
                                self.quality_config)
        rt.quality = q
        if previous is not None and (previous.version, previous.verdict) == (q.version, q.verdict):
            return []
        if q.verdict == "no_reference" and (previous is None or previous.version != q.version):
            return []  # nothing to say for a model without feedback
        return [Event(now, rt.name, rt.served, "quality", reason=q.reason,
                      evidence=quality_evidence(q))]

    def assess_drift(self, rt: ModelRuntime) -> drift_mod.DriftFinding | None:
        """The sampled scores of a served version that is not yet known good, since its
        activation, against the reference version's last `retrain_recent_s` of serving."""
        if rt.served is None or rt.desired is None or rt.desired.is_known_good(rt.served):
            return None
        reference = rt.rollback_target
        if reference is None:
            return None
        since = None if rt.activated_at is None else rt.activated_at - self.scores.window_s
        counts = self.scores.counts(rt.name, rt.served, since=since)
        bounds = self.scores.bounds.get((rt.name, rt.served), ())
        if counts is None:
            return None
        span = self.scores.span(rt.name, reference)
        if span is not None:
            # The reference's latest serving, not its whole history: scores follow the hours.
            ref = self.scores.counts(rt.name, reference,
                                     since=span[1] - self.policy.retrain_recent_s)
            against = f"version {reference}"
        else:
            # Not seen serving since this sidecar started: the histogram its known-good record
            # kept (from the hours before it was promoted; older baselines have none).
            kept = next((k for k in reversed(rt.desired.known_good) if k.version == reference),
                        None)
            record = drift_mod.from_record(kept.baseline.get("scores")) if kept else None
            if record is None or record[0] != tuple(bounds):
                return None
            ref = record[1]
            against = f"version {reference} (histogram kept when it became known good)"
        if ref is None:
            return None
        return drift_mod.compare(rt.name, rt.served, counts, ref, against, bounds,
                                 self.drift_config)

    def retrain_check(self, rt: ModelRuntime, now: float) -> tuple[str, dict] | None:
        """The served known-good version's last `retrain_recent_s` against its earlier serving
        time: online quality worse (feedback) or scores moved (drift). No new version is to blame,
        so it is the world that changed: the model needs retraining."""
        if rt.served is None or rt.desired is None or not rt.desired.is_known_good(rt.served):
            return None
        recent = now - self.policy.retrain_recent_s
        found = []
        if self.feedback is not None:
            q = quality_mod.compare(
                rt.name, rt.served, self.feedback.stats(rt.name, rt.served, since=recent),
                f"{rt.served} (its earlier hours)",
                self.feedback.stats(rt.name, rt.served, since=recent - self.quality_reference_s,
                                    until=recent - self.feedback.window_s),
                self.quality_config)
            if q.verdict == "worse":
                found.append((f"online quality of version {rt.served} fell: {q.reason}",
                              {"quality": quality_evidence(q)}))
        now_counts = self.scores.counts(rt.name, rt.served, since=recent)
        before = self.scores.counts(rt.name, rt.served, since=recent - self.quality_reference_s,
                                    until=recent - self.scores.window_s)
        if now_counts is not None and before is not None:
            d = drift_mod.compare(rt.name, rt.served, now_counts, before, "its own earlier hours",
                                  self.scores.bounds.get((rt.name, rt.served), ()),
                                  self.drift_config)
            if d is not None and d.drifted:
                found.append((f"the scores of version {rt.served} moved (mean {d.mean:.3g} against "
                              f"{d.reference_mean:.3g} earlier; PSI {d.psi:.2f}, p={d.p_value:.2g}): "
                              f"its inputs drifted", {"drift": _rounded(dataclasses.asdict(d))}))
        if not found:
            return None
        return ("; ".join(r for r, _ in found) + "; no new version to blame: retrain",
                {k: v for _, e in found for k, v in e.items()})

    def _detected(self, rt: ModelRuntime, d: Detection, reason: str) -> Event:
        rt.detections.append(d)
        self.metrics.detections.labels(rt.name, d.signal).inc()
        return Event(d.detected_at, rt.name, rt.served, "detection", reason=reason,
                     evidence=detection_dict(d))

    def _ts_of(self, rt: ModelRuntime, index: int) -> float:
        for i, ts in reversed(rt.index_ts):
            if i <= index:
                return ts
        return rt.index_ts[0][1] if rt.index_ts else rt.last_fed_ts

    # ------------------------------------------------------------ the decision

    def judge(self, rt: ModelRuntime, now: float, others: tuple[Detection, ...], peers: int,
              started_at: float) -> Judgement:
        events = self.compare_with_baseline(rt, now, started_at)
        events += self.assess_quality(rt, now)
        # Every retrain_check_s, not every cycle: it merges hours of windows, and what it looks
        # for (a drift over retrain_recent_s) does not change from one second to the next.
        if now - rt.retrain_checked_at >= RETRAIN_CHECK_S or rt.served != rt.retrain_checked_for:
            rt.retrain_found = self.retrain_check(rt, now)
            rt.retrain_checked_at, rt.retrain_checked_for = now, rt.served
        retrain = rt.retrain_found
        inputs = DecisionInputs(
            model=rt.name, served_version=rt.served, now=now, version_states=rt.states,
            detections=tuple(rt.detections), other_model_detections=others,
            scrape_outcomes=self.store.scrape_outcomes(limit=20),
            last_sample_at=self.store.last_sample_at(rt.name, rt.served) if rt.served else None,
            activated_at=rt.activated_at, last_known_good=rt.rollback_target,
            requested_version=rt.requested, actions=rt.counted_actions, pinned_version=rt.pinned,
            frozen=rt.is_frozen, probes=tuple(rt.probes),
            failure_evidence=(self.store.failure_evidence(rt.name, rt.served, 10.0)
                              if rt.served else None),
            reset_times=(self.store.reset_times(rt.name, rt.served, since=now - 300)
                         if rt.served else ()),
            peers_observed=peers, quality=rt.quality, drift=self.assess_drift(rt),
            inputs_drifted=retrain is not None and "drift" in retrain[1],
            resources=self.resources.findings(rt.name, rt.served, rt.rollback_target, now))
        decision = decide(inputs, self.policy)
        previous = rt.decision
        rt.decision = decision
        out = Judgement(decision, events)
        # One event per change of (phase, action, target), not one per cycle of a lasting state.
        if previous is None or (previous.phase, previous.action, previous.target_version) != \
                (decision.phase, decision.action, decision.target_version):
            out.decision_event = Event(now, rt.name, rt.served, "decision", phase=decision.phase,
                                       action=decision.action, reason=decision.reason,
                                       evidence=evidence_dict(decision))
        self._known_good(rt, decision, now, started_at, out)
        out.retrain = retrain
        for p in PHASES:
            self.metrics.phase.labels(rt.name, p).set(1 if p == decision.phase else 0)
        if rt.served and rt.served.isdigit():
            self.metrics.served.labels(rt.name).set(int(rt.served))
        if decision.phase == "healthy":
            rt.acked = None
        return out

    def promotion_blockers(self, rt: ModelRuntime, now: float, since: float,
                           started_at: float = float("inf")) -> list[str]:
        """Why the served version may not become known good yet, even on healthy decisions."""
        why = []
        failed = [p for p in rt.probes if p.version == rt.served and p.ts >= since
                  and p.status != "ok"]
        if failed:
            why.append(f"{len(failed)} golden probe(s) not ok since {since:.0f}")
        if any(d.version == rt.served and d.method == "known-good baseline" for d in rt.detections):
            why.append("worse than the last known-good baseline")
        if self.needs_baseline(rt, started_at):
            frame = self.store.signals(rt.name, rt.served, since=rt.desired.watch.since)
            if frame.height < self.baseline_config.min_latency_samples:
                why.append("not yet compared with the last known-good baseline")
        fe = self.store.failure_evidence(rt.name, rt.served, max(self.policy.known_good_after_s, 30))
        if fe.requests > 0 and fe.failure_ratio > self.policy.max_known_good_error_rate:
            why.append(f"{fe.failure_ratio:.1%} of its requests failed")
        return why

    def _known_good(self, rt: ModelRuntime, decision: Decision, now: float, started_at: float,
                    out: Judgement) -> None:
        if rt.served is None:
            return
        desired = rt.desired
        already = desired is not None and desired.is_known_good(rt.served) \
            and not desired.is_rejected(rt.served)
        judged_since = max(rt.activated_at or now, started_at)
        phase = decision.phase
        if phase == "healthy" and (now - judged_since < self.judgement_s
                                   or self.promotion_blockers(rt, now, judged_since,
                                                              started_at)):
            phase = "inconclusive"
        last = desired.last_known_good.version if desired and desired.last_known_good else None
        known = KnownGoodState(known_good=last, candidate=rt.known.candidate,
                               healthy_since=rt.known.healthy_since)
        rt.known = update_known_good(known, rt.served, phase, now, self.policy)
        if not already and rt.known.known_good == rt.served:
            out.promote = rt.served
            out.promote_baseline = self.baseline_of(rt, now)


def detection_dict(d: Detection) -> dict:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in d.__dict__.items()}


def quality_config(policy: Policy) -> quality_mod.QualityConfig:
    return quality_mod.QualityConfig(
        min_labels=policy.quality_min_labels, min_positives=policy.quality_min_positives,
        auc_margin=policy.quality_auc_margin, ndcg_margin=policy.quality_ndcg_margin,
        min_lists=policy.quality_min_lists, confidence=policy.quality_confidence,
        promote_confidence=policy.quality_promote_confidence)


def quality_evidence(q: quality_mod.QualityAssessment) -> dict:
    return _rounded(dataclasses.asdict(q))


def _rounded(value):
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def evidence_dict(decision: Decision) -> dict:
    items = []
    for e in decision.evidence:
        kind = type(e).__name__
        body = _rounded(dataclasses.asdict(e))
        items.append({"type": kind, **body})
    return {"target_version": decision.target_version, "items": items}
