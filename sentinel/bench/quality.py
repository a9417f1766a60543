"""`sentinel bench quality`: how fast the sidecar's online-quality rule rolls back a version that
ranks worse, and how often it rolls back a clean one, on seeded replays
(sentinel.bench.quality_sim).

Settings are chosen on TUNING_SEEDS (a small grid around the Policy defaults, by a rule fixed
before the evaluation); the tables report EVALUATION_SEEDS only."""
from __future__ import annotations

import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from monitor.types import Policy
from sentinel.bench.environment import describe_machine, finished
from sentinel.bench.quality_sim import (EVALUATION_SEEDS, TUNING_SEEDS, Judged, Outcome, Stream,
                                        detection_episode, judgement_s, replay, week_episodes)
from sentinel.bench.results import Machine

DROPS = (0.05, 0.1, 0.25)
RATES = (10.0, 100.0)
# The tuning grid: evidence (labels before any verdict), confidence and margin around the defaults.
GRID_MIN_LABELS = (1000, 3000, 10_000, 30_000)
GRID_CONFIDENCE = (0.999, 0.99)
GRID_MARGIN = (0.02, 0.01)
# The selection rule, fixed before any evaluation run: among the grid points whose clean weeks
# (tuning seeds) show at most MAX_FALSE_PER_WEEK false rollbacks and whose clean deploys become
# known good within MAX_KNOWN_GOOD_S (median, at the lower label rate), the one that rolls back
# the most 0.05 drops within the horizon at both rates, then the most 0.1 drops; ties go to the
# point nearest the defaults (fewer labels, higher confidence, wider margin).
MAX_FALSE_PER_WEEK = 0.05
MAX_KNOWN_GOOD_S = 3600.0


@dataclass(frozen=True)
class QualityOptions:
    seeds: int = 100               # detection runs per (label rate, drop)
    weeks: int = 50                # simulated clean weeks per label rate
    tune_seeds: int = 40
    tune_weeks: int = 15
    horizon_s: float = 7200.0
    step_s: float = 10.0
    tune: bool = True
    jobs: int = 2
    check_step: int = 12           # detection runs replayed at 1 s steps to check `step_s`


@dataclass(frozen=True)
class DetectionCell:
    judged: str
    seeds: str
    label_rate: float
    auc_drop: float
    runs: int
    rolled_back: int               # within the horizon
    known_good_first: int          # promoted before any "worse": never compared again
    undecided: int
    p10_s: float                   # detection delay from the deploy, of the rolled-back runs
    median_s: float
    p90_s: float


@dataclass(frozen=True)
class CleanCell:
    judged: str
    seeds: str
    label_rate: float
    weeks: int
    deploys: int
    false_rollbacks: int
    per_week: float
    per_week_upper95: float
    known_good_median_s: float
    known_good_p90_s: float
    not_known_good: int            # still judged when the clean horizon ended


@dataclass(frozen=True)
class QualityReport:
    command: str
    machine: Machine
    options: QualityOptions
    stream: Stream
    diurnal: Stream
    judgement_s: float
    chosen: dict                   # the grid point the rule picked on the tuning seeds
    evaluation: tuple[DetectionCell | CleanCell, ...]
    tuning: tuple[DetectionCell | CleanCell, ...] = ()
    step_check: str = ""
    wall_s: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)


def policy_name(p: Policy) -> str:
    return (f"min_labels {p.quality_min_labels}, confidence {p.quality_confidence:g}, "
            f"margin {p.quality_auc_margin:g}")


def grid() -> list[Judged]:
    return [Judged(policy_name(p), p) for p in (
        replace(Policy(), quality_min_labels=n, quality_confidence=c, quality_auc_margin=m)
        for n in GRID_MIN_LABELS for c in GRID_CONFIDENCE for m in GRID_MARGIN)]


def _replay_task(args) -> list[Outcome]:
    episode, judged, step_s = args
    return replay(episode, judged, step_s)


def _run(tasks: list, jobs: int) -> list[list[Outcome]]:
    if jobs <= 1:
        return [_replay_task(t) for t in tasks]
    with ProcessPoolExecutor(jobs) as pool:
        return list(pool.map(_replay_task, tasks, chunksize=4))


def _q(values: Sequence[float], q: float) -> float:
    return float(np.quantile(values, q)) if len(values) else math.nan


