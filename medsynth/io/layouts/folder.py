"""A plain folder: ``images/<stem>.<ext>`` with optional ``masks/<stem>.<ext>``, ``seg/`` and ``cases.csv``.

ext is one of dcm, nii.gz, nii, png, tif, tiff; image and mask may differ in format. A mask may be a
DICOM SEG (read as a label map by :mod:`medsynth.io.dicom_seg`, and it must reference its image's
SOPInstanceUID). DICOM SEG files in ``seg/`` -- the layout ``medsynth generate --format dicom``
writes (``images/case_0000.dcm`` + ``seg/case_0000_seg.dcm``) -- are paired with the DICOM images
they reference by SOPInstanceUID, whatever their names. The optional ``cases.csv``
(``case_id,patient_id,...``) gives patients, and its other columns become case metadata;
a ``spacing_mm`` column gives the spacing of images whose files state none (e.g. PNG without DPI), as
does the manifest of a ``medsynth generate`` PNG output.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medsynth.errors import InvalidDatasetError, InvalidMaskError
from medsynth.io.dicom_seg import is_seg, referenced_instances, seg_mask, sop_instance_uid
from medsynth.io.layouts.base import (
    FOLDER_SUFFIXES,
    Dataset,
    Found,
    Layout,
    check_shapes,
    read_csv,
    read_json,
    relpath,
    stem,
)
from medsynth.io.readers import load_scan
from medsynth.io.scan import Case, Scan
from medsynth.io.spacing import LISTED_KEY

logger = logging.getLogger(__name__)


def recognise(path: Path) -> Found | str:
    """A folder with an ``images/`` subfolder."""
    if path.is_file():
        return "a file, not a folder with images/"
    if (path / "images").is_dir():
        return Found(path, (path / "cases.csv") if (path / "cases.csv").is_file() else None)
    return "no images/ subfolder"


def load(found: Found, **_: Any) -> Dataset:
    """Pair ``images/`` with ``masks/`` by file stem; patients and metadata from ``cases.csv``."""
    root, cases_csv = found.root, found.index_file
    images = _list_by_stem(root / "images")
    if not images:
        raise InvalidDatasetError("images/ holds no image files", root)
    masks = _list_by_stem(root / "masks") if (root / "masks").is_dir() else {}
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise InvalidDatasetError(f"masks without an image of the same name: {', '.join(orphans[:5])}", root / "masks")
    uids: dict[str, str] = {}  # image stem -> SOPInstanceUID, read only when a DICOM SEG needs it
    segs = _segs_by_image(root / "seg", images, uids) if (root / "seg").is_dir() else {}
    both = sorted(set(masks) & set(segs))
    if both:
        raise InvalidDatasetError(f"image {both[0]!r} has a mask in masks/ and a DICOM SEG in seg/ "
                                  f"({segs[both[0]].name}); keep one", root)
    table: dict[str, dict[str, str]] = {}
    if cases_csv is not None:
        for row in read_csv(cases_csv):
            case_id = row.get("case_id", "")
            if not case_id:
                raise InvalidDatasetError("needs a case_id column with a value on every row", cases_csv)
            if case_id not in images:
                raise InvalidDatasetError(f"lists case {case_id!r}, which has no file in images/", cases_csv)
            table[case_id] = row
    recorded = _manifest_spacings(root)
    cases = []
    for name, image_path in images.items():
        image = load_scan(image_path)
        mask = None
        if name in masks:
            mask = _mask(masks[name], image, name, uids)
        elif name in segs:
            mask = seg_mask(segs[name], image, uids[name])
        row = table.get(name, {})
        metadata = {k: v for k, v in row.items() if k not in ("case_id", "patient_id")}
        if row.get("spacing_mm") or name in recorded:  # for an image whose file states none (medsynth.io.spacing)
            metadata[LISTED_KEY] = row.get("spacing_mm") or recorded[name]
        cases.append(Case(case_id=name, image=image, mask=mask, patient_id=row.get("patient_id") or None,
                          image_relpath=relpath(image_path, root), metadata=metadata))
    return Dataset(root, LAYOUT.name, cases, index_file=cases_csv)


def _image_uid(name: str, images: dict[str, Path], uids: dict[str, str]) -> str | None:
    if name not in uids:
        uid = sop_instance_uid(images[name])
        if uid is None:
            return None
        uids[name] = uid
    return uids[name]


def _mask(path: Path, image: Scan, name: str, uids: dict[str, str]) -> Scan:
    """The mask file of an image: a DICOM SEG read as a label map, or any image format as it is."""
    if path.name.lower().endswith(".dcm") and is_seg(path):
        uid = _image_uid(name, {name: Path(image.path)}, uids)
        if uid is None:
            raise InvalidMaskError(f"is a DICOM SEG, but its image {Path(image.path).name} is not a DICOM "
                                   "file with a SOPInstanceUID it could reference", path)
        return seg_mask(path, image, uid)
    mask = load_scan(path)
    check_shapes(image, mask)
    return mask


def _segs_by_image(folder: Path, images: dict[str, Path], uids: dict[str, str]) -> dict[str, Path]:
    """DICOM SEG files in ``folder`` paired with the images they reference (by SOPInstanceUID).

    Raises:
        InvalidDatasetError: a file in ``folder`` is not a DICOM SEG, references no image of
            ``images/``, or two SEGs segment the same image.
    """
    by_uid = {}
    for name, path in images.items():
        if path.name.lower().endswith(".dcm"):
            uid = _image_uid(name, images, uids)
            if uid is not None:
                by_uid[uid] = name
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        if not is_seg(p):
            raise InvalidDatasetError(f"{p.name} is not a DICOM Segmentation (seg/ holds DICOM SEG files only)",
                                      folder)
        hits = [by_uid[u] for u in referenced_instances(p) if u in by_uid]
        if not hits:
            raise InvalidDatasetError(f"{p.name} references no image in images/ (by SOPInstanceUID)", folder)
        for name in hits:
            if name in out:
                raise InvalidDatasetError(f"two DICOM SEGs segment image {name!r}: {out[name].name} and {p.name}",
                                          folder)
            out[name] = p
    return out


def _manifest_spacings(root: Path) -> dict[str, list[float]]:
    """The per-case spacing a ``medsynth generate`` PNG output records in its manifest (PNG files
    carry none): {case_id: [row mm, col mm]}; empty for any other folder."""
    manifest = root / "manifest.json"
    if not manifest.is_file():
        return {}
    data = read_json(manifest)
    if not (isinstance(data, dict) and "manifest_version" in data and data.get("format") == "png"):
        return {}
    out = {}
    for case in data.get("cases") or []:
        spacing = (case.get("background") or {}).get("spacing_mm") if isinstance(case, dict) else None
        if case.get("case_id") and spacing:
            out[str(case["case_id"])] = spacing
    return out


def _list_by_stem(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        if not p.name.lower().endswith(FOLDER_SUFFIXES):
            logger.warning("%s: not an image format medsynth reads (%s); skipped", p, ", ".join(FOLDER_SUFFIXES))
            continue
        name = stem(p)
        if name in found:
            raise InvalidDatasetError(f"two files share the stem {name!r}: {found[name].name} and {p.name}", folder)
        found[name] = p
    return found


LAYOUT = Layout("folder", recognise, load)
