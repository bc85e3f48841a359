"""Holdout baseline: does the synthetic set sit closer to the training data than fresh real data does?

Two tests on nearest-neighbour distances (normalised pixel space, flips allowed, as in
:mod:`medsynth.audit.memorization`):

- **DCR overfitting protection** (SDMetrics' ``DCROverfittingProtection``): for each synthetic
  sample, is its distance to the closest training sample smaller than to the closest holdout sample?
  Fresh data gives about 50%; the training set is subsampled to the holdout's size (several draws)
  so neither side wins by having more samples. The check fails when the share is above the
  configured maximum *and* a one-sided binomial test against 50% is significant (small sets are noisy).
- **Data-copying test** (Meehan et al. 2020): one-sided Mann–Whitney U of synthetic→train against
  holdout→train distances; a small p-value means the synthetic samples are closer to the training
  data than held-out real samples are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from medsynth.audit.memorization import apply_variant, ncc_vectors
from medsynth.audit.search import exact_topk


def nn_distances(queries: np.ndarray, reference: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """ℓ2 distance (normalised pixel space) of each query to its nearest reference, over flips."""
    blur, hp = float(cfg["blur_sigma"]), float(cfg["highpass_sigma"])
    ref = ncc_vectors(reference, blur, hp)
    best = np.full(len(queries), -np.inf, dtype=np.float32)
    for flip in cfg["flips"]:
        q = ncc_vectors(apply_variant(queries, f"{flip}@1"), blur, hp)
        s, _ = exact_topk(q, ref, 1, batch_size=int(cfg["batch_size"]))
        best = np.maximum(best, s[:, 0])
    return np.sqrt(np.maximum(0.0, 2.0 - 2.0 * best)).astype(np.float32)


@dataclass
class BaselineResult:
    """Evidence of the holdout baseline for one scope."""

    scope: str
    synthetic_to_train: np.ndarray
    holdout_to_train: np.ndarray
    dcr_share: float  # share of synthetic samples closer to train than to holdout
    dcr_pvalue: float  # one-sided binomial test of that share against 0.5
    dcr_protection: float  # SDMetrics' score: min(1, 2 (1 - share)); 1 is best
    mw_statistic: float
    mw_pvalue: float  # one-sided: synthetic→train distances stochastically smaller
    auc_closer: float  # U / (n_syn n_hold): P(a synthetic distance < a holdout distance)


def holdout_baseline(
    synthetic: np.ndarray,
    train: np.ndarray,
    holdout: np.ndarray,
    cfg: dict[str, Any],
    search_cfg: dict[str, Any],
    scope: str,
    seed: int = 0,
) -> BaselineResult:
    """Run both tests for one scope.

    Args:
        synthetic, train, holdout: (n, p, p) float32 arrays of the scope.
        cfg: the ``baseline`` section of the config.
        search_cfg: the ``memorization`` section (flips, blur, batch size).
        scope: "image" or "roi".
        seed: for the subsampling of the training set.
    """
    syn_train = nn_distances(synthetic, train, search_cfg)
    hold_train = nn_distances(holdout, train, search_cfg)

    # DCR: the training side is subsampled to the holdout's size, several times, and averaged.
    rng = np.random.default_rng(seed)
    syn_hold = nn_distances(synthetic, holdout, search_cfg)
    draws = int(cfg["dcr_draws"]) if len(train) > len(holdout) else 1
    closer = np.zeros(len(synthetic), dtype=np.float64)
    for _ in range(draws):
        sub = train if len(train) <= len(holdout) else train[rng.choice(len(train), len(holdout), replace=False)]
        d_train = nn_distances(synthetic, sub, search_cfg)
        # Ties (a sample equally far from both) count half, as neither side is closer.
        closer += (d_train < syn_hold) + 0.5 * (d_train == syn_hold)
    closer /= draws
    share = float(closer.mean())
    n_closer = int(round(closer.sum()))
    dcr_p = float(stats.binomtest(n_closer, len(synthetic), 0.5, alternative="greater").pvalue)

    mw = stats.mannwhitneyu(syn_train, hold_train, alternative="less")
    return BaselineResult(
        scope=scope,
        synthetic_to_train=syn_train,
        holdout_to_train=hold_train,
        dcr_share=share,
        dcr_pvalue=dcr_p,
        dcr_protection=float(min(1.0, 2.0 * (1.0 - share))),
        mw_statistic=float(mw.statistic),
        mw_pvalue=float(mw.pvalue),
        auc_closer=float(1.0 - mw.statistic / (len(syn_train) * len(hold_train))),
    )
