"""Reading the three sets of the utility test once: lesion crops, whole images at the working
spacing, and who is in each set.

Every image is read once. From it come

- its identity (patient, :func:`medsynth.io.fingerprints.image_digest`) and a small thumbnail, for the
  split checks (:mod:`.splits`);
- for the crop task, one crop per lesion (:func:`medsynth.metrics.images.lesion_rois`, 1.5 x ``roi_mm``
  so training can move the lesion around), with the lesion's class and, where the layout records it,
  its margin;
- for the full-image task, the image and its lesion mask resampled to ``spacing_mm`` and its lesions
  found again there by the one lesion rule (:func:`medsynth.models.patches.lesion_components`).

A lesion's class is its label (:mod:`medsynth.io.labels`); its margin comes from CBIS-DDSM's
``mass margins`` column (one row per lesion, matched to the lesion by overlap with that row's ROI
mask), so phantoms and CBIS-DDSM report per margin; other layouts report per class only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from skimage.transform import resize

from medsynth.errors import InvalidDatasetError, InvalidMaskError
from medsynth.io.fingerprints import CaseIdentity, case_identity
from medsynth.io.labels import CLASS_NAMES
from medsynth.metrics.images import read_2d_pixels
from medsynth.models.patches import Lesion, default_lesion_rule, lesion_components

THUMB_PX = 64  # side of the thumbnails the background check compares


@dataclass
class FullImage:
    """One image at the working spacing.

    Attributes:
        image: (rows, cols) float32 in [0, 1].
        label: (rows, cols) bool lesion mask.
        lesions: the lesions of ``label`` (the one lesion rule at the working spacing).
        classes, margins: per lesion: class name, margin (None where unknown or not a mass).
    """

    image: np.ndarray
    label: np.ndarray
    lesions: list[Lesion]
    classes: list[str]
    margins: list[str | None]


@dataclass
class UtilitySet:
    """One set of the utility test, read.

    Attributes:
        what: "real-train", "real-test" or "synthetic".
        source: what it was read from (a path, or "cases").
        root: the dataset root when read from a path (for the generate manifest), else None.
        identities: per image, its :class:`~medsynth.io.fingerprints.CaseIdentity`.
        patients: per image, the patient it belongs to (its patient ID, else its case ID).
        thumbs: (N, THUMB_PX, THUMB_PX) float32 thumbnails; thumb_masks: the same of the lesion masks.
        shapes, spacings: per image, (rows, cols) and (row, col) mm per pixel at the source resolution.
        crops, crop_masks: (M, B, B) lesion crops and masks (B = 1.5 x roi_px), or empty.
        crop_image: (M,) index of the image each crop came from.
        crop_classes, crop_margins: per crop.
        full: per image, a :class:`FullImage` (empty when the full task is not run).
    """

    what: str
    source: str
    root: Path | None
    identities: list[CaseIdentity] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    thumbs: np.ndarray | None = None
    thumb_masks: np.ndarray | None = None
    shapes: list[tuple[int, int]] = field(default_factory=list)
    spacings: list[tuple[float, float]] = field(default_factory=list)
    crops: np.ndarray | None = None
    crop_masks: np.ndarray | None = None
    crop_image: np.ndarray | None = None
    crop_classes: list[str] = field(default_factory=list)
    crop_margins: list[str | None] = field(default_factory=list)
    full: list[FullImage] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.identities)

    @property
    def has_patient_ids(self) -> bool:
        return bool(self.identities) and all(i.patient_id is not None for i in self.identities)

    def patient_index(self) -> tuple[np.ndarray, list[str]]:
        """(per image, an index into the list of distinct patients; that list, in first-seen order)."""
        names = list(dict.fromkeys(self.patients))
        where = {p: k for k, p in enumerate(names)}
        return np.asarray([where[p] for p in self.patients], dtype=np.int64), names


def _cases(data: Any, what: str, given_spacing: Any = None) -> tuple[Sequence[Any], str, Path | None]:
    if isinstance(data, (str, Path)):
        from medsynth.io.datasets import load_dataset

        try:
            ds = load_dataset(Path(data), spacing_mm=given_spacing)
        except FileNotFoundError as e:
            raise InvalidDatasetError(f"{what} set: no such file or folder", data) from e
        return ds, str(data), Path(ds.root)
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes, np.ndarray)):
        root = getattr(data, "root", None)
        return data, str(root) if root is not None else "cases", Path(root) if root is not None else None
    raise InvalidDatasetError(
        f"{what}: the utility test needs a dataset (path, Dataset or list of Cases) with lesion masks and, "
        f"ideally, patient IDs; got a {type(data).__name__}"
    )


def _norm_margin(value: Any) -> str | None:
    text = str(value or "").strip().lower().replace(" ", "_")
    return text or None


def lesion_margins(case: Any, lesions: list[Lesion]) -> list[str | None]:
    """The margin of each mass lesion of ``case`` (None where unknown, and for calcifications).

    CBIS-DDSM (and the phantoms) record one row per lesion (``case.metadata["lesions"]``) with its own
    ROI mask (the union mask's ``roi_paths``, in the same order); a lesion takes the margin of the row
    whose ROI overlaps it most. A case with a single row and a single lesion needs no mask.
    """
    rows = case.metadata.get("lesions") if isinstance(case.metadata, dict) else None
    out: list[str | None] = [None] * len(lesions)
    if not rows or not lesions:
        return out
    margins = [_norm_margin(r.get("mass_margins")) for r in rows]
    if len(rows) == 1 and len(lesions) == 1:
        return [margins[0] if CLASS_NAMES.get(lesions[0].label) == "mass" else None]
    paths = (getattr(case.mask, "metadata", None) or {}).get("roi_paths") or []
    if len(paths) != len(rows):
        return out
    from medsynth.io.readers import load_scan

    full = [les.full_mask() for les in lesions]
    overlap = np.zeros((len(lesions), len(rows)))
    for j, path in enumerate(paths):
        roi = load_scan(Path(path))
        black = float(roi.metadata.get("value_range", (0.0, 0.0))[0])  # the CBIS layout's foreground rule
        fg = roi.pixels > black
        roi.release()
        if fg.shape != lesions[0].image_shape:
            return out
        for i, m in enumerate(full):
            overlap[i, j] = np.count_nonzero(fg & m)
    for i, les in enumerate(lesions):
        j = int(np.argmax(overlap[i]))
        if overlap[i, j] > 0 and CLASS_NAMES.get(les.label) == "mass":
            out[i] = margins[j]
    return out


def _thumb(a: np.ndarray, order: int) -> np.ndarray:
    out = resize(a.astype(np.float32), (THUMB_PX, THUMB_PX), order=order, anti_aliasing=order > 0,
                 preserve_range=True)
    return out.astype(np.float32)


def to_working_spacing(image: np.ndarray, label: np.ndarray, spacing: tuple[float, float],
                       spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample an image (anti-aliased, linear) and its label map (nearest) to ``spacing_mm``."""
    shape = tuple(max(8, int(round(n * s / spacing_mm))) for n, s in zip(image.shape, spacing))
    if shape == image.shape:
        return image.astype(np.float32, copy=False), label
    img = resize(image, shape, order=1, anti_aliasing=shape[0] < image.shape[0], preserve_range=True)
    lab = resize(label, shape, order=0, anti_aliasing=False, preserve_range=True).astype(label.dtype)
    return np.clip(img, 0.0, 1.0).astype(np.float32), lab


def read_set(data: Any, what: str, *, crops: bool, full: bool, roi_mm: float, roi_px: int,
             spacing_mm: float, progress: bool = False, given_spacing: Any = None) -> UtilitySet:
    """Read one set for the utility test (see the module docstring).

    Raises:
        InvalidDatasetError: the set is empty, or has no lesion masks at all.
        InvalidImageError / InvalidMaskError: a file is unusable (the message names it).
    """
    from medsynth.metrics.images import lesion_rois
    from medsynth.utils import progress_bar

    cases, source, root = _cases(data, what, given_spacing)
    if len(cases) == 0:
        raise InvalidDatasetError(f"{what} set holds no images", source)
    rule = default_lesion_rule()
    big = int(round(roi_px * 1.5))
    out = UtilitySet(what=what, source=source, root=root)
    thumbs, thumb_masks = [], []
    crop_list, crop_mask_list, crop_image = [], [], []
    any_mask = False
    with progress_bar(progress) as bar:
        task = bar.add_task(f"reading {what}", total=len(cases))
        for i, case in enumerate(cases):
            scan = case.image
            px = read_2d_pixels(scan)
            spacing = (float(scan.spacing[0]), float(scan.spacing[1]))
            label = np.zeros(px.shape, dtype=np.uint8)
            if case.mask is not None:
                raw = np.asarray(case.mask.pixels)
                if raw.shape != px.shape:
                    raise InvalidMaskError(f"mask shape {raw.shape} differs from image shape {px.shape}",
                                           case.mask.path)
                label = np.clip(raw, 0, 255).astype(np.uint8)
                any_mask = True
            identity = case_identity(case, px)
            out.identities.append(identity)
            out.patients.append(identity.patient_id or f"image:{identity.case_id}")
            out.shapes.append((int(px.shape[0]), int(px.shape[1])))
            out.spacings.append(spacing)
            thumbs.append(_thumb(px, 1))
            thumb_masks.append(_thumb(label > 0, 0) > 0)
            lesions = lesion_components(label, spacing, rule["merge_mm"], rule["min_lesion_mm2"])
            margins = lesion_margins(case, lesions)
            if crops and lesions:
                rois = lesion_rois(px, label, spacing, roi_mm * 1.5, big)
                if len(rois) != len(lesions):  # both follow the one lesion rule; a mismatch is a bug
                    raise InvalidMaskError(f"{len(rois)} crops for {len(lesions)} lesions", scan.path)
                for les, margin, (patch, pmask) in zip(lesions, margins, rois):
                    crop_list.append(patch)
                    crop_mask_list.append(pmask)
                    crop_image.append(i)
                    out.crop_classes.append(CLASS_NAMES.get(les.label, f"label {les.label}"))
                    out.crop_margins.append(margin)
            if full:
                out.full.append(_full_image(px, label, spacing, spacing_mm, lesions, margins, rule))
            if case.mask is not None:
                case.mask.release()
            scan.release()
            bar.advance(task)
    if not any_mask:
        raise InvalidDatasetError(f"{what} set has no lesion masks; the utility test needs masks", source)
    out.thumbs, out.thumb_masks = np.stack(thumbs), np.stack(thumb_masks)
    if crop_list:
        out.crops = np.stack(crop_list).astype(np.float32)
        out.crop_masks = np.stack(crop_mask_list).astype(bool)
        out.crop_image = np.asarray(crop_image, dtype=np.int64)
    elif crops:
        raise InvalidDatasetError(f"{what} set has no lesion of at least {rule['min_lesion_mm2']} mm²; "
                                  "the crop task needs lesions", source)
    return out


def _full_image(px: np.ndarray, label: np.ndarray, spacing: tuple[float, float], spacing_mm: float,
                native: list[Lesion], margins: list[str | None], rule: dict[str, float]) -> FullImage:
    """The image at the working spacing, its lesions found again there, each with its native attributes."""
    instances = np.zeros(label.shape, dtype=np.int32)  # native lesion k -> k + 1, to carry attributes over
    for k, les in enumerate(native):
        r0, c0, r1, c1 = les.box
        instances[r0:r1, c0:c1][les.mask] = k + 1
    image, inst = to_working_spacing(px, instances, spacing, spacing_mm)
    binary = inst > 0
    lesions = lesion_components(binary, (spacing_mm, spacing_mm), rule["merge_mm"], rule["min_lesion_mm2"])
    classes, lesion_margin = [], []
    for les in lesions:
        r0, c0, r1, c1 = les.box
        ids = inst[r0:r1, c0:c1][les.mask]
        k = int(np.bincount(ids).argmax()) - 1 if ids.size else -1
        src = native[k] if 0 <= k < len(native) else None
        classes.append(CLASS_NAMES.get(src.label, "lesion") if src is not None else "lesion")
        lesion_margin.append(margins[k] if src is not None else None)
    return FullImage(image=image, label=binary, lesions=lesions, classes=classes, margins=lesion_margin)


def regime_patients(n_patients: int, fraction: float, seed: int, subset_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The patients (indices) of the ``fraction`` regime for training seed ``seed``.

    Each seed draws its own random order of the patients, and every regime takes a prefix of it, so
    the regimes of one seed are nested (10 % inside 30 % inside 100 %) and the spread over seeds
    includes which patients happened to be drawn.

    Returns:
        (the regime's patients, sorted; the seed's whole order, for callers that must add patients).
    """
    from medsynth.utils import derive_seed

    order = np.random.default_rng(derive_seed(subset_seed, seed)).permutation(n_patients)
    k = min(n_patients, max(1, int(round(fraction * n_patients))))
    return np.sort(order[:k]), order


__all__ = ["FullImage", "UtilitySet", "lesion_margins", "read_set", "regime_patients", "to_working_spacing"]
