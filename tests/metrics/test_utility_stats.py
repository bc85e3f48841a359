"""The utility test's statistics against independent references: scipy's paired bootstrap, a brute-force
FROC, hand-made probability maps, and the coverage of the two-level interval in simulation."""

from __future__ import annotations

import numpy as np
import pytest

from medsynth.metrics.utility.data import FullImage
from medsynth.metrics.utility.full import score_image
from medsynth.metrics.utility.stats import (
    FrocMetric,
    MeanMetric,
    PatientBootstrap,
    summarize_arm,
    summarize_delta,
    threshold_grid,
)
from medsynth.models.patches import lesion_components


def test_one_seed_one_unit_per_patient_is_scipys_paired_bootstrap():
    from scipy.stats import bootstrap

    rng = np.random.default_rng(0)
    n = 40
    a = rng.beta(5, 3, n)
    b = np.clip(a - 0.05 + rng.normal(0, 0.08, n), 0, 1)  # paired: the same test images
    plan = PatientBootstrap(n, 4000, seed=1)
    patient = np.arange(n)
    got = summarize_delta(MeanMetric(a[None], patient), "a", MeanMetric(b[None], patient), "b", plan)
    ref = bootstrap((a, b), lambda x, y, axis=-1: np.mean(x - y, axis=axis), paired=True, n_resamples=4000,
                    method="percentile", rng=np.random.default_rng(2)).confidence_interval
    width = ref.high - ref.low
    assert got["value"] == pytest.approx(np.mean(a - b))
    # Two Monte-Carlo estimates of one percentile interval (4000 replicates each).
    assert got["ci95"] == pytest.approx([ref.low, ref.high], abs=0.06 * width)
    assert got["ci95"][0] > 0 and got["p"] < 0.05  # the interval excludes 0, so p is below 0.05


def test_p_value_follows_the_interval():
    rng = np.random.default_rng(3)
    patient = np.repeat(np.arange(20), 2)  # two images per patient
    for shift in (0.0, 0.02, 0.2):
        a = rng.uniform(0.3, 0.9, (3, 40))
        b = a - shift + rng.normal(0, 0.05, (3, 40))
        d = summarize_delta(MeanMetric(a, patient), "a", MeanMetric(b, patient), "b", PatientBootstrap(20, 2000))
        excludes = d["ci95"][0] > 0 or d["ci95"][1] < 0
        assert excludes == (d["p"] < 0.05) or abs(d["p"] - 0.05) < 0.01


def test_two_level_interval_covers_when_seeds_vary():
    """Simulated arms: patient effects shared by both arms (paired), a per-training seed offset, unit noise.

    The interval that resamples seeds too covers the true difference about as often as it should; an
    interval over patients alone (seeds averaged first) misses it often when training varies.
    """
    rng = np.random.default_rng(5)
    n_pat, n_seeds, delta, seed_sd = 30, 3, 0.05, 0.04
    patient = np.arange(n_pat)
    covered = {"two-level": 0, "patients only": 0}
    reps = 150
    for _ in range(reps):
        base = rng.uniform(0.4, 0.8, n_pat)
        a = base + delta + rng.normal(0, seed_sd, (n_seeds, 1)) + rng.normal(0, 0.05, (n_seeds, n_pat))
        b = base + rng.normal(0, seed_sd, (n_seeds, 1)) + rng.normal(0, 0.05, (n_seeds, n_pat))
        plan = PatientBootstrap(n_pat, 400, seed=int(rng.integers(1 << 30)))
        lo, hi = summarize_delta(MeanMetric(a, patient), "a", MeanMetric(b, patient), "b", plan)["ci95"]
        covered["two-level"] += lo <= delta <= hi
        lo, hi = summarize_delta(MeanMetric(a.mean(0, keepdims=True), patient), "a",
                                 MeanMetric(b.mean(0, keepdims=True), patient), "b", plan)["ci95"]
        covered["patients only"] += lo <= delta <= hi
    rate = {k: v / reps for k, v in covered.items()}
    # 92 % here (percentile intervals of a few seeds run a little narrow even after the S/(S-1) correction).
    assert rate["two-level"] >= 0.87, rate
    assert rate["patients only"] <= 0.6, rate


