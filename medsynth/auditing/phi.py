"""Protected health information in the synthetic set: DICOM attributes, file names, text files, pixels.

**What identifies a training patient** (:func:`training_identifiers`), from any layout:

* the patient IDs the layout records (CBIS-DDSM CSVs, ``cases.csv``, datalist ``patient_id``);
* case IDs (nnU-Net case names, folder stems, datalist ``case_id``) and the file and folder names
  of the training images and masks, unless they are *generic sequential names* (below);
* values of index-file columns whose name says they identify someone (``identifying_columns``:
  patient, subject, name, MRN, accession, birth date, ...);
* every identifying value of every training DICOM (names, IDs, dates, institution and staff,
  instance UIDs, private tags; DICOM PS3.15 Annex E basic profile), as :mod:`medsynth.io.phi`
  defines them for ``medsynth info`` too -- the same list, the same element walker;
* the training root's absolute path.

A **generic sequential name** identifies nobody: it is made only of generic words
(``generic_name_words``: case, img, image, left, cc, ...) and at most two numbers below one million,
e.g. ``case_0000``, ``0001``, ``img_12``, ``1-1``, ``000000``, ``case_0001_0000``. Such names are not searched, so a
synthetic set named ``case_0000...`` does not collide with a training set named the same way.
``P_00001`` (a patient prefix), ``MRN1866453``, ``12345678`` (seven digits or more) or
``235-37-6260`` (three numbers) are identifiers.

**Where they are looked for** (:func:`check_phi`): every element of every synthetic DICOM (file
meta, nested sequences, private tags, printable runs inside private binary values), every file name
(path relative to the synthetic root) and every text file (JSON, CSV, TXT, MD, YAML, HTML). A value
matches when an identifier occurs in it as a whole token sequence (``P_00001`` is found in
``SYNTHETIC_P_00001`` and ``from P_00001 archive`` but not in ``P_000012``); separators between the
parts of an identifier may differ (``P-00001``). Each synthetic DICOM must also carry fresh UIDs
(none shared with training, none repeated within the set), PatientIdentityRemoved = YES, a
BurnedInAnnotation that is not YES, and a PatientName / PatientID of medsynth's synthetic pattern
(``SYNTHETIC^CASE_0000`` / ``SYNTHETIC_CASE_0000``, :mod:`medsynth.io.writers.dicom`).

**Text burned into the pixels** (:func:`check_pixel_text`): every synthetic image is read by OCR
(:mod:`medsynth.auditing.ocr`, the optional ``medsynth[ocr]`` extra). Any text that is not a
laterality/view marker is a finding; text that contains a training identifier (also a name as
"FAMILY, GIVEN", a date as 2012-10-04, an ID with one misread character) is reported as such.
Without the extra the check is *not checked*, never *pass*.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pydicom
import pydicom.misc
from pydicom.dataset import Dataset as DicomDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from medsynth.errors import ConfigError, InvalidDatasetError
from medsynth.io.phi import DICOM_ROOT_UID, is_identifying, walk_elements

#: Files whose text is searched for training identifiers and paths.
TEXT_SUFFIXES = frozenset({".json", ".csv", ".tsv", ".txt", ".md", ".yaml", ".yml", ".html"})
_MAX_TEXT_BYTES = 64 * 2**20
_RUN = re.compile(r"[A-Z0-9]+")  # the parts of an identifier: runs of letters and digits (upper-cased)
_GENERIC_SPLIT = re.compile(r"[_\-.\s]+")
_UID = re.compile(r"[0-9]+(\.[0-9]+)+")


@dataclass
class PhiFinding:
    """One problem found."""

    file: str  # relative to the synthetic root
    problem: str
    tag: str = ""
    keyword: str = ""
    value: str = ""
    source: str = ""  # the training file the value came from (relative to the training root)
    kind: str = ""  # what the training value is: "patient ID", "case ID", "DICOM PatientName", ...

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v != ""}


@dataclass
class PhiResult:
    """PHI evidence of the synthetic set's files."""

    n_dicom: int
    n_files: int
    findings: list[PhiFinding] = field(default_factory=list)
    skipped_identifiers: list[str] = field(default_factory=list)  # too short or generic to search safely
    n_identifiers: dict[str, int] = field(default_factory=dict)  # identifiers searched, by kind
    ocr_done: bool = False

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.problem] = out.get(f.problem, 0) + 1
        return out


