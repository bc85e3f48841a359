"""Lesion statistics, real against synthetic: what a painted lesion gets wrong that a reader sees.

Each lesion (the one rule, :func:`medsynth.models.patches.lesion_components`) is measured on the
full-resolution image at the image's own pixel spacing -- never on a resampled thumbnail, which
would erase the fine detail being measured -- by :func:`measure_lesions`:

- ``contrast``: mean of the lesion's pixels minus the mean of a ring of surrounding tissue
  (``ring_mm`` from the lesion's edge; other lesions and air left out), in display units (pixels in
  [0, 1], brighter = denser). Masses are denser than their surround (> 0); a painted blob darker than
  its tissue gives < 0.
- ``hf_power_ratio``: log2 of the high-frequency power inside the lesion over that of its ring. Both
  come from the radially averaged power spectrum of the region (mean removed, a smooth window: the
  region eroded by ``2 * taper`` and blurred by ``taper`` pixels, so the window's own edge puts no
  power into the band) at the image's own spacing, in cycles/mm; the band is ``hf_band`` x the
  image's Nyquist frequency (0.5-1.0 by default). 0 means the lesion carries as much fine detail
  (texture and noise) as the tissue around it; a lesion painted at a coarser pixel spacing than the
  image and pasted in lacks that band and scores far below 0 (a blur or resolution seam).
- calcification clusters only, the specks inside them: ``speck_count``, ``speck_size_mm`` (median
  equivalent diameter) and ``speck_brightness`` (median peak height above the local background).
  The detector: a white top-hat with a disk a little wider than ``speck_max_mm`` (it keeps what is
  smaller than the disk and removes the tissue under it), a threshold of the ring's top-hat median
  plus ``speck_k`` robust standard deviations (1.4826 x MAD) and at least ``speck_min_height``, and
  local maxima of the top-hat at least ``speck_min_distance_mm`` apart (``skimage.feature.peak_local_max``)
  inside the cluster region: each maximum is one speck; its size is the area of its part of the
  thresholded top-hat, shared among the maxima in it. Specks at or below one pixel are limited by the
  spacing (the size then says "one pixel"); count and brightness stay meaningful.

:func:`compare_lesion_stats` then sets the synthetic lesions against the real ones, per statistic
and lesion class: medians and quartiles of each arm, the difference of medians (synthetic - real)
with a 95 % bootstrap CI that resamples patients (a synthetic case's group is its background), the
Mann-Whitney U p-value and the Kolmogorov-Smirnov distance (both treat lesions as independent; the
CI does not).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from medsynth.errors import ConfigError, InvalidImageError, InvalidMaskError
from medsynth.io.labels import CLASS_NAMES, LABELS
from medsynth.models.patches import Lesion, default_lesion_rule, lesion_components

# The statistics of every lesion, and those of calcification clusters only (name -> unit).
LESION_STATISTICS = {"contrast": "display units (lesion mean - ring mean)", "hf_power_ratio": "log2(inside / ring)"}
SPECK_STATISTICS = {
    "speck_count": "specks per cluster",
    "speck_size_mm": "mm (median equivalent diameter)",
    "speck_brightness": "display units (median top-hat peak)",
}
N_RADIAL_BINS = 16


@dataclass(frozen=True)
class LesionStatSettings:
    """How the lesion statistics are measured (the ``lesion_stats`` section of configs/evaluate.yaml)."""

    ring_mm: tuple[float, float] = (1.0, 5.0)
    tissue_threshold: float = 0.05
    hf_band: tuple[float, float] = (0.5, 1.0)
    taper_px: float = 1.5
    speck_max_mm: float = 1.0
    speck_k: float = 5.0
    speck_min_height: float = 0.02
    speck_min_distance_mm: float = 0.3
    bootstrap: int = 1000
    min_lesions: int = 3
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> LesionStatSettings:
        cfg = dict(cfg or {})
        cfg.pop("enabled", None)
        known = set(cls.__dataclass_fields__)
        unknown = set(cfg) - known
        if unknown:
            raise ConfigError(f"unknown lesion_stats setting(s) {sorted(unknown)}; known: {sorted(known)}")
        for key in ("ring_mm", "hf_band"):
            if key in cfg:
                cfg[key] = tuple(float(v) for v in cfg[key])
        s = cls(**cfg)
        lo, hi = s.ring_mm
        if not (0 <= lo < hi):
            raise ConfigError(f"lesion_stats.ring_mm must be [inner, outer] with 0 <= inner < outer, got {s.ring_mm}")
        if not (0 <= s.hf_band[0] < s.hf_band[1] <= 1):
            raise ConfigError(f"lesion_stats.hf_band must be fractions of Nyquist 0 <= lo < hi <= 1, got {s.hf_band}")
        return s


def _window(lesion: Lesion, shape: tuple[int, int], pad: tuple[int, int]) -> tuple[slice, slice]:
    r0, c0, r1, c1 = lesion.box
    return (slice(max(r0 - pad[0], 0), min(r1 + pad[0], shape[0])),
            slice(max(c0 - pad[1], 0), min(c1 + pad[1], shape[1])))


def radial_power(
    image: np.ndarray, weight: np.ndarray, spacing: tuple[float, float], n_bins: int = N_RADIAL_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of ``image`` under the window ``weight``.

    The weighted mean is removed, the windowed region is zero-padded to a square of at least 32 px
    and Fourier transformed; power is ``|F|^2 / sum(weight^2)`` (a periodogram: it estimates the power
    spectral density whatever the window's size). Frequencies are in cycles/mm from ``spacing``.

    Returns:
        (bin centres as fractions of the Nyquist frequency, mean power per bin) with ``n_bins`` bins
        over (0, Nyquist]; bins without a frequency sample are NaN.
    """
    w = np.asarray(weight, dtype=np.float64)
    sw2 = float((w * w).sum())
    if sw2 <= 0:
        raise InvalidMaskError("empty window for the power spectrum")
    x = np.asarray(image, dtype=np.float64)
    x = (x - float((w * x).sum() / w.sum())) * w
    side = max(32, *x.shape)
    power = np.abs(np.fft.fft2(x, s=(side, side))) ** 2 / sw2
    fr = np.fft.fftfreq(side, d=float(spacing[0]))
    fc = np.fft.fftfreq(side, d=float(spacing[1]))
    nyquist = min(0.5 / float(spacing[0]), 0.5 / float(spacing[1]))
    radius = np.hypot(fr[:, None], fc[None, :]) / nyquist
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    inside = (radius > 0) & (radius <= 1.0)
    idx = np.clip(np.digitize(radius[inside], edges[1:-1]), 0, n_bins - 1)
    sums = np.bincount(idx, weights=power[inside], minlength=n_bins)
    counts = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return (edges[:-1] + edges[1:]) / 2, mean