def _brute_force_sensitivity(fp_scores, lesion_scores, rate):
    """Sweep every distinct candidate score as a threshold; the best sensitivity with FP/image <= rate.
    A missed lesion (score 0: no candidate touches it) is detected at no threshold."""
    n_img, n_les = len(fp_scores), len(lesion_scores)
    cands = sorted({s for img in fp_scores for s in img} | {s for s in lesion_scores if s > 0} | {np.inf})
    best = 0.0
    for t in cands:
        fp = sum(int(np.sum(np.asarray(img) >= t)) for img in fp_scores) / n_img
        sens = float(np.sum(np.asarray(lesion_scores) >= t)) / n_les
        if fp <= rate:
            best = max(best, sens)
    return best


def test_froc_sensitivity_matches_brute_force():
    rng = np.random.default_rng(7)
    thresholds = threshold_grid(0.1, n=10)
    grid = thresholds[:-1]
    n_img, n_les = 25, 30
    for _ in range(20):
        fp_scores = [rng.choice(grid, size=rng.integers(0, 4)) for _ in range(n_img)]
        lesion_scores = np.where(rng.random(n_les) < 0.2, 0.0, rng.choice(grid, n_les))
        fp_counts = np.stack([(np.asarray(s)[:, None] >= thresholds[None]).sum(0) for s in fp_scores])[None]
        for rate in (0.5, 1.0, 2.0):
            m = FrocMetric(fp_counts, np.arange(n_img), lesion_scores[None], rng.integers(0, n_img, n_les),
                           thresholds, rate)
            assert m.per_seed()[0] == pytest.approx(_brute_force_sensitivity(fp_scores, lesion_scores, rate))
            # A plan whose every replicate is the test set itself reproduces the point estimate.
            plan = PatientBootstrap(n_img, 3)
            plan.weights[:] = 1.0
            assert np.allclose(m.replicates(plan, np.zeros((3, 1), int)), m.per_seed()[0])


def test_arm_summary_of_a_constant_is_that_constant():
    plan = PatientBootstrap(10, 500)
    s = summarize_arm(MeanMetric(np.full((3, 10), 0.7), np.arange(10)), plan, "x")
    assert s["value"] == pytest.approx(0.7) and s["ci95"] == pytest.approx([0.7, 0.7])
    assert s["seed_values"] == pytest.approx([0.7] * 3)


def _image(shape, boxes):
    label = np.zeros(shape, bool)
    for r0, c0, r1, c1 in boxes:
        label[r0:r1, c0:c1] = True
    lesions = lesion_components(label, (1.0, 1.0), 1.0, 3.0)
    return FullImage(np.zeros(shape, np.float32), label, lesions, ["mass"] * len(lesions), [None] * len(lesions))


def test_score_image_by_hand():
    fi = _image((40, 40), [(5, 5, 11, 11), (25, 25, 31, 31)])  # two 6x6 lesions
    prob = np.zeros((40, 40))
    prob[5:11, 5:11] = 0.9          # lesion 1 found exactly
    prob[26:31, 25:31] = 0.4        # lesion 2 only as a candidate below 0.5 (score 0.4)
    prob[15:19, 33:37] = 0.7        # a false positive, 16 px
    prob[0, 39] = 0.95              # a 1-px speck: below the minimum lesion area, neither lesion nor candidate
    sc = score_image(prob, fi, 1.0, 0.1, window_mm=3.0)
    pred = (prob > 0.5) & ~(np.arange(40)[:, None] == 0)
    inter = np.sum(pred & fi.label)
    assert sc.dice == pytest.approx(2 * inter / (pred.sum() + fi.label.sum()))
    assert sc.lesion_dice == pytest.approx([1.0, 0.0])
    assert sc.lesion_score == pytest.approx([0.9, 0.4])
    assert sc.fp_scores == pytest.approx([0.7])
    # A lesion-free image: nothing predicted scores 1, anything predicted 0.
    empty = _image((40, 40), [])
    assert score_image(np.zeros((40, 40)), empty, 1.0, 0.1, 3.0).dice == 1.0
    assert score_image(prob, empty, 1.0, 0.1, 3.0).dice == 0.0