# ----------------------------------------------------------------------------- identifiers
@dataclass(frozen=True)
class Identifier:
    """A value that identifies a training patient, and where it was seen."""

    value: str  # upper-cased, as found
    kind: str  # "patient ID", "case ID", "file name", "folder name", "cases.csv column 'mrn'", "DICOM PatientName"
    source: str  # the training file (relative to the training root) or index file it came from
    vr: str = ""  # the DICOM VR when it came from a DICOM element

    @property
    def is_uid(self) -> bool:
        return self.vr == "UI" or _UID.fullmatch(self.value) is not None


def is_generic_name(text: str, words: Iterable[str]) -> bool:
    """True when ``text`` is only generic words and at most two numbers below one million (``case_0000``,
    ``0001``, ``img_12``, ``1-1``, ``case_0001_0000``): a sequential name that identifies nobody (see the
    module docstring)."""
    vocab = {w.lower() for w in words}
    tokens = [t for t in _GENERIC_SPLIT.split(str(text).strip().lower()) if t]
    numbers = 0
    for tok in tokens:
        if tok in vocab:
            continue
        m = re.fullmatch(r"([a-z]*?)(\d+)", tok)
        if m and (m.group(1) == "" or m.group(1) in vocab) and int(m.group(2)) < 1_000_000:
            numbers += 1
            continue
        return False
    # An index and a channel or a part ("case_0001_0000", "1-1") is generic; three or more numbers
    # are a date, a social security or a phone number ("2012-10-04", "235-37-6260").
    return numbers <= 2


class TrainingIdentifiers:
    """The identifiers of a training set, indexed for whole-token search.

    Attributes:
        exact: value -> identifier, compared with whole values of identifying synthetic DICOM elements:
            every identifying training DICOM value (short and plain ones too) and every other identifier.
        searchable: identifiers long enough to look for inside any text.
        not_searched: values left out, each with the reason.
        source_path: the training root's absolute path (searched in text files), or None.
    """

    def __init__(self, cfg: dict[str, Any], source_path: str | None = None) -> None:
        self._ignore = {str(v).strip().upper() for v in cfg["ignore_values"]}
        self._generic = [str(w) for w in cfg["generic_name_words"]]
        self._min_len = int(cfg["min_identifier_length"])
        self.exact: dict[str, Identifier] = {}
        self.searchable: list[Identifier] = []
        self.not_searched: list[str] = []
        self.source_path = source_path
        self._index: dict[tuple[str, ...], list[Identifier]] = {}
        self._lengths: set[int] = set()
        self._firsts: set[str] = set()
        self._seen: set[str] = set()

    def add(self, value: Any, kind: str, source: str, vr: str = "") -> None:
        """Add one value (ignored, generic and too-short values are recorded in ``not_searched``)."""
        text = str(value).strip().strip("\x00").strip().upper()
        if not text or text in self._ignore:
            return
        ident = Identifier(text, kind, source, vr)
        if vr == "UI" and text.startswith(DICOM_ROOT_UID):
            return  # names a part of the standard, not an instance
        runs = tuple(_RUN.findall(text))
        if len(set("".join(runs))) <= 1:
            return  # a placeholder ("0", "000000"), not an identifier
        if vr:  # a DICOM value is compared whole with identifying synthetic elements, however plain it looks
            self.exact.setdefault(text, ident)
        # A DICOM ID of six digits or more (an MRN, an accession number) is searched even though a file
        # name of that shape would be a generic one.
        long_number = bool(vr) and re.fullmatch(r"\d{6,}", text) is not None
        if not ident.is_uid and not long_number and is_generic_name(text, self._generic):
            if text not in self._seen:
                self._seen.add(text)
                where = "; compared whole with synthetic DICOM values" if vr else ""
                self.not_searched.append(f"{text} ({kind}: generic name{where})")
            return
        self.exact.setdefault(text, ident)
        if not runs:
            return
        if len("".join(runs)) < self._min_len:
            if text not in self._seen:
                self._seen.add(text)
                self.not_searched.append(f"{text} ({kind}: shorter than min_identifier_length)")
            return
        keys = [runs]
        if vr == "PN" and "^" in text:  # LAST^FIRST^MIDDLE is also written "LAST, FIRST" or "FIRST LAST"
            parts = [_RUN.findall(p) for p in text.split("^")]
            if len(parts) >= 2 and parts[0] and parts[1]:
                keys += [tuple(parts[0] + parts[1]), tuple(parts[1] + parts[0])]
        for key in keys:
            bucket = self._index.setdefault(key, [])
            if all(i.value != ident.value for i in bucket):
                bucket.append(ident)
                self._lengths.add(len(key))
                self._firsts.add(key[0])
        if text not in self._seen:
            self._seen.add(text)
            self.searchable.append(ident)

    def find(self, text: str) -> list[Identifier]:
        """The identifiers that occur in ``text`` as whole token sequences (case-insensitive)."""
        upper = str(text).upper()
        spans = [(m.start(), m.end(), m.group()) for m in _RUN.finditer(upper)]
        found: dict[str, Identifier] = {}
        for i in range(len(spans)):
            if spans[i][2] not in self._firsts:  # no identifier starts with this token
                continue
            for k in self._lengths:
                if i + k > len(spans):
                    continue
                key = tuple(s[2] for s in spans[i : i + k])
                for ident in self._index.get(key, ()):
                    start, end = spans[i][0], spans[i + k - 1][1]
                    if ident.is_uid and not _uid_bounded(upper, start, end):
                        continue
                    found.setdefault(ident.value, ident)
        return list(found.values())

    def counts(self) -> dict[str, int]:
        """How many identifiers of each kind are searched."""
        out: dict[str, int] = {}
        for ident in self.searchable:
            kind = "DICOM" if ident.kind.startswith("DICOM") else ident.kind.split(" column")[0]
            out[kind] = out.get(kind, 0) + 1
        return out


