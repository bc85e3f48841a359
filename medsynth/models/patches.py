"""Region-of-interest (ROI) helpers: what a lesion is, a patch cropped around it at a fixed physical
pixel spacing, and the edited patch pasted back into the full-size image with a feathered edge.

:func:`lesion_components` is the one rule for "a lesion" (training, evaluation, generation's real
masks and the audit all cut lesions with it): the parts of a mask within a merge distance of each
other are one lesion (a spiculated mass, not one lesion per spicule), and parts smaller than a
minimum area are no lesion. :func:`lesion_crop_centres` is where training centres its lesion crops,
so the membership-inference audit can cut the same crops.

The inpainting model works on small patches (e.g. 64 px at 0.5 mm/px = a 32 mm square) whatever
the source resolution, so a lesion keeps its size in millimetres and memory is bounded by the ROI,
not by the mammogram. Cropping averages (anti-aliases) when it shrinks; pasting back interpolates
linearly and changes only the pixels inside the mask and a thin feathered band around it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.transform import resize

from medsynth.errors import ConfigError, InvalidImageError, InvalidMaskError

# Where the training data's lesion rule is configured: the ``data`` section of configs/train.yaml.
LESION_RULE_KEYS = ("merge_mm", "min_lesion_mm2", "margin_mm")


@dataclass(frozen=True)
class Lesion:
    """One lesion of a label map, as :func:`lesion_components` finds it.

    Attributes:
        box: (r0, c0, r1, c1): rows [r0, r1) and columns [c0, c1) of the lesion's own pixels.
        region: (r0, c0, r1, c1) of the lesion's pixels grown by the merge distance (clipped to the
            image), the area in which its parts were joined. Training centres its crops on it and
            measures the lesion's extent on it (:func:`lesion_crop_centres`).
        mask: bool (r1 - r0, c1 - c0), the lesion's own pixels inside ``box``.
        label: its class: the most common label value among its pixels.
        area_mm2: its own area (pixel count x row spacing x column spacing).
        image_shape: (rows, cols) of the label map it came from.
    """

    box: tuple[int, int, int, int]
    region: tuple[int, int, int, int]
    mask: np.ndarray
    label: int
    area_mm2: float
    image_shape: tuple[int, int]

    def full_mask(self) -> np.ndarray:
        """The lesion's pixels as a bool array of the label map's shape."""
        out = np.zeros(self.image_shape, dtype=bool)
        r0, c0, r1, c1 = self.box
        out[r0:r1, c0:c1] = self.mask
        return out

    def extent_mm(self, spacing: tuple[float, float]) -> float:
        """The larger side of the lesion's own bounding box in mm."""
        r0, c0, r1, c1 = self.box
        return float(max((r1 - r0) * float(spacing[0]), (c1 - c0) * float(spacing[1])))


