"""FID/KID/PRDC/MS-SSIM against independent references (scipy, NumPy rewrites, brute force)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsynth.errors import InvalidImageError, MedsynthError
from medsynth.metrics import fidelity
from medsynth.metrics.features import random_extractor


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(textures):
    x = textures(48, 64, seed=1)
    ext = random_extractor(input_px=64)
    f = ext.embed(x)
    assert fidelity.fid(f, f) == pytest.approx(0.0, abs=1e-6 * max(1.0, float(np.trace(np.cov(f.T)))))
    noise = np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)
    values = [fidelity.fid(f, ext.embed(np.clip(x + s * noise, 0, 1))) for s in (0.02, 0.06, 0.15, 0.3)]
    assert values[0] > 0
    assert all(b > a for a, b in zip(values, values[1:])), values


def test_torchmetrics_and_scipy_frechet_agree_float64(frechet_reference):
    rng = np.random.default_rng(0)
    d = 16
    a = rng.standard_normal((300, d)) @ rng.standard_normal((d, d))
    b = 0.5 + rng.standard_normal((250, d)) @ rng.standard_normal((d, d)) * 0.8
    tm, sp = fidelity.fid(a, b), frechet_reference(a, b)
    assert sp > 1.0
    assert abs(tm - sp) <= 1e-6 * max(1.0, abs(sp))


def test_fid_of_close_sets_matches_scipy_where_the_clamp_is_not_hit(frechet_reference):
    """Two samples of one Gaussian: FID is small but positive, so fid()'s clamp at 0 cannot hide an error."""
    rng = np.random.default_rng(3)
    mix = rng.standard_normal((8, 8))
    a, b = rng.standard_normal((400, 8)) @ mix, rng.standard_normal((400, 8)) @ mix
    ref = frechet_reference(a, b)
    assert 0.0 < ref < 0.2 * float(np.trace(np.cov(a.T)))
    assert fidelity.fid(a, b) == pytest.approx(ref, rel=1e-6)


def test_extractor_module_route_equals_precomputed_features(textures, extractor_module):
    from torchmetrics.image.fid import FrechetInceptionDistance

    x, y = textures(24, 64, seed=2), textures(24, 64, seed=3)
    ext = random_extractor(input_px=64)
    expected = fidelity.fid(ext.embed(x, batch_size=24), ext.embed(y, batch_size=24))
    for normalize, conv in ((True, lambda a: torch.from_numpy(a)[:, None]),
                            (False, None)):
        metric = FrechetInceptionDistance(feature=extractor_module(ext), normalize=normalize)
        if normalize:
            metric.update(conv(x), real=True)
            metric.update(conv(y), real=False)
            assert float(metric.compute()) == pytest.approx(expected, rel=1e-4)
        else:
            # uint8 RGB input, as torchmetrics' default convention: grey after averaging channels.
            xq = np.round(x * 255).astype(np.uint8)
            yq = np.round(y * 255).astype(np.uint8)
            metric.update(torch.from_numpy(xq)[:, None].repeat(1, 3, 1, 1), real=True)
            metric.update(torch.from_numpy(yq)[:, None].repeat(1, 3, 1, 1), real=False)
            ref = fidelity.fid(ext.embed(xq / 255.0, batch_size=24), ext.embed(yq / 255.0, batch_size=24))
            assert float(metric.compute()) == pytest.approx(ref, rel=1e-4)


def test_kid_matches_numpy_mmd_on_full_subsets(mmd_reference):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((40, 8)), rng.standard_normal((40, 8)) + 0.3
    mean, std, size = fidelity.kid(a, b, subsets=3, subset_size=40)
    assert size == 40
    assert mean == pytest.approx(mmd_reference(a, b), rel=1e-6)
    assert std == pytest.approx(0.0, abs=1e-9)  # every subset is the full set
    m1, s1, _ = fidelity.kid(a, b, subsets=10, subset_size=20, seed=3)
    m2, s2, _ = fidelity.kid(a, b, subsets=10, subset_size=20, seed=3)
    assert (m1, s1) == (m2, s2) and s1 > 0


