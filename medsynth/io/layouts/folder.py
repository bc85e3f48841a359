"""A plain folder: ``images/<stem>.<ext>`` with optional ``masks/<stem>.<ext>`` and ``cases.csv``.

ext is one of dcm, nii.gz, nii, png, tif, tiff; image and mask may differ in format. The optional
``cases.csv`` (``case_id,patient_id,...``) gives patients, and its other columns become case metadata;
a ``spacing_mm`` column gives the spacing of images whose files state none (e.g. PNG without DPI), as
does the manifest of a ``medsynth generate`` PNG output.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medsynth.errors import InvalidDatasetError
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
from medsynth.io.scan import Case
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
        mask = load_scan(masks[name]) if name in masks else None
        if mask is not None:
            check_shapes(image, mask)
        row = table.get(name, {})
        metadata = {k: v for k, v in row.items() if k not in ("case_id", "patient_id")}
        if row.get("spacing_mm") or name in recorded:  # for an image whose file states none (medsynth.io.spacing)
            metadata[LISTED_KEY] = row.get("spacing_mm") or recorded[name]
        cases.append(Case(case_id=name, image=image, mask=mask, patient_id=row.get("patient_id") or None,
                          image_relpath=relpath(image_path, root), metadata=metadata))
    return Dataset(root, LAYOUT.name, cases, index_file=cases_csv)


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
