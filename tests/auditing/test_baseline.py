"""The holdout baseline's DCR subsample: by patient when patient IDs are known.

Both views of a patient's breasts are near-copies under the flips the search allows. A training
subsample of single images then holds more distinct patients than a holdout of whole patients, and
fresh data sits closer to it: the check would fail data that never saw the training set.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medsynth.auditing.baseline import holdout_baseline
from medsynth.config import load_config


def _patients(rng: np.random.Generator, n: int, views: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` patients, ``views`` images each: one smooth texture, the second view mirrored, small noise."""
    images, groups = [], []
    for i in range(n):
        base = ndimage.gaussian_filter(rng.standard_normal((24, 24)), 2.0)
        for v in range(views):
            img = (np.fliplr(base) if v % 2 else base) + 0.05 * rng.standard_normal((24, 24))
            images.append(img)
            groups.append(f"P{i}")
    x = np.stack(images).astype(np.float32)
    x = (x - x.min()) / (x.max() - x.min())
    return x, np.asarray(groups)


def test_dcr_of_fresh_patients_is_near_half_only_with_a_patient_subsample():
    cfg = load_config(None, kind="audit")
    rng = np.random.default_rng(0)
    train, train_groups = _patients(rng, 80, 2)
    holdout, holdout_groups = _patients(rng, 10, 2)
    fresh, _ = _patients(rng, 300, 1)  # never in the training set
    args = (fresh, train, holdout, cfg["baseline"], cfg["memorization"], "image")
    by_image = holdout_baseline(*args, seed=0)
    by_patient = holdout_baseline(*args, seed=0, train_groups=train_groups, holdout_groups=holdout_groups)
    # A per-image subsample of 20 training images spans ~18 patients against the holdout's 10:
    # fresh data looks "closer to train" ~18/28 of the time.
    assert by_image.dcr_share > 0.58
    assert abs(by_patient.dcr_share - 0.5) < 0.07
    assert by_patient.dcr_pvalue > cfg["baseline"]["dcr_alpha"]


def test_patient_subsample_keeps_whole_patients():
    from medsynth.auditing.baseline import _subsampler

    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(12), 2)
    pick = _subsampler(24, 6, groups, np.repeat(np.arange(3), 2), rng)
    for _ in range(5):
        idx = pick()
        chosen = groups[idx]
        assert len(np.unique(chosen)) == 3 and len(idx) == 6
        assert all((groups == g).sum() == (chosen == g).sum() for g in np.unique(chosen))
    assert _subsampler(4, 6, None, None, rng) is None
    assert _subsampler(6, 4, np.arange(6), np.arange(8), rng) is None


def test_copies_of_training_images_are_significant_by_permutation():
    cfg = load_config(None, kind="audit")
    rng = np.random.default_rng(2)
    train, train_groups = _patients(rng, 40, 2)
    holdout, holdout_groups = _patients(rng, 20, 2)
    copies = np.clip(train[::4] + 0.02 * rng.standard_normal(train[::4].shape).astype(np.float32), 0, 1)
    b = holdout_baseline(copies, train, holdout, cfg["baseline"], cfg["memorization"], "image", seed=0,
                         train_groups=train_groups, holdout_groups=holdout_groups)
    # Each copy's patient is in the training subsample about half the time (40 of 80 patients drawn).
    assert b.dcr_share > 0.7
    assert b.dcr_pvalue < 0.01
