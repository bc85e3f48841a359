"""Turn whatever the user calls "a set of images" into the fixed-size arrays the metrics compare.

Evaluation inputs may be a dataset path (anything :func:`medsynth.io.datasets.load_dataset` reads),
a loaded ``Dataset`` / list of :class:`~medsynth.io.scan.Case`, or an in-memory ``(N, H, W)`` array
in [0, 1]. Every metric works on the same preprocessed form:

- whole images: ``Scan.unit_pixels()`` padded to a square (with the image's own background level,
  so the breast keeps its shape) and downsampled with anti-aliasing to ``image_px`` (128 by default);
- lesion ROIs: one square crop per lesion (training's rule) at a fixed physical size
  (``roi_mm``, 32 mm by default), resampled to ``roi_px`` (64) with
  :func:`medsynth.models.patches.crop_roi`, so a lesion keeps its size in millimetres whatever the
  source resolution. With ``roi_fit=False`` (what ``evaluate`` uses) every ROI is on the same mm grid
  and a lesion larger than the ROI shows its central part; with ``roi_fit=True`` such a lesion gets a
  larger crop resampled to the same ``roi_px`` (a coarser grid for that ROI).

Each image also gets a **group**, the unit that must not be split between training and held-out
folds (the C2ST) or bootstrap resamples: its patient (``patient:ID``) when the layout records one,
else, for a ``medsynth generate`` output, the salted identity of its background image from
``manifest.json`` (``background:HMAC``; cases painted on one background stay together -- the
manifest names no patient), else the case itself. Each ROI carries its lesion class (label value,
:mod:`medsynth.io.labels`) and, where the data says it, the mass margin: from the CBIS-DDSM
``mass margins`` column of a real case, or the ``outline.margin`` a generate manifest records.
With ``lesion_stats`` settings given, every lesion is also measured on the full-resolution image
(:func:`medsynth.metrics.lesion_stats.measure_lesions`) while it is in memory.

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
from medsynth.models.patches import Lesion, crop_at, crop_roi, default_lesion_rule, lesion_components


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
        groups: one group per image (``patient:ID``, ``background:HMAC`` or ``case:ID``; see the
            module docstring).
        roi_labels: (M,) label value of each ROI's lesion, or None.
        roi_margins: the mass margin of each ROI's lesion (None where unknown), or None.
        lesion_records: per-lesion full-resolution statistics (with ``case_id`` and ``group``), when
            ``load_image_set`` was asked for them; else None.
    """

    images: np.ndarray
    source: str
    case_ids: list[str] = field(default_factory=list)
    rois: np.ndarray | None = None
    roi_masks: np.ndarray | None = None
    roi_case_index: np.ndarray | None = None
    groups: list[str] = field(default_factory=list)
    roi_labels: np.ndarray | None = None
    roi_margins: list[str | None] | None = None
    lesion_records: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_groups(self) -> list[str]:
        """The group of every image (its case id when no group was recorded)."""
        return self.groups if len(self.groups) == len(self) else [f"case:{c}" for c in self.case_ids]

    @property
    def roi_groups(self) -> list[str]:
        """The group of every ROI (that of the image it came from)."""
        if self.roi_case_index is None:
            return []
        groups = self.image_groups
        return [groups[int(i)] for i in self.roi_case_index]


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
    fit: bool = True,
    lesions: list[Lesion] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One lesion-centred crop per lesion of ``label_map``.

    The lesions are training's (:func:`medsynth.models.patches.lesion_components` with the
    configs/train.yaml ``merge_mm`` and ``min_lesion_mm2``), so real and synthetic ROIs hold what the
    model learns as a lesion; ``lesions`` passes them when already cut. No lesion is dropped. With
    ``fit`` a lesion larger than the ROI gets a larger crop (resampled to the same ``roi_px``, so its
    ROI has a coarser grid) by :func:`medsynth.models.patches.crop_roi`; without it every ROI is a
    ``roi_mm`` square centred on its lesion (:func:`medsynth.models.patches.crop_at`), one mm grid
    for all.

    Returns:
        A list of (patch float32 (roi_px, roi_px), patch_mask bool (roi_px, roi_px)).
    """
    if label_map.shape != image.shape:
        raise InvalidMaskError(f"mask shape {label_map.shape} differs from image shape {image.shape}")
    if lesions is None:
        rule = default_lesion_rule()
        lesions = lesion_components(label_map, spacing, rule["merge_mm"], rule["min_lesion_mm2"])
    out = []
    for lesion in lesions:
        if fit:
            size_mm = max(roi_mm, lesion.extent_mm(spacing) + 2 * margin_mm + 1e-3)
            patch, pmask, _ = crop_roi(image, lesion.full_mask(), spacing, size_mm, roi_px, margin_mm=margin_mm)
        else:
            r0, c0, r1, c1 = lesion.region
            centre = ((r0 + r1 - 1) / 2.0, (c0 + c1 - 1) / 2.0)
            patch, pmask, _ = crop_at(np.asarray(image, dtype=np.float32), spacing, centre, roi_mm, roi_px,
                                      mask=lesion.full_mask())
            assert pmask is not None
        out.append((np.clip(patch, 0.0, 1.0).astype(np.float32), pmask))
    return out


def _margin_name(value: Any) -> str | None:
    """A margin as the data spells it, normalised: lower case, blanks and "N/A" as None."""
    if value is None:
        return None
    text = str(value).strip().lower().replace(" ", "_")
    return None if text in ("", "n/a", "na", "none", "nan") else text


def _box_overlap(a: tuple[int, int, int, int], b: Sequence[int]) -> int:
    rows = min(a[2], int(b[2])) - max(a[0], int(b[0]))
    cols = min(a[3], int(b[3])) - max(a[1], int(b[1]))
    return max(rows, 0) * max(cols, 0)


def lesion_margins(lesions: list[Lesion], described: list[dict[str, Any]]) -> list[str | None]:
    """The mass margin of each lesion, from the lesions the data describes.

    ``described``: one dict per described lesion with ``label``, ``margin`` and, when known, ``bbox``
    (r0, c0, r1, c1). A lesion takes the margin of the described lesions of its class when they
    agree, else that of the one whose box overlaps it most; None when nothing decides.
    """
    out: list[str | None] = []
    for lesion in lesions:
        same = [d for d in described if int(d.get("label", -1)) == lesion.label]
        margins = {d.get("margin") for d in same}
        if len(margins) == 1:
            out.append(next(iter(margins)))
            continue
        boxed = [(d, _box_overlap(lesion.box, d["bbox"])) for d in same if d.get("bbox") is not None]
        best = max(boxed, key=lambda t: t[1], default=(None, 0))
        out.append(best[0].get("margin") if best[0] is not None and best[1] > 0 else None)
    return out


def _manifest_cases(data: Any) -> dict[str, dict[str, Any]]:
    """case_id -> record of the ``medsynth generate`` manifest of a dataset, if it has one: at its
    root (the output folder), or one level up when the dataset is the nnU-Net folder inside it."""
    import json

    from medsynth.generation.manifest import MANIFEST_NAME

    root = getattr(data, "root", None)
    if root is None:
        return {}
    root = Path(root)
    for path, inner in ((root / MANIFEST_NAME, ""), (root.parent / MANIFEST_NAME, root.name + "/")):
        if not path.is_file():
            continue
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise InvalidDatasetError(f"unreadable manifest ({e})", path) from e
        if not isinstance(manifest, dict) or not isinstance(manifest.get("cases"), list):
            continue
        cases = [c for c in manifest["cases"] if isinstance(c, dict)]
        # A manifest one level up describes this dataset only if its files lie inside it.
        if inner and not all(str(f.get("path", "")).startswith(inner)
                             for c in cases for f in (c.get("files") or {}).values() if isinstance(f, dict)):
            continue
        return {str(c.get("case_id")): c for c in cases}
    return {}


def _described_lesions(case: Any, record: dict[str, Any] | None) -> list[dict[str, Any]]:
    if record is not None:
        return [{"label": les.get("label"), "bbox": les.get("bbox"),
                 "margin": _margin_name((les.get("outline") or {}).get("margin"))}
                for les in record.get("lesions", []) if isinstance(les, dict)]
    rows = (getattr(case, "metadata", None) or {}).get("lesions") or []
    return [{"label": row.get("label"), "margin": _margin_name(row.get("mass_margins"))}
            for row in rows if isinstance(row, dict)]


def case_group(case: Any, record: dict[str, Any] | None) -> str:
    """The group of a case (see the module docstring): patient, else background, else the case."""
    if getattr(case, "patient_id", None):
        return f"patient:{case.patient_id}"
    background = (record or {}).get("background") or {}
    if background.get("id"):
        return f"background:{background['id']}"
    return f"case:{case.case_id}"


def read_2d_pixels(scan: Any) -> np.ndarray:
    """A scan's pixels in [0, 1] as a 2-D array.

    Raises:
        InvalidImageError: the pixels cannot be read, or are not one 2-D image (names the file).
    """
    try:
        px = scan.unit_pixels()
    except (OSError, ValueError) as e:
        raise InvalidImageError(f"cannot read pixels ({e})", scan.path) from e
    if px.ndim != 2:
        raise InvalidImageError(f"expected a 2-D image, got shape {px.shape}", scan.path)
    return px


def load_image_set(
    data: Any,
    image_px: int | None = None,
    roi_mm: float | None = None,
    roi_px: int | None = None,
    with_rois: bool = True,
    what: str = "images",
    progress: bool = False,
    *,
    roi_fit: bool = True,
    lesion_stats: Any = None,
    spacing_mm: Any = None,
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
        spacing_mm: pixel spacing (mm) of images whose files state none (never assumed:
            :mod:`medsynth.io.spacing`); a path is read with it.
        progress: show a rich progress bar while reading.
        roi_fit: a lesion larger than ``roi_mm`` gets a larger crop (True) or its central ``roi_mm``
            (False: every ROI on one mm grid); see :func:`lesion_rois`.
        lesion_stats: :class:`~medsynth.metrics.lesion_stats.LesionStatSettings` to measure every
            lesion on the full-resolution image as well (``lesion_records``); None: not measured.

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
            cases: Sequence[Any] = load_dataset(Path(data), spacing_mm=spacing_mm)
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

    manifest = _manifest_cases(cases)
    images, ids, groups, rois, roi_masks, roi_idx, roi_labels, roi_margins = [], [], [], [], [], [], [], []
    records: list[dict[str, Any]] | None = [] if lesion_stats is not None else None
    rule = default_lesion_rule()
    from medsynth.utils import progress_bar

    with progress_bar(progress) as bar:
        task = bar.add_task(f"reading {what}", total=len(cases))
        for i, case in enumerate(cases):
            scan = case.image
            px = read_2d_pixels(scan)
            images.append(to_square(px, image_px))
            ids.append(str(case.case_id))
            record = manifest.get(str(case.case_id))
            groups.append(case_group(case, record))
            if (with_rois or records is not None) and case.mask is not None:
                label = case.mask.pixels
                if label.shape != px.shape:
                    raise InvalidMaskError(
                        f"mask shape {label.shape} differs from image shape {px.shape}", case.mask.path
                    )
                if (label > 0).any():
                    spacing = (float(scan.spacing[0]), float(scan.spacing[1]))
                    lesions = lesion_components(label, spacing, rule["merge_mm"], rule["min_lesion_mm2"])
                    if with_rois:
                        margins = lesion_margins(lesions, _described_lesions(case, record))
                        cut = lesion_rois(px, label, spacing, roi_mm, roi_px, fit=roi_fit, lesions=lesions)
                        for lesion, margin, (patch, pmask) in zip(lesions, margins, cut):
                            rois.append(patch)
                            roi_masks.append(pmask)
                            roi_idx.append(i)
                            roi_labels.append(lesion.label)
                            roi_margins.append(margin)
                    if records is not None:
                        from medsynth.metrics.lesion_stats import measure_lesions

                        for rec in measure_lesions(px, label, spacing, lesion_stats, lesions=lesions):
                            records.append({**rec, "case_id": str(case.case_id), "group": groups[-1]})
                case.mask.release()
            scan.release()
            bar.advance(task)
    any_roi = len(rois) > 0  # a mask of specks only gives no ROI
    return ImageSet(
        images=np.stack(images),
        source=source,
        case_ids=ids,
        rois=np.stack(rois) if any_roi else None,
        roi_masks=np.stack(roi_masks) if any_roi else None,
        roi_case_index=np.asarray(roi_idx, dtype=np.int64) if any_roi else None,
        groups=groups,
        roi_labels=np.asarray(roi_labels, dtype=np.int64) if any_roi else None,
        roi_margins=roi_margins if any_roi else None,
        lesion_records=records,
    )
