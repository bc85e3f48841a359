"""Holdout baseline: does the synthetic set sit closer to the training data than fresh real data does?

Two tests on nearest-neighbour distances (normalised pixel space, flips allowed, as in
:mod:`medsynth.auditing.memorization`):

- **DCR overfitting protection** (SDMetrics' ``DCROverfittingProtection``): for each synthetic
  sample, is its distance to the closest training sample smaller than to the closest holdout sample?
  Fresh data gives about 50%; the training set is subsampled to the holdout's size (several draws)
  so neither side wins by having more samples. When patient IDs are known the subsample is drawn
  by patient, to the holdout's number of patients: the two views of one breast pair are near-copies
  under the flips the search allows, so a per-image subsample of the training set holds more
  distinct patients than a holdout of whole patients, sits closer to everything, and would fail
  fresh data. The check fails when the share is above the
  configured maximum *and* it is significant in a permutation test (random train/holdout splits of
  the pooled patients; small sets and one fixed holdout draw are noisy).
- **Data-copying test** (Meehan et al. 2020): one-sided Mann–Whitney U of synthetic→train against
  holdout→train distances; a small p-value means the synthetic samples are closer to the training
  data than held-out real samples are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from medsynth.auditing.memorization import apply_variant, ncc_vectors
from medsynth.auditing.search import exact_topk


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
    dcr_pvalue: float  # permutation test of that share (random train/holdout splits of the pooled patients)
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
    train_groups: np.ndarray | None = None,
    holdout_groups: np.ndarray | None = None,
) -> BaselineResult:
    """Run both tests for one scope.

    Args:
        synthetic, train, holdout: (n, p, p) float32 arrays of the scope.
        cfg: the ``baseline`` section of the config.
        search_cfg: the ``memorization`` section (flips, blur, batch size).
        scope: "image" or "roi".
        seed: for the subsampling of the training set.
        train_groups, holdout_groups: per sample, the patient it belongs to (any hashable labels);
            with both, the training subsample is drawn by patient (see the module docstring).
    """
    syn_train = nn_distances(synthetic, train, search_cfg)
    hold_train = nn_distances(holdout, train, search_cfg)

    # DCR: the training side is subsampled to the holdout's size, several times, and averaged.
    rng = np.random.default_rng(seed)
    n_h = len(holdout)
    pick = _subsampler(len(train), n_h, train_groups, holdout_groups, rng)
    draws = int(cfg["dcr_draws"]) if pick is not None else 1
    # Patients of the pool; without IDs every sample is its own patient.
    grouped = train_groups is not None and holdout_groups is not None
    t_groups = np.asarray(train_groups) if grouped else np.arange(len(train))
    h_groups = np.asarray(holdout_groups) if grouped else np.arange(n_h)
    shares, pools = [], []
    for _ in range(draws):
        idx = np.arange(len(train)) if pick is None else pick()
        # Similarities of each synthetic sample to the pool [training subsample | holdout].
        sim = similarity_matrix(synthetic, np.concatenate([train[idx], holdout]), search_cfg)
        groups = np.concatenate([_labels("t", t_groups[idx]), _labels("h", h_groups)])
        in_train = np.arange(len(sim[0])) < len(idx)
        shares.append(_closer_share(sim, in_train))
        pools.append((sim, groups, len(np.unique(h_groups))))
    share = float(np.mean(shares))
    # Significance by permutation: under "the synthetic set does not depend on which patients were
    # trained on", the train/holdout labels of the pooled patients are exchangeable. Random splits of
    # the pool by patient give the null distribution of the share; it includes the variance of one
    # fixed holdout draw, which a binomial test over synthetic samples (assumed independent) ignores.
    n_perm = int(cfg.get("dcr_permutations", 200))
    null = np.empty(n_perm)
    for k in range(n_perm):
        sim, groups, n_hold_patients = pools[k % len(pools)]
        patients = np.unique(groups)
        held = rng.choice(len(patients), n_hold_patients, replace=False)
        as_holdout = np.isin(groups, patients[held])
        null[k] = _closer_share(sim, ~as_holdout)
    dcr_p = float((1 + np.sum(null >= share - 1e-12)) / (1 + n_perm))

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


def similarity_matrix(queries: np.ndarray, reference: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """(n_queries, n_reference) NCC similarity in normalised pixel space, the best over flips."""
    blur, hp = float(cfg["blur_sigma"]), float(cfg["highpass_sigma"])
    ref = ncc_vectors(reference, blur, hp)
    best = np.full((len(queries), len(reference)), -np.inf, dtype=np.float32)
    for flip in cfg["flips"]:
        q = ncc_vectors(apply_variant(queries, f"{flip}@1"), blur, hp)
        np.maximum(best, q @ ref.T, out=best)
    return best


def _closer_share(sim: np.ndarray, in_train: np.ndarray) -> float:
    """Share of queries whose most similar pool member is on the training side (ties count half)."""
    a, b = sim[:, in_train].max(axis=1), sim[:, ~in_train].max(axis=1)
    return float(np.mean((a > b) + 0.5 * (a == b)))


def _labels(prefix: str, groups: np.ndarray) -> np.ndarray:
    return np.asarray([f"{prefix}:{g}" for g in groups], dtype=object)


def _subsampler(n_train: int, n_holdout: int, train_groups: np.ndarray | None, holdout_groups: np.ndarray | None,
                rng: np.random.Generator) -> Any:
    """A function drawing training indices comparable to the holdout, or None when no subsample is needed.

    By patient when both group labels are given (as many training patients as the holdout has, all
    their samples), otherwise by sample (as many as the holdout has).
    """
    if train_groups is not None and holdout_groups is not None:
        train_groups = np.asarray(train_groups)
        patients, inverse = np.unique(train_groups, return_inverse=True)
        k = len(np.unique(np.asarray(holdout_groups)))
        if len(patients) <= k:
            return None

        def by_patient() -> np.ndarray:
            chosen = rng.choice(len(patients), k, replace=False)
            return np.flatnonzero(np.isin(inverse, chosen))

        return by_patient
    if n_train <= n_holdout:
        return None
    return lambda: rng.choice(n_train, n_holdout, replace=False)