def band_power(centres: np.ndarray, profile: np.ndarray, band: tuple[float, float]) -> float:
    """Mean power of a radial profile over the bins whose centres lie in ``band`` (fractions of Nyquist)."""
    sel = (centres >= band[0]) & (centres <= band[1]) & np.isfinite(profile)
    return float(np.mean(profile[sel])) if sel.any() else float("nan")


def _smooth_window(region: np.ndarray, taper_px: float) -> np.ndarray:
    """The region eroded by ~2 taper and blurred by taper: no sharp window edge in the band."""
    erode = int(round(2 * taper_px))
    core = ndimage.binary_erosion(region, iterations=erode) if erode > 0 else region
    if core.sum() < 4:  # a tiny region: keep it whole rather than lose it
        core = region
    return ndimage.gaussian_filter(core.astype(np.float64), taper_px) if taper_px > 0 else core.astype(np.float64)


def detect_specks(
    image: np.ndarray,
    region: np.ndarray,
    background: np.ndarray,
    spacing: tuple[float, float],
    settings: LesionStatSettings | None = None,
) -> list[dict[str, float]]:
    """Calcification specks inside ``region`` (see the module docstring for the detector).

    Args:
        image: display-polarity pixels at their own spacing.
        region: bool, where specks are counted (the cluster region).
        background: bool, surrounding tissue that sets the noise level of the threshold.
        spacing: (row, col) mm per pixel.

    Returns:
        One dict per speck: ``row``, ``col`` (pixels of ``image``), ``size_mm``, ``brightness``.
    """
    from skimage.feature import peak_local_max
    from skimage.morphology import disk

    s = settings or LesionStatSettings()
    px = min(float(spacing[0]), float(spacing[1]))
    radius = int(math.ceil(s.speck_max_mm / px / 2.0)) + 1
    tophat = ndimage.white_tophat(np.asarray(image, dtype=np.float32), footprint=disk(radius))
    ref = tophat[background] if background.any() else tophat[~region]
    if ref.size == 0:
        ref = tophat.ravel()
    med = float(np.median(ref))
    sigma = 1.4826 * float(np.median(np.abs(ref - med)))
    threshold = max(med + s.speck_k * sigma, s.speck_min_height)
    high = (tophat > threshold) & region
    if not high.any():
        return []
    parts, _ = ndimage.label(high)
    min_dist = max(1, int(round(s.speck_min_distance_mm / px)))
    peaks = peak_local_max(tophat, min_distance=min_dist, threshold_abs=threshold, labels=parts, exclude_border=False)
    if len(peaks) == 0:
        return []
    owner = parts[peaks[:, 0], peaks[:, 1]]
    areas = ndimage.sum(high, parts, index=np.arange(1, parts.max() + 1))
    shared = np.bincount(owner, minlength=parts.max() + 1)
    pixel_mm2 = float(spacing[0]) * float(spacing[1])
    out = []
    for (r, c), part in zip(peaks, owner):
        area = float(areas[part - 1]) / float(shared[part]) * pixel_mm2
        out.append({"row": int(r), "col": int(c), "size_mm": 2.0 * math.sqrt(area / math.pi),
                    "brightness": float(tophat[r, c])})
    return out


