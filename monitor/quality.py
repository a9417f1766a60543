"""Online quality from feedback, as streaming sufficient statistics.

A version's labelled events are summed into fixed-size records (`QualityStats`): score histograms
split by outcome, and sums for log-loss, calibration and list metrics. Records of any number of
events merge by addition, so memory depends on the number of windows, never on the traffic, and the
metrics and their uncertainty come from the sums alone:

- AUC from the two histograms (scores in one bin count as ties, half a win each), its variance by
  DeLong's method: every positive in a bin has the same "placement" among the negatives and vice
  versa, so the structural components are sums over bins, exact for the binned scores.
- log-loss (binary labels, scores in [0, 1]) and calibration (mean score against mean label).
- NDCG@k, recall@k and CTR@k per ranked list, as sums and sums of squares.

`compare` judges a version against a reference (the last known-good version): the difference of
each metric with a one-sided confidence bound; "worse" only when the bound is beyond a practical
margin, and nothing at all before both sides have enough labels. Pure: no I/O, no clock.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Iterable, Literal, Sequence

import numpy as np

# Scores are binned over [0, 1] (the ranker's probabilities); scores outside fall in the end bins
# (AUC still sees their order against the rest) and are left out of log-loss. 200 bins: ties of
# 0.005 in score, ~2 KiB per window.
BINS = 200
LIST_K = 10
_EPS = 1e-6

Verdict = Literal["no_reference", "insufficient", "ok", "worse"]


def bin_of(scores: np.ndarray) -> np.ndarray:
    return np.clip((np.asarray(scores, np.float64) * BINS).astype(np.int64), 0, BINS - 1)


@dataclass
class QualityStats:
    """Sums over labelled events of one version (any span of time). Mutable, merged by `add`."""

    pos: np.ndarray = field(default_factory=lambda: np.zeros(BINS))  # label > 0, by score bin
    neg: np.ndarray = field(default_factory=lambda: np.zeros(BINS))  # label == 0
    n: float = 0.0
    sum_score: float = 0.0
    sum_label: float = 0.0
    n_binary: float = 0.0          # events with a 0/1 label and a score in [0, 1]: log-loss
    sum_logloss: float = 0.0
    sumsq_logloss: float = 0.0
    lists: float = 0.0             # ranked lists of at least one event
    sum_ndcg: float = 0.0          # lists with at least one relevant event
    sumsq_ndcg: float = 0.0
    lists_relevant: float = 0.0
    sum_recall: float = 0.0
    sum_ctr: float = 0.0

    def add(self, other: "QualityStats") -> "QualityStats":
        self.pos += other.pos
        self.neg += other.neg
        for name in _SCALARS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def copy(self) -> "QualityStats":
        return QualityStats(self.pos.copy(), self.neg.copy(),
                            **{name: getattr(self, name) for name in _SCALARS})

    def to_dict(self) -> dict:
        """JSON-able, sparse in the histograms (most bins of a window are empty)."""
        out = {name: getattr(self, name) for name in _SCALARS}
        for name in ("pos", "neg"):
            arr = getattr(self, name)
            nz = np.flatnonzero(arr)
            out[name] = [[int(i), float(arr[i])] for i in nz]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "QualityStats":
        stats = cls(**{name: float(data.get(name, 0.0)) for name in _SCALARS})
        for name in ("pos", "neg"):
            arr = getattr(stats, name)
            for i, v in data.get(name, ()):
                arr[int(i)] = float(v)
        return stats

    @property
    def positives(self) -> float:
        return float(self.pos.sum())

    @property
    def negatives(self) -> float:
        return float(self.neg.sum())


_SCALARS = ("n", "sum_score", "sum_label", "n_binary", "sum_logloss", "sumsq_logloss", "lists",
            "sum_ndcg", "sumsq_ndcg", "lists_relevant", "sum_recall", "sum_ctr")


def merged(stats: Iterable[QualityStats]) -> QualityStats:
    out = QualityStats()
    for s in stats:
        out.add(s)
    return out


# ------------------------------------------------------------------ events → stats


def pointwise(scores: np.ndarray, labels: np.ndarray) -> QualityStats:
    """Sums for events given as parallel arrays (labels ≥ 0; > 0 counts as positive)."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, np.float64)
    b = bin_of(scores)
    positive = labels > 0
    stats = QualityStats(pos=np.bincount(b[positive], minlength=BINS).astype(np.float64),
                         neg=np.bincount(b[~positive], minlength=BINS).astype(np.float64),
                         n=float(scores.size), sum_score=float(scores.sum()),
                         sum_label=float(labels.sum()))
    binary = ((labels == 0) | (labels == 1)) & (scores >= 0) & (scores <= 1)
    if binary.any():
        p = np.clip(scores[binary], _EPS, 1 - _EPS)
        y = labels[binary]
        ll = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        stats.n_binary = float(binary.sum())
        stats.sum_logloss = float(ll.sum())
        stats.sumsq_logloss = float((ll * ll).sum())
    return stats


