"""DICOM SEG label maps: the lesion masks of a DICOM dataset, read back with highdicom.

A Segmentation object (SOP class 1.2.840.10008.5.1.4.1.1.66.4) holds one binary (or fractional)
frame per segment and per source frame, and names the image it segments by SOPInstanceUID
(``ReferencedSeriesSequence`` > ``ReferencedInstanceSequence``). :func:`seg_label_map` turns the
segments that reference one image into medsynth's label map (:data:`medsynth.io.labels.LABELS`):

* a segment whose property type is a calcification (DCM 111105 "Calcification Cluster", SCT
  129748009 "Calcification") or whose label says so becomes ``calcification``;
* every other segment becomes ``mass`` (a lesion of another kind is still a lesion), as
  ``medsynth.generation`` maps the labels of a background it was given;
* where segments overlap, calcification wins, as in the CBIS-DDSM reader.

Fractional segmentations count a pixel as inside when its value is above 0.5. medsynth's own
``dicom`` writer (``medsynth.io.writers.dicom``) writes segment 1 mass and segment 2 calcification
cluster, so its label maps read back unchanged.

Headers are read at once (to pair SEGs with images); pixels when the mask's ``pixels`` are first
read, as with every :class:`~medsynth.io.scan.Scan`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medsynth.errors import InvalidMaskError
from medsynth.io.labels import LABELS
from medsynth.io.scan import Scan

__all__ = [
    "SEG_SOP_CLASS", "is_seg", "referenced_instances", "seg_label_map", "seg_mask", "segment_labels",
    "sop_instance_uid",
]

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
# Property-type codes read as calcification: (scheme, value). Everything else is a mass.
_CALCIFICATION_CODES = {("DCM", "111105"), ("SCT", "129748009"), ("SRT", "F-01796")}


def _header(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError) as e:
        raise InvalidMaskError(f"cannot read DICOM header ({e})", path) from e


def is_seg(path: str | Path) -> bool:
    """Whether a file is a DICOM Segmentation (by its SOP class; other files give False)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except (InvalidDicomError, OSError, ValueError, TypeError):
        return False
    return str(getattr(ds, "SOPClassUID", "")) == SEG_SOP_CLASS


def sop_instance_uid(path: str | Path) -> str | None:
    """A DICOM file's SOPInstanceUID (header only), or None when it has none or is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    except (InvalidDicomError, OSError, ValueError, TypeError):
        return None
    uid = str(getattr(ds, "SOPInstanceUID", "") or "").strip()
    return uid or None


def referenced_instances(path: str | Path) -> list[str]:
    """The SOPInstanceUIDs of the images a SEG segments (``ReferencedSeriesSequence``, else the
    per-frame ``DerivationImageSequence`` > ``SourceImageSequence``).

    Raises:
        InvalidMaskError: the file is not a readable DICOM SEG.
    """
    path = Path(path)
    ds = _header(path)
    if str(getattr(ds, "SOPClassUID", "")) != SEG_SOP_CLASS:
        raise InvalidMaskError(f"is not a DICOM Segmentation (SOPClassUID {getattr(ds, 'SOPClassUID', None)})", path)
    uids: list[str] = []
    for series in ds.get("ReferencedSeriesSequence", []):
        for inst in series.get("ReferencedInstanceSequence", []):
            uids.append(str(inst.ReferencedSOPInstanceUID))
    if not uids:
        for frame in ds.get("PerFrameFunctionalGroupsSequence", []):
            for deriv in frame.get("DerivationImageSequence", []):
                for src in deriv.get("SourceImageSequence", []):
                    uids.append(str(src.ReferencedSOPInstanceUID))
    return list(dict.fromkeys(uids))


def segment_labels(ds: Any) -> dict[int, int]:
    """SegmentNumber -> medsynth label (see the module docstring) from a SEG's SegmentSequence."""
    out: dict[int, int] = {}
    for item in ds.get("SegmentSequence", []):
        number = int(item.SegmentNumber)
        codes = {(str(c.get("CodingSchemeDesignator", "")).upper(), str(c.get("CodeValue", "")))
                 for c in item.get("SegmentedPropertyTypeCodeSequence", [])}
        label_text = f"{item.get('SegmentLabel', '')} {item.get('SegmentDescription', '')}".lower()
        calc = bool(codes & _CALCIFICATION_CODES) or "calc" in label_text
        out[number] = LABELS["calcification"] if calc else LABELS["mass"]
    return out


def seg_label_map(path: str | Path, source_uid: str, shape: tuple[int, int]) -> np.ndarray:
    """The label map (uint8, ``shape``) a SEG holds for the image ``source_uid``.

    Raises:
        InvalidMaskError: the SEG cannot be read, does not reference the image, or its frames have
            another shape than the image.
    """
    import highdicom as hd

    path = Path(path)
    try:
        seg = hd.seg.segread(path)
    except Exception as e:  # highdicom/pydicom raise several types for a malformed SEG
        raise InvalidMaskError(f"cannot read DICOM SEG ({type(e).__name__}: {e})", path) from e
    labels = segment_labels(seg)
    try:
        arr = seg.get_pixels_by_source_instance([source_uid], combine_segments=False)
    except Exception as e:  # a SEG that does not reference the image, or one highdicom cannot index
        raise InvalidMaskError(
            f"holds no segmentation of image SOPInstanceUID {source_uid} ({type(e).__name__}: {e})", path
        ) from e
    arr = np.asarray(arr)[0]  # (rows, cols, segments)
    if arr.shape[:2] != tuple(shape):
        raise InvalidMaskError(f"SEG frames are {arr.shape[:2]}, the image is {tuple(shape)}", path)
    numbers = list(seg.segment_numbers)
    out = np.zeros(shape, dtype=np.uint8)
    # Mass first, then calcification, so calcification wins where segments overlap.
    for k in sorted(range(len(numbers)), key=lambda k: labels.get(numbers[k], LABELS["mass"])):
        inside = arr[..., k] > (0.5 if arr.dtype.kind == "f" else 0)
        out[inside] = labels.get(numbers[k], LABELS["mass"])
    return out


def seg_mask(path: str | Path, image: Scan, source_uid: str) -> Scan:
    """A lazy mask :class:`~medsynth.io.scan.Scan` of ``image`` from a DICOM SEG.

    Args:
        path: the SEG file.
        image: the image it segments (shape, spacing and laterality are taken from it).
        source_uid: the image's SOPInstanceUID.

    Raises:
        InvalidMaskError: the file is not a SEG or does not reference ``source_uid`` (checked from the
            header now; the pixels are read on first access).
    """
    path = Path(path)
    refs = referenced_instances(path)
    if source_uid not in refs:
        raise InvalidMaskError(
            f"is the DICOM SEG given for image {Path(image.path).name}, but it references "
            f"{len(refs)} other image(s), not that image's SOPInstanceUID {source_uid}",
            path,
        )
    shape = tuple(image.shape)

    def load() -> np.ndarray:
        return seg_label_map(path, source_uid, shape)  # type: ignore[arg-type]

    return Scan(
        path=path,
        shape=shape,  # type: ignore[arg-type]
        spacing=image.spacing,
        pixel_loader=load,
        modality="SEG",
        laterality=image.laterality,
        view=image.view,
        metadata={"format": "dicom-seg", "source_sop_instance_uid": source_uid, "labels": dict(LABELS)},
    )
