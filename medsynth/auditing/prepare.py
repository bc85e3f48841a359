"""Turn a dataset into what the audit compares: one small thumbnail per image and one crop per lesion.

Whole images are resized to a fixed square working size; lesion ROIs are squares around each
connected lesion (a multiple of the lesion's own extent, so a rescaled copy gives the same crop) and
resized to a fixed size. Pixels are read once per case and released at once, so memory holds the
small arrays only. Each case also gets a content hash of its pixels (used to refuse a train/holdout
overlap) and keeps its ``image_relpath``, which is how reports name samples.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from skimage.transform import resize

from medsynth.errors import InvalidDatasetError, InvalidMaskError
from medsynth.models.patches import lesion_components


@dataclass
class PreparedSet:
    """A dataset reduced to arrays for the audit.

    Attributes:
        name: "train", "synthetic" or "holdout".
        root: the dataset root (paths in reports are relative to it).
        relpaths: per case, ``Case.image_relpath``.
        case_ids: per case.
        patient_ids: per case (None when the layout records none).
        pixel_hashes: per case, SHA-256 of the float32 display pixels.
        images: (N, p, p) float32 in [0, 1] (each image stretched to its own range), thumbnails.
        rois: (R, q, q) float32 in [0, 1], lesion crops.
        roi_case: (R,) index of the case each ROI comes from.
        roi_boxes: (R, 4) int (r0, c0, r1, c1) in the source image's pixels.
        cases: the source cases (lazy scans; pixels released).
    """

    name: str
    root: Path
    relpaths: list[str]
    case_ids: list[str]
    patient_ids: list[str | None]
    pixel_hashes: list[str]
    images: np.ndarray
    rois: np.ndarray
    roi_case: np.ndarray
    roi_boxes: np.ndarray
    cases: Sequence[Any] = field(repr=False, default=())

    def __len__(self) -> int:
        return len(self.relpaths)


def as_dataset(data: Any, name: str, spacing_mm: Any = None) -> Any:
    """``data`` as a dataset: a path is read with ``load_dataset``; a sequence of cases is kept.

    Raises:
        InvalidDatasetError: the dataset is empty.
    """
    if isinstance(data, (str, Path)):
        from medsynth.io.datasets import load_dataset

        ds = load_dataset(data, spacing_mm=spacing_mm)
    else:
        ds = data
    if len(ds) == 0:
        raise InvalidDatasetError(f"the {name} set holds no images", getattr(ds, "root", None))
    return ds


def dataset_root(ds: Any) -> Path:
    """The dataset's root folder, or the current folder for an in-memory list of cases."""
    root = getattr(ds, "root", None)
    return Path(root) if root is not None else Path(".")


def lesion_boxes(
    mask: np.ndarray, *, context: float, min_side: int, merge_px: int, max_rois: int
) -> list[tuple[int, int, int, int]]:
    """Square boxes (r0, c0, r1, c1) around each lesion of a label map, largest lesion first.

    Lesions are :func:`medsynth.models.patches.lesion_components` with a merge distance of ``merge_px``
    pixels (a calcification cluster is one ROI) and no minimum area. Each box is
    ``context`` times the lesion's larger extent, at least ``min_side``, centred on the lesion and
    moved inside the image where it fits; only a box larger than the image reaches past its border
    (that part is zero-padded when cropped).
    """
    # The one lesion rule, measured in pixels (unit spacing): no speck is dropped.
    lesions = lesion_components(mask, (1.0, 1.0), merge_mm=float(merge_px), min_lesion_mm2=0.0)
    boxes = []
    for k in np.argsort(-np.asarray([les.area_mm2 for les in lesions]))[:max_rois]:
        r_lo, c_lo, r_hi, c_hi = lesions[k].box
        side = max(min_side, int(round(context * max(r_hi - r_lo, c_hi - c_lo))))
        rc, cc_ = (r_lo + r_hi) / 2.0, (c_lo + c_hi) / 2.0
        r0, c0 = int(round(rc - side / 2.0)), int(round(cc_ - side / 2.0))
        # Kept inside the image where it fits: a zero-padded strip is a sharp edge that every crop at
        # the border shares, and it made unrelated border lesions correlate (NCC 0.76 between fresh
        # and training phantoms whose crops both reached 2 px past the edge).
        r0 = min(max(r0, 0), mask.shape[0] - side) if side <= mask.shape[0] else r0
        c0 = min(max(c0, 0), mask.shape[1] - side) if side <= mask.shape[1] else c0
        boxes.append((r0, c0, r0 + side, c0 + side))
    return boxes


