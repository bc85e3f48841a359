"""Copy thresholds calibrated on the holdout: the stated false-alarm rate holds on fresh data, the
rule that set each threshold is reported, and a site whose images are alike no longer fails clean data."""

from __future__ import annotations

import numpy as np
import pytest

from medsynth.auditing.calibration import (
    calibrate_thresholds,
    exceedance_pvalues,
    fit_tail,
    from_tail_scale,
    to_tail_scale,
)
from medsynth.auditing.memorization import nearest_training
from medsynth.config import load_config


def _textures(rng: np.random.Generator, n: int, px: int = 32) -> np.ndarray:
    """1/f^1.5 noise images in [0, 1]."""
    f = np.fft.fftfreq(px)
    amp = 1.0 / np.maximum(np.hypot(*np.meshgrid(f, f, indexing="ij")), 1.0 / px) ** 1.5
    out = []
    for _ in range(n):
        img = np.real(np.fft.ifft2(amp * np.exp(2j * np.pi * rng.random((px, px)))))
        out.append((img - img.min()) / (img.max() - img.min()))
    return np.stack(out).astype(np.float32)


@pytest.fixture(scope="module")
def cfg():
    return load_config(None, kind="audit")


@pytest.fixture(scope="module")
def fresh_scores(cfg):
    """Nearest-training scores of 800 fresh textures against a training set of 30 (the reference)."""
    rng = np.random.default_rng(0)
    train = _textures(rng, 30)
    fresh = _textures(rng, 800)
    return nearest_training(fresh, train, cfg["memorization"], "roi").scores()


@pytest.mark.parametrize("key", ["ncc", "carlini_ratio"])
def test_stated_false_alarm_rate_holds_on_fresh_data(fresh_scores, key):
    """Fit on 40 fresh samples, count how often the other 760 cross the threshold (brute force)."""
    v = np.asarray(fresh_scores[key])
    rng = np.random.default_rng(1)
    rates = {0.05: [], 0.01: []}
    for rep in range(12):
        idx = rng.permutation(len(v))
        fit = fit_tail(key, v[idx[:40]], n_boot=100, seed=rep)
        rest = to_tail_scale(key, v[idx[40:]])
        for level in rates:
            rates[level].append(np.mean(rest > fit.quantile(level)))
    # The upper confidence bound keeps the average rate at or below the stated one.
    for level, r in rates.items():
        assert np.mean(r) <= level, (key, level, np.mean(r))


def test_exceedance_pvalues_are_conformal_inside_the_holdout_range():
    rng = np.random.default_rng(2)
    hold = rng.uniform(0.2, 0.7, 30)
    fit = fit_tail("ncc", hold, n_boot=50)
    queries = np.r_[rng.uniform(0.1, 0.69, 20), 0.95]
    p = exceedance_pvalues(fit, queries)
    for q, pv in zip(queries[:-1], p[:-1]):
        assert pv == pytest.approx((1 + np.sum(hold >= q)) / (len(hold) + 1))
    # Beyond the most similar holdout sample: the tail, below the conformal floor 1 / (n + 1).
    assert 0 < p[-1] < 1 / 31
    assert fit.threshold(1e-6) == pytest.approx(float(from_tail_scale("ncc", fit.quantile(1e-6))))