def poisson_upper95(k: int) -> float:
    """One-sided 95 % upper limit of a Poisson mean after observing k events."""
    lo, hi = 0.0, 10.0 + 5 * k
    for _ in range(100):
        mid = (lo + hi) / 2
        cdf = sum(math.exp(-mid) * mid ** i / math.factorial(i) for i in range(k + 1))
        lo, hi = (mid, hi) if cdf > 0.05 else (lo, mid)
    return hi


def detection_cells(judged: Sequence[Judged], seeds: Sequence[int], seeds_name: str,
                    opts: QualityOptions) -> list[DetectionCell]:
    keys = [(r, d) for r in RATES for d in DROPS]
    tasks = [(detection_episode(s, r, d, opts.horizon_s), judged, opts.step_s)
             for r, d in keys for s in seeds]
    results = _run(tasks, opts.jobs)
    cells = []
    for k, (rate, drop) in enumerate(keys):
        runs = results[k * len(seeds):(k + 1) * len(seeds)]
        for i, j in enumerate(judged):
            outs = [r[i] for r in runs]
            delays = [o.rollback_s for o in outs if o.rollback_s is not None]
            promoted = sum(o.known_good_s is not None for o in outs)
            cells.append(DetectionCell(j.name, seeds_name, rate, drop, len(outs), len(delays),
                                       promoted, len(outs) - len(delays) - promoted,
                                       _q(delays, 0.1), _q(delays, 0.5), _q(delays, 0.9)))
    return cells


def clean_cells(judged: Sequence[Judged], seeds: Sequence[int], seeds_name: str,
                opts: QualityOptions) -> list[CleanCell]:
    cells = []
    for rate in RATES:
        episodes = [e for s in seeds for e in week_episodes(s, rate)]
        results = _run([(e, judged, opts.step_s) for e in episodes], opts.jobs)
        for i, j in enumerate(judged):
            outs = [r[i] for r in results]
            false = sum(o.rollback_s is not None for o in outs)
            kg = [o.known_good_s for o in outs if o.known_good_s is not None]
            weeks = len(seeds)
            cells.append(CleanCell(j.name, seeds_name, rate, weeks, len(outs), false, false / weeks,
                                   poisson_upper95(false) / weeks, _q(kg, 0.5), _q(kg, 0.9),
                                   sum(o.rollback_s is None and o.known_good_s is None
                                       for o in outs)))
    return cells


def choose(cells: Sequence[DetectionCell | CleanCell], candidates: Sequence[Judged]) -> Judged:
    """The selection rule (see MAX_FALSE_PER_WEEK) applied to tuning-seed cells."""
    def of(j, kind):
        return [c for c in cells if c.judged == j.name and isinstance(c, kind)]

    def ok(j):
        clean = of(j, CleanCell)
        slow = min(c.label_rate for c in clean)
        return all(c.per_week <= MAX_FALSE_PER_WEEK for c in clean) and all(
            c.known_good_median_s <= MAX_KNOWN_GOOD_S for c in clean if c.label_rate == slow)

    def score(j):
        det = of(j, DetectionCell)
        caught = [sum(c.rolled_back for c in det if c.auc_drop == d) for d in sorted(DROPS)]
        p = j.policy
        return (*caught, -p.quality_min_labels, p.quality_confidence, p.quality_auc_margin)

    allowed = [j for j in candidates if ok(j)]
    if not allowed:
        return Judged("defaults", Policy())
    return max(allowed, key=score)