def ranked_list(scores: Sequence[float], labels: Sequence[float],
                ranks: Sequence[int | None] | None = None, k: int = LIST_K) -> QualityStats:
    """List sums for one ranked list: the order is the given ranks (1 = top) where every event has
    one, else descending score. Gains are graded (2^label - 1); NDCG against the ideal order of the
    same events, recall@k against the list's relevant events, CTR@k as the share of the first k
    with a positive outcome."""
    labels = np.asarray(labels, np.float64)
    if ranks is not None and all(r is not None for r in ranks):
        order = np.argsort(np.asarray(ranks, np.float64), kind="stable")
    else:
        order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    shown = labels[order][:k]
    stats = QualityStats(lists=1.0, sum_ctr=float(np.mean(shown > 0)) if shown.size else 0.0)
    relevant = float(np.count_nonzero(labels > 0))
    if relevant:
        discount = 1.0 / np.log2(np.arange(2, k + 2))
        dcg = float(((2.0 ** shown - 1) * discount[:shown.size]).sum())
        ideal = np.sort(labels)[::-1][:k]
        idcg = float(((2.0 ** ideal - 1) * discount[:ideal.size]).sum())
        ndcg = dcg / idcg
        stats.lists_relevant = 1.0
        stats.sum_ndcg, stats.sumsq_ndcg = ndcg, ndcg * ndcg
        stats.sum_recall = float(np.count_nonzero(shown > 0)) / relevant
    return stats


# ------------------------------------------------------------------ metrics


def auc(stats: QualityStats) -> tuple[float, float]:
    """AUC and its DeLong variance from the binned scores; (nan, nan) without both outcomes."""
    pos, neg = stats.pos, stats.neg
    m, n = pos.sum(), neg.sum()
    if m < 2 or n < 2:
        return math.nan, math.nan
    neg_below = np.cumsum(neg) - neg
    pos_above = pos.sum() - np.cumsum(pos)
    v10 = (neg_below + 0.5 * neg) / n    # placement of a positive in each bin among the negatives
    v01 = (pos_above + 0.5 * pos) / m    # placement of a negative among the positives
    a = float((pos * v10).sum() / m)
    s10 = float((pos * (v10 - a) ** 2).sum() / (m - 1))
    s01 = float((neg * (v01 - a) ** 2).sum() / (n - 1))
    return a, s10 / m + s01 / n


def _mean_and_variance(total: float, total_sq: float, k: float) -> tuple[float, float]:
    """A mean from its sum and sum of squares over k items, and the variance of that mean."""
    if k < 2:
        return math.nan, math.nan
    mean = total / k
    var = max(total_sq / k - mean * mean, 0.0) * k / (k - 1)
    return mean, var / k


