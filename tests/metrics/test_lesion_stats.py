"""Lesion statistics: the spectrum against analytic references, the speck detector against known
specks and the phantoms' ground truth, contrast and HF power on lesions with a known change, and
the grouped bootstrap against an ungrouped one."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage, stats

from medsynth.errors import ConfigError, InvalidMaskError
from medsynth.metrics.lesion_stats import (
    LesionStatSettings,
    band_power,
    compare_lesion_stats,
    compare_values,
    detect_specks,
    measure_lesions,
    radial_power,
)


def test_radial_power_of_white_noise_is_flat_and_holds_its_variance():
    rng = np.random.default_rng(0)
    w = np.ones((128, 128))
    profiles = [radial_power(rng.normal(0.0, 0.1, (128, 128)), w, (0.25, 0.25)) for _ in range(20)]
    centres = profiles[0][0]
    p = np.mean([prof for _, prof in profiles], axis=0)
    # A periodogram of white noise has mean sigma^2 at every frequency (per sample, |F|^2 / sum(w^2)).
    # The lowest bin averages ~22 independent frequencies an image (440 in all): 3 SE is ~15 %.
    assert np.allclose(p, 0.01, rtol=0.15)
    assert np.allclose(p[1:], 0.01, rtol=0.06)  # the other bins average hundreds to thousands
    assert len(centres) == 16 and centres[0] > 0 and centres[-1] < 1


def test_radial_power_follows_the_gaussian_transfer_function():
    # Blurring white noise with a Gaussian of sigma s px multiplies its power by exp(-4 pi^2 s^2 f^2)
    # (f in cycles/px): an analytic reference for the frequency axis and the radial average.
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, (256, 256))
    s = 1.5
    blurred = ndimage.gaussian_filter(x, s, mode="wrap")
    w = np.ones_like(x)
    centres, p0 = radial_power(x, w, (0.2, 0.2))
    _, p1 = radial_power(blurred, w, (0.2, 0.2))
    f_px = centres * 0.5  # fraction of Nyquist -> cycles per pixel
    expected = np.exp(-4 * math.pi**2 * s**2 * f_px**2)
    low = f_px < 0.2  # where the ratio is still well above round-off
    np.testing.assert_allclose((p1 / p0)[low], expected[low], rtol=0.25, atol=2e-3)
    # The band power reads the same profile.
    assert band_power(centres, p1, (0.5, 1.0)) < 1e-3 * band_power(centres, p0, (0.5, 1.0))


def _disk_image(shape=(200, 200), radius=20, contrast=0.1, blur_inside=0.0, seed=0):
    rng = np.random.default_rng(seed)
    img = 0.4 + rng.normal(0.0, 0.02, shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = (yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2 <= radius**2
    img[mask] += contrast
    if blur_inside:
        img[mask] = ndimage.gaussian_filter(img, blur_inside)[mask]
    return np.clip(img, 0, 1).astype(np.float32), mask.astype(np.uint8)


def test_contrast_and_hf_power_of_a_known_lesion():
    img, label = _disk_image(contrast=0.1)
    (rec,) = measure_lesions(img, label, (0.2, 0.2))
    assert rec["class"] == "mass" and rec["contrast"] == pytest.approx(0.1, abs=0.005)
    # Same noise inside and around: as much high-frequency power inside as in the ring.
    assert abs(rec["hf_power_ratio"]) < 0.3
    blurred, _ = _disk_image(contrast=0.1, blur_inside=1.5)
    (rec_b,) = measure_lesions(blurred, label, (0.2, 0.2))
    # Gaussian sigma 1.5 px keeps exp(-4 pi^2 2.25 f^2) of the power: < 1 % above half Nyquist.
    assert rec_b["hf_power_ratio"] < -5
    assert rec_b["contrast"] == pytest.approx(0.1, abs=0.01)  # blur does not change the mean
    darker, _ = _disk_image(contrast=-0.05)
    (rec_d,) = measure_lesions(darker, label, (0.2, 0.2))
    assert rec_d["contrast"] == pytest.approx(-0.05, abs=0.005)


def test_measure_lesions_refuses_mismatched_shapes():
    img, label = _disk_image()
    with pytest.raises(InvalidMaskError, match="differs"):
        measure_lesions(img, label[:-1], (0.2, 0.2))


def test_speck_detector_counts_known_specks():
    rng = np.random.default_rng(3)
    img = 0.45 + ndimage.gaussian_filter(rng.normal(0, 0.05, (160, 160)), 8) + rng.normal(0, 0.006, (160, 160))
    yy, xx = np.mgrid[:160, :160]
    truth = [(50, 50), (55, 70), (70, 58), (90, 95), (100, 72), (64, 100), (110, 110)]
    sigma_px = 0.25 / 0.1  # 0.25 mm at 0.1 mm/px
    for r, c in truth:
        img += 0.15 * np.exp(-0.5 * ((yy - r) ** 2 + (xx - c) ** 2) / sigma_px**2)
    region = np.zeros(img.shape, bool)
    region[35:125, 35:125] = True
    ring = ~ndimage.binary_dilation(region, iterations=5) & ndimage.binary_dilation(region, iterations=40)
    specks = detect_specks(img.astype(np.float32), region, ring, (0.1, 0.1))
    assert len(specks) == len(truth)
    found = {(p["row"], p["col"]) for p in specks}
    assert all(min(abs(r - fr) + abs(c - fc) for fr, fc in found) <= 1 for r, c in truth)
    # Brightness is the height above the local background (~0.15); size a Gaussian's thresholded width.
    assert np.median([p["brightness"] for p in specks]) == pytest.approx(0.15, abs=0.03)
    assert 0.2 < np.median([p["size_mm"] for p in specks]) < 1.0
    # The same image without specks: nothing found.
    plain = 0.45 + ndimage.gaussian_filter(rng.normal(0, 0.05, (160, 160)), 8) + rng.normal(0, 0.006, (160, 160))
    assert detect_specks(plain.astype(np.float32), region, ring, (0.1, 0.1)) == []


def _phantom_speck_counts(n_images: int, rows: int) -> tuple[list[int], list[int]]:
    from medsynth.phantoms.render import render_phantom

    found, truth = [], []
    for i in range(n_images):
        ph = render_phantom(7, size=(rows, int(rows * 0.8)), index=i, lesion_fraction=1.0)
        calcs = [les for les in ph.lesions if les["type"] == "calcification"]
        if len(calcs) != 1 or len(ph.lesions) != 1:
            continue  # one cluster alone: no doubt which lesion is which
        (rec,) = measure_lesions(ph.image, ph.label, ph.spacing)
        found.append(rec["speck_count"])
        truth.append(calcs[0]["n_specks"])
    return found, truth


def test_speck_counts_track_the_phantoms_ground_truth():
    # At 0.2 mm/px (512 rows) the 0.2-0.8 mm specks span 1-4 pixels. Measured on 31 clusters (60
    # images): Spearman 0.75; here fewer images for speed. At 0.32 mm/px it drops to ~0.3 (specks
    # merge into one or two pixels), which docs/commands/evaluate.md says.
    found, truth = _phantom_speck_counts(24, 512)
    assert len(found) >= 8
    rho = stats.spearmanr(found, truth).statistic
    assert rho > 0.5, (rho, list(zip(truth, found)))


def test_compare_values_flags_a_shift_and_not_noise():
    rng = np.random.default_rng(0)
    groups = [f"p{i}" for i in range(40)]
    a, b = rng.normal(0, 1, 40), rng.normal(0, 1, 40)
    same = compare_values(list(a), groups, list(b), groups, "u", LesionStatSettings(bootstrap=400))
    assert same["differs"] is False and same["ci95"][0] < 0 < same["ci95"][1]
    assert same["p_mannwhitney"] == pytest.approx(stats.mannwhitneyu(b, a).pvalue)
    shifted = compare_values(list(a), groups, list(b + 1.5), groups, "u", LesionStatSettings(bootstrap=400))
    assert shifted["differs"] is True and shifted["ci95"][0] > 0.5
    few = compare_values([1.0, 2.0], ["a", "b"], [1.0, 2.0, 3.0], ["a", "b", "c"], "u")
    assert few["difference"] is None and "fewer than" in few["note"]


def test_grouped_bootstrap_widens_the_ci_when_lesions_share_a_patient():
    # 6 patients with 10 near-identical lesions each: the lesions are not 60 independent samples.
    rng = np.random.default_rng(1)
    centres_r, centres_s = rng.normal(0, 1, 6), rng.normal(0, 1, 6)
    real = np.repeat(centres_r, 10) + rng.normal(0, 0.01, 60)
    syn = np.repeat(centres_s, 10) + rng.normal(0, 0.01, 60)
    grouped = compare_values(list(real), [f"r{i // 10}" for i in range(60)], list(syn),
                             [f"s{i // 10}" for i in range(60)], "u", LesionStatSettings(bootstrap=400))
    single = compare_values(list(real), [f"r{i}" for i in range(60)], list(syn), [f"s{i}" for i in range(60)],
                            "u", LesionStatSettings(bootstrap=400))
    width = lambda c: c["ci95"][1] - c["ci95"][0]  # noqa: E731
    assert width(grouped) > 1.5 * width(single)


def test_compare_lesion_stats_structure():
    real = [{"class": "mass", "group": f"p{i}", "contrast": 0.2 + 0.01 * i, "hf_power_ratio": -2.0}
            for i in range(5)]
    real += [{"class": "calcification", "group": f"p{i}", "contrast": 0.02, "hf_power_ratio": 2.0,
              "speck_count": 10 + i, "speck_size_mm": 0.4, "speck_brightness": 0.2} for i in range(5)]
    syn = [{"class": "mass", "group": f"b{i}", "contrast": 0.1, "hf_power_ratio": -6.0} for i in range(5)]
    syn += [{"class": "calcification", "group": f"b{i}", "contrast": 0.05, "hf_power_ratio": -5.0,
             "speck_count": 0, "speck_size_mm": None, "speck_brightness": None} for i in range(5)]
    out = compare_lesion_stats(real, syn, LesionStatSettings(bootstrap=100))
    assert set(out["contrast"]) == {"mass", "calcification"}  # per class: a pooled median follows the class mix
    assert out["hf_power_ratio"]["mass"]["difference"] == pytest.approx(-4.0)
    assert out["speck_count"]["calcification"]["difference"] == pytest.approx(-12.0)
    assert out["speck_count"]["calcification"]["differs"] is True
    # No synthetic speck at all: size and brightness cannot be compared, and say why.
    assert out["speck_size_mm"]["calcification"]["synthetic"]["n"] == 0
    assert "fewer than" in out["speck_size_mm"]["calcification"]["note"]
    assert "white top-hat" in out["settings"]["speck_detector"]


def test_settings_refuse_unknown_and_bad_values():
    with pytest.raises(ConfigError, match="ring_mn"):
        LesionStatSettings.from_config({"ring_mn": [1, 2]})
    with pytest.raises(ConfigError, match="ring_mm"):
        LesionStatSettings.from_config({"ring_mm": [3, 2]})
    with pytest.raises(ConfigError, match="hf_band"):
        LesionStatSettings.from_config({"hf_band": [0.5, 1.5]})
    assert LesionStatSettings.from_config({"enabled": True, "ring_mm": [0.5, 4]}).ring_mm == (0.5, 4.0)
