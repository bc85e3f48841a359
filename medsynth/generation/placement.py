"""Where a synthetic lesion may go: the breast-tissue mask of an image and a free spot inside it.

The tissue mask is computed from the pixels alone (no header needed): Otsu's threshold separates
the breast from the dark background (air), then morphology keeps the largest connected region,
fills its holes and smooths the outline (scikit-image / SciPy). A lesion is placed only where

* it lies wholly inside the tissue, at least ``skin_margin_mm`` from the skin line (the tissue
  boundary and the image border),
* at least ``chest_wall_margin_mm`` from the chest-wall edge (the image side the breast touches
  most), and
* at least ``gap_mm`` from any lesion already in the image (existing labels or ones placed before),

and its position is drawn uniformly among all such spots with the case's random generator.

Large images (full-field mammograms of several thousand pixels) are analysed on a grid of at most
:data:`COARSE_PX` pixels a side: morphology and distance transforms cost seconds at full size. The
reduction is conservative -- tissue by block minimum, occupied pixels by block maximum -- so a
coarse margin is never smaller than asked, and a pixel whose block holds a lesion is never free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

COARSE_PX = 512


def coarse_factor(shape: tuple[int, ...]) -> int:
    """Block size that brings the longer side of ``shape`` to at most :data:`COARSE_PX` pixels."""
    return max(1, int(np.ceil(max(shape) / COARSE_PX)))


def _reduce(mask: np.ndarray, f: int, keep_all: bool) -> np.ndarray:
    """Block-reduce a bool mask by ``f``: all pixels (``keep_all``) or any pixel of a block."""
    if f == 1:
        return mask
    from skimage.measure import block_reduce

    # Blocks reaching past the border are padded with False: not tissue, not occupied.
    return block_reduce(mask, (f, f), np.min if keep_all else np.max, cval=False)


def _expand(mask: np.ndarray, f: int, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a block-reduced mask back to ``shape``."""
    if f == 1:
        return mask
    return np.repeat(np.repeat(mask, f, axis=0), f, axis=1)[: shape[0], : shape[1]]


@dataclass(frozen=True)
class PlacementSettings:
    """Margins of lesion placement, in mm (defaults: the ``placement`` section of ``configs/generate.yaml``)."""

    skin_margin_mm: float
    chest_wall_margin_mm: float
    gap_mm: float

    @classmethod
    def from_config(cls, given: dict[str, float] | None = None) -> "PlacementSettings":
        """The settings of ``configs/generate.yaml`` with ``given`` laid over them.

        Raises:
            ConfigError: an unknown setting.
        """
        from medsynth.config import load_config

        section = load_config({"placement": dict(given or {})}, kind="generate")["placement"]
        return cls(**{k: float(v) for k, v in section.items()})


def tissue_mask(image: np.ndarray, min_area_fraction: float = 0.01) -> np.ndarray:
    """The breast-tissue mask of a mammogram (display polarity: tissue brighter than air).

    Args:
        image: (rows, cols) float image (any range).
        min_area_fraction: a region smaller than this share of the image counts as no tissue.

    Returns:
        bool (rows, cols): the largest bright connected region, holes filled, outline smoothed.
        All False when the image is flat or no region is large enough.
    """
    from skimage.filters import threshold_otsu
    from skimage.morphology import disk

    full_shape = image.shape
    image = np.asarray(image, dtype=np.float32)
    lo, hi = float(image.min()), float(image.max())
    if not hi > lo:
        return np.zeros(full_shape, dtype=bool)
    f = coarse_factor(full_shape)
    if f > 1:
        from skimage.measure import block_reduce

        image = block_reduce(image, (f, f), np.mean, cval=lo)
    # Otsu on the full image splits air from tissue; halving the distance to the background level
    # keeps the thin, dim skin edge of the breast inside the mask.
    otsu = float(threshold_otsu(image))
    background = float(np.median(image[image <= otsu])) if np.any(image <= otsu) else lo
    raw = image > background + 0.5 * (otsu - background)
    radius = max(1, int(round(min(image.shape) / 200)))
    raw = ndimage.binary_opening(raw, structure=disk(radius))
    labels, n = ndimage.label(raw)
    if n == 0:
        return np.zeros(full_shape, dtype=bool)
    sizes = ndimage.sum_labels(raw, labels, index=np.arange(1, n + 1))
    largest = int(np.argmax(sizes)) + 1
    if sizes[largest - 1] < min_area_fraction * image.size:
        return np.zeros(full_shape, dtype=bool)
    return _expand(ndimage.binary_fill_holes(labels == largest), f, full_shape)