def log_loss(stats: QualityStats) -> tuple[float, float]:
    """Mean log-loss and the variance of that mean; (nan, nan) without binary labels."""
    return _mean_and_variance(stats.sum_logloss, stats.sumsq_logloss, stats.n_binary)


def ndcg(stats: QualityStats) -> tuple[float, float]:
    """Mean NDCG@k over the lists with a relevant event, and the variance of that mean."""
    return _mean_and_variance(stats.sum_ndcg, stats.sumsq_ndcg, stats.lists_relevant)


@dataclass(frozen=True)
class QualitySummary:
    """What the pages and the API show for one version."""

    labelled: int
    positives: int
    auc: float
    auc_se: float
    log_loss: float
    mean_score: float
    mean_label: float
    lists: int
    ndcg_at_k: float
    recall_at_k: float
    ctr_at_k: float
    k: int = LIST_K


def summarise(stats: QualityStats) -> QualitySummary:
    a, va = auc(stats)
    ll, _ = log_loss(stats)
    nd, _ = ndcg(stats)
    n = stats.n
    return QualitySummary(
        labelled=int(n), positives=int(stats.positives), auc=a,
        auc_se=math.sqrt(va) if va == va else math.nan, log_loss=ll,
        mean_score=stats.sum_score / n if n else math.nan,
        mean_label=stats.sum_label / n if n else math.nan,
        lists=int(stats.lists), ndcg_at_k=nd,
        recall_at_k=stats.sum_recall / stats.lists_relevant if stats.lists_relevant else math.nan,
        ctr_at_k=stats.sum_ctr / stats.lists if stats.lists else math.nan)


# ------------------------------------------------------------------ judging


@dataclass(frozen=True)
class QualityConfig:
    """How much evidence it takes. Defaults: see docs/monitor.md, "Online quality"."""

    min_labels: int = 1000          # labelled events of each side before anything is said
    min_positives: int = 50         # ... of which this many positive and this many negative
    auc_margin: float = 0.02        # practical margin: smaller AUC drops are not acted on
    ndcg_margin: float = 0.02
    min_lists: int = 200            # lists with a relevant event before NDCG is compared
    confidence: float = 0.999       # one-sided: P(difference beyond the bound) ≤ 0.1 %
    # "ok" (may become known good) needs the drop shown to be within the margin: the one-sided
    # lower bound of the difference above -margin at this confidence (a non-inferiority test).
    # Between that and "worse" the version stays inconclusive: more labels will tell.
    promote_confidence: float = 0.95

    def __post_init__(self):
        for name in ("confidence", "promote_confidence"):
            if not 0.5 < getattr(self, name) < 1:
                raise ValueError(f"quality {name} must be in (0.5, 1), got {getattr(self, name)}")
        if self.min_labels < 10 or self.min_positives < 2:
            raise ValueError("quality min_labels must be ≥ 10 and min_positives ≥ 2")


@dataclass(frozen=True)
class MetricComparison:
    metric: str                 # "auc" (higher is better) or "ndcg@10"
    served: float
    reference: float
    difference: float           # served - reference
    bound: float                # one-sided upper confidence bound of the difference
    margin: float
    worse: bool                 # bound < -margin: worse beyond the margin, at `confidence`
    lower: float = math.nan     # one-sided lower bound at `promote_confidence`
    within: bool = False        # lower > -margin: shown to be no worse than the margin


@dataclass(frozen=True)
class QualityAssessment:
    """A served version's online quality against its reference; evidence in decisions."""

    model: str
    version: str
    reference_version: str | None
    verdict: Verdict
    reason: str
    served_labels: int = 0
    reference_labels: int = 0
    comparisons: tuple[MetricComparison, ...] = ()
    confidence: float = 0.999