def test_intervals_stay_within_what_the_figure_can_take():
    """Seeds at 0 and 1 (a detector that finds everything in one training and nothing in two): the
    small-sample correction of the seed spread carries replicates past [0, 1]; no interval may show it."""
    patient = np.arange(12)
    a = np.stack([np.ones(12), np.zeros(12), np.zeros(12)])
    b = np.stack([np.zeros(12), np.ones(12), np.ones(12)])
    plan = PatientBootstrap(12, 2000, seed=4)
    arm = summarize_arm(MeanMetric(a, patient), plan, "a")
    d = summarize_delta(MeanMetric(a, patient), "a", MeanMetric(b, patient), "b", plan)
    assert 0.0 <= arm["ci95"][0] <= arm["value"] <= arm["ci95"][1] <= 1.0
    assert -1.0 <= d["ci95"][0] <= d["value"] <= d["ci95"][1] <= 1.0
    assert arm["ci95"] == [0.0, 1.0] and d["ci95"][0] == -1.0  # the correction did reach past the range


def test_seeds_are_paired_across_arms():
    """Seed s of both arms shares its initial weights (and regime patients), so a seed that trains badly
    does so in both arms. Resampling seeds jointly keeps that shared part out of the difference's
    interval, which still covers the true difference as often as it should; drawing each arm's seeds on
    its own would add it back."""
    rng = np.random.default_rng(11)
    n_pat, n_seeds, delta = 30, 3, 0.05
    patient = np.arange(n_pat)
    covered, widths, unpaired_widths = 0, [], []
    reps = 150
    for _ in range(reps):
        base = rng.uniform(0.4, 0.8, n_pat)
        shared = rng.normal(0, 0.08, (n_seeds, 1))  # the seed's own luck, in both arms
        a = base + delta + shared + rng.normal(0, 0.01, (n_seeds, 1)) + rng.normal(0, 0.05, (n_seeds, n_pat))
        b = base + shared + rng.normal(0, 0.01, (n_seeds, 1)) + rng.normal(0, 0.05, (n_seeds, n_pat))
        plan = PatientBootstrap(n_pat, 400, seed=int(rng.integers(1 << 30)))
        lo, hi = summarize_delta(MeanMetric(a, patient), "a", MeanMetric(b, patient), "b", plan)["ci95"]
        covered += lo <= delta <= hi
        widths.append(hi - lo)
        ra = MeanMetric(a, patient).replicates(plan, plan.seed_draws("a", n_seeds))
        rb = MeanMetric(b, patient).replicates(plan, plan.seed_draws("b", n_seeds))
        q = np.percentile(ra - rb, [2.5, 97.5])
        unpaired_widths.append(q[1] - q[0])
    assert covered / reps >= 0.87, covered / reps
    assert np.median(widths) < 0.5 * np.median(unpaired_widths), (np.median(widths), np.median(unpaired_widths))
    # Arms with different numbers of seeds cannot be paired: they still get an interval.
    d = summarize_delta(MeanMetric(a, patient), "a", MeanMetric(b[:2], patient), "b", plan)
    assert d["ci95"][0] is not None and d["ci95"][0] <= d["value"] <= d["ci95"][1]


def test_a_seed_that_misses_a_class_the_others_learnt_is_named():
    from medsynth.metrics.utility.result import _failed_seed_lines, failed_seeds

    def arm(calc, mass):
        return {"by_class": {"calcification": {"lesion_dice": {"seed_values": calc}},
                             "mass": {"lesion_dice": {"seed_values": mass}}}}

    arms = {"real": arm([0.74, 0.61, 0.80], [0.85, 0.81, 0.91]),
            "real+synthetic": arm([0.79, 0.04, 0.80], [0.94, 0.87, 0.95]),
            "synthetic": arm([0.80, 0.00, 0.81], [0.94, 0.87, 0.94])}
    found = failed_seeds("full", arms)
    assert [(f["arm"], f["class"], f["seed"]) for f in found] == [("real+synthetic", "calcification", 1),
                                                                  ("synthetic", "calcification", 1)]
    lines = _failed_seed_lines("full", arms)
    assert len(lines) == 1 and "seed 1 did not learn calcifications in the real+synthetic, synthetic arms" in lines[0]
    # A class every seed finds hard is not a failed seed; neither is a crop task without classes.
    assert failed_seeds("full", {"real": arm([0.10, 0.05, 0.20], [0.9, 0.9, 0.9])}) == []
    assert failed_seeds("crops", {"real": {"dice": {"seed_values": [0.1, 0.8, 0.8]}}}) == []