def measure_lesions(
    image: np.ndarray,
    label_map: np.ndarray,
    spacing: tuple[float, float],
    settings: LesionStatSettings | None = None,
    lesions: list[Lesion] | None = None,
) -> list[dict[str, Any]]:
    """Measure every lesion of one full-resolution image (the statistics of the module docstring).

    Args:
        image: (rows, cols) display-polarity pixels in [0, 1] at their own spacing.
        label_map: (rows, cols) label map (0 background, values of :mod:`medsynth.io.labels`).
        spacing: (row, col) mm per pixel.
        settings: how to measure (default: :class:`LesionStatSettings`).
        lesions: the lesions of ``label_map`` when already cut (default: the one lesion rule with
            the configs/train.yaml settings).

    Returns:
        One dict per lesion: ``label``, ``class``, ``area_mm2``, ``contrast``, ``hf_power_ratio``,
        ``radial_inside`` / ``radial_ring`` (radial power profiles, for the report's spectrum plot),
        and for calcification clusters ``speck_count``, ``speck_size_mm``, ``speck_brightness``
        (None when no speck was found). A lesion whose ring holds no tissue gets None statistics.

    Raises:
        InvalidImageError / InvalidMaskError: shapes differ, the image is not 2-D or not finite.
    """
    s = settings or LesionStatSettings()
    image = np.asarray(image, dtype=np.float32)
    labels = np.asarray(label_map)
    if image.ndim != 2:
        raise InvalidImageError(f"expected a 2-D image, got shape {image.shape}")
    if labels.shape != image.shape:
        raise InvalidMaskError(f"mask shape {labels.shape} differs from image shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise InvalidImageError("image holds NaN/inf pixels")
    sr, sc = float(spacing[0]), float(spacing[1])
    if lesions is None:
        rule = default_lesion_rule()
        lesions = lesion_components(labels, (sr, sc), rule["merge_mm"], rule["min_lesion_mm2"])
    air = float(image.min()) + s.tissue_threshold
    pad = (int(math.ceil(s.ring_mm[1] / sr)) + 4, int(math.ceil(s.ring_mm[1] / sc)) + 4)
    out = []
    for lesion in lesions:
        win = _window(lesion, image.shape, pad)
        img = image[win]
        own = np.zeros(img.shape, dtype=bool)
        r0, c0, r1, c1 = lesion.box
        own[r0 - win[0].start : r1 - win[0].start, c0 - win[1].start : c1 - win[1].start] = lesion.mask
        others = (labels[win] > 0) & ~own
        dist = ndimage.distance_transform_edt(~own, sampling=(sr, sc))
        if others.any():  # tissue next to another lesion is not this lesion's surround
            others = ndimage.distance_transform_edt(~others, sampling=(sr, sc)) <= s.ring_mm[0]
        ring = (dist > s.ring_mm[0]) & (dist <= s.ring_mm[1]) & ~others & (img > air)
        klass = CLASS_NAMES.get(int(lesion.label), str(lesion.label))
        rec: dict[str, Any] = {"label": int(lesion.label), "class": klass, "area_mm2": round(lesion.area_mm2, 3),
                               "contrast": None, "hf_power_ratio": None}
        if ring.sum() >= 8:
            rec["contrast"] = float(img[own].mean() - img[ring].mean())
            centres, p_in = radial_power(img, _smooth_window(own, s.taper_px), (sr, sc))
            _, p_ring = radial_power(img, _smooth_window(ring, s.taper_px), (sr, sc))
            hf_in, hf_ring = band_power(centres, p_in, s.hf_band), band_power(centres, p_ring, s.hf_band)
            if hf_in > 0 and hf_ring > 0:
                rec["hf_power_ratio"] = float(np.log2(hf_in / hf_ring))
            rec["radial_inside"] = [float(v) for v in p_in]
            rec["radial_ring"] = [float(v) for v in p_ring]
        if lesion.label == LABELS["calcification"]:
            specks = detect_specks(img, own, ring, (sr, sc), s)
            rec["speck_count"] = len(specks)
            rec["speck_size_mm"] = float(np.median([p["size_mm"] for p in specks])) if specks else None
            rec["speck_brightness"] = float(np.median([p["brightness"] for p in specks])) if specks else None
        out.append(rec)
    return out


def _summary(values: np.ndarray) -> dict[str, Any]:
    if len(values) == 0:
        return {"median": None, "q25": None, "q75": None, "n": 0}
    q25, med, q75 = np.percentile(values, [25, 50, 75])
    return {"median": float(med), "q25": float(q25), "q75": float(q75), "n": int(len(values))}


def _group_index(groups: list[str]) -> list[np.ndarray]:
    order: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        order.setdefault(str(g), []).append(i)
    return [np.asarray(v) for v in order.values()]


def grouped_bootstrap(
    real: np.ndarray, real_groups: list[str], syn: np.ndarray, syn_groups: list[str],
    statistic: Any, n_boot: int, seed: int,
) -> np.ndarray:
    """``statistic(real_resample, syn_resample)`` over bootstrap resamples that draw whole groups
    (patients) with replacement, each arm separately."""
    rng = np.random.default_rng(seed)
    rg, sg = _group_index(real_groups), _group_index(syn_groups)
    out = np.empty(n_boot)
    for b in range(n_boot):
        ri = np.concatenate([rg[i] for i in rng.integers(len(rg), size=len(rg))])
        si = np.concatenate([sg[i] for i in rng.integers(len(sg), size=len(sg))])
        out[b] = statistic(real[ri], syn[si])
    return out


def compare_values(
    real: list[float | None], real_groups: list[str], syn: list[float | None], syn_groups: list[str],
    unit: str, settings: LesionStatSettings | None = None,
) -> dict[str, Any]:
    """One statistic, real against synthetic: summaries, difference of medians with a grouped
    bootstrap 95 % CI, Mann-Whitney U p and KS distance (see the module docstring)."""
    from scipy import stats

    s = settings or LesionStatSettings()
    rk = [(float(v), g) for v, g in zip(real, real_groups) if v is not None and math.isfinite(v)]
    sk = [(float(v), g) for v, g in zip(syn, syn_groups) if v is not None and math.isfinite(v)]
    r = np.asarray([v for v, _ in rk])
    y = np.asarray([v for v, _ in sk])
    out: dict[str, Any] = {"unit": unit, "real": _summary(r), "synthetic": _summary(y), "difference": None,
                           "ci95": None, "p_mannwhitney": None, "ks_distance": None, "differs": None}
    if len(r) < s.min_lesions or len(y) < s.min_lesions:
        out["note"] = f"fewer than {s.min_lesions} measured lesions in an arm"
        return out
    out["difference"] = float(np.median(y) - np.median(r))
    boots = grouped_bootstrap(r, [g for _, g in rk], y, [g for _, g in sk],
                              lambda a, b: float(np.median(b) - np.median(a)), s.bootstrap, s.seed)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    out["ci95"] = [float(lo), float(hi)]
    if np.ptp(np.concatenate([r, y])) > 0:
        out["p_mannwhitney"] = float(stats.mannwhitneyu(y, r, alternative="two-sided").pvalue)
    else:
        out["p_mannwhitney"] = 1.0
    out["ks_distance"] = float(stats.ks_2samp(y, r).statistic)
    out["differs"] = bool(lo > 0 or hi < 0)
    return out


def compare_lesion_stats(
    real: list[dict[str, Any]],
    synthetic: list[dict[str, Any]],
    settings: LesionStatSettings | None = None,
) -> dict[str, Any]:
    """Real lesions against synthetic ones, per statistic and class.

    Args:
        real, synthetic: per-lesion records of :func:`measure_lesions`, each with a ``group`` key
            (the patient; a synthetic case's background) added by the caller.
        settings: bootstrap size, seed, minimum lesions per arm.

    Returns:
        ``{statistic: {class: comparison}}`` for ``contrast`` and ``hf_power_ratio`` (every lesion
        class of either set), ``speck_count`` / ``speck_size_mm`` / ``speck_brightness``
        (class "calcification"), each comparison as :func:`compare_values` returns it; plus
        ``radial_spectra`` (median radial profiles, for the report) and ``settings``.
    """
    s = settings or LesionStatSettings()
    out: dict[str, Any] = {}

    def pick(records: list[dict[str, Any]], key: str, klass: str) -> tuple[list[Any], list[str]]:
        sel = [x for x in records if str(x["class"]) == klass]
        return [x.get(key) for x in sel], [str(x.get("group")) for x in sel]

    classes = list(dict.fromkeys(str(x["class"]) for x in [*real, *synthetic]))
    for key, unit in LESION_STATISTICS.items():
        # Per class only: masses and calcification clusters differ so much (contrast, texture) that
        # a pooled median would follow the two sets' class mix rather than the lesions' look.
        out[key] = {}
        for klass in classes:
            rv, rg = pick(real, key, klass)
            sv, sg = pick(synthetic, key, klass)
            out[key][klass] = compare_values(rv, rg, sv, sg, unit, s)
    for key, unit in SPECK_STATISTICS.items():
        rv, rg = pick(real, key, "calcification")
        sv, sg = pick(synthetic, key, "calcification")
        if rv or sv:
            out[key] = {"calcification": compare_values(rv, rg, sv, sg, unit, s)}
    out["radial_spectra"] = radial_summary(real, synthetic)
    out["settings"] = {
        "ring_mm": list(s.ring_mm), "hf_band_of_nyquist": list(s.hf_band), "taper_px": s.taper_px,
        "speck_detector": f"white top-hat (disk wider than {s.speck_max_mm} mm), threshold ring median + "
        f"{s.speck_k} x 1.4826 MAD and >= {s.speck_min_height}, local maxima >= {s.speck_min_distance_mm} mm apart",
        "bootstrap": s.bootstrap, "ci": "percentile, resampling patients (synthetic: backgrounds) per arm",
        "resolution": "full-resolution images at their own pixel spacing",
        "n_real_lesions": len(real), "n_synthetic_lesions": len(synthetic),
    }
    return out


def radial_summary(real: list[dict[str, Any]], synthetic: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over lesions of log10(power inside / power in the ring) per radial bin, per arm and class."""
    centres = ((np.arange(N_RADIAL_BINS) + 0.5) / N_RADIAL_BINS).tolist()
    out: dict[str, Any] = {"frequency_of_nyquist": centres}
    for arm, records in (("real", real), ("synthetic", synthetic)):
        out[arm] = {}
        for klass in ("mass", "calcification"):
            rows = [np.log10(np.asarray(x["radial_inside"]) / np.asarray(x["radial_ring"]))
                    for x in records if x["class"] == klass and x.get("radial_inside") is not None]
            if rows:
                with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bins stay NaN
                    med = np.nanmedian(np.stack(rows), axis=0)
                out[arm][klass] = [None if not np.isfinite(v) else float(v) for v in med]
    return out


__all__ = [
    "LESION_STATISTICS",
    "SPECK_STATISTICS",
    "LesionStatSettings",
    "band_power",
    "compare_lesion_stats",
    "compare_values",
    "detect_specks",
    "grouped_bootstrap",
    "measure_lesions",
    "radial_power",
]