def compare(model: str, version: str, served: QualityStats, reference_version: str | None,
            reference: QualityStats | None, config: QualityConfig = QualityConfig()
            ) -> QualityAssessment:
    """The served version's quality against the reference version's. Verdicts:
    no_reference (nothing to compare with: the rule stays out), insufficient (a reference exists
    but the served version has too few labels yet: never healthy by default), ok, worse."""
    base = dict(model=model, version=version, reference_version=reference_version,
                served_labels=int(served.n), confidence=config.confidence)
    if reference_version is None or reference is None or not _enough(reference, config):
        have = int(reference.n) if reference is not None else 0
        return QualityAssessment(**base, verdict="no_reference", reference_labels=have,
                                 reason=f"no reference with enough labels ({have} for version "
                                        f"{reference_version})")
    base["reference_labels"] = int(reference.n)
    if not _enough(served, config):
        return QualityAssessment(
            **base, verdict="insufficient",
            reason=f"{int(served.n)} labelled events ({int(served.positives)} positive) for "
                   f"version {version}; {config.min_labels} ({config.min_positives} of each "
                   f"outcome) needed to compare it with version {reference_version}")
    z = NormalDist().inv_cdf(config.confidence)
    z_ok = NormalDist().inv_cdf(config.promote_confidence)
    comparisons = []
    a_s, v_s = auc(served)
    a_r, v_r = auc(reference)
    comparisons.append(_metric("auc", a_s, v_s, a_r, v_r, z, z_ok, config.auc_margin))
    if served.lists_relevant >= config.min_lists and reference.lists_relevant >= config.min_lists:
        n_s, nv_s = ndcg(served)
        n_r, nv_r = ndcg(reference)
        comparisons.append(_metric(f"ndcg@{LIST_K}", n_s, nv_s, n_r, nv_r, z, z_ok,
                                   config.ndcg_margin))
    worse = [c for c in comparisons if c.worse]
    if worse:
        reason = "; ".join(
            f"online {c.metric} {c.served:.3f} against {c.reference:.3f} for version "
            f"{reference_version} (difference {c.difference:+.3f}, {config.confidence:.1%} "
            f"upper bound {c.bound:+.3f} < -{c.margin:g})" for c in worse)
        return QualityAssessment(**base, verdict="worse", comparisons=tuple(comparisons),
                                 reason=f"{reason}; {int(served.n)} and {int(reference.n)} "
                                        f"labelled events")
    best = comparisons[0]
    text = (f"online auc {best.served:.3f} against {best.reference:.3f} for version "
            f"{reference_version} (difference {best.difference:+.3f}")
    # Promotion is gated on the AUC, the metric every event informs; NDCG (per list, far noisier
    # per event) can show a version worse but is not required to show it within its margin.
    open_ = [c for c in comparisons if c.metric == "auc" and not c.within]
    if open_:
        c = open_[0]
        return QualityAssessment(
            **base, verdict="insufficient", comparisons=tuple(comparisons),
            reason=f"{text}): not yet shown to be within the {c.margin:g} margin on {c.metric} "
                   f"({config.promote_confidence:.0%} lower bound {c.lower:+.3f}); "
                   f"{int(served.n)} labelled events so far")
    return QualityAssessment(**base, verdict="ok", comparisons=tuple(comparisons),
                             reason=f"{text}, {config.promote_confidence:.0%} lower bound "
                                    f"{best.lower:+.3f} > -{best.margin:g}): within the margin")


def _enough(stats: QualityStats, config: QualityConfig) -> bool:
    return stats.n >= config.min_labels and stats.positives >= config.min_positives \
        and stats.negatives >= config.min_positives


def _metric(name: str, served: float, var_s: float, reference: float, var_r: float, z: float,
            z_ok: float, margin: float) -> MetricComparison:
    # The two versions served different requests (different hours or replicas): independent
    # samples, so the variances add.
    diff = served - reference
    sd = math.sqrt(max(var_s + var_r, 0.0))
    bound, lower = diff + z * sd, diff - z_ok * sd
    return MetricComparison(name, served, reference, diff, bound, margin,
                            worse=bool(bound < -margin), lower=lower, within=bool(lower > -margin))