def lesion_components(
    label_map: np.ndarray,
    spacing: tuple[float, float],
    merge_mm: float,
    min_lesion_mm2: float,
) -> list[Lesion]:
    """The lesions of a label map (or binary mask): the one rule for "a lesion".

    Every pixel > 0 is lesion. Each part is grown by ``merge_mm`` (rounded to whole pixels of the
    finer spacing, at least one pixel when ``merge_mm`` > 0; 4-neighbour steps) and parts whose grown
    regions touch are one lesion, so parts up to about twice ``merge_mm`` apart are joined: a
    spiculated mass keeps its spicules, a calcification cluster outlined speck by speck stays one
    finding when ``merge_mm`` is large enough. ``merge_mm`` 0 keeps 4-connected parts apart;
    ``math.inf`` makes all pixels one lesion. Lesions whose own area is below ``min_lesion_mm2``
    (specks) are dropped.

    Args:
        label_map: (rows, cols) label map or binary mask.
        spacing: (row, col) mm per pixel (``(1, 1)`` measures ``merge_mm`` and ``min_lesion_mm2`` in pixels).
        merge_mm: parts whose grown regions touch are one lesion (see above).
        min_lesion_mm2: smaller lesions are dropped.

    Returns:
        The lesions in scan order of their merged regions (top to bottom, then left to right).

    Raises:
        InvalidMaskError: the label map is not 2-D.
        ConfigError: spacing not positive, ``merge_mm`` or ``min_lesion_mm2`` negative or NaN.
    """
    labels = np.asarray(label_map)
    if labels.ndim != 2:
        raise InvalidMaskError(f"expected a 2-D label map, got shape {labels.shape}")
    sr, sc = float(spacing[0]), float(spacing[1])
    if not (sr > 0 and sc > 0 and math.isfinite(sr) and math.isfinite(sc)):
        raise ConfigError(f"pixel spacing must be positive, got {spacing}")
    merge_mm, min_lesion_mm2 = float(merge_mm), float(min_lesion_mm2)
    if not merge_mm >= 0:
        raise ConfigError(f"the lesion merge distance must be >= 0 mm, got {merge_mm}")
    if not (min_lesion_mm2 >= 0 and math.isfinite(min_lesion_mm2)):
        raise ConfigError(f"the minimum lesion area must be a number >= 0 mm², got {min_lesion_mm2}")
    binary = labels > 0
    if not binary.any():
        return []
    if math.isinf(merge_mm):
        merged, n = binary.astype(np.int32), 1
    else:
        grown = binary
        if merge_mm > 0:
            radius = max(1, int(round(merge_mm / min(sr, sc))))
            grown = ndimage.binary_dilation(binary, iterations=radius)
        merged, n = ndimage.label(grown)
    areas = ndimage.sum(binary, merged, range(1, n + 1)) * sr * sc
    lesions = []
    for k, sl in enumerate(ndimage.find_objects(merged)):
        if sl is None or areas[k] < min_lesion_mm2:
            continue
        own = binary[sl] & (merged[sl] == k + 1)
        rows, cols = np.nonzero(own)
        r0, r1 = int(rows.min()), int(rows.max()) + 1
        c0, c1 = int(cols.min()), int(cols.max()) + 1
        mask = own[r0:r1, c0:c1]
        values = labels[sl][r0:r1, c0:c1][mask]
        kinds, counts = np.unique(values, return_counts=True)
        lesions.append(Lesion(
            box=(sl[0].start + r0, sl[1].start + c0, sl[0].start + r1, sl[1].start + c1),
            region=(sl[0].start, sl[1].start, sl[0].stop, sl[1].stop),
            mask=mask,
            label=int(kinds[np.argmax(counts)]),
            area_mm2=float(areas[k]),
            image_shape=(int(labels.shape[0]), int(labels.shape[1])),
        ))
    return lesions


@lru_cache(maxsize=1)
def _train_data_defaults() -> tuple[tuple[str, float], ...]:
    from medsynth.config import load_config

    data = load_config(None, kind="train")["data"]
    return tuple((key, float(data[key])) for key in LESION_RULE_KEYS)


def default_lesion_rule() -> dict[str, float]:
    """The training data's lesion rule as configs/train.yaml sets it: ``merge_mm``, ``min_lesion_mm2``
    (the :func:`lesion_components` parameters) and ``margin_mm`` (context kept around a crop)."""
    return dict(_train_data_defaults())


def lesion_rule_of(settings: dict[str, Any] | None) -> dict[str, float]:
    """The lesion rule in ``settings`` (a train config's ``data`` section, or what a model card
    recorded), the configs/train.yaml defaults for what it lacks."""
    rule = default_lesion_rule()
    for key in LESION_RULE_KEYS:
        if settings and settings.get(key) is not None:
            rule[key] = float(settings[key])
    return rule


