"""Copy thresholds calibrated on the user's own data: how close does *fresh* data come to the training set?

The holdout (other patients, never trained on) is searched against the training set exactly as the
synthetic set is (:func:`medsynth.auditing.memorization.nearest_training`: same flips, zooms,
shifts and spaces). Its nearest-neighbour scores are what "no copy" looks like on this data, so a
threshold set from them adapts to how alike the user's images are (real mammograms of one site are
far more alike than phantoms) instead of trusting numbers fitted elsewhere.

**The rule.** A copy threshold must keep the chance that a set of fresh images gets *any* sample
flagged (the stated ``false_alarm_rate``) small, over every synthetic sample, space and scope
(Bonferroni): the per-sample level is ``false_alarm_rate / (samples x spaces x scopes)``, far in the
tail (1.7e-5 for 60 images, 4 spaces, 2 scopes, 1 %). A few dozen holdout samples cannot show
such a quantile directly, so the upper tail is modelled:

- each score is put on an unbounded scale where "more similar" is larger: Fisher's z = atanh(r)
  for NCC, SSIM and cosine; -log(ratio) for Carlini's ratio;
- a nearest-neighbour score is the *maximum* similarity over many training samples, so its
  distribution is in the max-domain of attraction of the Gumbel law: a Gumbel is fitted to the
  holdout's scores (maximum likelihood, scipy) and its quantile at the per-sample level is the
  calibrated value, never below the most similar holdout sample itself;
- a few dozen samples pin the fit down loosely, so the quantile is the ``confidence`` (90 %) upper
  bound over bootstrap refits: with that confidence the stated rate holds.

The fixed numbers of ``configs/audit.yaml`` stay as **floors**: a calibrated threshold can only make
flagging harder (fewer false alarms), never easier than the fixed number. A **ceiling** keeps a
holdout that sits unusually close to the training set (the same person under two IDs, or a site
whose images are near-identical) from switching copy detection off: a threshold is never looser
than the ceiling, and the report says so. Below ``min_holdout`` holdout samples of a scope nothing
is calibrated: the fixed numbers are used, and the report says that too.

The same fit gives each synthetic sample a p-value against fresh data (:func:`exceedance_pvalues`),
which the per-sample leak check of :mod:`medsynth.auditing.leaks` uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

#: Spaces a threshold can be calibrated for; True when a larger score means "more similar".
HIGHER_IS_CLOSER = {"ncc": True, "ssim": True, "embedding_cosine": True, "carlini_ratio": False}


def to_tail_scale(key: str, values: np.ndarray) -> np.ndarray:
    """Scores on the scale the tail is modelled on: unbounded, larger = more similar."""
    v = np.asarray(values, dtype=np.float64)
    if HIGHER_IS_CLOSER[key]:
        return np.arctanh(np.clip(v, -0.999999, 0.999999))
    return -np.log(np.maximum(v, 1e-6))


def from_tail_scale(key: str, x: np.ndarray | float) -> np.ndarray | float:
    """Inverse of :func:`to_tail_scale`."""
    return np.tanh(x) if HIGHER_IS_CLOSER[key] else np.exp(-np.asarray(x, dtype=np.float64))


@dataclass
class TailFit:
    """A Gumbel fitted to the holdout's nearest-neighbour scores of one space (tail scale).

    A few dozen samples pin a Gumbel's tail down only loosely, and a tail that is too light would
    raise false alarms, so quantiles and p-values are taken at the ``confidence`` upper bound over
    bootstrap refits (resampled holdouts): with that confidence, fresh data crosses a threshold at
    most as often as stated.

    Attributes:
        key: the space ("ncc", ...).
        holdout: the holdout's scores on the tail scale, sorted.
        loc, scale: the Gumbel's parameters (maximum likelihood on the holdout).
        boot_loc, boot_scale: the parameters refitted on bootstrap resamples of the holdout.
        confidence: the upper bound taken over the refits.
        ks_pvalue: Kolmogorov-Smirnov test of the fit on the same data (a rough check: small means
            the Gumbel describes the holdout poorly, so tail p-values are less certain).
    """

    key: str
    holdout: np.ndarray
    loc: float
    scale: float
    boot_loc: np.ndarray
    boot_scale: np.ndarray
    confidence: float
    ks_pvalue: float

    @property
    def n(self) -> int:
        return int(len(self.holdout))

    def quantile(self, level: float) -> float:
        """The score (tail scale) that fresh data exceeds with probability at most ``level`` (upper
        confidence bound over the refits), and never below the most similar holdout sample."""
        q = stats.gumbel_r.isf(level, self.boot_loc, self.boot_scale)
        return max(float(np.quantile(q, self.confidence)), float(self.holdout[-1]))

    def sf(self, x: np.ndarray) -> np.ndarray:
        """Upper confidence bound of P(fresh score > x) over the refits, for scores ``x`` (tail scale)."""
        x = np.asarray(x, dtype=np.float64)
        p = stats.gumbel_r.sf(x[..., None], self.boot_loc, self.boot_scale)
        return np.quantile(p, self.confidence, axis=-1)

    def threshold(self, level: float) -> float:
        """:meth:`quantile` on the score's own scale (NCC, ratio, ...)."""
        return float(from_tail_scale(self.key, self.quantile(level)))

    def to_dict(self) -> dict[str, Any]:
        return {"n_holdout": self.n, "gumbel_loc": self.loc, "gumbel_scale": self.scale,
                "confidence": self.confidence, "ks_pvalue": self.ks_pvalue,
                "holdout_most_similar": float(from_tail_scale(self.key, self.holdout[-1]))}


