"""Protected health information in the synthetic set's files: DICOM attributes, file names, manifest.

Every synthetic DICOM is walked completely (file meta, nested sequences, private tags) and compared
with the identifying values of every training DICOM (names, IDs, dates, institution and staff,
instance UIDs, private tags; DICOM PS3.15 Annex E basic profile), as :mod:`medsynth.io.phi` defines
them for ``medsynth info`` too. It must also carry fresh UIDs
(none shared with training, none repeated within the synthetic set), PatientIdentityRemoved = YES and
a BurnedInAnnotation that is not YES. File names and ``manifest.json`` must not contain training
patient IDs or source paths. Text burned into pixels is **not** read (no OCR); the report says so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pydicom
import pydicom.misc
from pydicom.dataset import Dataset as DicomDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from medsynth.errors import InvalidDatasetError
from medsynth.io.phi import DICOM_ROOT_UID, is_identifying, walk_elements

#: Files whose text is searched for training patient IDs, file names and paths.
TEXT_SUFFIXES = frozenset({".json", ".csv", ".tsv", ".txt", ".md", ".yaml", ".yml", ".html"})


@dataclass
class PhiFinding:
    """One problem found."""

    file: str  # relative to the synthetic root
    problem: str
    tag: str = ""
    keyword: str = ""
    value: str = ""
    source: str = ""  # the training file the value came from (relative to the training root)

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v != ""}


@dataclass
class PhiResult:
    """PHI evidence."""

    n_dicom: int
    n_files: int
    findings: list[PhiFinding] = field(default_factory=list)
    skipped_identifiers: list[str] = field(default_factory=list)  # too short to search safely
    ocr_done: bool = False

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.problem] = out.get(f.problem, 0) + 1
        return out


def is_dicom(path: Path) -> bool:
    """True when the file is named .dcm/.dicom or starts like a DICOM Part 10 file (preamble + "DICM")."""
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        return pydicom.misc.is_dicom(path)
    except OSError:
        return False


def _values(elem: Any) -> list[str]:
    """The element's values as normalised strings (multi-valued elements give several)."""
    if elem.VR == "SQ" or elem.value is None:
        return []
    value = elem.value
    if isinstance(value, (bytes, bytearray)):
        if elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN") and elem.tag.is_private:
            # Private binary blobs are where vendors hide text: search their printable runs.
            return [m.decode("latin-1") for m in re.findall(rb"[ -~]{4,}", bytes(value))]
        return []
    items = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    out = []
    for v in items:
        s = str(v).strip().strip("\x00").strip()
        if s:
            out.append(s.upper())
    return out


def _read(path: Path) -> DicomDataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError) as e:
        raise InvalidDatasetError(f"cannot read DICOM header ({e})", path) from e


def training_identifiers(files: Sequence[Path], root: Path, ignore: set[str]) -> dict[str, str]:
    """Identifying values of the training DICOMs → the (relative) file each was first seen in."""
    found: dict[str, str] = {}
    for path in files:
        ds = _read(path)
        rel = _rel(path, root)
        for at in walk_elements(ds):
            elem = at.element
            if not is_identifying(elem):
                continue
            for v in _values(elem):
                if elem.VR == "UI" and v.startswith(DICOM_ROOT_UID):
                    continue
                if v in ignore:
                    continue
                found.setdefault(v, rel)
    return found


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def _tokens(value: str) -> set[str]:
    # Identifiers embedded in free text ("derived from P_00012 / 1.2.3.4") are caught as tokens.
    return {t for t in re.split(r"[\s,;:=\\/()\[\]{}\"']+", value) if t}


