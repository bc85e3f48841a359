"""Fidelity and diversity of a synthetic image set against a real one, on feature vectors.

- FID and KID through torchmetrics (``FrechetInceptionDistance`` / ``KernelInceptionDistance``
  with ``feature=`` an ``nn.Module``). Features are extracted once per set (they also feed PRDC and
  the report's PCA), so the module given to torchmetrics here is a pass-through over precomputed
  feature vectors; the tests check that route against an extractor given to torchmetrics as an
  image module, and FID against ``scipy.linalg.sqrtm`` (as in pytorch-fid). States are float64.
- :func:`prdc`: precision, recall, density and coverage (Naeem et al. 2020) with k nearest
  neighbours (k = 5), in NumPy.
- :func:`ms_ssim_diversity`: mean MS-SSIM (MONAI) over random pairs within a set; lower means
  more diverse. MONAI's default 11-px kernel with 5 scales needs images over 160 px, so the kernel
  and the number of scales are chosen to fit 64-128 px (see :func:`ms_ssim_settings`).
- :class:`RealFeatureCache`: real-set features keyed by (extractor fingerprint, content hash), in
  memory and on disk, so evaluating many synthetic sets against one real set extracts them once.
- :func:`distances_with_floor`: FID, KID and PRDC of the synthetic set, each beside its **real-vs-real
  floor**: the same metric between two patient-disjoint halves of the real set
  (:func:`patient_halves`), and the synthetic set measured against one half at the other half's size
  (``synthetic_at_floor_n``), so the two numbers differ only in what is compared, not in sample size
  (FID and KID are biased by the sample size). A distance means little without this scale.
- KID's std over subsets is None (n/a) when every subset is the whole set (with subset size =
  n_real = n_synthetic all subsets are equal, and a std of 0 would claim a certainty that is not
  there) or there is one subset (:func:`kid_std_or_none`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medsynth.errors import InvalidImageError
from medsynth.io.writers.atomic import atomic_path

# MS-SSIM scale weights of Wang et al. 2003 (MONAI's default); truncated and renormalised to fit.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_KERNEL = 7
MS_SSIM_SIGMA = 1.0


class PrecomputedFeatures(nn.Module):
    """A pass-through ``feature=`` module: its "images" are (N, D) feature vectors already."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.num_features)


def _check_features(real: np.ndarray, fake: np.ndarray, minimum: int = 2) -> tuple[np.ndarray, np.ndarray]:
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    for name, f in (("real", real), ("synthetic", fake)):
        if f.ndim != 2:
            raise InvalidImageError(f"{name} features must be (N, D), got shape {f.shape}")
        if f.shape[0] < minimum:
            raise InvalidImageError(f"{name} set has {f.shape[0]} image(s); this metric needs at least {minimum}")
        if not np.all(np.isfinite(f)):
            raise InvalidImageError(f"{name} features hold NaN/inf")
    if real.shape[1] != fake.shape[1]:
        raise InvalidImageError(f"feature dimensions differ: real {real.shape[1]}, synthetic {fake.shape[1]}")
    return real, fake


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two feature sets with torchmetrics' ``FrechetInceptionDistance`` (float64)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = _check_features(real, fake)
    metric = FrechetInceptionDistance(feature=PrecomputedFeatures(real.shape[1]), normalize=True)
    metric.update(torch.from_numpy(real), real=True)
    metric.update(torch.from_numpy(fake), real=False)
    value = float(metric.compute())
    # Round-off can give tiny negatives for identical sets; FID is a squared distance.
    return max(value, 0.0)