def _uid_bounded(text: str, start: int, end: int) -> bool:
    """A UID match must not be part of a longer UID ("1.2.3" is not in "1.2.3.4")."""
    before = text[start - 2 : start] if start >= 2 else ""
    after = text[end : end + 2]
    return not (re.fullmatch(r"[0-9]\.", before) or re.match(r"\.[0-9]", after))


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


def _rel(path: Path | str, root: Path | None) -> str:
    if root is None:
        return str(path)
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)


def training_identifiers(train: Sequence[Any] | None, train_root: Path | str | None,
                         cfg: dict[str, Any]) -> TrainingIdentifiers:
    """Everything that identifies a training patient (see the module docstring).

    Args:
        train: the training cases (a dataset or a list of ``Case``); None reads only the DICOMs.
        train_root: the training set's folder (or index file); every DICOM below it is read. None
            (an in-memory set) reads the DICOM files the cases name.
        cfg: the ``phi`` section of the audit config.

    Raises:
        InvalidDatasetError: a training DICOM header cannot be read.
    """
    root = None if train_root is None else Path(train_root)
    if root is not None and not root.is_dir():
        root = root.parent
    idents = TrainingIdentifiers(cfg, None if root is None else str(root.resolve()))
    columns = re.compile(str(cfg["identifying_columns"]), re.IGNORECASE)
    dicom_files: list[Path] = []
    cases = list(train or ())
    case_parts = [_path_parts(case, root) for case in cases]
    # A folder or file name most cases share ("imagesTr", "masks", "000000") belongs to the layout.
    shared = {part for part, n in _count(p for parts in case_parts for p in set(parts)).items()
              if len(cases) >= 3 and n > len(cases) / 2}
    for case, parts in zip(cases, case_parts):
        image_path = Path(case.image.path)
        rel = str(getattr(case, "image_relpath", "") or _rel(image_path, root))
        if case.patient_id not in (None, ""):
            idents.add(case.patient_id, "patient ID", rel)
        idents.add(case.case_id, "case ID", rel)
        for (name, kind) in parts:
            if (name, kind) not in shared:
                idents.add(name, kind, rel)
        for key, value in (getattr(case, "metadata", None) or {}).items():
            if isinstance(value, (str, int)) and not isinstance(value, bool) and columns.search(str(key)):
                idents.add(value, f"index column {key!r}", rel)
        if root is None and image_path.is_file() and is_dicom(image_path):
            dicom_files.append(image_path)
    if root is not None:
        dicom_files = sorted(p for p in root.rglob("*") if p.is_file() and is_dicom(p))
    for path in dicom_files:
        ds = _read(path)
        rel = _rel(path, root)
        for at in walk_elements(ds):
            elem = at.element
            if not is_identifying(elem):
                continue
            kind = f"DICOM {elem.keyword or 'private ' + at.tag_path}"
            for v in _values(elem):
                idents.add(v, kind, rel, vr=str(elem.VR))
    return idents