def lesion_crop_centres(
    mask: np.ndarray,
    spacing: tuple[float, float],
    roi_mm: float,
    merge_mm: float,
    min_lesion_mm2: float,
    margin_mm: float,
) -> tuple[list[tuple[tuple[float, float], float]], int]:
    """Where training centres its lesion crops: one ROI of ``roi_mm`` per lesion.

    Each lesion of :func:`lesion_components` is centred on its merged region, and keeps
    ``margin_mm`` of context on each side; a lesion for which that does not fit is not cut.

    Returns:
        ([((row, col) centre in source pixels, room in mm the centre may move and keep the margin),
        ...], number of lesions too large for the ROI).
    """
    sr, sc = float(spacing[0]), float(spacing[1])
    centres: list[tuple[tuple[float, float], float]] = []
    too_large = 0
    for lesion in lesion_components(mask, (sr, sc), merge_mm, min_lesion_mm2):
        r0, c0, r1, c1 = lesion.region
        extent = max((r1 - r0) * sr, (c1 - c0) * sc)
        room = (roi_mm - extent) / 2 - margin_mm
        if room < 0:
            too_large += 1
            continue
        centres.append((((r0 + r1 - 1) / 2, (c0 + c1 - 1) / 2), room))
    return centres, too_large


@dataclass(frozen=True)
class RoiBox:
    """Where a patch came from in the full-size image.

    Attributes:
        r0, r1, c0, c1: the source rows [r0, r1) and columns [c0, c1) the patch covers; they may
            reach past the image border (that part was padded by edge replication).
        image_shape: (rows, cols) of the full-size image.
        spacing: (row, col) mm per pixel of the full-size image.
        out_px: side of the patch in pixels.
        patch_spacing: (row, col) mm per pixel of the patch.
    """

    r0: int
    r1: int
    c0: int
    c1: int
    image_shape: tuple[int, int]
    spacing: tuple[float, float]
    out_px: int
    patch_spacing: tuple[float, float]


