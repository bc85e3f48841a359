"""``load_dataset(path)``: recognise a dataset's layout and list its cases (image + label map).

Layouts (``Dataset.layout``):

* ``cbis-ddsm`` -- a root holding ``*case_description*.csv`` files with CBIS-DDSM's columns and the
  DICOMs they name (paths relative to the root). One CSV row is one lesion; rows naming the same
  image become one :class:`~medsynth.io.scan.Case` whose mask is the union label map
  (mass = 1, calcification = 2; where they overlap, calcification wins), built lazily from the
  0/255 ROI mask DICOMs. Rows with an empty ROI path (``normal_case_description.csv``) are images
  without lesion (``mask=None``). CBIS-DDSM's CSVs sometimes swap "cropped image file path" and
  "ROI mask file path": the one whose shape matches the image is taken as the mask.
* ``folder`` -- ``images/<stem>.<ext>`` with optional ``masks/<stem>.<ext>`` (ext: dcm, nii.gz,
  nii, png, tif, tiff; image and mask may differ in format) and an optional ``cases.csv``
  (``case_id,patient_id,...``) whose other columns become case metadata.
* ``nnunet`` -- an nnU-Net v2 raw dataset: ``dataset.json`` (``file_ending``, ``channel_names``,
  ``labels``, ``numTraining``), ``imagesTr/{case}_0000{ending}``, ``labelsTr/{case}{ending}``.
  Channel 0000 is the image; further channels are noted in ``Dataset.metadata``.
* ``monai`` -- a MONAI / Decathlon datalist JSON (path = the JSON, or a folder holding exactly one
  JSON with the list): ``{"training": [{"image": ..., "label": ...}], "test": [...]}``. Paths are
  joined to ``base_dir`` (default: the JSON's folder) exactly as
  ``monai.data.load_decathlon_datalist`` does (``normpath(join(base_dir, p))``, an absolute path
  stays absolute).

Everything stays on disk: images and masks are header-read Scans whose pixels load on access.
Mask and image shapes are compared from the headers here (and again when a CBIS-DDSM union is
built); a mismatch is an :class:`~medsynth.errors.InvalidMaskError` naming both files.

Safety: every path taken from a CSV or JSON must resolve (symlinks followed) inside the dataset
root, else :class:`~medsynth.errors.InvalidDatasetError` -- the same class of bug as
CVE-2026-32711 (DICOMDIR ReferencedFileID path traversal). DICOMDIR files are never followed.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from medsynth.errors import InvalidDatasetError, InvalidImageError, InvalidMaskError, UnknownLayoutError
from medsynth.io.labels import LABELS, LESION_CLASSES
from medsynth.io.readers import load_scan
from medsynth.io.scan import Case, Scan

logger = logging.getLogger(__name__)

__all__ = ["Dataset", "LAYOUTS", "detect_layout", "load_dataset", "resolve_inside"]

LAYOUTS = ("cbis-ddsm", "folder", "nnunet", "monai")
FOLDER_SUFFIXES = (".dcm", ".nii.gz", ".nii", ".png", ".tif", ".tiff")
CBIS_LABELS = {kind: LABELS[kind] for kind in LESION_CLASSES}  # CBIS-DDSM's abnormality types
# How to recognise each layout, for the UnknownLayoutError message.
_LOOKED_FOR = (
    "cbis-ddsm: *case_description*.csv at the root",
    "folder: an images/ subfolder",
    "nnunet: dataset.json (file_ending, channel_names) with imagesTr/",
    "monai: a datalist .json with a 'training' list",
)


class Dataset(Sequence[Case]):
    """The cases of one dataset, in a stable order.

    Attributes:
        root: the folder all paths are relative to (and confined to).
        layout: one of ``LAYOUTS``.
        index_file: the CSV/JSON the cases were listed from (None for ``folder`` without cases.csv).
        metadata: layout facts (e.g. nnU-Net labels, the CBIS-DDSM CSVs read).
    """

    def __init__(
        self,
        root: Path,
        layout: str,
        cases: list[Case],
        index_file: Path | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.layout = layout
        self.index_file = index_file
        self.metadata = metadata or {}
        self._cases = cases

    def __len__(self) -> int:
        return len(self._cases)

    @overload
    def __getitem__(self, index: int) -> Case: ...

    @overload
    def __getitem__(self, index: slice) -> list[Case]: ...

    def __getitem__(self, index: int | slice) -> Case | list[Case]:
        return self._cases[index]

    def __iter__(self) -> Iterator[Case]:
        return iter(self._cases)

    def patients(self) -> list[str]:
        """Distinct patient IDs in order of first appearance (cases without one are left out)."""
        return list(dict.fromkeys(c.patient_id for c in self._cases if c.patient_id is not None))

    def cases_with_masks(self) -> int:
        """How many cases carry a lesion label map."""
        return sum(c.mask is not None for c in self._cases)

    def __repr__(self) -> str:
        return f"Dataset(root={str(self.root)!r}, layout={self.layout!r}, cases={len(self)})"


def resolve_inside(root: Path, relpath: str | Path, index_file: Path, base: Path | None = None) -> Path:
    """Resolve a path read from an index file and require it to lie inside ``root``.

    Args:
        root: the dataset root.
        relpath: the path as written in the CSV/JSON (relative to ``base``; may be absolute).
        index_file: the CSV/JSON it came from (named in the error).
        base: what a relative path is relative to (default: ``root``).

    Returns:
        The resolved absolute path.

    Raises:
        InvalidDatasetError: the path escapes the root (``..``, an absolute path elsewhere, a
            symlink out), or is empty.
    """
    text = str(relpath).strip()
    if not text:
        raise InvalidDatasetError("an empty path is listed", index_file)
    joined = Path(text) if Path(text).is_absolute() else (base or root) / text
    resolved = joined.resolve()
    root_resolved = root.resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise InvalidDatasetError(f"path {text!r} resolves outside the dataset root {root} (refused)", index_file)
    return resolved


def _require_file(path: Path, listed_as: str, index_file: Path) -> Path:
    if not path.is_file():
        raise InvalidDatasetError(f"lists {listed_as!r}, which does not exist ({path})", index_file)
    return path


def _relpath(path: Path, root: Path) -> str:
    return path.resolve().relative_to(root.resolve()).as_posix()


def _stem(path: Path) -> str:
    name = path.name
    for suffix in FOLDER_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _check_shapes(image: Scan, mask: Scan) -> None:
    if tuple(mask.shape) != tuple(image.shape):
        raise InvalidMaskError(
            f"mask shape {tuple(mask.shape)} differs from image shape {tuple(image.shape)} "
            f"(image: {image.path})",
            mask.path,
        )


# --------------------------------------------------------------------------- detection


def detect_layout(path: str | Path) -> tuple[str, Path, Path | None]:
    """Which layout ``path`` is, its root, and its index file.

    Raises:
        FileNotFoundError: the path does not exist.
        UnknownLayoutError: nothing known was found; the message lists what was looked for.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".json":
            data = _read_json(path)
            if isinstance(data, dict) and "file_ending" in data and "channel_names" in data:
                return "nnunet", path.parent, path
            if isinstance(data, dict) and any(isinstance(v, list) for v in data.values()):
                return "monai", path.parent, path
        if path.suffix.lower() == ".csv" and "case_description" in path.name:
            return "cbis-ddsm", path.parent, path
        raise UnknownLayoutError(
            "is a file but not a dataset index (a datalist .json, an nnU-Net dataset.json or a "
            "*case_description*.csv); use `load_scan` / `medsynth info` for a single image",
            path,
        )
    nnunet_json = path / "dataset.json"
    if nnunet_json.is_file() and (path / "imagesTr").is_dir():
        data = _read_json(nnunet_json)
        if isinstance(data, dict) and "file_ending" in data:
            return "nnunet", path, nnunet_json
    if sorted(path.glob("*case_description*.csv")):
        return "cbis-ddsm", path, None
    if (path / "images").is_dir():
        return "folder", path, (path / "cases.csv") if (path / "cases.csv").is_file() else None
    datalists = []
    for candidate in sorted(path.glob("*.json")):
        data = _read_json(candidate)
        if isinstance(data, dict) and isinstance(data.get("training"), list):
            datalists.append(candidate)
    if len(datalists) == 1:
        return "monai", path, datalists[0]
    if len(datalists) > 1:
        raise InvalidDatasetError(
            f"holds several datalist JSONs ({', '.join(p.name for p in datalists)}); pass the one to use",
            path,
        )
    raise UnknownLayoutError("matches no known dataset layout; looked for " + "; ".join(_LOOKED_FOR), path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidDatasetError(f"is not valid JSON ({e})", path) from e


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fp:
            reader = csv.DictReader(fp)
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
            fields = [f.strip() for f in (reader.fieldnames or [])]
    except (csv.Error, UnicodeDecodeError) as e:
        raise InvalidDatasetError(f"is not a readable CSV ({e})", path) from e
    if not fields:
        raise InvalidDatasetError("is empty (no header row)", path)
    return rows


def load_dataset(path: str | Path, *, key: str = "training", base_dir: str | Path | None = None) -> Dataset:
    """Recognise the layout at ``path`` and list its cases (nothing but headers is read).

    Args:
        path: a dataset folder, or an index file (datalist JSON, nnU-Net dataset.json, CBIS-DDSM CSV).
        key: ``monai`` only: which list of the datalist to read ("training", "validation", "test").
        base_dir: ``monai`` only: what relative paths are joined to (default: the JSON's folder);
            it is also the root paths must stay inside.

    Returns:
        The Dataset.

    Raises:
        UnknownLayoutError: the layout is not recognised.
        InvalidDatasetError: a listed file is missing, a path leaves the root, an index is malformed.
        InvalidMaskError: a mask's shape differs from its image's.
        InvalidImageError: an image or mask header is unreadable.
    """
    output_index = _generate_output_index(Path(path))
    if output_index is not None:
        return _rerooted(load_dataset(output_index, key=key), Path(path))
    layout, root, index = detect_layout(path)
    if layout == "cbis-ddsm":
        return _load_cbis(root, [index] if index else sorted(root.glob("*case_description*.csv")))
    if layout == "folder":
        return _load_folder(root, index)
    if layout == "nnunet":
        assert index is not None
        return _load_nnunet(root, index)
    assert index is not None
    return _load_monai(index, key=key, base_dir=Path(base_dir) if base_dir is not None else None)


def _generate_output_index(path: Path) -> Path | None:
    """The index file inside a ``medsynth generate`` output folder (``manifest.json`` beside the data),
    for the formats whose folder is not itself a layout: nnU-Net (``DatasetXXX_Name/dataset.json``)
    and MONAI (``datalist.json`` beside ``images/`` and ``labels/``, which would otherwise be read as
    a ``folder`` without masks). None for anything else."""
    manifest = path / "manifest.json"
    if not (path.is_dir() and manifest.is_file()):
        return None
    data = _read_json(manifest)
    if not (isinstance(data, dict) and "manifest_version" in data and "format" in data):
        return None
    if data["format"] == "nnunet":
        candidates = sorted(path.glob("Dataset*/dataset.json"))
    elif data["format"] == "monai":
        candidates = [c for c in [path / "datalist.json"] if c.is_file()]
    else:
        return None
    if len(candidates) != 1:
        raise InvalidDatasetError(
            f"is a medsynth {data['format']} output but holds {len(candidates)} index files "
            f"({', '.join(str(c.relative_to(path)) for c in candidates) or 'none'}); pass the one to use",
            path,
        )
    return candidates[0]


def _rerooted(ds: Dataset, root: Path) -> Dataset:
    """The same cases with paths relative to ``root`` (a generate output folder holding the dataset),
    so reports name files as they sit in the folder that is released, manifest included."""
    cases = []
    for case in ds:
        rel = (ds.root / case.image_relpath).relative_to(root).as_posix() if case.image_relpath else ""
        cases.append(Case(case.case_id, case.image, case.mask, case.patient_id, rel, case.metadata))
    return Dataset(root, ds.layout, cases, index_file=ds.index_file,
                   metadata={**ds.metadata, "generate_output": True})


# --------------------------------------------------------------------------- CBIS-DDSM


def _snake(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").split())


def _unique_ids(relpaths: list[str]) -> list[str]:
    """Case IDs from image paths: the first folder (CBIS-DDSM's "Mass-Training_P_00001_LEFT_CC")
    when every path has one and they are unique, else the path without its suffix."""
    firsts = [p.split("/")[0] if "/" in p else _stem(Path(p)) for p in relpaths]
    if len(set(firsts)) == len(firsts):
        return firsts
    return [str(Path(p).with_suffix("")).replace("/", "__") for p in relpaths]


def _load_cbis(root: Path, csvs: list[Path]) -> Dataset:
    images: dict[Path, dict[str, Any]] = {}
    for csv_path in csvs:
        rows = _read_csv(csv_path)
        if rows and "image file path" not in rows[0]:
            raise InvalidDatasetError("has no 'image file path' column (not a CBIS-DDSM case description)", csv_path)
        for line, row in enumerate(rows, start=2):
            listed = row.get("image file path", "")
            image_path = _require_file(resolve_inside(root, listed, csv_path), listed, csv_path)
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
                roi_path = _require_file(resolve_inside(root, roi, csv_path), roi, csv_path)
                cropped = row.get("cropped image file path", "")
                cropped_path = resolve_inside(root, cropped, csv_path) if cropped else None
                entry["rows"].append((row, kind, roi_path, cropped_path, csv_path))
            else:
                entry.setdefault("normal_rows", []).append(row)
    relpaths = [_relpath(p, root) for p in images]
    ids = _unique_ids(relpaths)
    cases: list[Case] = []
    for case_id, relpath, (image_path, entry) in zip(ids, relpaths, images.items()):
        image = load_scan(image_path)
        lesions: list[dict[str, Any]] = []
        parts: list[tuple[Path, int]] = []
        for row, kind, roi_path, cropped_path, csv_path in entry["rows"]:
            mask_path = _pick_roi(image, roi_path, cropped_path)
            parts.append((mask_path, CBIS_LABELS[kind]))
            lesion = {_snake(k): v for k, v in row.items() if k not in ("image file path",)}
            lesion["label"] = CBIS_LABELS[kind]
            lesion["roi_relpath"] = _relpath(mask_path, root)
            lesions.append(lesion)
        first = entry["rows"][0][0] if entry["rows"] else (entry.get("normal_rows") or [{}])[0]
        metadata = {
            _snake(k): first.get(k)
            for k in ("breast_density", "breast density", "left or right breast", "image view")
            if first.get(k)
        }
        metadata["lesions"] = lesions
        metadata["csv"] = [str(p.name) for p in dict.fromkeys(r[4] for r in entry["rows"])] or [entry["csv"].name]
        mask = _union_mask(image, parts) if parts else None
        cases.append(
            Case(case_id=case_id, image=image, mask=mask, patient_id=entry["patient_id"],
                 image_relpath=relpath, metadata=metadata)
        )
    return Dataset(root, "cbis-ddsm", cases, index_file=csvs[0] if len(csvs) == 1 else None,
                   metadata={"csvs": [p.name for p in csvs], "labels": dict(CBIS_LABELS)})


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
    _check_shapes(image, roi)  # raises, naming both files
    return roi_path


def _union_mask(image: Scan, parts: list[tuple[Path, int]]) -> Scan:
    """A lazy label map: each ROI's foreground (display value above its black level) set to its label."""

    def load() -> np.ndarray:
        labels = np.zeros(image.shape, dtype=np.uint8)
        # Mass first, then calcification, so calcification wins where they overlap.
        for path, label in sorted(parts, key=lambda p: p[1]):
            roi = load_scan(path)
            _check_shapes(image, roi)
            black = float(roi.metadata.get("value_range", (0.0, 0.0))[0])
            labels[roi.pixels > black] = label
            roi.release()
        return labels

    return Scan(
        path=parts[0][0],
        shape=image.shape,
        spacing=image.spacing,
        pixel_loader=load,
        laterality=image.laterality,
        view=image.view,
        metadata={"format": "cbis-ddsm-union", "roi_paths": [str(p) for p, _ in parts], "labels": dict(CBIS_LABELS)},
    )


# --------------------------------------------------------------------------- folder


def _list_by_stem(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        if not p.name.lower().endswith(FOLDER_SUFFIXES):
            logger.warning("%s: not an image format medsynth reads (%s); skipped", p, ", ".join(FOLDER_SUFFIXES))
            continue
        stem = _stem(p)
        if stem in found:
            raise InvalidDatasetError(f"two files share the stem {stem!r}: {found[stem].name} and {p.name}", folder)
        found[stem] = p
    return found


def _load_folder(root: Path, cases_csv: Path | None) -> Dataset:
    images = _list_by_stem(root / "images")
    if not images:
        raise InvalidDatasetError("images/ holds no image files", root)
    masks = _list_by_stem(root / "masks") if (root / "masks").is_dir() else {}
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise InvalidDatasetError(f"masks without an image of the same name: {', '.join(orphans[:5])}", root / "masks")
    table: dict[str, dict[str, str]] = {}
    if cases_csv is not None:
        for row in _read_csv(cases_csv):
            case_id = row.get("case_id", "")
            if not case_id:
                raise InvalidDatasetError("needs a case_id column with a value on every row", cases_csv)
            if case_id not in images:
                raise InvalidDatasetError(f"lists case {case_id!r}, which has no file in images/", cases_csv)
            table[case_id] = row
    cases = []
    for stem, image_path in images.items():
        image = load_scan(image_path)
        mask = load_scan(masks[stem]) if stem in masks else None
        if mask is not None:
            _check_shapes(image, mask)
        row = table.get(stem, {})
        metadata = {k: v for k, v in row.items() if k not in ("case_id", "patient_id")}
        cases.append(Case(case_id=stem, image=image, mask=mask, patient_id=row.get("patient_id") or None,
                          image_relpath=_relpath(image_path, root), metadata=metadata))
    return Dataset(root, "folder", cases, index_file=cases_csv)


# --------------------------------------------------------------------------- nnU-Net v2


def _load_nnunet(root: Path, dataset_json: Path) -> Dataset:
    spec = _read_json(dataset_json)
    for field in ("file_ending", "channel_names", "labels"):
        if field not in spec:
            raise InvalidDatasetError(f"has no {field!r} (an nnU-Net v2 dataset.json needs it)", dataset_json)
    ending = str(spec["file_ending"])
    labels = spec["labels"]
    if not isinstance(labels, dict) or labels.get("background", 0) != 0:
        raise InvalidDatasetError("'labels' must map names to values with background = 0", dataset_json)
    channels = spec["channel_names"]
    suffix = f"_0000{ending}"
    image_files = sorted(p for p in (root / "imagesTr").iterdir() if p.name.endswith(suffix))
    if "numTraining" in spec and int(spec["numTraining"]) != len(image_files):
        raise InvalidDatasetError(
            f"numTraining is {spec['numTraining']} but imagesTr holds {len(image_files)} *{suffix} files", dataset_json
        )
    cases = []
    for image_path in image_files:
        case_id = image_path.name[: -len(suffix)]
        label_path = root / "labelsTr" / f"{case_id}{ending}"
        _require_file(label_path, f"labelsTr/{case_id}{ending}", dataset_json)
        image = load_scan(image_path)
        mask = load_scan(label_path)
        _check_shapes(image, mask)
        cases.append(Case(case_id=case_id, image=image, mask=mask, image_relpath=_relpath(image_path, root),
                          metadata={"channels": len(channels)}))
    return Dataset(root, "nnunet", cases, index_file=dataset_json,
                   metadata={"labels": labels, "channel_names": channels, "file_ending": ending,
                             "name": spec.get("name")})


# --------------------------------------------------------------------------- MONAI datalist


def _load_monai(datalist: Path, *, key: str, base_dir: Path | None) -> Dataset:
    spec = _read_json(datalist)
    if not isinstance(spec, dict) or key not in spec:
        keys = ", ".join(map(str, spec)) if isinstance(spec, dict) else "none"
        raise InvalidDatasetError(f"has no {key!r} list (keys: {keys})", datalist)
    items = spec[key]
    if not isinstance(items, list):
        raise InvalidDatasetError(f"{key!r} is not a list", datalist)
    base = (base_dir if base_dir is not None else datalist.parent).resolve()
    root = base
    resolved: list[tuple[Path, Path | None, dict[str, Any]]] = []
    for i, item in enumerate(items):
        if isinstance(item, str):  # Decathlon "test" lists hold bare paths
            item = {"image": item}
        if not isinstance(item, dict) or "image" not in item:
            raise InvalidDatasetError(f"{key}[{i}] has no 'image'", datalist)
        image_rel = _single(item["image"], f"{key}[{i}].image", datalist)
        image_path = _require_file(resolve_inside(root, image_rel, datalist, base), image_rel, datalist)
        label_path = None
        if item.get("label"):
            label_rel = _single(item["label"], f"{key}[{i}].label", datalist)
            label_path = _require_file(resolve_inside(root, label_rel, datalist, base), label_rel, datalist)
        extra = {k: v for k, v in item.items() if k not in ("image", "label")}
        resolved.append((image_path, label_path, extra))
    relpaths = [_relpath(p, root) for p, _, _ in resolved]
    stems = [_stem(p) for p, _, _ in resolved]
    ids = stems if len(set(stems)) == len(stems) else _unique_ids(relpaths)
    cases = []
    for case_id, relpath, (image_path, label_path, extra) in zip(ids, relpaths, resolved):
        image = load_scan(image_path)
        mask = load_scan(label_path) if label_path is not None else None
        if mask is not None:
            _check_shapes(image, mask)
        patient = extra.pop("patient_id", None)
        cases.append(Case(case_id=str(extra.get("case_id", case_id)), image=image, mask=mask,
                          patient_id=str(patient) if patient is not None else None,
                          image_relpath=relpath, metadata=extra))
    return Dataset(root, "monai", cases, index_file=datalist, metadata={"key": key})


def _single(value: Any, where: str, datalist: Path) -> str:
    """One path from an entry that may be a list of channels (the first channel is the image)."""
    if isinstance(value, list):
        if not value or not all(isinstance(v, str) for v in value):
            raise InvalidDatasetError(f"{where} must be a path or a list of paths", datalist)
        return value[0]
    if not isinstance(value, str):
        raise InvalidDatasetError(f"{where} must be a path, got {type(value).__name__}", datalist)
    return value