def _path_parts(case: Any, root: Path | None) -> list[tuple[str, str]]:
    """(name, "folder name" / "file name") of every part of a case's image and mask paths."""
    rel = str(getattr(case, "image_relpath", "") or _rel(case.image.path, root))
    paths = [rel]
    mask = getattr(case, "mask", None)
    if mask is not None and getattr(mask, "path", None) is not None:
        paths.append(_rel(mask.path, root))
        for roi in (mask.metadata or {}).get("roi_paths", []):  # CBIS-DDSM ROI files
            paths.append(_rel(roi, root))
    out = []
    for p in paths:
        parts = [q for q in Path(p).parts if q not in ("", "/", "..")]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            out.append((_stem(part), "file name") if last else (part, "folder name"))
    return out


def _count(items: Iterable[Any]) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def _stem(name: str) -> str:
    lower = name.lower()
    for suffix in (".nii.gz", ".nii", ".dcm", ".dicom", ".png", ".tif", ".tiff", ".json", ".csv"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


# ----------------------------------------------------------------------------- files
def _pattern(cfg: dict[str, Any], key: str, default: str) -> re.Pattern[str]:
    text = cfg.get(key) or default
    try:
        return re.compile(text)
    except re.error as e:
        raise ConfigError(f"phi.{key} is not a regular expression ({e}): {text!r}") from e


def check_phi(synthetic_root: Path | None, identifiers: TrainingIdentifiers, cfg: dict[str, Any]) -> PhiResult:
    """Check every file of the synthetic set against the training set's identifiers.

    Args:
        synthetic_root: folder of the synthetic set (a MONAI datalist file's folder is used);
            None (an in-memory set) checks nothing.
        identifiers: :func:`training_identifiers` of the training set.
        cfg: the ``phi`` section of the audit config.

    Raises:
        InvalidDatasetError: a synthetic DICOM header or ``manifest.json`` cannot be read.
        ConfigError: a pattern of the config is not a regular expression.
    """
    from medsynth.io.writers.dicom import SYNTHETIC_ID_PATTERN, SYNTHETIC_NAME_PATTERN

    result = PhiResult(n_dicom=0, n_files=0, skipped_identifiers=list(identifiers.not_searched),
                       n_identifiers=identifiers.counts())
    if synthetic_root is None:
        return result
    syn_root = synthetic_root if synthetic_root.is_dir() else synthetic_root.parent
    name_re = _pattern(cfg, "patient_name_pattern", SYNTHETIC_NAME_PATTERN)
    id_re = _pattern(cfg, "patient_id_pattern", SYNTHETIC_ID_PATTERN)
    min_len = int(cfg["min_identifier_length"])

    syn_files = sorted(p for p in syn_root.rglob("*") if p.is_file())
    result.n_files = len(syn_files)
    sop_seen: dict[str, str] = {}
    for path in syn_files:
        rel = _rel(path, syn_root)
        if not is_dicom(path):
            continue
        result.n_dicom += 1
        ds = _read(path)
        for at in walk_elements(ds):
            tpath, elem = at.tag_path, at.element
            keyword = elem.keyword or "private"
            reported: set[str] = set()
            for v in _values(elem):
                hits = []
                exact = identifiers.exact.get(v)
                if exact is not None and (len(v) >= min_len or is_identifying(elem)):
                    hits.append(exact)
                hits += identifiers.find(v)
                for ident in hits:
                    if ident.value in reported:
                        continue
                    reported.add(ident.value)
                    problem = "training UID reused" if ident.is_uid else "training identifier copied"
                    result.findings.append(PhiFinding(rel, problem, tpath, keyword, ident.value, ident.source,
                                                      ident.kind))
        _check_instance(ds, rel, sop_seen, name_re, id_re, result)

    # File names: no training identifier in any part of the path.
    for path in syn_files:
        rel = _rel(path, syn_root)
        for ident in identifiers.find(rel):
            result.findings.append(PhiFinding(rel, f"file name contains a training {ident.kind}",
                                              value=ident.value, source=ident.source, kind=ident.kind))
    # Text files beside the data (manifest.json, dataset.json, datalists, cases.csv, README.md).
    for path in syn_files:
        if path.suffix.lower() not in TEXT_SUFFIXES or path.stat().st_size > _MAX_TEXT_BYTES:
            continue
        rel = _rel(path, syn_root)
        text = path.read_text(errors="replace")
        if path.name == "manifest.json":
            try:
                json.loads(text)
            except json.JSONDecodeError as e:
                raise InvalidDatasetError(f"manifest.json is not valid JSON ({e})", path) from e
        for ident in identifiers.find(text):
            result.findings.append(PhiFinding(rel, f"{path.name} contains a training {ident.kind}",
                                              value=ident.value, source=ident.source, kind=ident.kind))
        if identifiers.source_path and identifiers.source_path.upper() in text.upper():
            result.findings.append(PhiFinding(rel, f"{path.name} contains a training source path",
                                              value=identifiers.source_path))
    return result


def _check_instance(ds: DicomDataset, rel: str, sop_seen: dict[str, str], name_re: re.Pattern[str],
                    id_re: re.Pattern[str], result: PhiResult) -> None:
    """Per-file rules: fresh and consistent UIDs, de-identification markers, a synthetic patient."""
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
    for keyword, tag, pattern in (("PatientName", "(0010,0010)", name_re), ("PatientID", "(0010,0020)", id_re)):
        value = str(ds.get(keyword, "") or "").strip()
        if pattern.fullmatch(value) is None:
            result.findings.append(PhiFinding(rel, f"{keyword} is not a synthetic {keyword[7:].lower()}", tag,
                                              keyword, value or "(empty)",
                                              kind=f"expected {pattern.pattern}"))


# ----------------------------------------------------------------------------- pixels
@dataclass
class PixelTextResult:
    """What OCR read in the synthetic images.

    Attributes:
        status: "checked" or "not checked".
        reason: why not checked (empty when checked).
        n_images: images read.
        seconds: time spent reading.
        findings: one per image with text (problem "text in pixels") and one per training identifier
            found in it ("text in pixels matches a training <kind>").
        texts: per image with any text, what was read (``{"file", "text", "score"}``), allowed markers included.
    """

    status: str
    reason: str = ""
    n_images: int = 0
    seconds: float = 0.0
    findings: list[PhiFinding] = field(default_factory=list)
    texts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_images_with_text(self) -> int:
        return len({f.file for f in self.findings if f.problem == "text in pixels"})

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "n_images": self.n_images,
                "n_images_with_text": self.n_images_with_text, "seconds": round(self.seconds, 2),
                "findings": [f.to_dict() for f in self.findings[:500]], "n_findings": len(self.findings),
                "texts": self.texts[:200]}


