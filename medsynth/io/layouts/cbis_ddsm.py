"""CBIS-DDSM: a root holding ``*case_description*.csv`` files with CBIS-DDSM's columns and the DICOMs
they name (paths relative to the root).

One CSV row is one lesion; rows naming the same image become one :class:`~medsynth.io.scan.Case`
whose mask is the union label map (mass = 1, calcification = 2; where they overlap, calcification
wins), built lazily from the 0/255 ROI mask DICOMs. Rows with an empty ROI path
(``normal_case_description.csv``) are images without lesion (``mask=None``). CBIS-DDSM's CSVs
sometimes swap "cropped image file path" and "ROI mask file path": the one whose shape matches the
image is taken as the mask. An image whose header states no pixel spacing gets
:data:`DEFAULT_SPACING_MM` unless the user gives one (``medsynth info`` says so).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.errors import InvalidDatasetError, InvalidImageError
from medsynth.io.labels import LABELS, LESION_CLASSES
from medsynth.io.layouts.base import (
    Dataset,
    Found,
    Layout,
    check_shapes,
    read_csv,
    relpath,
    require_file,
    resolve_inside,
    unique_ids,
)
from medsynth.io.readers import load_scan
from medsynth.io.scan import Case, Scan
from medsynth.io.spacing import DEFAULT_KEY, DEFAULT_WHY_KEY

logger = logging.getLogger(__name__)

CBIS_LABELS = {kind: LABELS[kind] for kind in LESION_CLASSES}  # CBIS-DDSM's abnormality types
_PATTERN = "*case_description*.csv"
#: Pixel spacing (mm) of a CBIS-DDSM image whose DICOM header states none. DDSM's films were
#: digitised at 42 um (DBA M2100), 43.5 um (Howtek 960 / MultiRad850) or 50 um (Lumisys 200);
#: 0.05 mm is within 16 % of each. A header's own spacing, or one the user gives, wins.
DEFAULT_SPACING_MM = 0.05
DEFAULT_SPACING_WHY = "CBIS-DDSM digitizers: 42-50 um; 0.05 mm assumed"


def recognise(path: Path) -> Found | str:
    """A ``*case_description*.csv`` file, or a folder holding at least one."""
    if path.is_file():
        if path.suffix.lower() == ".csv" and "case_description" in path.name:
            return Found(path.parent, path)
        return "not a *case_description*.csv"
    if sorted(path.glob(_PATTERN)):
        return Found(path, None)
    return "no *case_description*.csv at the root"


def load(found: Found, **_: Any) -> Dataset:
    """The cases of the CSV ``found`` names, or of every case-description CSV at its root."""
    root = found.root
    csvs = [found.index_file] if found.index_file else sorted(root.glob(_PATTERN))
    images: dict[Path, dict[str, Any]] = {}
    for csv_path in csvs:
        rows = read_csv(csv_path)
        if rows and "image file path" not in rows[0]:
            raise InvalidDatasetError("has no 'image file path' column (not a CBIS-DDSM case description)", csv_path)
        for line, row in enumerate(rows, start=2):
            listed = row.get("image file path", "")
            image_path = require_file(resolve_inside(root, listed, csv_path), listed, csv_path)
            entry = images.setdefault(
                image_path, {"rows": [], "csv": csv_path, "patient_id": row.get("patient_id") or None}
            )
            roi = row.get("ROI mask file path", "")
            if roi:
                kind = _snake(row.get("abnormality type", ""))
                if kind not in CBIS_LABELS:
                    raise InvalidDatasetError(
                        f"line {line}: abnormality type {row.get('abnormality type')!r} is neither mass "
                        "nor calcification",
                        csv_path,
                    )
                roi_path = require_file(resolve_inside(root, roi, csv_path), roi, csv_path)
                cropped = row.get("cropped image file path", "")
                cropped_path = resolve_inside(root, cropped, csv_path) if cropped else None
                entry["rows"].append((row, kind, roi_path, cropped_path, csv_path))
            else:
                entry.setdefault("normal_rows", []).append(row)
    relpaths = [relpath(p, root) for p in images]
    ids = unique_ids(relpaths)
    cases: list[Case] = []
    for case_id, rel, (image_path, entry) in zip(ids, relpaths, images.items()):
        image = load_scan(image_path)
        lesions: list[dict[str, Any]] = []
        parts: list[tuple[Path, int]] = []
        for row, kind, roi_path, cropped_path, csv_path in entry["rows"]:
            mask_path = _pick_roi(image, roi_path, cropped_path)
            parts.append((mask_path, CBIS_LABELS[kind]))
            lesion = {_snake(k): v for k, v in row.items() if k not in ("image file path",)}
            lesion["label"] = CBIS_LABELS[kind]
            lesion["roi_relpath"] = relpath(mask_path, root)
            lesions.append(lesion)
        first = entry["rows"][0][0] if entry["rows"] else (entry.get("normal_rows") or [{}])[0]
        metadata = {
            _snake(k): first.get(k)
            for k in ("breast_density", "breast density", "left or right breast", "image view")
            if first.get(k)
        }
        metadata["lesions"] = lesions
        if not image.spacing_known:  # used only when the user gives no spacing (medsynth.io.spacing)
            metadata[DEFAULT_KEY] = DEFAULT_SPACING_MM
            metadata[DEFAULT_WHY_KEY] = DEFAULT_SPACING_WHY
        metadata["csv"] = [str(p.name) for p in dict.fromkeys(r[4] for r in entry["rows"])] or [entry["csv"].name]
        mask = _union_mask(image, parts) if parts else None
        cases.append(
            Case(case_id=case_id, image=image, mask=mask, patient_id=entry["patient_id"],
                 image_relpath=rel, metadata=metadata)
        )
    return Dataset(root, LAYOUT.name, cases, index_file=csvs[0] if len(csvs) == 1 else None,
                   metadata={"csvs": [p.name for p in csvs], "labels": dict(CBIS_LABELS)})


def _snake(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").split())


def _pick_roi(image: Scan, roi_path: Path, cropped_path: Path | None) -> Path:
    """The ROI mask file, working around CBIS-DDSM rows where ROI and cropped paths are swapped."""
    roi = load_scan(roi_path)
    if tuple(roi.shape) == tuple(image.shape):
        return roi_path
    if cropped_path is not None and cropped_path.is_file():
        try:
            other = load_scan(cropped_path)
        except InvalidImageError:
            other = None
        if other is not None and tuple(other.shape) == tuple(image.shape):
            logger.info("%s: ROI and cropped-image paths look swapped; using %s as the mask", image.path, cropped_path)
            return cropped_path
    check_shapes(image, roi)  # raises, naming both files
    return roi_path


def _union_mask(image: Scan, parts: list[tuple[Path, int]]) -> Scan:
    """A lazy label map: each ROI's foreground (display value above its black level) set to its label."""

    def load_labels() -> np.ndarray:
        labels = np.zeros(image.shape, dtype=np.uint8)
        # Mass first, then calcification, so calcification wins where they overlap.
        for path, label in sorted(parts, key=lambda p: p[1]):
            roi = load_scan(path)
            check_shapes(image, roi)
            black = float(roi.metadata.get("value_range", (0.0, 0.0))[0])
            labels[roi.pixels > black] = label
            roi.release()
        return labels

    return Scan(
        path=parts[0][0],
        shape=image.shape,
        spacing=image.spacing,
        pixel_loader=load_labels,
        laterality=image.laterality,
        view=image.view,
        metadata={"format": "cbis-ddsm-union", "roi_paths": [str(p) for p, _ in parts], "labels": dict(CBIS_LABELS)},
    )


LAYOUT = Layout("cbis-ddsm", recognise, load)
