"""Leaked patients: synthetic samples closer to a training patient than fresh data comes, below the copy thresholds.

The copy thresholds (:mod:`medsynth.auditing.calibration`) only flag what is unmistakably a copy, and
the holdout baseline's DCR permutation test (:mod:`medsynth.auditing.baseline`) shuffles *patients*:
when k patients leak its p-value cannot go below about 2^-k, so it cannot fail on 1-4 leaked
patients (60 near-copies of one patient gave p = 0.40). Two checks per scope catch them, both
against the holdout, the data that shows how close fresh patients come to the training set:

- **per sample** (``leak_sample_<scope>``): each synthetic sample's p-value is the chance that a
  fresh sample comes at least as close (in NCC, flips/zooms/shifts allowed) to its nearest training
  sample: conformal inside the holdout's range, the Gumbel tail of
  :class:`~medsynth.auditing.calibration.TailFit` beyond it. The check fails when any p-value is
  below ``alpha / n_synthetic`` (Bonferroni: a clean set fails with probability at most ``alpha``,
  under the tail model). It catches one leaked image that is closer than fresh data plausibly comes.
- **per training patient** (``leak_patient_<scope>``): a patient reproduced several times, each
  copy only mildly closer than fresh data comes: the check fails when k >= 2 synthetic samples whose
  nearest training sample belongs to the same patient all have p-values at most x_k, where
  C(n, k) x_k^k = alpha / (k_max - 1) (a union bound over every k-subset of the synthetic set, so
  it holds whichever patients the samples match). In a set of 60 (alpha 0.01, k_max 4) two samples
  of one patient at p <= 1.4e-3 fail it, four at p <= 9e-3, where one sample alone needs
  p < 1.7e-4; a sample counts only when it is closer than every holdout sample. Only per-sample
  p-values are used, never how many samples a patient attracts: that count also grows for a patient
  everything resembles (a "hub"), and for every patient when the synthetic set is, as a whole, a
  little more alike the training set than the holdout is (the demo's lesion-free backgrounds
  against a holdout with lesions: an exact exchangeability count test failed that clean set at
  p = 2e-5).

Both assume what the audit's holdout already must be: other patients from the same source, and
synthetic samples that are not several copies of one fresh background (their p-values are taken
as independent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import special

from medsynth.auditing.calibration import TailFit, exceedance_pvalues


@dataclass
class SampleLeaks:
    """Per-sample closeness of one scope."""

    pvalues: np.ndarray  # per synthetic sample
    level: float  # alpha / n_synthetic
    flagged: np.ndarray  # indices with p < level, most significant first


def per_sample_leaks(fit: TailFit, synthetic_ncc: np.ndarray, alpha: float) -> SampleLeaks:
    """P-value of each synthetic sample's nearest-training NCC against fresh data, Bonferroni over samples."""
    p = exceedance_pvalues(fit, synthetic_ncc)
    level = float(alpha) / max(1, len(p))
    hit = np.nonzero(p < level)[0]
    return SampleLeaks(p, level, hit[np.argsort(p[hit], kind="stable")])


def repeat_levels(n_synthetic: int, alpha: float, k_max: int) -> dict[int, float]:
    """Per-sample p-value level x_k for "k samples of one patient all at p <= x_k", k = 2..k_max.

    With independent valid p-values, the chance that *any* k of the n synthetic samples all have
    p <= x is at most C(n, k) x^k (union bound over k-subsets), whichever patients they match; x_k
    makes that alpha / (k_max - 1), so the whole rule fails a clean set with probability <= alpha.
    """
    out = {}
    share = float(alpha) / max(1, k_max - 1)
    for k in range(2, min(k_max, n_synthetic) + 1):
        log_comb = special.gammaln(n_synthetic + 1) - special.gammaln(k + 1) - special.gammaln(n_synthetic - k + 1)
        out[k] = float(np.exp((np.log(share) - log_comb) / k))
    return out


@dataclass
class PatientLeaks:
    """Training patients matched by several synthetic samples, each closer than fresh data plausibly comes."""

    levels: dict[int, float]  # k -> per-sample level x_k
    patients: list[str]  # the training patient of each synthetic sample's nearest training sample
    pvalues: np.ndarray  # per synthetic sample (as per_sample_leaks)
    flagged: dict[str, list[int]] = field(default_factory=dict)  # patient -> its close synthetic samples
    strongest: dict[str, Any] = field(default_factory=dict)  # patient with the most close samples, for the report


def per_patient_leaks(pvalues: np.ndarray, nearest_patient: Sequence[Any], alpha: float,
                      k_max: int = 4, n_holdout: int | None = None) -> PatientLeaks:
    """Fail a training patient when k >= 2 synthetic samples whose nearest training sample is theirs
    all have p-values at most x_k (:func:`repeat_levels`): a patient reproduced several times, each
    copy only mildly closer than fresh data comes.

    Only each sample's own p-value against the holdout is used (not how often a patient is the
    nearest one), so a training patient that many images resemble (a "hub") raises no alarm, and
    neither does a synthetic set that is, as a whole, a little more alike the training set than the
    holdout is (fresh lesion-free backgrounds against a holdout with lesions, as in the demo).
    """
    p = np.asarray(pvalues, dtype=np.float64)
    pats = [str(x) for x in nearest_patient]
    levels = repeat_levels(len(p), alpha, k_max)
    if n_holdout is not None:
        # A sample counts only beyond every holdout sample, where its p-value is the (upper-bound)
        # tail's: the conformal values inside the holdout's range shrink a little for a whole set
        # that is slightly more alike the training data, and k of them would add up.
        levels = {k: min(x, 0.999 / (n_holdout + 1.0)) for k, x in levels.items()}
    by_patient: dict[str, list[int]] = {}
    for i, pat in enumerate(pats):
        by_patient.setdefault(pat, []).append(i)
    flagged: dict[str, list[int]] = {}
    strongest: dict[str, Any] = {}
    for pat, idx in by_patient.items():
        idx = sorted(idx, key=lambda i: p[i])
        hits = [k for k, x in levels.items() if len(idx) >= k and p[idx[k - 1]] <= x]
        if hits:
            flagged[pat] = idx[: max(hits)]
        n_close = int(sum(p[i] <= max(levels.values(), default=0.0) for i in idx))
        if n_close > strongest.get("n_close", -1):
            strongest = {"train_patient": pat, "n_close": n_close, "n_nearest": len(idx),
                         "pvalues": [float(p[i]) for i in idx[:8]]}
    return PatientLeaks(levels, pats, p, flagged, strongest)