def step_check(opts: QualityOptions) -> str:
    """The same detection runs replayed at 1 s steps (the sidecar's cycle) and at `step_s`."""
    if opts.check_step <= 0 or opts.step_s == 1.0:
        return ""
    judged = [Judged("defaults", Policy())]
    tasks, fine = [], []
    for k, s in enumerate(list(EVALUATION_SEEDS)[:opts.check_step]):
        ep = detection_episode(s, RATES[(k // 3) % 2], DROPS[k % 3], opts.horizon_s)
        tasks.append((ep, judged, opts.step_s))
        fine.append((ep, judged, 1.0))
    coarse, exact = _run(tasks, opts.jobs), _run(fine, opts.jobs)
    same = sum((a[0].rollback_s is None) == (b[0].rollback_s is None) and
               (a[0].known_good_s is None) == (b[0].known_good_s is None)
               for a, b in zip(coarse, exact))
    diffs = [abs((a[0].rollback_s or a[0].known_good_s or 0) - (b[0].rollback_s or
                                                                 b[0].known_good_s or 0))
             for a, b in zip(coarse, exact)]
    return (f"{len(tasks)} detection runs (both label rates, all three drops) replayed at 1 s "
            f"steps and at {opts.step_s:g} s: same outcome in {same}; end times differ by at most "
            f"{max(diffs):.0f} s (median {np.median(diffs):.0f} s)")


def run_quality(opts: QualityOptions, command: str = "sentinel bench quality",
                progress: Callable[[str], None] = lambda m: None) -> QualityReport:
    machine = describe_machine(("numpy",))
    started = time.perf_counter()
    defaults = Judged("defaults", Policy())
    watching = Judged("defaults, never promoted", Policy(), keep_watching=True)
    tuning: list = []
    chosen = defaults
    if opts.tune:
        candidates = grid()
        progress(f"tuning: {len(candidates)} settings on {opts.tune_seeds} detection seeds per "
                 f"cell and {opts.tune_weeks} clean weeks per rate (TUNING_SEEDS)")
        tune_seeds = list(TUNING_SEEDS)[:opts.tune_seeds]
        tuning = detection_cells(candidates, tune_seeds, "tuning", opts)
        tuning += clean_cells(candidates, list(TUNING_SEEDS)[:opts.tune_weeks], "tuning", opts)
        picked = choose(tuning, candidates)
        chosen = replace(picked, name="chosen: " + picked.name) \
            if picked.policy != Policy() else defaults
        progress(f"chosen on the tuning seeds: {chosen.name}")
    judged = [defaults, watching] + ([chosen] if chosen is not defaults else [])
    progress(f"evaluation: {opts.seeds} seeds per cell, {opts.weeks} clean weeks per rate "
             f"(EVALUATION_SEEDS)")
    evaluation = detection_cells(judged, list(EVALUATION_SEEDS)[:opts.seeds], "evaluation", opts)
    evaluation += clean_cells([j for j in judged if not j.keep_watching],
                              list(EVALUATION_SEEDS)[:opts.weeks], "evaluation", opts)
    progress("checking the decision step against 1 s steps")
    check = step_check(opts)
    p = chosen.policy
    return QualityReport(
        command=command, machine=finished(machine), options=opts, stream=Stream(),
        diurnal=Stream().diurnal(), judgement_s=judgement_s(),
        chosen={"name": policy_name(p), "quality_min_labels": p.quality_min_labels,
                "quality_confidence": p.quality_confidence,
                "quality_auc_margin": p.quality_auc_margin},
        evaluation=tuple(evaluation), tuning=tuple(tuning), step_check=check,
        wall_s=round(time.perf_counter() - started, 1))


# ------------------------------------------------------------------ markdown


def _dur(s: float) -> str:
    if s is None or math.isnan(s):
        return "–"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _share(k: int, n: int) -> str:
    return f"{k}/{n} ({k / n:.0%})" if n else "–"


def quality_markdown(r: QualityReport) -> str:
    from sentinel.bench.report import machine_lines
    o, s, d = r.options, r.stream, r.diurnal
    lines = ["### Online quality: time to roll back a worse ranker, false rollbacks of clean ones",
             "",
             f"Command: `{r.command}` ({r.wall_s:.0f} s wall, {o.jobs} process(es))", ""]
    lines += machine_lines(r.machine) + [""]
    lines += [
        "Seeded replays of the sidecar's decision path (sentinel/bench/quality_sim.py): feedback "
        "summed into 300 s windows by serving time as `monitor.feedback.sums` does, the windows "
        "`Judge.assess_quality` picks (the new version since its activation's window; the "
        "known-good version's newest `quality_reference_s`), `monitor.quality.compare`, "
        "`monitor.decide.decide` and `update_known_good` with the judge's "
        f"{r.judgement_s:.0f} s minimum judgement; every other signal clean. A decision every "
        f"{o.step_s:g} s of simulated time (the sidecar decides every second).",
        "",
        f"- Reference version: AUC {s.auc}, base rate {s.base_rate} (binormal scores, "
        "sigmoid(logit(base) + x − d·base) with x ~ N(d·label, 1), AUC = Φ(d/√2): every "
        "version's scores have the same spread and sit around the base rate, so a worse version "
        "looks plausible). The new version's AUC is lower by the drop, nothing else changes.",
        f"- Outcomes arrive after an exponential delay, mean {s.label_delay_s / 60:g} min, "
        "independent of score and label.",
        f"- Detection runs: flat traffic at the stated labelled events/s, deploy at a seeded time; "
        f"{o.seeds} runs per cell, horizon {o.horizon_s / 3600:g} h.",
        f"- Clean weeks: the diurnal stream, a cosine peaking at {d.peak_hour:g}:00 UTC: label "
        f"rate "
        f"× (1 ± {d.rate_swing}), base rate {d.base_rate} ± {d.base_swing}, score offset "
        f"± {d.score_swing} logit, AUC {d.auc} ± {d.auc_swing} (easier at the peak), for both "
        "versions, so the reference's pooled 6 h and the new version's first hour differ. One "
        "deploy a day at a uniformly drawn time of day, each judged until it becomes known good "
        f"(or is rolled back; at most 6 h); {o.weeks} weeks per label rate (the rate is the "
        "daily mean).",
        "- Seeds: TUNING_SEEDS (range 0–999) chose the setting below by a rule fixed in "
        "`sentinel/bench/quality.py`; every number in the first two tables is from "
        "EVALUATION_SEEDS (10000–10999).",
        ""]
    ev = [c for c in r.evaluation if isinstance(c, DetectionCell)]
    lines += ["Detection of an AUC drop (evaluation seeds): share rolled back within the horizon, "
              "share promoted to known good first (the comparison stops there), and the delay "
              "from the deploy to the rollback (p10 / median / p90 of the rolled-back runs):", "",
              "| labels/s | AUC drop | policy | rolled back | known good first | p10 | median | "
              "p90 |", "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for c in ev:
        lines.append(f"| {c.label_rate:g} | {c.auc_drop:g} | {c.judged} | "
                     f"{_share(c.rolled_back, c.runs)} | {_share(c.known_good_first, c.runs)} | "
                     f"{_dur(c.p10_s)} | {_dur(c.median_s)} | {_dur(c.p90_s)} |")
    clean = [c for c in r.evaluation if isinstance(c, CleanCell)]
    lines += ["", "False rollbacks on clean feedback (evaluation seeds; the new version as good as "
              "the reference):", "",
              "| labels/s (daily mean) | policy | weeks | deploys | false rollbacks | per week "
              "(95 % upper) | known good after (median / p90) | not known good in 6 h |",
              "|---:|---|---:|---:|---:|---|---|---:|"]
    for c in clean:
        lines.append(f"| {c.label_rate:g} | {c.judged} | {c.weeks} | {c.deploys} | "
                     f"{c.false_rollbacks} | {c.per_week:.2f} (≤ {c.per_week_upper95:.2f}) | "
                     f"{_dur(c.known_good_median_s)} / {_dur(c.known_good_p90_s)} | "
                     f"{c.not_known_good} |")
    if r.tuning:
        lines += ["", f"Tuning grid (TUNING_SEEDS only: {o.tune_seeds} runs per detection cell, "
                  f"{o.tune_weeks} clean weeks per rate). Rule: false rollbacks ≤ "
                  f"{MAX_FALSE_PER_WEEK:g}/week at both rates and median time to known good ≤ "
                  f"{MAX_KNOWN_GOOD_S / 60:g} min at 10 labels/s; then the most 0.05 drops caught, "
                  "then 0.1, then the point nearest the defaults. Chosen: "
                  f"**{r.chosen['name']}**.", "",
                  "| policy | 0.05 caught @10 / @100 | 0.1 caught @10 / @100 | false rollbacks/wk "
                  "@10 / @100 | known good median @10 / @100 |", "|---|---|---|---|---|"]
        names = list(dict.fromkeys(c.judged for c in r.tuning))
        for name in names:
            det = {(c.label_rate, c.auc_drop): c for c in r.tuning
                   if isinstance(c, DetectionCell) and c.judged == name}
            cl = {c.label_rate: c for c in r.tuning
                  if isinstance(c, CleanCell) and c.judged == name}
            lines.append(
                f"| {name} | " + " / ".join(_share(det[(x, 0.05)].rolled_back, det[(x, 0.05)].runs)
                                           for x in RATES) + " | "
                + " / ".join(_share(det[(x, 0.1)].rolled_back, det[(x, 0.1)].runs) for x in RATES)
                + " | " + " / ".join(f"{cl[x].per_week:.2f}" for x in RATES) + " | "
                + " / ".join(_dur(cl[x].known_good_median_s) for x in RATES) + " |")
    if r.step_check:
        lines += ["", f"Decision step: {r.step_check}."]
    lines += [f"- {n}" for n in r.notes]
    return "\n".join(lines)