def check_pixel_text(
    cases: Sequence[Any],
    identifiers: TrainingIdentifiers,
    cfg: dict[str, Any],
    on_case: Callable[[int], None] | None = None,
    reader: Any = None,
) -> PixelTextResult:
    """Read the text burned into every synthetic image (OCR) and match it against the identifiers.

    Args:
        cases: the synthetic cases (their images are read one at a time and released).
        identifiers: :func:`training_identifiers` of the training set.
        cfg: the ``phi.ocr`` section of the audit config.
        on_case: progress callback, called with 1 after each image.
        reader: an object with ``read(image01) -> [(text, score)]`` (default: the rapidocr reader).

    Returns:
        The result; ``status`` "not checked" when OCR is switched off or the ``ocr`` extra is missing
        (with ``enabled: auto``).

    Raises:
        ConfigError: ``enabled: true`` but the ``ocr`` extra is not installed, or a bad pattern.
    """
    from medsynth.auditing.ocr import PixelTextReader, ocr_unavailable

    enabled = cfg["enabled"]
    if enabled not in (True, False, "auto"):
        raise ConfigError(f"phi.ocr.enabled must be auto, true or false, got {enabled!r}")
    if enabled is False:
        return PixelTextResult("not checked", "switched off (phi.ocr.enabled: false)")
    if reader is None:
        why = ocr_unavailable()
        if why:
            if enabled is True:
                raise ConfigError(f"phi.ocr.enabled is true but OCR cannot run: {why}")
            return PixelTextResult("not checked", why)
        reader = PixelTextReader(max_side_px=int(cfg["max_side_px"]), min_score=float(cfg["min_score"]))
    try:
        allowed = [re.compile(p, re.IGNORECASE) for p in cfg["allowed_text"]]
    except re.error as e:
        raise ConfigError(f"phi.ocr.allowed_text holds a bad regular expression ({e})") from e
    min_chars = int(cfg["min_chars"])
    out = PixelTextResult("checked")
    t0 = time.perf_counter()
    for case in cases:
        rel = str(getattr(case, "image_relpath", "") or Path(case.image.path).name)
        lines = reader.read(np.asarray(case.image.unit_pixels(), dtype=np.float32))
        case.image.release()
        out.n_images += 1
        if on_case is not None:
            on_case(1)
        if not lines:
            continue
        out.texts.append({"file": rel, "text": [t for t, _ in lines], "score": [round(float(s), 3) for _, s in lines]})
        text = [t for t, _ in lines
                if len(re.sub(r"[^A-Za-z0-9]", "", t)) >= min_chars
                and not any(p.fullmatch(" ".join(t.split())) for p in allowed)]
        if not text:
            continue
        out.findings.append(PhiFinding(rel, "text in pixels", keyword="pixels", value=" | ".join(text)))
        for ident in match_pixel_text(text, identifiers):
            out.findings.append(PhiFinding(rel, f"text in pixels matches a training {ident.kind}", keyword="pixels",
                                           value=ident.value, source=ident.source, kind=ident.kind))
    out.seconds = time.perf_counter() - t0
    return out


