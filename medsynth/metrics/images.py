"""Turn whatever the user calls "a set of images" into the fixed-size arrays the metrics compare.

Evaluation inputs may be a dataset path (anything :func:`medsynth.io.datasets.load_dataset` reads),
a loaded ``Dataset`` / list of :class:`~medsynth.io.scan.Case`, or an in-memory ``(N, H, W)`` array
in [0, 1]. Every metric works on the same preprocessed form:

- whole images: ``Scan.unit_pixels()`` padded to a square (with the image's own background level,
  so the breast keeps its shape) and downsampled with anti-aliasing to ``image_px`` (128 by default);
- lesion ROIs: one square crop per lesion (training's rule) at a fixed physical size
  (``roi_mm``, 32 mm by default), resampled to ``roi_px`` (64) with
  :func:`medsynth.models.patches.crop_roi`, so a lesion keeps its size in millimetres whatever the
  source resolution.

:func:`content_hash` fingerprints a preprocessed set; caches of real-set features and of the trained
domain encoder are keyed by it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from skimage.transform import resize

from medsynth.errors import InvalidDatasetError, InvalidImageError, InvalidMaskError
from medsynth.models.patches import crop_roi, default_lesion_rule, lesion_components


@dataclass
class ImageSet:
    """A preprocessed set of images (and, when masks exist, lesion ROIs).

    Attributes:
        images: (N, image_px, image_px) float32 in [0, 1].
        source: what the set was read from (a path, or "array") -- used in messages and reports.
        case_ids: one id per image.
        rois: (M, roi_px, roi_px) float32 lesion crops, or None when the set has no masks.
        roi_masks: (M, roi_px, roi_px) bool lesion masks of the crops, or None.
        roi_case_index: (M,) index into ``images`` of the image each ROI came from.
    """

    images: np.ndarray
    source: str
    case_ids: list[str] = field(default_factory=list)
    rois: np.ndarray | None = None
    roi_masks: np.ndarray | None = None
    roi_case_index: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def content_hash(*arrays: np.ndarray | None, extra: str = "") -> str:
    """SHA-256 (hex, 24 chars) over the arrays' shapes, dtypes and bytes plus ``extra``."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    h.update(extra.encode())
    return h.hexdigest()[:24]


def check_image_array(images: Any, what: str = "images", source: str | None = None) -> np.ndarray:
    """Validate an ``(N, H, W)`` array of images in [0, 1] and return it as float32.

    Raises:
        InvalidImageError: not 3-D, empty, NaN/inf, or values outside [0, 1].
    """
    arr = np.asarray(images)
    if arr.ndim != 3:
        raise InvalidImageError(f"{what} must be an (N, H, W) array, got shape {arr.shape}", source)
    if arr.shape[0] == 0:
        raise InvalidImageError(f"{what} is empty (0 images)", source)
    if arr.shape[1] < 8 or arr.shape[2] < 8:
        raise InvalidImageError(f"{what} are too small ({arr.shape[1]}x{arr.shape[2]} px; need >= 8)", source)
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise InvalidImageError(f"{what} hold {int(np.sum(~np.isfinite(arr)))} NaN/inf value(s)", source)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise InvalidImageError(f"{what} must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]", source)
    return np.clip(arr, 0.0, 1.0)


