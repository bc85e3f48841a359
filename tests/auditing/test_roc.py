"""ROC, AUC (torchmetrics) and TPR at low FPR, checked against brute-force definitions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from medsynth.auditing.mia import evaluate_attack, roc_auc, roc_curve, tpr_at_fpr

# binary_auroc works in float32: within ~1e-7 of the exact value. One misranked pair moves the AUC
# by 1 / (n_members x n_non-members), at least 1e-5 here, so this tolerance still catches it.
AUC_TOL = 1e-6


def brute_force_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(member score > non-member score) + 0.5 P(tie), over all pairs."""
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def brute_force_roc(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) of "member when score >= t" for t = +inf and every distinct score, highest first."""
    ts = np.r_[np.inf, np.unique(np.r_[pos, neg])[::-1]]
    return np.array([(neg >= t).mean() for t in ts]), np.array([(pos >= t).mean() for t in ts])


def _labels(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.r_[pos, neg], np.r_[np.ones(len(pos)), np.zeros(len(neg))]


def _score_sets():
    """Scores like the attacks' (negated losses, averaged z-scores), rounded ones with ties, and
    scores far outside [0, 1] (where torchmetrics would apply a sigmoid that rounds them to ties)."""
    rng = np.random.default_rng(11)
    yield -rng.uniform(0.01, 0.2, 40), -rng.uniform(0.02, 0.25, 60)
    yield rng.normal(0.3, 1, 200), rng.normal(0, 1, 200)
    yield np.round(rng.normal(0.5, 1, 37), 1), np.round(rng.normal(0, 1, 53), 1)
    yield rng.normal(1000, 5, 30), rng.normal(998, 5, 30)
    yield np.array([3.0, 4.0, 5.0]), np.array([0.0, 1.0, 2.0])


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_pairwise_probability(seed):
    rng = np.random.default_rng(seed)
    # Rounded scores make ties, which the ROC must handle as one diagonal step.
    pos = np.round(rng.normal(0.5, 1, 37), 1)
    neg = np.round(rng.normal(0, 1, 53), 1)
    auc = roc_auc(*_labels(pos, neg))
    assert auc == pytest.approx(brute_force_auc(pos, neg), abs=AUC_TOL)
    # The same number is the Mann-Whitney U statistic over n1 n2 (scipy as an independent reference).
    u = stats.mannwhitneyu(pos, neg).statistic
    assert auc == pytest.approx(u / (37 * 53), abs=AUC_TOL)


@pytest.mark.parametrize("pos, neg", list(_score_sets()))
def test_roc_points_and_auc_equal_brute_force(pos, neg):
    fpr, tpr = roc_curve(*_labels(pos, neg))
    ref_fpr, ref_tpr = brute_force_roc(pos, neg)
    np.testing.assert_array_equal(fpr, ref_fpr)  # exact: the points are counts over n
    np.testing.assert_array_equal(tpr, ref_tpr)
    assert roc_auc(*_labels(pos, neg)) == pytest.approx(brute_force_auc(pos, neg), abs=AUC_TOL)


def test_tpr_at_fpr_brute_force():
    rng = np.random.default_rng(7)
    pos, neg = rng.normal(1, 1, 300), rng.normal(0, 1, 400)
    fpr, tpr = roc_curve(*_labels(pos, neg))
    # Brute force: over every threshold, the best TPR with FPR <= 1%.
    best = 0.0
    for t in np.r_[np.inf, np.unique(np.r_[pos, neg])]:
        f = (neg >= t).mean()
        if f <= 0.01:
            best = max(best, (pos >= t).mean())
    assert best > 0
    assert tpr_at_fpr(fpr, tpr, 0.01) == pytest.approx(best)


def test_perfect_and_inverted_attacks():
    r = evaluate_attack("x", np.array([3.0, 4.0, 5.0]), np.array([0.0, 1.0, 2.0]), 0.01)
    # 3 non-members: TPR at 1 % FPR is not defined (n/a); TPR at 0 % FPR is.
    assert r.auc == 1.0 and r.tpr_at_fpr is None and r.tpr_at_zero_fpr == 1.0 and r.pvalue < 0.06
    assert r.auc_ci == (1.0, 1.0)
    r = evaluate_attack("x", np.array([0.0, 1.0]), np.array([2.0, 3.0]), 0.01)
    assert r.auc == 0.0 and r.tpr_at_zero_fpr == 0.0
    r = evaluate_attack("x", np.arange(100.0, 110.0), np.arange(100.0), 0.01)
    assert r.tpr_at_fpr == 1.0  # 100 non-members: defined


def test_roc_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        roc_curve(np.array([1.0, 2.0]), np.array([1, 1]))
    with pytest.raises(ValueError, match="same length"):
        roc_auc(np.array([1.0, 2.0]), np.array([1, 0, 1]))