def fit_tail(key: str, holdout_scores: np.ndarray, n_boot: int = 200, confidence: float = 0.9,
             seed: int = 0) -> TailFit | None:
    """Fit the tail model to the holdout's scores of one space; None when fewer than 3 are finite
    or they do not vary.

    Args:
        key: the space.
        holdout_scores: the holdout's nearest-training scores in that space.
        n_boot: bootstrap refits for the upper confidence bounds.
        confidence: the bound taken (0.5 = the median refit; higher = fewer false alarms).
        seed: of the resampling.
    """
    x = to_tail_scale(key, np.asarray(holdout_scores, dtype=np.float64))
    x = np.sort(x[np.isfinite(x)])
    if len(x) < 3 or float(np.ptp(x)) <= 0:
        return None
    loc, scale = stats.gumbel_r.fit(x)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(int(n_boot)):
        xb = x[rng.integers(0, len(x), len(x))]
        boot.append(stats.gumbel_r.fit(xb) if np.ptp(xb) > 0 else (loc, scale))
    b = np.asarray(boot, dtype=np.float64).reshape(-1, 2)
    ks = float(stats.kstest(x, "gumbel_r", args=(loc, scale)).pvalue)
    return TailFit(key, x, float(loc), float(scale), b[:, 0], np.maximum(b[:, 1], 1e-12), float(confidence), ks)


def exceedance_pvalues(fit: TailFit, scores: np.ndarray) -> np.ndarray:
    """For each score, the probability that a fresh sample comes at least this close to the training set.

    Inside the range the holdout covers, the conformal p-value (1 + #holdout at least as close) /
    (n + 1), which is valid whatever the distribution when the sample is exchangeable with the
    holdout (Bates et al. 2023, conformal outlier detection); beyond the most similar holdout
    sample, where the conformal value stops at 1 / (n + 1), the fitted tail (capped at that value).
    """
    x = to_tail_scale(fit.key, np.asarray(scores, dtype=np.float64))
    x = np.where(np.isfinite(x), x, -np.inf)
    n = fit.n
    n_at_least = n - np.searchsorted(fit.holdout, x, side="left")
    conformal = (1.0 + n_at_least) / (n + 1.0)
    tail = np.minimum(fit.sf(x), 1.0 / (n + 1.0))
    return np.where(x > fit.holdout[-1], tail, conformal)


@dataclass
class Threshold:
    """One copy threshold and the rule that set it.

    ``rule`` is "calibrated" (the holdout's tail quantile), "floor" (the calibrated value was looser
    than the fixed number, which is kept), "ceiling" (the calibrated value was past the ceiling),
    "fixed" (not calibrated: the reason is in ``note``) or "report only" (no threshold).
    """

    key: str
    value: float | None
    rule: str
    fixed: float | None
    calibrated: float | None = None
    ceiling: float | None = None
    level: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "rule": self.rule, "fixed": self.fixed, "calibrated": self.calibrated,
                "ceiling": self.ceiling, "per_sample_level": self.level, "note": self.note}


def _looser(key: str, a: float, b: float) -> bool:
    """True when threshold ``a`` flags fewer samples than ``b``."""
    return a > b if HIGHER_IS_CLOSER[key] else a < b


def calibrate_thresholds(
    holdout_scores: dict[str, np.ndarray | None],
    fixed: dict[str, float | None],
    cfg: dict[str, Any],
    n_tests: int,
) -> tuple[dict[str, Threshold], dict[str, TailFit]]:
    """Every space's threshold for one scope: calibrated, floor, ceiling, fixed or report only.

    Args:
        holdout_scores: per space, the holdout's nearest-training scores (None: space not computed).
        fixed: the ``memorization.thresholds`` section (the floors; None = no fixed threshold).
        cfg: the ``memorization.calibration`` section.
        n_tests: samples x spaces x scopes the false-alarm rate is shared by.

    Returns:
        (thresholds by space, tail fits by space).
    """
    out: dict[str, Threshold] = {}
    fits: dict[str, TailFit] = {}
    level = float(cfg["false_alarm_rate"]) / max(1, int(n_tests))
    min_n = int(cfg["min_holdout"])
    for key in HIGHER_IS_CLOSER:
        fx = None if fixed.get(key) is None else float(fixed[key])
        scores = holdout_scores.get(key)
        ceiling = cfg["ceilings"].get(key)
        if scores is None:
            continue
        if not cfg["enabled"]:
            out[key] = Threshold(key, fx, "fixed" if fx is not None else "report only", fx,
                                 note="calibration switched off")
            continue
        fit = (fit_tail(key, scores, int(cfg["bootstrap"]), float(cfg["confidence"]))
               if len(scores) >= min_n else None)
        if fit is None:
            why = (f"holdout has {len(scores)} sample(s) of this scope, fewer than min_holdout={min_n}"
                   if len(scores) < min_n else "holdout scores do not vary")
            out[key] = Threshold(key, fx, "fixed" if fx is not None else "report only", fx, note=why)
            continue
        fits[key] = fit
        cal = fit.threshold(level)
        ceil = None if ceiling is None else float(ceiling)
        if fx is not None and not _looser(key, cal, fx):
            out[key] = Threshold(key, fx, "floor", fx, cal, ceil, level)
        elif ceil is not None and _looser(key, cal, ceil):
            seen = float(from_tail_scale(key, fit.holdout[-1]))
            note = (f"a holdout sample comes closer to the training set ({seen:.3f}) than the ceiling: check that "
                    "no holdout patient is also a training patient" if not _looser(key, ceil, seen) else
                    f"the tail fitted to the holdout (most similar {seen:.3f}) puts the calibrated value past the "
                    "ceiling")
            out[key] = Threshold(key, ceil, "ceiling", fx, cal, ceil, level, note=note)
        else:
            out[key] = Threshold(key, cal, "calibrated", fx, cal, ceil, level)
    return out, fits