# OCR confuses these; both sides are folded before IDs are compared.
_FOLD = str.maketrans({"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "|": "1", "Z": "2", "S": "5", "B": "8",
                       "G": "6"})


def _fold(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", text.upper()).translate(_FOLD)


def _edit_distance_le1(a: str, b: str) -> bool:
    """Whether two strings differ by at most one substitution, insertion or deletion."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i + (len(a) == len(b)):] == b[i + 1:]


def match_pixel_text(lines: Sequence[str], identifiers: TrainingIdentifiers) -> list[Identifier]:
    """The training identifiers that OCR'd text lines contain, tolerant of OCR's usual errors.

    * whole-token matches as in file and DICOM text (:meth:`TrainingIdentifiers.find`);
    * IDs of 6+ characters inside the folded text (O/0, I/1, S/5, ... made equal), or within one
      misread character of a token;
    * dates (DICOM DA) as YYYYMMDD, DDMMYYYY or MMDDYYYY once separators are dropped (2012-10-04);
    * names (DICOM PN) when family and given name each appear, one misread letter allowed.
    """
    found: dict[str, Identifier] = {i.value: i for line in lines for i in identifiers.find(line)}
    upper = [line.upper() for line in lines]
    words = [w for line in upper for w in re.findall(r"[A-Z0-9]+", line)]
    folded_words = [_fold(w) for w in words]
    folded_lines = [_fold(line) for line in upper]
    # Digits of each line with the separators inside numbers dropped: "2012-10-04" -> "20121004".
    digits = [re.sub(r"[^0-9]", "", re.sub(r"(?<=\d)[\s./-]+(?=\d)", "", line)) for line in upper]
    for ident in identifiers.searchable:
        if ident.value in found:
            continue
        if ident.vr == "PN":
            parts = [re.sub(r"[^A-Z]", "", p) for p in ident.value.split("^")[:2]]
            if len(parts) == 2 and all(len(p) >= 2 for p in parts) and all(
                any(_edit_distance_le1(p, w) if len(p) >= 5 else p == w for w in words) for p in parts
            ):
                found[ident.value] = ident
            continue
        if ident.vr == "DA" and re.fullmatch(r"\d{8}", ident.value):
            y, m, d = ident.value[:4], ident.value[4:6], ident.value[6:]
            if any(v in line for line in digits for v in (y + m + d, d + m + y, m + d + y)):
                found[ident.value] = ident
            continue
        if ident.is_uid:
            continue
        key = _fold(ident.value)
        if len(key) < 6:
            continue
        if any(key in line for line in folded_lines) or any(
            _edit_distance_le1(key, w) for w in folded_words if len(w) >= len(key) - 1
        ):
            found[ident.value] = ident
    return list(found.values())