def test_kid_mean_and_std_are_those_of_the_seeded_subsets(mmd_reference):
    """KID's std is the spread (population std) of the per-subset MMDs drawn from the seed, recomputed
    here in NumPy on the same draws (torchmetrics: a randperm of the real, then of the fake, per
    subset); a single subset has no spread to report (0)."""
    import torch

    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((30, 6)), rng.standard_normal((25, 6)) * 1.2 + 0.2
    mean, std, size = fidelity.kid(a, b, subsets=6, subset_size=12, seed=5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        draws = [(torch.randperm(30)[:12].numpy(), torch.randperm(25)[:12].numpy()) for _ in range(6)]
    scores = np.array([mmd_reference(a[i], b[j]) for i, j in draws])
    assert size == 12 and scores.std() > 0
    assert mean == pytest.approx(scores.mean(), rel=1e-6)
    assert std == pytest.approx(scores.std(ddof=0), rel=1e-6)
    one_mean, one_std, _ = fidelity.kid(a, b, subsets=1, subset_size=12, seed=5)
    assert one_mean == pytest.approx(scores[0], rel=1e-6) and one_std == 0.0


def _prdc_bruteforce(real, fake, k):
    def kth(points, i):
        d = sorted(np.linalg.norm(points[i] - points[j]) for j in range(len(points)) if j != i)
        return d[k - 1]

    rr = [kth(real, i) for i in range(len(real))]
    rf = [kth(fake, j) for j in range(len(fake))]
    dist = lambda a, b: float(np.linalg.norm(a - b))  # noqa: E731
    precision = np.mean([any(dist(f, real[i]) < rr[i] for i in range(len(real))) for f in fake])
    recall = np.mean([any(dist(r, fake[j]) < rf[j] for j in range(len(fake))) for r in real])
    density = np.mean([sum(dist(f, real[i]) < rr[i] for i in range(len(real))) for f in fake]) / k
    coverage = np.mean([min(dist(real[i], f) for f in fake) < rr[i] for i in range(len(real))])
    return precision, recall, density, coverage


def test_prdc_matches_bruteforce_and_extremes():
    rng = np.random.default_rng(2)
    real, fake = rng.standard_normal((30, 4)), rng.standard_normal((25, 4)) * 1.5 + 0.5
    got = fidelity.prdc(real, fake, k=5)
    ref = _prdc_bruteforce(real, fake, 5)
    assert [got[n] for n in ("precision", "recall", "density", "coverage")] == pytest.approx(list(ref))
    same = fidelity.prdc(real, real.copy(), k=5)
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    far = fidelity.prdc(real, fake + 100.0, k=5)
    assert far["precision"] == 0.0 and far["coverage"] == 0.0 and far["density"] == 0.0


def test_ms_ssim_settings_fit_small_images_and_diversity_orders(textures):
    k128, w128 = fidelity.ms_ssim_settings(128)
    k64, w64 = fidelity.ms_ssim_settings(64)
    assert (k128, len(w128), k64, len(w64)) == (7, 5, 7, 4)
    assert sum(w64) == pytest.approx(1.0)
    x = textures(8, 64, seed=4)
    assert fidelity.ms_ssim_pairs(x[:3], x[:3]) == pytest.approx(1.0, abs=1e-5)
    copies = np.repeat(x[:1], 4, axis=0)
    assert fidelity.ms_ssim_diversity(copies)["value"] == pytest.approx(1.0, abs=1e-5)
    diverse = fidelity.ms_ssim_diversity(x)
    assert diverse["value"] < 0.9 and diverse["n_pairs"] == 28


def test_real_feature_cache_hits_memory_and_disk(tmp_path, textures, monkeypatch):
    x = textures(10, 64, seed=6)
    ext = random_extractor(input_px=64)
    cache = fidelity.RealFeatureCache(tmp_path)
    f1 = cache.get(ext, x)
    f2 = cache.get(ext, x)
    assert cache.misses == 1 and cache.hits == 1 and f2 is f1
    fidelity.RealFeatureCache._memory.clear()
    monkeypatch.setattr(ext, "embed", lambda *a, **k: pytest.fail("features recomputed despite the disk cache"))
    again = fidelity.RealFeatureCache(tmp_path)
    np.testing.assert_array_equal(again.get(ext, x), f1)
    assert again.hits == 1


def test_bad_feature_inputs_raise_medsynth_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(InvalidImageError, match="at least 2"):
        fidelity.fid(rng.standard_normal((1, 4)), rng.standard_normal((5, 4)))
    with pytest.raises(MedsynthError, match="dimensions differ"):
        fidelity.fid(rng.standard_normal((5, 4)), rng.standard_normal((5, 3)))
    with pytest.raises(InvalidImageError, match="at least 6"):
        fidelity.prdc(rng.standard_normal((5, 4)), rng.standard_normal((9, 4)), k=5)


def test_kid_std_is_none_when_there_is_no_spread_to_measure():
    assert fidelity.kid_std_or_none(0.0, 40, 40, 40, subsets=10) is None  # every subset the whole set
    assert fidelity.kid_std_or_none(0.1, 20, 40, 40, subsets=1) is None  # one subset
    assert fidelity.kid_std_or_none(0.1, 40, 40, 60, subsets=10) == 0.1  # synthetic subsets differ
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((12, 4)), rng.standard_normal((12, 4))
    out = fidelity.distances_with_floor(a, b, [str(i) for i in range(12)], kid_subsets=10, k=3)
    assert out["kid"]["std"] is None and out["kid"]["subset_size"] == 12


def test_patient_halves_never_share_a_patient_and_are_balanced():
    rng = np.random.default_rng(0)
    groups = [f"p{i}" for i in rng.integers(0, 30, 200)]
    a, b = fidelity.patient_halves(groups, seed=1)
    assert len(a) + len(b) == 200 and not set(a) & set(b)
    assert not {groups[i] for i in a} & {groups[i] for i in b}
    biggest = max(groups.count(g) for g in set(groups))
    assert abs(len(a) - len(b)) <= biggest
    one_a, one_b = fidelity.patient_halves(["same"] * 5)
    assert len(one_a) == 5 and len(one_b) == 0


def test_distances_with_floor_compare_at_the_floors_sample_size(frechet_reference):
    rng = np.random.default_rng(3)
    real = rng.standard_normal((40, 3))
    groups = [f"p{i // 2}" for i in range(40)]  # two samples a patient
    fake = rng.standard_normal((60, 3)) + 2.0
    out = fidelity.distances_with_floor(real, fake, groups, kid_subsets=20, k=3, seed=0)
    a, b = fidelity.patient_halves(groups, seed=0)
    floor = out["fid"]["floor"]
    assert (floor["n_real_a"], floor["n_real_b"]) == (len(a), len(b)) == (20, 20)
    # The floor is the same metric between the halves (scipy reference), and far below a shifted set.
    assert floor["value"] == pytest.approx(frechet_reference(real[a], real[b]), rel=1e-5, abs=1e-8)
    assert floor["value"] < 1.0 < floor["synthetic_at_floor_n"] and out["fid"]["value"] > 5 * floor["value"]
    for name in ("kid", "precision", "recall", "density", "coverage"):
        assert out[name]["floor"]["value"] is not None, name
    assert out["precision"]["floor"]["value"] > out["precision"]["floor"]["synthetic_at_floor_n"]
    # One patient only: no floor, and a note saying why.
    none = fidelity.distances_with_floor(real, fake, ["p"] * 40, kid_subsets=5, k=3)
    assert none["fid"]["floor"] is None and "halves" in none["fid"]["floor_note"]