def kid(
    real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int | None = None, seed: int = 0
) -> tuple[float, float, int]:
    """KID (mean, std over subsets, subset size) with torchmetrics' ``KernelInceptionDistance``.

    ``subset_size`` defaults to min(1000, n_real, n_synthetic); the subsets are drawn with a seeded
    torch RNG (the global one is restored afterwards) so the value is reproducible.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = _check_features(real, fake)
    size = int(subset_size or min(1000, len(real), len(fake)))
    size = min(size, len(real), len(fake))
    with warnings.catch_warnings():
        # torchmetrics warns that KID keeps all features in memory; here they are in memory anyway.
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(
            feature=PrecomputedFeatures(real.shape[1]), subsets=subsets, subset_size=size, normalize=True
        )
    metric.update(torch.from_numpy(real), real=True)
    metric.update(torch.from_numpy(fake), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std), size


def kid_std_or_none(std: float, subset_size: int, n_real: int, n_synthetic: int, subsets: int = 2) -> float | None:
    """KID's std over subsets, or None (n/a) when there is no spread to measure: every subset is the
    whole of both sets, or there is a single subset."""
    return None if subsets < 2 or (subset_size >= n_real and subset_size >= n_synthetic) else float(std)


def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of Naeem et al. 2020 with ``k`` nearest neighbours.

    Each real sample's ball has radius = distance to its k-th nearest other real sample (the
    fake's ball likewise among fakes). Precision: share of fakes inside some real ball. Recall:
    share of reals inside some fake ball. Density: mean number of real balls holding a fake, / k.
    Coverage: share of real balls holding at least one fake.
    """
    real, fake = _check_features(real, fake, minimum=k + 1)
    d_rr = _pairwise_distances(real, real)
    d_ff = _pairwise_distances(fake, fake)
    d_rf = _pairwise_distances(real, fake)
    # Column 0 of the sorted row is the point itself (distance 0); column k is its k-th neighbour.
    r_real = np.sort(d_rr, axis=1)[:, k]
    r_fake = np.sort(d_ff, axis=1)[:, k]
    inside_real = d_rf < r_real[:, None]  # (n_real, n_fake): fake j inside real i's ball
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((d_rf < r_fake[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((d_rf.min(axis=1) < r_real).mean()),
    }


def ms_ssim_settings(size: int) -> tuple[int, tuple[float, ...]]:
    """Kernel size and scale weights of MS-SSIM for ``size``-px images.

    A 7-px Gaussian (sigma 1.0) instead of MONAI's 11-px (sigma 1.5) and as many of Wang's five
    scales as MONAI's size check allows (5 at 128 px, 4 at 64 px), the weights renormalised to sum 1.
    """
    for levels in range(len(MS_SSIM_WEIGHTS), 0, -1):
        if size // max(1, levels - 1) ** 2 > MS_SSIM_KERNEL - 1:
            w = np.asarray(MS_SSIM_WEIGHTS[:levels])
            return MS_SSIM_KERNEL, tuple(float(v) for v in w / w.sum())
    raise InvalidImageError(f"images of {size} px are too small for MS-SSIM")


def ms_ssim_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MS-SSIM (MONAI ``MultiScaleSSIMMetric``, data range 1) of image pairs ``a[i]``, ``b[i]``."""
    from monai.metrics import MultiScaleSSIMMetric

    if a.shape != b.shape or a.ndim != 3:
        raise InvalidImageError(f"MS-SSIM needs two (N, H, W) stacks of one shape, got {a.shape} and {b.shape}")
    kernel, weights = ms_ssim_settings(min(a.shape[1:]))
    metric = MultiScaleSSIMMetric(
        spatial_dims=2, data_range=1.0, kernel_size=kernel, kernel_sigma=MS_SSIM_SIGMA, weights=weights
    )
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[:, None]
    y = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32))[:, None]
    return metric(x, y).reshape(-1).double().cpu().numpy()


def ms_ssim_diversity(images: np.ndarray, n_pairs: int = 200, seed: int = 0) -> dict[str, Any]:
    """Mean MS-SSIM over random distinct pairs of a set (lower = more diverse), with a 95% CI.

    Returns:
        ``{"value", "ci95": [lo, hi], "n_pairs", "kernel_size", "scale_weights"}``.
    """
    images = np.asarray(images, dtype=np.float32)
    n = len(images)
    if n < 2:
        raise InvalidImageError(f"MS-SSIM diversity needs at least 2 images, got {n}")
    rng = np.random.default_rng(seed)
    all_pairs = n * (n - 1) // 2
    if all_pairs <= n_pairs:
        i, j = np.triu_indices(n, k=1)
    else:
        i = rng.integers(0, n, size=n_pairs)
        j = (i + rng.integers(1, n, size=n_pairs)) % n  # never equal to i
    values = ms_ssim_pairs(images[i], images[j])
    sem = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    kernel, weights = ms_ssim_settings(min(images.shape[1:]))
    mean = float(values.mean())
    return {
        "value": mean,
        "ci95": [mean - 1.96 * sem, mean + 1.96 * sem],
        "n_pairs": int(len(values)),
        "kernel_size": kernel,
        "scale_weights": list(weights),
    }


class RealFeatureCache:
    """Real-set features keyed by (extractor fingerprint, content hash of the real images).

    Kept in memory for the process and, when ``cache_dir`` is given, as ``.npy`` files there, so that
    many synthetic sets evaluated against one real set extract its features once.
    """

    _memory: dict[str, np.ndarray] = {}
    max_in_memory = 8

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self.cache_dir = Path(cache_dir).expanduser() / "real-features" if cache_dir is not None else None
        self.hits = 0
        self.misses = 0

    def get(self, extractor: Any, images: np.ndarray, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """The features of ``images`` under ``extractor``, from the cache or freshly extracted."""
        from medsynth.metrics.images import content_hash

        key = f"{extractor.fingerprint}-{content_hash(images)}"
        if key in self._memory:
            self.hits += 1
            return self._memory[key]
        path = self.cache_dir / f"{key}.npy" if self.cache_dir is not None else None
        if path is not None and path.exists():
            feats = np.load(path)
            self.hits += 1
        else:
            feats = extractor.embed(images, batch_size=batch_size, progress=progress)
            self.misses += 1
            if path is not None:
                with atomic_path(path) as tmp:
                    np.save(tmp, feats)
        if len(self._memory) >= self.max_in_memory:
            self._memory.pop(next(iter(self._memory)))  # oldest first: bounded memory in long sessions
        self._memory[key] = feats
        return feats


def patient_halves(groups: list[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split samples into two halves with no group (patient) in both, of nearly equal size.

    Groups are shuffled (seeded) and placed, largest first, into the half holding fewer samples.

    Returns:
        (indices of half A, indices of half B); B is empty when there is a single group.
    """
    rng = np.random.default_rng(seed)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(str(g), []).append(i)
    names = [list(members)[i] for i in rng.permutation(len(members))]
    halves: tuple[list[int], list[int]] = ([], [])
    for g in sorted(names, key=lambda name: -len(members[name])):
        target = halves[0] if len(halves[0]) <= len(halves[1]) else halves[1]
        target.extend(members[g])
    return np.sort(np.asarray(halves[0], dtype=np.int64)), np.sort(np.asarray(halves[1], dtype=np.int64))


def _three(real: np.ndarray, fake: np.ndarray, subsets: int, k: int, seed: int) -> dict[str, Any]:
    """FID, KID (mean, std or None, subset size) and PRDC of one pair of feature sets."""
    kid_mean, kid_sd, size = kid(real, fake, subsets=subsets, seed=seed)
    out: dict[str, Any] = {"fid": fid(real, fake), "kid": kid_mean,
                           "kid_std": kid_std_or_none(kid_sd, size, len(real), len(fake), subsets),
                           "kid_subset_size": size}
    kk = min(k, len(real) - 1, len(fake) - 1)
    if kk >= 1:
        out.update(prdc(real, fake, k=kk))
    out["k"] = kk
    return out


PRDC_NAMES = ("precision", "recall", "density", "coverage")


def distances_with_floor(
    f_real: np.ndarray,
    f_syn: np.ndarray,
    real_groups: list[str],
    kid_subsets: int = 100,
    k: int = 5,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """FID, KID and precision/recall/density/coverage, each with its real-vs-real floor.

    Args:
        f_real, f_syn: (N, D) features of the real and synthetic samples.
        real_groups: the patient of every real sample (the halves never share one).
        kid_subsets, k, seed: KID subsets, PRDC neighbourhood, seed of subsets and halves.

    Returns:
        ``{name: {"value", "floor": {"value", "synthetic_at_floor_n", "n_real_a", "n_real_b"} or
        None, ...}}`` for fid, kid (with ``std``, None when every subset is the whole set, and
        ``subset_size``), precision, recall, density, coverage (with ``k``). ``floor`` is None, with
        ``floor_note``, when the real set has too few patients or samples for two halves.
    """
    f_real, f_syn = _check_features(f_real, f_syn)
    k_used = min(k, len(f_real) - 1, len(f_syn) - 1)
    main = _three(f_real, f_syn, kid_subsets, k_used, seed)
    a, b = patient_halves(real_groups, seed)
    floor = None
    note = None
    if min(len(a), len(b)) >= max(2, k_used + 1):
        rng = np.random.default_rng(seed + 1)
        syn_idx = rng.choice(len(f_syn), size=min(len(b), len(f_syn)), replace=False)
        floor = _three(f_real[a], f_real[b], kid_subsets, k_used, seed)
        same_n = _three(f_real[a], f_syn[syn_idx], kid_subsets, k_used, seed)
    else:
        note = (f"no real-vs-real floor: the real set splits into halves of {len(a)} and {len(b)} samples "
                f"by patient (needs at least {max(2, k_used + 1)} each)")

    def entry(name: str, value: Any, **extra: Any) -> dict[str, Any]:
        d: dict[str, Any] = {"value": value, **extra}
        if floor is not None:
            d["floor"] = {"value": floor.get(name), "synthetic_at_floor_n": same_n.get(name),
                          "n_real_a": int(len(a)), "n_real_b": int(len(b))}
        else:
            d["floor"] = None
            d["floor_note"] = note
        return d

    out = {
        "fid": entry("fid", main["fid"]),
        "kid": entry("kid", main["kid"], std=main["kid_std"], subset_size=main["kid_subset_size"],
                     subsets=kid_subsets),
    }
    for name in PRDC_NAMES:
        out[name] = entry(name, main.get(name), k=k_used)
    return out