def crop_box(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The box's pixels, zero outside the image."""
    r0, c0, r1, c1 = box
    out = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
    sr0, sc0 = max(r0, 0), max(c0, 0)
    sr1, sc1 = min(r1, image.shape[0]), min(c1, image.shape[1])
    if sr1 > sr0 and sc1 > sc0:
        out[sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0] = image[sr0:sr1, sc0:sc1]
    return out


def _normalise(px: np.ndarray) -> np.ndarray:
    """Pixels stretched to [0, 1] by the image's own range.

    Readers scale by the stored bit depth, so the same picture saved as 12-bit DICOM or 16-bit PNG
    would differ by a factor; copy detection must not depend on how a copy was saved.
    """
    lo, hi = float(px.min()), float(px.max())
    return ((px - lo) / (hi - lo) if hi > lo else np.zeros_like(px)).astype(np.float32)


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` resized to (size, size) with anti-aliasing, float32."""
    return resize(image, (size, size), order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)


def prepare(
    ds: Any,
    name: str,
    cfg: dict[str, Any],
    on_case: Callable[[int], None] | None = None,
) -> PreparedSet:
    """Read every case once and reduce it to a thumbnail, lesion crops and a pixel hash.

    Args:
        ds: a dataset (sequence of ``Case``).
        name: "train", "synthetic" or "holdout" (for messages).
        cfg: the ``preprocess`` section of the audit config.
        on_case: progress callback, called with 1 after each case.

    Raises:
        InvalidMaskError: a mask's shape differs from its image's.
    """
    p, q = int(cfg["image_px"]), int(cfg["roi_px"])
    images = np.empty((len(ds), p, p), dtype=np.float32)
    rois: list[np.ndarray] = []
    roi_case: list[int] = []
    roi_boxes: list[tuple[int, int, int, int]] = []
    relpaths, case_ids, patient_ids, hashes = [], [], [], []
    for i, case in enumerate(ds):
        px = _normalise(case.image.unit_pixels())
        hashes.append(hashlib.sha256(np.ascontiguousarray(case.image.pixels, dtype=np.float32).tobytes()).hexdigest())
        images[i] = thumbnail(px, p)
        if case.mask is not None:
            mask = case.mask.pixels
            if mask.shape != px.shape:
                raise InvalidMaskError(f"mask shape {mask.shape} differs from image shape {px.shape}", case.mask.path)
            # The merge distance follows the image size so it means the same on any resolution.
            merge = int(round(cfg["roi_merge_fraction"] * min(px.shape)))
            min_side = max(8, int(round(cfg["roi_min_fraction"] * min(px.shape))))
            for box in lesion_boxes(
                mask, context=float(cfg["roi_context"]), min_side=min_side, merge_px=merge,
                max_rois=int(cfg["max_rois_per_image"]),
            ):
                rois.append(thumbnail(crop_box(px, box), q))
                roi_case.append(i)
                roi_boxes.append(box)
            case.mask.release()
        case.image.release()
        relpaths.append(str(case.image_relpath or Path(case.image.path).name))
        case_ids.append(str(case.case_id))
        patient_ids.append(None if case.patient_id in (None, "") else str(case.patient_id))
        if on_case is not None:
            on_case(1)
    return PreparedSet(
        name=name,
        root=dataset_root(ds),
        relpaths=relpaths,
        case_ids=case_ids,
        patient_ids=patient_ids,
        pixel_hashes=hashes,
        images=images,
        rois=np.stack(rois) if rois else np.zeros((0, q, q), dtype=np.float32),
        roi_case=np.asarray(roi_case, dtype=np.int64),
        roi_boxes=np.asarray(roi_boxes, dtype=np.int64).reshape(-1, 4),
        cases=ds,
    )