def to_square(image: np.ndarray, size: int) -> np.ndarray:
    """Pad a 2-D image to a square (with its minimum, i.e. background) and resize with anti-aliasing."""
    h, w = image.shape
    if h != w:
        side = max(h, w)
        # Centre the shorter axis so left/right breasts are treated alike.
        pad = (((side - h) // 2, side - h - (side - h) // 2), ((side - w) // 2, side - w - (side - w) // 2))
        image = np.pad(image, pad, mode="constant", constant_values=float(image.min()))
    if image.shape[0] == size:
        return image.astype(np.float32, copy=False)
    out = resize(image, (size, size), order=1, anti_aliasing=image.shape[0] > size, preserve_range=True)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def lesion_rois(
    image: np.ndarray,
    label_map: np.ndarray,
    spacing: tuple[float, float],
    roi_mm: float,
    roi_px: int,
    margin_mm: float = 2.0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One lesion-centred crop per lesion of ``label_map``.

    The lesions are training's (:func:`medsynth.models.patches.lesion_components` with the
    configs/train.yaml ``merge_mm`` and ``min_lesion_mm2``), so real and synthetic ROIs hold what the
    model learns as a lesion. A lesion larger than the ROI gets a larger crop (resampled to the same
    ``roi_px``), so no lesion is dropped; the crop is :func:`medsynth.models.patches.crop_roi`'s.

    Returns:
        A list of (patch float32 (roi_px, roi_px), patch_mask bool (roi_px, roi_px)).
    """
    if label_map.shape != image.shape:
        raise InvalidMaskError(f"mask shape {label_map.shape} differs from image shape {image.shape}")
    rule = default_lesion_rule()
    out = []
    for lesion in lesion_components(label_map, spacing, rule["merge_mm"], rule["min_lesion_mm2"]):
        size_mm = max(roi_mm, lesion.extent_mm(spacing) + 2 * margin_mm + 1e-3)
        patch, pmask, _ = crop_roi(image, lesion.full_mask(), spacing, size_mm, roi_px, margin_mm=margin_mm)
        out.append((np.clip(patch, 0.0, 1.0).astype(np.float32), pmask))
    return out


def load_image_set(
    data: Any,
    image_px: int | None = None,
    roi_mm: float | None = None,
    roi_px: int | None = None,
    with_rois: bool = True,
    what: str = "images",
    progress: bool = False,
) -> ImageSet:
    """Read and preprocess a set of images (see the module docstring for what ``data`` may be).

    Args:
        data: a dataset path, a Dataset / sequence of Cases, an :class:`ImageSet` (returned as is)
            or an (N, H, W) array in [0, 1] (no masks, so no ROIs).
        image_px: side of the preprocessed whole images.
        roi_mm: physical side of lesion crops.
        roi_px: side of lesion crops in pixels.
            (None: the setting of ``configs/evaluate.yaml``, for each of the three.)
        with_rois: also crop lesion ROIs when the cases carry masks.
        what: how messages name this set ("real", "synthetic", ...).
        progress: show a rich progress bar while reading.

    Raises:
        InvalidDatasetError: the set is empty.
        InvalidImageError / InvalidMaskError: a file or array is unusable (the message names it).
    """
    if isinstance(data, ImageSet):
        return data
    from medsynth.config import load_config

    cfg = load_config(kind="evaluate", overrides={"image_px": image_px, "roi_mm": roi_mm, "roi_px": roi_px})
    image_px, roi_mm, roi_px = int(cfg["image_px"]), float(cfg["roi_mm"]), int(cfg["roi_px"])
    if isinstance(data, (str, Path)):
        from medsynth.io.datasets import load_dataset

        try:
            cases: Sequence[Any] = load_dataset(Path(data))
        except FileNotFoundError as e:
            raise InvalidDatasetError(f"{what} set: no such file or folder", data) from e
        source = str(data)
    elif isinstance(data, np.ndarray) or (
        isinstance(data, Sequence) and len(data) and isinstance(data[0], np.ndarray)
    ):
        arr = check_image_array(np.stack(list(data)) if not isinstance(data, np.ndarray) else data, what)
        images = np.stack([to_square(a, image_px) for a in arr])
        return ImageSet(images=images, source="array", case_ids=[str(i) for i in range(len(images))])
    elif isinstance(data, Sequence):
        cases = data
        source = str(getattr(data, "root", "cases"))
    else:
        raise InvalidDatasetError(f"{what}: cannot read a set of images from a {type(data).__name__}")
    if len(cases) == 0:
        raise InvalidDatasetError(f"{what} set holds no images", source)

    images, ids, rois, roi_masks, roi_idx = [], [], [], [], []
    any_mask = False
    from medsynth.utils import progress_bar

    with progress_bar(progress) as bar:
        task = bar.add_task(f"reading {what}", total=len(cases))
        for i, case in enumerate(cases):
            scan = case.image
            try:
                px = scan.unit_pixels()
            except (OSError, ValueError) as e:
                raise InvalidImageError(f"cannot read pixels ({e})", scan.path) from e
            if px.ndim != 2:
                raise InvalidImageError(f"expected a 2-D image, got shape {px.shape}", scan.path)
            images.append(to_square(px, image_px))
            ids.append(str(case.case_id))
            if with_rois and case.mask is not None:
                label = case.mask.pixels
                if label.shape != px.shape:
                    raise InvalidMaskError(
                        f"mask shape {label.shape} differs from image shape {px.shape}", case.mask.path
                    )
                if (label > 0).any():
                    spacing = tuple(float(s) for s in scan.spacing)
                    for patch, pmask in lesion_rois(px, label, spacing, roi_mm, roi_px):  # type: ignore[arg-type]
                        any_mask = True  # a mask of specks only gives no ROI
                        rois.append(patch)
                        roi_masks.append(pmask)
                        roi_idx.append(i)
                case.mask.release()
            scan.release()
            bar.advance(task)
    return ImageSet(
        images=np.stack(images),
        source=source,
        case_ids=ids,
        rois=np.stack(rois) if any_mask else None,
        roi_masks=np.stack(roi_masks) if any_mask else None,
        roi_case_index=np.asarray(roi_idx, dtype=np.int64) if any_mask else None,
    )