def test_rules_floor_calibrated_ceiling_fixed():
    cal = {"enabled": True, "false_alarm_rate": 0.01, "min_holdout": 20, "confidence": 0.9, "bootstrap": 50,
           "ceilings": {"ncc": 0.95, "ssim": 0.97, "carlini_ratio": 0.3, "embedding_cosine": None}}
    fixed = {"ncc": 0.85, "ssim": 0.9, "carlini_ratio": 0.6, "embedding_cosine": None}
    rng = np.random.default_rng(3)

    def gumbel(key, loc, scale=0.05):  # scores whose tail scale is Gumbel(loc, scale): quantiles known
        return from_tail_scale(key, rng.gumbel(loc, scale, 60))

    distinct = {"ncc": gumbel("ncc", 0.4), "ssim": gumbel("ssim", 0.4),
                "carlini_ratio": gumbel("carlini_ratio", -np.log(1.5)), "embedding_cosine": gumbel("ncc", 0.8)}
    th, fits = calibrate_thresholds(distinct, fixed, cal, n_tests=100)
    # Distinct images (NCC quantile at 1e-4 ~ tanh(0.4 + 0.05 x 9.2) = 0.70): the fixed numbers stay, as floors.
    assert th["ncc"].rule == "floor" and th["ncc"].value == 0.85 and th["ncc"].calibrated < 0.85
    assert th["carlini_ratio"].rule == "floor" and th["carlini_ratio"].value == 0.6
    # No fixed number: the calibrated value alone.
    assert th["embedding_cosine"].rule == "calibrated" and th["embedding_cosine"].value > 0.8
    assert th["ncc"].level == pytest.approx(1e-4)
    # A site whose images are alike (quantile ~ tanh(1.3 + 0.46) = 0.94): calibrated, above the floor.
    alike = dict(distinct, ncc=gumbel("ncc", 1.3), carlini_ratio=gumbel("carlini_ratio", -np.log(0.9)))
    th, _ = calibrate_thresholds(alike, fixed, cal, n_tests=100)
    assert th["ncc"].rule == "calibrated" and 0.9 < th["ncc"].value <= 0.95
    assert th["carlini_ratio"].rule == "calibrated" and 0.3 <= th["carlini_ratio"].value < 0.6
    # Past the ceiling, with a holdout sample itself beyond it: the ceiling, and a warning.
    near = dict(distinct, ncc=gumbel("ncc", 1.75))
    th, _ = calibrate_thresholds(near, fixed, cal, n_tests=100)
    assert th["ncc"].rule == "ceiling" and th["ncc"].value == 0.95 and "holdout patient" in th["ncc"].note
    th, fits = calibrate_thresholds({k: v[:10] for k, v in alike.items()}, fixed, cal, n_tests=100)
    assert th["ncc"].rule == "fixed" and th["ncc"].value == 0.85 and "min_holdout=20" in th["ncc"].note
    assert th["embedding_cosine"].rule == "report only" and th["embedding_cosine"].value is None and not fits


def test_a_site_whose_images_are_alike_no_longer_fails_clean_data(tmp_path):
    """Fresh images of one "site" correlate above the fixed NCC 0.85 with training images: the fixed
    threshold flags clean data (the old behaviour), the calibrated one does not, and copies are still caught."""
    from scipy import ndimage

    from medsynth.auditing.run import audit
    from medsynth.io.scan import Case, Scan

    rng = np.random.default_rng(4)

    def speckle():
        a = ndimage.gaussian_filter(rng.standard_normal((64, 64)), 1.5)
        return a / a.std()

    site = speckle()  # the fine texture every image of the "site" shares: distinct images correlate ~0.89

    def images(n):
        return np.stack([(lambda a: (a - a.min()) / (a.max() - a.min()))(site + 0.35 * speckle())
                         for _ in range(n)]).astype(np.float32)

    sets = {name: images(n) for name, n in (("train", 40), ("holdout", 40), ("syn", 30))}
    sets["syn"][:2] = np.stack([sets["train"][5][:, ::-1], sets["train"][9]])  # two copies (one mirrored)

    def cases(name):
        return [Case(f"{name}{i}", Scan(tmp_path / f"{name}{i}.png", a.shape, (0.1, 0.1), pixel_loader=lambda a=a: a),
                     None, patient_id=f"{name}-p{i}", image_relpath=f"{name}{i}.png")
                for i, a in enumerate(sets[name])]

    base = {"memorization": {"embedding": "invariant", "scopes": ["image"]}}
    fixed = audit(cases("train"), cases("syn"), cases("holdout"), progress=False,
                  config={**base, "memorization": {**base["memorization"], "calibration": {"enabled": False}}})
    calibrated = audit(cases("train"), cases("syn"), cases("holdout"), config=base, progress=False)
    flagged = lambda r: sorted(f["synthetic"] for f in r.memorization["flagged"])  # noqa: E731
    assert len(flagged(fixed)) > 2  # fresh images flagged as copies by the fixed 0.85
    assert flagged(calibrated) == ["syn0.png", "syn1.png"]  # only the copies
    th = calibrated.memorization["thresholds"]["image"]
    assert th["ncc"]["rule"] in ("calibrated", "ceiling") and th["ncc"]["value"] > 0.85
    assert calibrated.memorization["calibration"]["image"]["ncc"]["holdout_most_similar"] > 0.85
    mem = next(c for c in calibrated.checks if c["name"] == "memorization")
    assert mem["details"]["rules"]["image"]["ncc"] == th["ncc"]["rule"]
    html = calibrated.to_html()
    assert "calibrated" in html and "rule" in html