def check_phi(
    synthetic_root: Path | None,
    train_root: Path | None,
    train_patient_ids: Sequence[str | None],
    train_relpaths: Sequence[str],
    cfg: dict[str, Any],
) -> PhiResult:
    """Check every file of the synthetic set against the training set's identifiers.

    Args:
        synthetic_root: folder of the synthetic set (a MONAI datalist file's folder is used);
            None (an in-memory set) checks nothing.
        train_root: folder of the training set; None collects no DICOM identifiers.
        train_patient_ids: ``Case.patient_id`` of the training cases.
        train_relpaths: ``Case.image_relpath`` of the training cases.
        cfg: the ``phi`` section of the audit config.
    """
    if synthetic_root is None:
        return PhiResult(n_dicom=0, n_files=0)
    syn_root = synthetic_root if synthetic_root.is_dir() else synthetic_root.parent
    tr_root = None if train_root is None else (train_root if train_root.is_dir() else train_root.parent)
    ignore = {str(v).upper() for v in cfg["ignore_values"]}
    min_len = int(cfg["min_identifier_length"])

    train_files = [] if tr_root is None else sorted(p for p in tr_root.rglob("*") if p.is_file() and is_dicom(p))
    idents = training_identifiers(train_files, tr_root or Path("."), ignore)
    idents_long = {v: src for v, src in idents.items() if len(v) >= min_len}
    train_uids = {v for v in idents if re.fullmatch(r"[0-9.]+", v) and "." in v}

    syn_files = sorted(p for p in syn_root.rglob("*") if p.is_file())
    result = PhiResult(n_dicom=0, n_files=len(syn_files))
    sop_seen: dict[str, str] = {}
    for path in syn_files:
        rel = _rel(path, syn_root)
        if not is_dicom(path):
            continue
        result.n_dicom += 1
        ds = _read(path)
        for at in walk_elements(ds):
            tpath, elem = at.tag_path, at.element
            for v in _values(elem):
                hit = idents.get(v) if (len(v) >= min_len or is_identifying(elem)) else None
                if hit is None:
                    for tok in _tokens(v):
                        if tok != v and tok in idents_long:
                            hit, v = idents_long[tok], tok
                            break
                if hit is not None:
                    problem = "training UID reused" if v in train_uids else "training identifier copied"
                    result.findings.append(PhiFinding(rel, problem, tpath, elem.keyword or "private", v, hit))
        # Fresh UIDs: none repeated within the synthetic set; file meta agrees with the dataset.
        sop = str(getattr(ds, "SOPInstanceUID", "") or "")
        if not sop:
            result.findings.append(PhiFinding(rel, "SOPInstanceUID missing"))
        elif sop in sop_seen:
            result.findings.append(PhiFinding(rel, "SOPInstanceUID repeated", "(0008,0018)", "SOPInstanceUID",
                                              sop, sop_seen[sop]))
        else:
            sop_seen[sop] = rel
        meta_sop = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPInstanceUID", "") or "")
        if sop and meta_sop and meta_sop != sop:
            result.findings.append(PhiFinding(rel, "MediaStorageSOPInstanceUID differs from SOPInstanceUID",
                                              "(0002,0003)", "MediaStorageSOPInstanceUID", meta_sop))
        removed = str(getattr(ds, "PatientIdentityRemoved", "") or "").upper()
        if removed != "YES":
            result.findings.append(PhiFinding(rel, "PatientIdentityRemoved is not YES", "(0012,0062)",
                                              "PatientIdentityRemoved", removed or "(missing)"))
        burned = str(getattr(ds, "BurnedInAnnotation", "") or "").upper()
        if burned == "YES":
            result.findings.append(PhiFinding(rel, "BurnedInAnnotation is YES", "(0028,0301)",
                                              "BurnedInAnnotation", burned))

    # File names and the manifest: no training patient ID, file name or source path.
    needles = _path_needles(train_patient_ids, train_relpaths, tr_root, min_len, result)
    for path in syn_files:
        rel = _rel(path, syn_root)
        for needle, what in needles:
            if needle.search(rel):
                result.findings.append(PhiFinding(rel, f"file name contains a training {what}",
                                                  value=needle.pattern_text))
    # Text files beside the data (manifest.json, dataset.json, datalists, cases.csv, README.md).
    for path in syn_files:
        if path.suffix.lower() not in TEXT_SUFFIXES or path.stat().st_size > 64 * 2**20:
            continue
        rel = _rel(path, syn_root)
        text = path.read_text(errors="replace")
        if path.name == "manifest.json":
            try:
                json.loads(text)
            except json.JSONDecodeError as e:
                raise InvalidDatasetError(f"manifest.json is not valid JSON ({e})", path) from e
        for needle, what in needles:
            if needle.search(text):
                result.findings.append(PhiFinding(rel, f"{path.name} contains a training {what}",
                                                  value=needle.pattern_text))
    return result


class _Needle:
    """A literal to find as a whole token (not inside a longer ID: P_0001 does not match P_00012)."""

    def __init__(self, text: str) -> None:
        self.pattern_text = text
        self._re = re.compile(r"(?<![A-Za-z0-9])" + re.escape(text) + r"(?![A-Za-z0-9])", re.IGNORECASE)

    def search(self, s: str) -> bool:
        return self._re.search(s) is not None


def _path_needles(
    patient_ids: Sequence[str | None], relpaths: Sequence[str], root: Path | None, min_len: int, result: PhiResult
) -> list[tuple[_Needle, str]]:
    needles: list[tuple[_Needle, str]] = []
    seen: set[str] = set()
    for pid in patient_ids:
        if pid and pid not in seen:
            seen.add(pid)
            if len(pid) < min_len:
                result.skipped_identifiers.append(pid)
                continue
            needles.append((_Needle(pid), "patient ID"))
    for rel in relpaths:
        stem = Path(rel).name
        for suffix in (".gz", ".nii", ".dcm", ".png", ".tif", ".tiff"):
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
        # Generic stems ("1-1", "image") would match anything; only distinctive ones are searched.
        if len(stem) >= max(min_len, 8) and stem not in seen:
            seen.add(stem)
            needles.append((_Needle(stem), "file name"))
    if root is not None:
        needles.append((_Needle(str(Path(root).resolve())), "source path"))
    return needles
