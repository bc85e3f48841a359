"""The statistics of the utility test: Dice, FROC detection sensitivity and a two-level paired bootstrap.

**Dice** is MONAI's ``compute_dice`` with ``ignore_empty=False``: an empty prediction on an empty truth
scores 1, a prediction on an empty truth 0.

**Detection** (FROC): candidates are the lesions of the thresholded probability map (the one lesion
rule, :func:`medsynth.models.patches.lesion_components`), each scored by its highest probability. A
candidate that touches a true lesion detects it; the others are false positives. Sensitivity at ``r``
false positives per image is the highest sensitivity over score thresholds whose false-positive rate is
at most ``r`` (as LUNA16 and the CAD literature read an FROC curve).

**Uncertainty.** Test images are not independent (a patient has two breasts), and a retrained network
differs from seed to seed, so both are resampled: each bootstrap replicate draws *patients* with
replacement (a weight per patient) and draws training seeds with replacement; an arm's figure is the
mean over the drawn seeds of the figure on the drawn patients. The two arms of a difference share the
patient draw (paired: the same test images) and the seed draw (paired too: seed ``s`` of every arm
starts from the same initial weights and, in the real arms, trains on the same draw of regime
patients, so a seed that trains badly does so in both arms -- measured on the phantom benchmark, one
seed's lesion Dice was the lowest of the three in all five arms). The interval of the difference thus
includes the test-set variance and the seed-to-seed variance *of the difference* (the seeds' spread
corrected for their small number, see ``_seed_mean``); arms with different numbers of seeds draw them
independently. The 95 % interval is the percentile
interval; the two-sided p-value is twice the smaller tail of the replicates
beyond 0, ``(1 + count) / (1 + B)`` each, i.e. the level at which that interval would just touch 0.

``scipy.stats.bootstrap`` resamples one level (observations, optionally paired); this needs two
(patients, then seeds per arm) and ratio statistics whose numerator and denominator are resampled
together (sensitivity = detected lesions / lesions of the drawn patients), so it is written here with
NumPy. With one seed and one unit per patient it reduces to scipy's paired percentile bootstrap, which
the tests check it against.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def dice_per_case(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Dice of binary (N, H, W) predictions with MONAI's ``compute_dice``; 1 where both are empty.

    MONAI computes in float32; the values are returned as float64.
    """
    from monai.metrics import compute_dice

    y_pred = torch.from_numpy(np.ascontiguousarray(pred, dtype=bool))[:, None]
    y = torch.from_numpy(np.ascontiguousarray(truth, dtype=bool))[:, None]
    dice = compute_dice(y_pred, y, include_background=True, ignore_empty=False)
    return dice[:, 0].double().cpu().numpy()


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> list[float]:
    """Percentile 95% bootstrap confidence interval of the mean (``scipy.stats.bootstrap``).

    With fewer than two values there is nothing to resample: the interval is the value itself.
    """
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return [float(values.mean())] * 2
    ci = bootstrap(
        (values,), np.mean, n_resamples=n_boot, confidence_level=0.95, method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return [float(ci.low), float(ci.high)]


class PatientBootstrap:
    """One resampling plan for every arm of one task: patient weights shared; seed draws per arm (for an
    arm's own interval) and per pair of arms (for a difference: :func:`summarize_delta`).

    Args:
        n_patients: number of test patients.
        n_boot: replicates.
        seed: seed of the plan (the patient draw, and, mixed with an arm's name, its seed draws).
    """

    def __init__(self, n_patients: int, n_boot: int, seed: int = 0) -> None:
        self.n_patients, self.n_boot, self.seed = int(n_patients), int(n_boot), int(seed)
        rng = np.random.default_rng(seed)
        p = np.full(self.n_patients, 1.0 / self.n_patients)
        self.weights = rng.multinomial(self.n_patients, p, size=self.n_boot).astype(np.float64)  # (B, P)

    def seed_draws(self, arm: str, n_seeds: int) -> np.ndarray:
        """(B, n_seeds) indices of the seeds arm ``arm`` draws in each replicate (fixed per arm name)."""
        rng = np.random.default_rng([self.seed, zlib.crc32(arm.encode()), n_seeds])
        return rng.integers(0, n_seeds, size=(self.n_boot, n_seeds))


def _patient_sums(values: np.ndarray, patient: np.ndarray, n_patients: int) -> np.ndarray:
    """Sum the last-but-trailing unit axis of ``values`` (seeds, units, ...) per patient -> (seeds, P, ...)."""
    out = np.zeros((values.shape[0], n_patients, *values.shape[2:]), dtype=np.float64)
    np.add.at(out, (slice(None), patient), values)
    return out


def _seed_mean(per_seed: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Mean over each replicate's drawn seeds: per_seed (B, S), draws (B, k) -> (B,).

    Resampling S seeds with replacement spreads their mean by only (S - 1) / S of the seed variance
    over S (a third too little at S = 3), so the seeds' deviations from their mean are first scaled by
    sqrt(S / (S - 1)), which makes that spread unbiased (the usual small-sample correction).
    """
    s = per_seed.shape[1]
    if s > 1:
        with warnings.catch_warnings():  # replicates that drew no unit of a group are all-NaN rows
            warnings.simplefilter("ignore", RuntimeWarning)
            centre = np.nanmean(per_seed, axis=1, keepdims=True)
        per_seed = centre + (per_seed - centre) * np.sqrt(s / (s - 1))
    return np.take_along_axis(per_seed, draws, axis=1).mean(axis=1)


@dataclass
class MeanMetric:
    """A figure that is the mean of per-unit values (Dice per crop, per image, per lesion).

    Attributes:
        values: (seeds, units).
        patient: (units,) patient index of each unit.
    """

    values: np.ndarray
    patient: np.ndarray

    def per_seed(self) -> np.ndarray:
        return self.values.mean(axis=1) if self.values.shape[1] else np.full(self.values.shape[0], np.nan)

    def replicates(self, plan: PatientBootstrap, draws: np.ndarray) -> np.ndarray:
        sums = _patient_sums(self.values, self.patient, plan.n_patients)  # (S, P)
        counts = np.bincount(self.patient, minlength=plan.n_patients).astype(np.float64)
        den = plan.weights @ counts  # (B,)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_seed = (plan.weights @ sums.T) / den[:, None]  # (B, S)
        return _seed_mean(per_seed, draws)


@dataclass
class FrocMetric:
    """Sensitivity at ``rate`` false positives per image.

    Attributes:
        fp_counts: (seeds, images, T) false-positive candidates scoring >= each threshold.
        image_patient: (images,) patient index of each image.
        lesion_scores: (seeds, lesions) best score of a candidate touching each lesion (0: none).
        lesion_patient: (lesions,) patient index of each lesion.
        thresholds: (T,) increasing score thresholds (the last one above every score).
        rate: false positives per image.
    """

    fp_counts: np.ndarray
    image_patient: np.ndarray
    lesion_scores: np.ndarray
    lesion_patient: np.ndarray
    thresholds: np.ndarray
    rate: float

    def _detected(self) -> np.ndarray:
        return (self.lesion_scores[:, :, None] >= self.thresholds[None, None, :]).astype(np.float64)  # (S, L, T)

    def _sensitivity(self, fp: np.ndarray, n_images: np.ndarray, det: np.ndarray, n_lesions: np.ndarray) -> np.ndarray:
        """fp, det: (..., T); n_images, n_lesions broadcastable to (..., 1) -> (...)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            fp_rate = fp / n_images
            sens = det / n_lesions
        ok = fp_rate <= self.rate + 1e-12
        best = np.where(ok, sens, -np.inf).max(axis=-1)
        return np.where(np.isfinite(best), best, np.nan)

    def per_seed(self) -> np.ndarray:
        n_img = np.float64(self.fp_counts.shape[1])
        n_les = np.float64(self.lesion_scores.shape[1])
        fp = self.fp_counts.sum(axis=1)  # (S, T)
        det = self._detected().sum(axis=1)  # (S, T)
        return self._sensitivity(fp, n_img, det, n_les)

    def replicates(self, plan: PatientBootstrap, draws: np.ndarray) -> np.ndarray:
        w = plan.weights
        fp_p = _patient_sums(self.fp_counts.astype(np.float64), self.image_patient, plan.n_patients)  # (S, P, T)
        det_p = _patient_sums(self._detected(), self.lesion_patient, plan.n_patients)  # (S, P, T)
        n_img = w @ np.bincount(self.image_patient, minlength=plan.n_patients).astype(np.float64)  # (B,)
        n_les = w @ np.bincount(self.lesion_patient, minlength=plan.n_patients).astype(np.float64)
        fp = np.einsum("bp,spt->bst", w, fp_p)
        det = np.einsum("bp,spt->bst", w, det_p)
        per_seed = self._sensitivity(fp, n_img[:, None, None], det, n_les[:, None, None])  # (B, S)
        return _seed_mean(per_seed, draws)


Metric = Any  # MeanMetric | FrocMetric


def _ci(reps: np.ndarray, low: float, high: float) -> list[float | None]:
    """Percentile 95 % interval of the replicates, within the figure's range [low, high]: the seeds'
    small-sample correction (``_seed_mean``) can carry a replicate past what the figure can take
    (a Dice above 1, a difference of sensitivities below -1), which no interval should show."""
    reps = reps[np.isfinite(reps)]
    if len(reps) == 0:
        return [None, None]
    ci = np.clip(np.percentile(reps, [2.5, 97.5]), low, high)
    return [float(ci[0]), float(ci[1])]


def summarize_arm(metric: Metric, plan: PatientBootstrap, arm: str) -> dict[str, Any]:
    """An arm's figure: ``value`` (mean over seeds), ``ci95``, ``seed_values``."""
    per_seed = metric.per_seed()
    draws = plan.seed_draws(arm, len(per_seed))
    reps = metric.replicates(plan, draws)
    value = float(np.nanmean(per_seed)) if np.isfinite(per_seed).any() else None
    return {"value": value, "ci95": _ci(reps, 0.0, 1.0), "seed_values": [None if not np.isfinite(v) else float(v)
                                                              for v in per_seed]}


def summarize_delta(metric_a: Metric, arm_a: str, metric_b: Metric, arm_b: str,
                    plan: PatientBootstrap) -> dict[str, Any]:
    """Arm ``a`` minus arm ``b`` on the same test units: ``value``, ``ci95``, ``p`` (two-sided), ``n_boot``.

    Patients are paired; so are seeds when both arms have the same number (seed ``s`` of ``a`` with seed
    ``s`` of ``b``)."""
    pa, pb = metric_a.per_seed(), metric_b.per_seed()
    if len(pa) == len(pb):  # paired seeds: both arms draw the same ones (see the module docstring)
        draws_a = draws_b = plan.seed_draws(f"{arm_a} - {arm_b}", len(pa))
    else:
        draws_a, draws_b = plan.seed_draws(arm_a, len(pa)), plan.seed_draws(arm_b, len(pb))
    ra = metric_a.replicates(plan, draws_a)
    rb = metric_b.replicates(plan, draws_b)
    diff = ra - rb
    diff = diff[np.isfinite(diff)]
    if not (np.isfinite(pa).any() and np.isfinite(pb).any()) or len(diff) == 0:
        return {"value": None, "ci95": [None, None], "p": None, "n_boot": 0}
    n = len(diff)
    p = min(1.0, 2.0 * min((1 + np.sum(diff <= 0)) / (1 + n), (1 + np.sum(diff >= 0)) / (1 + n)))
    return {"value": float(np.nanmean(pa) - np.nanmean(pb)), "ci95": _ci(diff, -1.0, 1.0), "p": float(p),
            "n_boot": int(n)}


def threshold_grid(candidate_threshold: float, n: int = 64) -> np.ndarray:
    """FROC score thresholds: ``n`` steps from the candidate threshold to 1, then one above every score."""
    return np.concatenate([np.linspace(candidate_threshold, 1.0, n), [np.inf]])


__all__ = [
    "FrocMetric", "MeanMetric", "PatientBootstrap", "bootstrap_ci", "dice_per_case", "summarize_arm",
    "summarize_delta", "threshold_grid",
]
