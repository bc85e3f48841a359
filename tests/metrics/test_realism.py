"""The C2ST: AUC against independent references, folds that keep patients together, and the
issue's checks on phantoms -- real vs real (patient-disjoint halves) is not told apart; real lesions
blurred inside the mask or darkened are, and so flagged by the matching lesion statistic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from medsynth.errors import ConfigError, InvalidImageError
from medsynth.io.datasets import load_dataset
from medsynth.io.scan import Case, Scan
from medsynth.metrics.fidelity import patient_halves
from medsynth.metrics.images import load_image_set
from medsynth.metrics.lesion_stats import LesionStatSettings, compare_lesion_stats
from medsynth.metrics.realism import (
    C2STSettings,
    RealismCNN,
    auroc,
    c2st,
    central_crop,
    class_names,
    group_folds,
    rank_auc,
)

# The normal suite's setting: the central 16 mm of each ROI (32 px at 0.5 mm/px), 150 steps a fold.
FAST = C2STSettings(crop_mm=16.0, steps=150, folds=5, bootstrap=500)


def test_rank_auc_equals_torchmetrics_and_brute_force():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=60), 1)  # rounded: many ties
    y = (rng.random(60) < 0.4).astype(int)
    pos, neg = scores[y == 1], scores[y == 0]
    brute = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    assert rank_auc(scores, y) == pytest.approx(brute, abs=1e-12)
    assert auroc(scores, y) == pytest.approx(brute, abs=1e-6)


def test_group_folds_keep_groups_together_and_balance_classes():
    rng = np.random.default_rng(1)
    groups = [f"r{i}" for i in rng.integers(0, 15, 50)] + [f"s{i}" for i in rng.integers(0, 20, 70)]
    y = np.r_[np.zeros(50), np.ones(70)].astype(int)
    folds = group_folds(y, groups, 5, seed=0)
    for g in set(groups):
        assert len({folds[i] for i, h in enumerate(groups) if h == g}) == 1
    for f in range(5):
        assert ((folds == f) & (y == 0)).any() and ((folds == f) & (y == 1)).any()
    counts = np.bincount(folds[y == 1], minlength=5)
    assert counts.max() - counts.min() <= max(np.bincount([int(g[1:]) for g in groups[50:]]))


def test_highpass_channel_is_the_roi_minus_its_blur():
    net = RealismCNN(8, highpass=True)
    x = torch.rand(2, 1, 32, 32)
    ref = x.numpy() - ndimage.gaussian_filter(x.numpy(), (0, 0, 1.0, 1.0), mode="mirror", truncate=3.0)
    np.testing.assert_allclose(net.residual(x).numpy() / 10.0, ref, atol=2e-3)
    assert net(x).shape == (2,)


def test_c2st_input_checks_and_too_few_rois():
    a = np.zeros((3, 32, 32), np.float32)
    with pytest.raises(InvalidImageError, match="one size"):
        c2st(a, np.zeros((3, 16, 16), np.float32), ["p"] * 3, ["q"] * 3)
    res = c2st(a, a, ["p1", "p2", "p3"], ["q1", "q2", "q3"], C2STSettings(min_rois=4))
    assert res.auc is None and "at least 4 ROIs" in res.info["note"]
    with pytest.raises(ConfigError, match="folds"):
        C2STSettings.from_config({"folds": 1})
    with pytest.raises(ConfigError, match="stepz"):
        C2STSettings.from_config({"stepz": 1})
    assert central_crop(np.zeros((2, 64, 64)), 32.0, 24.0).shape == (2, 48, 48)


@pytest.fixture(scope="module")
def halves(tmp_path_factory):
    """One phantom dataset of 48 images (24 patients), split into two patient-disjoint halves."""
    from medsynth.phantoms import make_phantoms

    root = make_phantoms(tmp_path_factory.mktemp("c2st") / "real", n=48, seed=21, size=(192, 156),
                         lesion_fraction=1.0)
    cases = list(load_dataset(root))
    a, b = patient_halves([c.patient_id for c in cases], seed=0)
    assert not {cases[i].patient_id for i in a} & {cases[i].patient_id for i in b}
    return [cases[i] for i in a], [cases[i] for i in b]


def _edited(cases, edit):
    """The cases with their lesion pixels edited (a 16-bit in-memory Scan of the new pixels)."""
    out = []
    for c in cases:
        img = c.image.unit_pixels()
        new = edit(img, c.mask.pixels > 0)
        scan = Scan(path=c.image.path, shape=c.image.shape, spacing=c.image.spacing,
                    pixel_loader=lambda a=new: np.round(np.clip(a, 0, 1) * 65535), bits_stored=16)
        out.append(Case(c.case_id, scan, c.mask, c.patient_id, c.image_relpath, c.metadata))
    return out


def _blur_inside(img, mask):
    out = img.copy()
    out[mask] = ndimage.gaussian_filter(img, 1.5)[mask]
    return out


def _darken_inside(img, mask):
    out = img.copy()
    out[mask] -= 0.08
    return out


def _compare(real_cases, other_cases, settings=FAST):
    read = dict(roi_mm=32.0, roi_px=64, roi_fit=False, lesion_stats=LesionStatSettings(bootstrap=300))
    a = load_image_set(real_cases, what="real", **read)
    b = load_image_set(other_cases, what="other", **read)
    ra, rb = central_crop(a.rois, 32.0, settings.crop_mm), central_crop(b.rois, 32.0, settings.crop_mm)
    res = c2st(ra, rb, a.roi_groups, b.roi_groups, settings, class_names(a.roi_labels, len(ra)),
               class_names(b.roi_labels, len(rb)), a.roi_margins, b.roi_margins)
    return res, compare_lesion_stats(a.lesion_records, b.lesion_records, LesionStatSettings(bootstrap=300))


def test_c2st_real_vs_real_halves_covers_half(halves):
    res, stats = _compare(*halves)
    assert res.info["n_real_rois"] >= 25 and res.info["n_synthetic_rois"] >= 25
    assert res.ci95[0] < 0.5 < res.ci95[1], (res.auc, res.ci95)
    assert set(res.by_class) == {"mass", "calcification"}
    assert set(res.by_margin) <= {"circumscribed", "ill_defined", "spiculated"} and res.by_margin
    # Out-of-fold scores for every ROI; the most synthetic-looking come first.
    assert np.isfinite(res.scores).all() and len(res.most_synthetic) == FAST.top_k
    top = res.scores[res.info["n_real_rois"]:][res.most_synthetic]
    assert (np.diff(top) <= 0).all()
    for stat in ("contrast", "hf_power_ratio"):
        for klass in ("mass", "calcification"):
            assert stats[stat][klass]["differs"] is False, (stat, klass, stats[stat][klass])


def test_c2st_and_hf_power_flag_lesions_blurred_inside_the_mask(halves):
    real, other = halves
    res, stats = _compare(real, _edited(other, _blur_inside))
    assert res.ci95[0] > 0.5, (res.auc, res.ci95)
    for klass in ("mass", "calcification"):
        hf = stats["hf_power_ratio"][klass]
        assert hf["differs"] is True and hf["ci95"][1] < -1.0, (klass, hf)  # blurred lesions lose fine detail
        # Blurring keeps the mean: contrast is not what flags it.
        assert abs(stats["contrast"][klass]["difference"]) < 0.05


def test_c2st_and_contrast_flag_darkened_lesions(halves):
    real, other = halves
    res, stats = _compare(real, _edited(other, _darken_inside))
    assert res.ci95[0] > 0.5, (res.auc, res.ci95)
    for klass in ("mass", "calcification"):
        contrast = stats["contrast"][klass]
        assert contrast["differs"] is True and contrast["ci95"][1] < 0, (klass, contrast)
        assert stats["hf_power_ratio"][klass]["differs"] is False  # darkening leaves the texture alone


@pytest.mark.slow
def test_c2st_default_settings_on_the_same_checks(halves):
    """The packaged settings (24 mm crop, 200 steps, 1000 resamples): same three outcomes."""
    real, other = halves
    default = C2STSettings()
    null, _ = _compare(real, other, default)
    assert null.ci95[0] < 0.5 < null.ci95[1]
    for edit in (_blur_inside, _darken_inside):
        res, _ = _compare(real, _edited(other, edit), default)
        assert res.ci95[0] > 0.5, (edit.__name__, res.auc, res.ci95)
