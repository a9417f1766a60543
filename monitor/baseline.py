"""A version under watch judged against the last known-good version's persisted baseline.

The online detectors find a change point in the served stream: they need the good version's samples
just before the activation. After a sidecar restart (or when the sidecar was down at the
activation) there are none, and fresh detectors would learn the faulty version as normal. So each
known-good version's signals are summarised when it is promoted (mean, std, samples; request and
failure totals), stored with the desired state, and a candidate is compared with that summary:
a two-proportion z-test for the error rate, Welch's t-test from summary statistics for the others,
each with a minimum practical effect. Pure: arrays and dicts in, findings out."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

SIGNALS = ("error_rate", "latency_ms", "nan_rate", "score_mean", "score_std")


@dataclass(frozen=True)
class BaselineConfig:
    min_samples: int = 10          # candidate intervals before it is compared at all
    min_latency_samples: int = 20  # latency moves with the machine's load: more, and the median
    min_baseline_samples: int = 10
    alpha: float = 1e-4            # per signal and cycle: the comparison repeats every cycle
    error_abs: float = 0.01        # error rate: at least +1 point ...
    error_rel: float = 1.0         # ... and at least double the baseline's
    latency_rel: float = 1.0       # latency: 2x (a baseline from another hour saw another load)
    nan_abs: float = 0.01
    score_std_rel: float = 0.5     # spread of scores halves or grows by half
    score_mean_in_std: float = 1.0  # mean moves by a whole baseline std of the scores


@dataclass(frozen=True)
class Finding:
    signal: str
    direction: str
    baseline_mean: float
    recent_mean: float
    effect: float
    rel_effect: float
    p_value: float
    samples: int


def summarise(columns: Mapping[str, Sequence[float]], requests: Sequence[float],
              reset: Sequence[bool] | None = None) -> dict:
    """The baseline of one version from its per-interval signals (store.signals columns)."""
    req = np.asarray(requests, dtype=np.float64)
    keep = np.isfinite(req) & (req > 0)
    if reset is not None:
        keep &= ~np.asarray(reset, dtype=bool)
    out: dict = {"signals": {}}
    for name in SIGNALS:
        values = np.asarray(columns[name], dtype=np.float64)[keep]
        values = values[np.isfinite(values)]
        if len(values):
            out["signals"][name] = {"mean": float(values.mean()),
                                    "median": float(np.median(values)),
                                    "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                                    "n": int(len(values))}
    rate = np.asarray(columns["error_rate"], dtype=np.float64)[keep]
    good = np.isfinite(rate)
    out["requests"] = float(req[keep][good].sum())
    out["failures"] = float((rate[good] * req[keep][good]).sum())
    return out


def compare(baseline: Mapping, columns: Mapping[str, Sequence[float]], requests: Sequence[float],
            reset: Sequence[bool] | None = None,
            config: BaselineConfig = BaselineConfig()) -> list[Finding]:
    """Signals on which the candidate is worse than the baseline, significantly and by enough."""
    recent = summarise(columns, requests, reset)
    base = baseline.get("signals", {}) if baseline else {}
    findings = []
    err = _error_rate(baseline, recent, base, config)
    if err is not None:
        findings.append(err)
    for name in ("latency_ms", "nan_rate", "score_mean", "score_std"):
        b, r = base.get(name), recent["signals"].get(name)
        need = config.min_latency_samples if name == "latency_ms" else config.min_samples
        if not b or not r or b["n"] < config.min_baseline_samples or r["n"] < need:
            continue
        # The practical effect is judged on the candidate's median, so that a few slow seconds
        # (a neighbour's burst, a restart's imports) do not read as a slower version.
        effect = r["median"] - b["mean"]
        rel = effect / abs(b["mean"]) if b["mean"] else math.inf if effect else 0.0
        if name == "latency_ms":
            practical, direction = rel >= config.latency_rel, "up"
        elif name == "nan_rate":
            practical, direction = effect >= config.nan_abs, "up"
        elif name == "score_std":
            practical, direction = abs(rel) >= config.score_std_rel, "up" if effect > 0 else "down"
        else:
            spread = base.get("score_std", {}).get("mean", 0.0)
            practical = spread > 0 and abs(effect) >= config.score_mean_in_std * spread
            direction = "up" if effect > 0 else "down"
        if not practical:
            continue
        p = _welch_p(b, r)
        if p < config.alpha:
            findings.append(Finding(name, direction, b["mean"], r["median"], effect, rel, p,
                                    r["n"]))
    return findings


def _error_rate(baseline: Mapping, recent: dict, base: Mapping,
                config: BaselineConfig) -> Finding | None:
    b_req, b_fail = float(baseline.get("requests", 0) or 0), float(baseline.get("failures", 0) or 0)
    r_req, r_fail = recent["requests"], recent["failures"]
    n = recent["signals"].get("error_rate", {}).get("n", 0)
    if b_req <= 0 or r_req <= 0 or n < config.min_samples or \
            base.get("error_rate", {}).get("n", 0) < config.min_baseline_samples:
        return None
    b_rate, r_rate = b_fail / b_req, r_fail / r_req
    effect = r_rate - b_rate
    if effect < config.error_abs or effect < config.error_rel * b_rate:
        return None
    if b_fail + r_fail <= 0:
        return None
    _, p = proportions_ztest([round(r_fail), round(b_fail)], [round(r_req), round(b_req)],
                             alternative="larger")
    p = float(p) if np.isfinite(p) else 0.0
    if p >= config.alpha:
        return None
    rel = effect / b_rate if b_rate > 0 else math.inf
    return Finding("error_rate", "up", b_rate, r_rate, effect, rel, p, n)


def _welch_p(b: Mapping, r: Mapping) -> float:
    if b["std"] == 0 and r["std"] == 0:
        return 0.0 if b["mean"] != r["mean"] else 1.0
    _, p = stats.ttest_ind_from_stats(b["mean"], b["std"], b["n"], r["mean"], r["std"], r["n"],
                                      equal_var=False)
    return float(p) if np.isfinite(p) else 1.0