def chest_wall_side(tissue: np.ndarray) -> str:
    """``"left"`` or ``"right"``: the image edge (column 0 or the last) the breast touches most."""
    return "left" if int(tissue[:, 0].sum()) >= int(tissue[:, -1].sum()) else "right"


def allowed_region(tissue: np.ndarray, spacing: tuple[float, float], occupied: np.ndarray | None = None,
                   settings: PlacementSettings | None = None) -> np.ndarray:
    """Pixels a lesion may cover: inside the tissue and away from skin, chest wall and other lesions.

    Args:
        tissue: bool tissue mask.
        spacing: (row, col) mm per pixel.
        occupied: bool mask of lesions already in the image (None: none).
        settings: the margins (None: ``configs/generate.yaml``).
    """
    settings = settings or PlacementSettings.from_config()
    tissue = np.asarray(tissue, dtype=bool)
    shape = tissue.shape
    side = chest_wall_side(tissue)
    f = coarse_factor(shape)
    coarse_spacing = (spacing[0] * f, spacing[1] * f)
    # Distances between block centres can exceed pixel distances by this much; added to margins.
    slack = (f - 1) * float(np.hypot(spacing[0], spacing[1]))
    small = _reduce(tissue, f, keep_all=True)
    # Distance (mm) to the nearest non-tissue pixel, the image border counting as one; the chest
    # wall edge is treated separately below, so it is not border here.
    padded = np.pad(small, 1, constant_values=False)
    if side == "left":
        padded[:, 0] = padded[:, 1]
    else:
        padded[:, -1] = padded[:, -2]
    skin_dist = ndimage.distance_transform_edt(padded, sampling=coarse_spacing)[1:-1, 1:-1]
    allowed = small & (skin_dist >= settings.skin_margin_mm + slack)
    if occupied is not None and np.any(occupied):
        busy = _reduce(np.asarray(occupied, dtype=bool), f, keep_all=False)
        near = ndimage.distance_transform_edt(~busy, sampling=coarse_spacing)
        allowed &= near > settings.gap_mm + slack
    allowed = _expand(allowed, f, shape) & tissue
    if occupied is not None:
        allowed &= ~np.asarray(occupied, dtype=bool)
    cols_mm = np.arange(shape[1]) * spacing[1]
    chest_dist = cols_mm if side == "left" else cols_mm[::-1]
    allowed &= (chest_dist >= settings.chest_wall_margin_mm)[None, :]
    return allowed


def valid_positions(allowed: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """bool (H-h+1, W-w+1): top-left corners where ``lesion`` (h, w) lies wholly inside ``allowed``.

    Counts the blocked pixels under the lesion at every offset with an FFT correlation.
    """
    from scipy.signal import fftconvolve

    H, W = allowed.shape
    h, w = lesion.shape
    if h > H or w > W:
        return np.zeros((0, 0), dtype=bool)
    blocked = (~np.asarray(allowed, dtype=bool)).astype(np.float32)
    footprint = np.asarray(lesion, dtype=np.float32)[::-1, ::-1]
    overlap = fftconvolve(blocked, footprint, mode="valid")
    return overlap < 0.5


def place_lesion(allowed: np.ndarray, lesion: np.ndarray, rng: np.random.Generator) -> tuple[int, int] | None:
    """A random top-left corner (row, col) where ``lesion`` fits in ``allowed``; None when none does."""
    valid = valid_positions(allowed, lesion)
    candidates = np.flatnonzero(valid)
    if candidates.size == 0:
        return None
    pick = int(candidates[int(rng.integers(candidates.size))])
    r, c = np.unravel_index(pick, valid.shape)
    return int(r), int(c)