def check_image_and_mask(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a full-size 2-D image and its binary mask; return them as float32 and bool.

    Raises:
        InvalidImageError: the image is not 2-D or holds NaN/inf.
        InvalidMaskError: the mask's shape differs from the image's, or the mask is empty.
    """
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 2:
        raise InvalidImageError(f"expected a 2-D image, got shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise InvalidImageError(f"image holds {int(np.sum(~np.isfinite(image)))} NaN/inf pixel(s)")
    if mask.shape != image.shape:
        raise InvalidMaskError(f"mask shape {mask.shape} differs from image shape {image.shape}")
    mask = mask > 0
    if not mask.any():
        raise InvalidMaskError("mask is empty (no pixel > 0)")
    return image.astype(np.float32, copy=False), mask


def crop_roi(
    image: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float],
    roi_mm: float,
    out_px: int,
    center: tuple[float, float] | None = None,
    margin_mm: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, RoiBox]:
    """Crop a square ROI of ``roi_mm`` millimetres around the mask and resample it to ``out_px``.

    Args:
        image: (rows, cols) full-size image.
        mask: (rows, cols) binary mask (or label map; > 0 counts).
        spacing: (row, col) mm per pixel of ``image``.
        roi_mm: side of the square ROI in mm (the model's ``image_size * spacing_mm``).
        out_px: side of the returned patch in pixels.
        center: (row, col) centre of the ROI in source pixels; default the centre of the mask's
            bounding box.
        margin_mm: the mask must stay this far inside the ROI so the model sees context around it.

    Returns:
        (patch float32 (out_px, out_px), patch_mask bool (out_px, out_px), box).

    Raises:
        InvalidImageError, InvalidMaskError: see :func:`check_image_and_mask`; also when the
            mask does not fit in the ROI or the ROI lies outside the image.
    """
    image, mask = check_image_and_mask(image, mask)
    sr, sc = float(spacing[0]), float(spacing[1])
    if not (sr > 0 and sc > 0 and np.isfinite(sr) and np.isfinite(sc)):
        raise InvalidImageError(f"pixel spacing must be positive, got {spacing}")
    rows, cols = np.nonzero(mask)
    extent_mm = max((rows.max() - rows.min() + 1) * sr, (cols.max() - cols.min() + 1) * sc)
    if extent_mm > roi_mm - 2 * margin_mm:
        raise InvalidMaskError(
            f"mask spans {extent_mm:.1f} mm, too large for the model's {roi_mm:.1f} mm ROI "
            f"(at most {roi_mm - 2 * margin_mm:.1f} mm with a {margin_mm} mm margin)"
        )
    if center is None:
        center = ((rows.min() + rows.max()) / 2.0, (cols.min() + cols.max()) / 2.0)
    patch, patch_mask, box = crop_at(image, (sr, sc), center, roi_mm, out_px, mask=mask)
    assert patch_mask is not None
    if not patch_mask.any():
        # A lesion smaller than one patch pixel: keep at least the pixel at its centre.
        cr, cc = ndimage.center_of_mass(mask)
        r = int((cr - box.r0) / (box.r1 - box.r0) * out_px)
        c = int((cc - box.c0) / (box.c1 - box.c0) * out_px)
        patch_mask[min(max(r, 0), out_px - 1), min(max(c, 0), out_px - 1)] = True
    return patch, patch_mask, box


def crop_at(
    image: np.ndarray,
    spacing: tuple[float, float],
    center: tuple[float, float],
    roi_mm: float,
    out_px: int,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, RoiBox]:
    """Crop a ``roi_mm`` square centred on ``center`` (source pixels) and resample it to ``out_px``.

    No checks beyond the ROI overlapping the image; :func:`crop_roi` is the checked entry point.
    Parts of the ROI past the image border are filled by edge replication (mask: zeros).

    Returns:
        (patch float32, patch_mask bool or None, box).
    """
    sr, sc = float(spacing[0]), float(spacing[1])
    h, w = int(round(roi_mm / sr)), int(round(roi_mm / sc))
    r0 = int(round(center[0] - (h - 1) / 2.0))
    c0 = int(round(center[1] - (w - 1) / 2.0))
    box = RoiBox(
        r0, r0 + h, c0, c0 + w, tuple(image.shape), (sr, sc), int(out_px), (h * sr / out_px, w * sc / out_px)
    )
    if box.r1 <= 0 or box.c1 <= 0 or box.r0 >= image.shape[0] or box.c0 >= image.shape[1]:
        raise InvalidMaskError(
            f"ROI rows {box.r0}:{box.r1}, cols {box.c0}:{box.c1} lie outside the image {tuple(image.shape)}"
        )
    shrink = h > out_px
    region = _read_region(np.asarray(image, dtype=np.float32), box)
    patch = resize(region, (out_px, out_px), order=1, anti_aliasing=shrink, preserve_range=True)
    patch_mask = None
    if mask is not None:
        region_mask = _read_region(np.asarray(mask > 0, dtype=np.float32), box, pad_mode="constant")
        # Area fraction > 0.5 keeps the lesion's size in mm when the mask is shrunk.
        patch_mask = resize(region_mask, (out_px, out_px), order=1, anti_aliasing=shrink, preserve_range=True) > 0.5
    return patch.astype(np.float32), patch_mask, box


def _read_region(image: np.ndarray, box: RoiBox, pad_mode: str = "edge") -> np.ndarray:
    """The source pixels under ``box``, padded where the box reaches past the image border."""
    H, W = image.shape
    rr0, rr1, cc0, cc1 = max(box.r0, 0), min(box.r1, H), max(box.c0, 0), min(box.c1, W)
    region = image[rr0:rr1, cc0:cc1]
    pad = ((rr0 - box.r0, box.r1 - rr1), (cc0 - box.c0, box.c1 - cc1))
    if any(p for pair in pad for p in pair):
        region = np.pad(region, pad, mode=pad_mode)
    return region


def feather_weights(mask: np.ndarray, feather_px: float) -> np.ndarray:
    """Blend weights: 1 inside the mask, falling linearly to 0 over ``feather_px`` pixels outside.

    Pixels farther than ``feather_px`` from the mask get exactly 0, so they keep their value.
    """
    mask = np.asarray(mask, dtype=bool)
    if feather_px <= 0:
        return mask.astype(np.float32)
    dist = ndimage.distance_transform_edt(~mask)
    return np.clip(1.0 - dist / float(feather_px), 0.0, 1.0).astype(np.float32)


def paste_roi(
    image: np.ndarray,
    patch: np.ndarray,
    box: RoiBox,
    mask: np.ndarray,
    feather_mm: float = 1.0,
) -> np.ndarray:
    """Paste an edited patch back into (a copy of) the full-size image.

    The patch is resampled to the source grid of ``box``; inside the mask it replaces the image,
    over ``feather_mm`` around the mask it is blended in linearly, and beyond that the image is
    untouched (bit for bit). Only the ROI is resampled, so memory is bounded by the ROI.

    Args:
        image: (rows, cols) full-size image the patch was cropped from.
        patch: (out_px, out_px) edited patch.
        box: the :class:`RoiBox` :func:`crop_roi` returned.
        mask: (rows, cols) full-size binary mask of the region that was edited.
        feather_mm: width of the blend band outside the mask, in mm.

    Returns:
        A new float32 array, the image with the patch pasted in.
    """
    image = np.asarray(image, dtype=np.float32)
    patch = np.asarray(patch, dtype=np.float32)
    if image.shape != tuple(box.image_shape):
        raise InvalidImageError(f"image shape {image.shape} differs from the ROI's source shape {box.image_shape}")
    if patch.shape != (box.out_px, box.out_px):
        raise InvalidImageError(f"patch shape {patch.shape} differs from the ROI's ({box.out_px}, {box.out_px})")
    if np.asarray(mask).shape != image.shape:
        raise InvalidMaskError(f"mask shape {np.asarray(mask).shape} differs from image shape {image.shape}")
    H, W = image.shape
    h, w = box.r1 - box.r0, box.c1 - box.c0
    up = resize(patch, (h, w), order=1, anti_aliasing=False, preserve_range=True).astype(np.float32)
    rr0, rr1, cc0, cc1 = max(box.r0, 0), min(box.r1, H), max(box.c0, 0), min(box.c1, W)
    up = up[rr0 - box.r0 : rr1 - box.r0, cc0 - box.c0 : cc1 - box.c0]
    region_mask = np.asarray(mask)[rr0:rr1, cc0:cc1] > 0
    feather_px = feather_mm / min(box.spacing)
    weight = feather_weights(region_mask, feather_px)
    out = image.copy()
    region = out[rr0:rr1, cc0:cc1]
    blended = region + weight * (up - region)
    # Exact copy where the weight is 0 (no rounding through the blend formula).
    out[rr0:rr1, cc0:cc1] = np.where(weight > 0, blended, region)
    return out


def _resize(a: np.ndarray, shape: tuple[int, int], shrink: bool) -> np.ndarray:
    if tuple(a.shape) == tuple(shape):
        return np.asarray(a, dtype=np.float32)
    return resize(a, shape, order=1, anti_aliasing=shrink, preserve_range=True).astype(np.float32)


def _extend(values: np.ndarray, pure: np.ndarray) -> np.ndarray:
    """``values`` where ``pure``, elsewhere filled from the nearby pure pixels (normalised Gaussian
    convolution at growing widths): the field on one side of an outline, continued across it, so
    the pixels the outline cuts (a mix of both sides) do not blur the edge when resampled."""
    if pure.all() or not pure.any():
        return values
    out = values.copy()
    todo = ~pure
    for sigma in (1.0, 2.0, 4.0, 8.0, 16.0):
        num = ndimage.gaussian_filter(np.where(pure, values, 0.0), sigma, mode="nearest")
        den = ndimage.gaussian_filter(pure.astype(np.float64), sigma, mode="nearest")
        ok = todo & (den > 1e-3)
        out[ok] = (num[ok] / den[ok]).astype(out.dtype)
        todo &= ~ok
        if not todo.any():
            break
    return out


def paste_change(
    image: np.ndarray,
    painted: np.ndarray,
    given: np.ndarray,
    box: RoiBox,
    region: np.ndarray,
    lesion: np.ndarray,
    feather_mm: float = 1.0,
    transmission: float = 1.0,
) -> np.ndarray:
    """Add the change a model made to a patch (``painted - given``) to (a copy of) the full-size image.

    The patch may be coarser than the image. Only the change is resampled to the image grid, so the
    image keeps its own detail above the patch's Nyquist frequency (a lesion in a mammogram adds to
    the tissue it overlaps; the tissue's texture stays visible through it). The change is resampled
    on each side of the full-resolution lesion outline separately: the patch pixels wholly inside
    the lesion (area fraction > 0.95) are continued across the outline into the pixels it cuts, the
    same for the pixels wholly outside, each field is upsampled, and the full-resolution mask picks
    which one a pixel takes. So the lesion's edge is as sharp as its mask, not as the patch grid.
    Inside the lesion the image's fine detail is scaled by ``transmission`` (how much of the tissue
    texture shows through a lesion; 1 keeps it all). When the patch has the image's spacing
    the result is the painted patch itself (up to float rounding) inside the region.

    Args:
        image: (rows, cols) full-size image the patch was cropped from.
        painted: (S, S) the model's output.
        given: (S, S) the patch the model was given (:func:`crop_roi`'s).
        box: the :class:`RoiBox` of the crop.
        region: (rows, cols) bool, what the model was allowed to change (lesion + band).
        lesion: (rows, cols) bool, the lesion itself (its label).
        feather_mm: width of the blend band outside ``region``, in mm.
        transmission: share of the image's fine detail kept inside the lesion.

    Returns:
        A new float32 array; pixels farther than ``feather_mm`` from ``region`` are bit-identical.
    """
    image = np.asarray(image, dtype=np.float32)
    painted = np.asarray(painted, dtype=np.float32)
    given = np.asarray(given, dtype=np.float32)
    if image.shape != tuple(box.image_shape):
        raise InvalidImageError(f"image shape {image.shape} differs from the ROI's source shape {box.image_shape}")
    if painted.shape != (box.out_px, box.out_px) or given.shape != painted.shape:
        raise InvalidImageError(f"patch shapes {painted.shape}, {given.shape} differ from the ROI's "
                                f"({box.out_px}, {box.out_px})")
    for name, m in (("region", region), ("lesion", lesion)):
        if np.asarray(m).shape != image.shape:
            raise InvalidMaskError(f"{name} mask shape {np.asarray(m).shape} differs from image shape {image.shape}")
    H, W = image.shape
    h, w = box.r1 - box.r0, box.c1 - box.c0
    rr0, rr1, cc0, cc1 = max(box.r0, 0), min(box.r1, H), max(box.c0, 0), min(box.c1, W)
    inner = (slice(rr0 - box.r0, rr1 - box.r0), slice(cc0 - box.c0, cc1 - box.c0))
    lesion_box = _read_region(np.asarray(lesion, dtype=np.float32), box, pad_mode="constant")
    shrink = h > box.out_px
    fraction = np.clip(_resize(lesion_box, (box.out_px, box.out_px), shrink), 0.0, 1.0)
    change = painted - given
    finer = h < box.out_px  # a patch finer than the image is shrunk onto it (anti-aliased)
    parts = [_resize(_extend(change, pure), (h, w), finer) for pure in (fraction > 0.95, fraction < 0.05)]
    fine = lesion_box > 0.5
    change_full = np.where(fine, parts[0], parts[1])[inner]
    region_here = np.asarray(region)[rr0:rr1, cc0:cc1] > 0
    weight = feather_weights(region_here, feather_mm / min(box.spacing))
    out = image.copy()
    here = out[rr0:rr1, cc0:cc1]
    new = here + weight * change_full
    if transmission != 1.0 and shrink:
        detail = here - _resize(given, (h, w), finer)[inner]
        new = new + (float(transmission) - 1.0) * fine[inner] * detail
    out[rr0:rr1, cc0:cc1] = np.where(weight > 0, np.clip(new, 0.0, 1.0), here)
    return out
