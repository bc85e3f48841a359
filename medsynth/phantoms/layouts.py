"""Write phantoms to disk as a dataset: CBIS-DDSM-like DICOM tree, NIfTI folder, or PNG folder.

``make_phantoms`` is the entry point. Layouts:

- ``cbis-ddsm``: ``<Mass|Calc|Normal>-<split>_P_00001_LEFT_CC/000000.dcm`` images (DICOM MG, For
  Presentation, with decoy PHI), one ROI folder per lesion ``<Mass|Calc>-<split>_P_00001_LEFT_CC_<k>/``
  holding the binary ROI mask (``000000.dcm``, 0/255, same size as the image) and the cropped
  lesion (``000001.dcm``); ``mass_case_description.csv``, ``calc_case_description.csv`` (one row per
  lesion, CBIS-DDSM's columns, including its quirk of naming the density column ``breast density``
  in the calcification file) and ``normal_case_description.csv`` (images without lesion, empty ROI
  paths). All paths in the CSVs are relative to the root.
- ``nifti``: ``images/<case>.nii.gz`` (uint16 over the full 0..65535 range, affine
  diag(row mm, col mm, 1, 1), array stored as (rows, cols, 1)), ``masks/<case>.nii.gz`` (uint8
  label map: 1 mass, 2 calcification) for images with lesions, and ``cases.csv``.
- ``folder``: ``images/<case>.png`` (16-bit, full range, pixel spacing as the PNG's DPI),
  ``masks/<case>.png`` (8-bit label map), ``cases.csv``.

``bits_stored`` applies to DICOM only; NIfTI and PNG have no such field, so their images use all
16 bits.

Every layout also gets ``phantoms.json`` (generation settings, per-case files and lesion metadata, no PHI),
written last, so its presence marks a complete dataset. Each file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.errors import ConfigError, OutputExistsError
from medsynth.io.writers.atomic import atomic_path, atomic_write_bytes
from medsynth.phantoms.lesions import CALC_LABEL, MASS_LABEL
from medsynth.phantoms.phi import image_uids
from medsynth.phantoms.render import DEFAULT_FOV_MM, DEFAULT_SIZE, Phantom, check_render_args, render_phantom

LAYOUTS = ("cbis-ddsm", "nifti", "folder")
MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image – For Presentation
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MASS_COLUMNS = [
    "patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
    "abnormality type", "mass shape", "mass margins", "assessment", "pathology", "subtlety",
    "image file path", "cropped image file path", "ROI mask file path",
]
CALC_COLUMNS = [
    "patient_id", "breast density", "left or right breast", "image view", "abnormality id",
    "abnormality type", "calc type", "calc distribution", "assessment", "pathology", "subtlety",
    "image file path", "cropped image file path", "ROI mask file path",
]
CASES_COLUMNS = [
    "case_id", "patient_id", "laterality", "view", "density", "dense_fraction", "spacing_mm",
    "n_lesions", "lesion_types", "mass_shapes", "mass_margins", "calc_types", "calc_distributions",
    "pathologies",
]
_MARKER = ".medsynth-phantoms"  # marks a folder make_phantoms wrote (complete or not)
_DENSITY_NUMBER = {"a": 1, "b": 2, "c": 3, "d": 4}
_SIDE = {"L": "LEFT", "R": "RIGHT"}
# DICOM PatientOrientation (row direction \ column direction) of the usual mammogram hanging.
_ORIENTATION = {("L", "CC"): ["A", "R"], ("R", "CC"): ["P", "L"], ("L", "MLO"): ["A", "FR"], ("R", "MLO"): ["P", "FL"]}
_VIEW_CODE = {"CC": ("R-10242", "cranio-caudal"), "MLO": ("R-10226", "medio-lateral oblique")}


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


# ----------------------------------------------------------------------------- pixels
def to_stored(image: np.ndarray, bits_stored: int, monochrome: int) -> np.ndarray:
    """Display-polarity [0, 1] image → uint16 stored values (inverted for MONOCHROME1)."""
    top = 2**bits_stored - 1
    stored = np.rint(np.clip(image, 0.0, 1.0) * top).astype(np.uint16)
    return (top - stored).astype(np.uint16) if monochrome == 1 else stored


# ----------------------------------------------------------------------------- DICOM
def _patient_and_study(ds: Any, phantom: Phantom) -> None:
    """Patient, study and equipment modules, with the decoy PHI where real files carry it."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    phi = phantom.phi
    for key in (
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
        "InstitutionName", "InstitutionAddress", "ReferringPhysicianName", "PerformingPhysicianName",
        "OperatorsName", "AccessionNumber", "StudyDate", "StudyTime", "StudyID", "StudyInstanceUID",
        "RequestingPhysician",
    ):
        setattr(ds, key, phi[key])
    ds.SeriesDate, ds.SeriesTime = phi["StudyDate"], phi["StudyTime"]
    ds.ContentDate, ds.ContentTime = phi["StudyDate"], phi["StudyTime"]
    ds.AcquisitionDateTime = phi["StudyDate"] + phi["StudyTime"]
    ds.StudyDescription = "MAMMOGRAM SCREENING BILATERAL"
    ds.Manufacturer = "MEDSYNTH"
    ds.ManufacturerModelName = "PROCEDURAL PHANTOM"
    ds.StationName = phi["InstitutionName"].split()[0][:10] + "MAMMO1"  # SH: 16 chars at most
    ds.DeviceSerialNumber = phi["PatientID"][3:] + "07"

    # Places de-identifiers are known to miss: nested sequences and private tags.
    other = Dataset()
    other.PatientID = phi["OtherPatientID"]
    other.IssuerOfPatientID = phi["InstitutionName"]
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])
    request = Dataset()
    request.RequestedProcedureID = phi["AccessionNumber"][1:]
    request.RequestedProcedureDescription = "MAMMO SCREENING BILATERAL"
    request.ScheduledProcedureStepID = phi["StudyID"]
    request.ScheduledPerformingPhysicianName = phi["PerformingPhysicianName"]
    request.AccessionNumber = phi["AccessionNumber"]
    ds.RequestAttributesSequence = Sequence([request])
    ref_study = Dataset()
    ref_study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management
    ref_study.ReferencedSOPInstanceUID = phi["StudyInstanceUID"]
    ds.ReferencedStudySequence = Sequence([ref_study])
    block = ds.private_block(0x0029, "MEDSYNTH PHANTOM PRIVATE", create=True)
    block.add_new(0x10, "PN", phi["PatientName"])
    block.add_new(0x11, "LO", phi["PatientBirthDate"])


def _new_dataset(sop_class: str, sop_instance: str) -> Any:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance  # a decoy too: de-identifiers forget it
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.SpecificCharacterSet = "ISO_IR 100"
    return ds


def _mg_dataset(
    phantom: Phantom, pixels: np.ndarray, uids: dict[str, str], bits_stored: int, monochrome: int,
    instance: int, burned_in: bool,
) -> Any:
    """A Digital Mammography For Presentation dataset around ``pixels`` (already stored values)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = _new_dataset(MG_FOR_PRESENTATION, uids["SOPInstanceUID"])
    _patient_and_study(ds, phantom)
    ds.Modality = "MG"
    ds.SeriesInstanceUID = uids["SeriesInstanceUID"]
    ds.FrameOfReferenceUID = uids["FrameOfReferenceUID"]
    ds.SeriesNumber = 1 if phantom.laterality == "L" else 2
    ds.InstanceNumber = instance
    ds.SeriesDescription = f"{phantom.laterality} {phantom.view}"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BodyPartExamined = "BREAST"
    ds.ViewPosition = phantom.view
    ds.ImageLaterality = phantom.laterality
    ds.PatientOrientation = _ORIENTATION[(phantom.laterality, phantom.view)]
    code = Dataset()
    code.CodeValue, code.CodeMeaning = _VIEW_CODE[phantom.view]
    code.CodingSchemeDesignator = "SRT"
    ds.ViewCodeSequence = Sequence([code])
    ds.BreastImplantPresent = "NO"
    ds.BurnedInAnnotation = "YES" if burned_in else "NO"
    spacing = [f"{phantom.spacing[0]:.6g}", f"{phantom.spacing[1]:.6g}"]
    ds.PixelSpacing = spacing
    ds.ImagerPixelSpacing = spacing
    ds.EstimatedRadiographicMagnificationFactor = 1.0
    ds.BodyPartThickness = int(40 + 30 * phantom.dense_fraction)
    ds.set_pixel_data(
        np.ascontiguousarray(pixels), f"MONOCHROME{monochrome}", bits_stored, generate_instance_uid=False
    )
    # MG "for presentation" files pair MONOCHROME1 with an INVERSE presentation LUT (both say:
    # low stored values display white); this is not a second inversion.
    ds.PresentationLUTShape = "INVERSE" if monochrome == 1 else "IDENTITY"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1 if monochrome == 2 else -1
    tissue = phantom.breast_mask | phantom.pectoral_mask
    inside = pixels[tissue] if tissue.shape == pixels.shape and tissue.any() else pixels
    lo, hi = np.percentile(inside, [0.5, 99.5])
    ds.WindowCenter = f"{(lo + hi) / 2:.1f}"
    ds.WindowWidth = f"{max(hi - lo, 1.0):.1f}"
    ds.VOILUTFunction = "LINEAR"
    return ds


def _roi_dataset(phantom: Phantom, mask: np.ndarray, uids: dict[str, str], lesion_id: int) -> Any:
    """A CBIS-DDSM-like binary ROI mask: 8-bit, 0 outside and 255 inside the lesion."""
    ds = _new_dataset(SECONDARY_CAPTURE, uids["SOPInstanceUID"])
    _patient_and_study(ds, phantom)
    ds.Modality = "MG"
    ds.ConversionType = "WSD"
    ds.SeriesInstanceUID = uids["SeriesInstanceUID"]
    ds.SeriesNumber = 100 + lesion_id
    ds.InstanceNumber = 1
    ds.SeriesDescription = "ROI mask images"
    ds.ImageLaterality = phantom.laterality
    ds.ViewPosition = phantom.view
    ds.PixelSpacing = [f"{phantom.spacing[0]:.6g}", f"{phantom.spacing[1]:.6g}"]
    ds.BurnedInAnnotation = "NO"
    ds.set_pixel_data(np.where(mask, 255, 0).astype(np.uint8), "MONOCHROME2", 8, generate_instance_uid=False)
    return ds


def _save_dicom(path: Path, ds: Any) -> None:
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def _lesion_uids(phantom: Phantom, lesion_id: int, what: str) -> dict[str, str]:
    from pydicom.uid import generate_uid

    from medsynth.phantoms.phi import UID_PREFIX

    key = [phantom.phi["_uid_key"], phantom.laterality, phantom.view, str(lesion_id), what]
    return {
        "SeriesInstanceUID": generate_uid(UID_PREFIX, entropy_srcs=key + ["series"]),
        "SOPInstanceUID": generate_uid(UID_PREFIX, entropy_srcs=key + ["sop"]),
        "FrameOfReferenceUID": generate_uid(UID_PREFIX, entropy_srcs=key + ["for"]),
    }


def _write_cbis_case(
    root: Path, phantom: Phantom, patient_id: str, split: str, bits_stored: int, monochrome: int
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Write one image, its ROI masks and cropped lesions; returns (CSV rows by file, paths written)."""
    side = _SIDE[phantom.laterality]
    types = {les["type"] for les in phantom.lesions}
    prefix = "Mass" if "mass" in types else "Calc" if types else "Normal"
    base = f"{patient_id}_{side}_{phantom.view}"
    image_rel = f"{prefix}-{split}_{base}/000000.dcm"
    stored = to_stored(phantom.image, bits_stored, monochrome)
    uids = image_uids(phantom.phi, phantom.laterality, phantom.view)
    _save_dicom(
        root / image_rel,
        _mg_dataset(phantom, stored, uids, bits_stored, monochrome, 1, phantom.burned_in_text),
    )
    common = {
        "patient_id": patient_id,
        "left or right breast": side,
        "image view": phantom.view,
        "image file path": image_rel,
    }
    rows: dict[str, list[dict[str, Any]]] = {"mass": [], "calc": [], "normal": []}
    if not phantom.lesions:
        rows["normal"].append(
            {**common, "breast_density": _DENSITY_NUMBER[phantom.density], "abnormality id": "",
             "abnormality type": "", "mass shape": "", "mass margins": "", "assessment": 1,
             "pathology": "NORMAL", "subtlety": "", "cropped image file path": "", "ROI mask file path": ""}
        )
        return rows, {"image": image_rel, "rois": []}
    for les in phantom.lesions:
        k = les["id"]
        is_mass = les["type"] == "mass"
        roi_dir = f"{'Mass' if is_mass else 'Calc'}-{split}_{base}_{k}"
        roi_rel, crop_rel = f"{roi_dir}/000000.dcm", f"{roi_dir}/000001.dcm"
        own = phantom.instances == k
        r0, c0, r1, c1 = les["bbox"]
        _save_dicom(root / roi_rel, _roi_dataset(phantom, own, _lesion_uids(phantom, k, "roi"), k))
        pad = 8
        cr0, cc0 = max(r0 - pad, 0), max(c0 - pad, 0)
        crop = stored[cr0 : r1 + pad, cc0 : c1 + pad]
        crop_ds = _mg_dataset(
            phantom, crop, _lesion_uids(phantom, k, "crop"), bits_stored, monochrome, 2, False
        )
        crop_ds.SeriesDescription = "cropped images"
        _save_dicom(root / crop_rel, crop_ds)
        row = {
            **common, "abnormality id": k, "abnormality type": les["type"],
            "assessment": les["assessment"], "pathology": les["pathology"], "subtlety": les["subtlety"],
            "cropped image file path": crop_rel, "ROI mask file path": roi_rel,
        }
        if is_mass:
            row.update({"breast_density": _DENSITY_NUMBER[phantom.density],
                        "mass shape": les["shape"].upper(), "mass margins": les["margin"].upper()})
            rows["mass"].append(row)
        else:
            row.update({"breast density": _DENSITY_NUMBER[phantom.density],
                        "calc type": les["calc_type"].upper(), "calc distribution": les["distribution"].upper()})
            rows["calc"].append(row)
    rois = [r["ROI mask file path"] for r in rows["mass"] + rows["calc"]]
    return rows, {"image": image_rel, "rois": rois}


# ----------------------------------------------------------------------------- NIfTI / PNG
def _cases_row(case_id: str, patient_id: str, phantom: Phantom) -> dict[str, Any]:
    masses = [les for les in phantom.lesions if les["type"] == "mass"]
    calcs = [les for les in phantom.lesions if les["type"] == "calcification"]
    return {
        "case_id": case_id,
        "patient_id": patient_id,
        "laterality": phantom.laterality,
        "view": phantom.view,
        "density": phantom.density,
        "dense_fraction": round(phantom.dense_fraction, 4),
        "spacing_mm": f"{phantom.spacing[0]:.6g}",
        "n_lesions": len(phantom.lesions),
        "lesion_types": ";".join(les["type"] for les in phantom.lesions),
        "mass_shapes": ";".join(les["shape"] for les in masses),
        "mass_margins": ";".join(les["margin"] for les in masses),
        "calc_types": ";".join(les["calc_type"] for les in calcs),
        "calc_distributions": ";".join(les["distribution"] for les in calcs),
        "pathologies": ";".join(les["pathology"] for les in phantom.lesions),
    }


def _write_nifti_case(root: Path, case_id: str, phantom: Phantom) -> None:
    import nibabel as nib

    affine = np.diag([phantom.spacing[0], phantom.spacing[1], 1.0, 1.0])

    def save(path: Path, arr: np.ndarray) -> None:
        img = nib.Nifti1Image(arr[:, :, None], affine)
        img.header.set_xyzt_units("mm")
        with atomic_path(path) as tmp:
            nib.save(img, tmp)

    save(root / "images" / f"{case_id}.nii.gz", to_stored(phantom.image, 16, 2))
    if phantom.lesions:
        save(root / "masks" / f"{case_id}.nii.gz", phantom.label.astype(np.uint8))


def _png_bytes(arr: np.ndarray, spacing: tuple[float, float]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    # PNG keeps the pixel size only as DPI (x first): 25.4 mm per inch.
    Image.fromarray(arr).save(buf, format="PNG", dpi=(25.4 / spacing[1], 25.4 / spacing[0]))
    return buf.getvalue()


def _write_folder_case(root: Path, case_id: str, phantom: Phantom) -> None:
    image = to_stored(phantom.image, 16, 2)
    atomic_write_bytes(root / "images" / f"{case_id}.png", _png_bytes(image, phantom.spacing))
    if phantom.lesions:
        atomic_write_bytes(
            root / "masks" / f"{case_id}.png", _png_bytes(phantom.label.astype(np.uint8), phantom.spacing)
        )


# ----------------------------------------------------------------------------- one case
@dataclass(frozen=True)
class _CaseJob:
    """Everything needed to render and write one image (picklable, for worker processes)."""

    out: Path
    index: int
    seed: int
    size: tuple[int, int]
    view: str
    density: str | None
    layout: str
    monochrome: int
    burned_in_text: bool
    lesion_fraction: float
    spacing: float | None
    fov_mm: float
    bits_stored: int
    split: str


def _make_case(job: _CaseJob) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any], dict[str, Any]]:
    """Render and write one image; returns (CBIS CSV rows by file, cases.csv row, manifest entry)."""
    phantom = render_phantom(
        job.seed, job.size, job.view, job.density, index=job.index, spacing=job.spacing, fov_mm=job.fov_mm,
        lesion_fraction=job.lesion_fraction, burned_in_text=job.burned_in_text,
    )
    patient_id = f"P_{job.index // 2 + 1:05d}"
    case_id = f"{patient_id}_{_SIDE[phantom.laterality]}_{phantom.view}"
    rows: dict[str, list[dict[str, Any]]] = {}
    if job.layout == "cbis-ddsm":
        rows, files = _write_cbis_case(job.out, phantom, patient_id, job.split, job.bits_stored, job.monochrome)
    else:
        ext = "nii.gz" if job.layout == "nifti" else "png"
        files = {"image": f"images/{case_id}.{ext}", "mask": f"masks/{case_id}.{ext}" if phantom.lesions else None}
        if job.layout == "nifti":
            _write_nifti_case(job.out, case_id, phantom)
        else:
            _write_folder_case(job.out, case_id, phantom)
    entry = {
        "case_id": case_id, "patient_id": patient_id, "index": job.index, "laterality": phantom.laterality,
        "view": phantom.view, "density": phantom.density, "dense_fraction": round(phantom.dense_fraction, 4),
        "files": files, "lesions": phantom.lesions,
    }
    return rows, _cases_row(case_id, patient_id, phantom), entry


def _run_jobs(jobs: list[_CaseJob], workers: int) -> Iterator[tuple[Any, Any, Any]]:
    """Yield the results of ``jobs`` in order, in this process or in ``workers`` forked processes.

    Each image depends only on (seed, index), so the output is the same for any number of workers.
    Fork (not spawn) because ``python -m medsynth`` would re-run the CLI in spawned children; the
    children only use numpy, scipy, pydicom and nibabel.
    """
    if workers <= 1 or len(jobs) < 8:
        for job in jobs:
            yield _make_case(job)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from pool.map(_make_case, jobs, chunksize=max(1, min(8, len(jobs) // (4 * workers))))


# ----------------------------------------------------------------------------- entry point
def _prepare_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputExistsError("exists and is not a folder", out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError("output folder is not empty (pass overwrite=True / --overwrite)", out)
        if not ((out / "phantoms.json").exists() or (out / _MARKER).exists()):
            # Never delete a folder we did not write.
            raise OutputExistsError("not empty and not a phantoms dataset; refusing to overwrite it", out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    # Written first, so that a run that dies half-way leaves a folder --overwrite may replace.
    atomic_write_bytes(out / _MARKER, b"medsynth phantoms\n")


def make_phantoms(
    out: str | Path,
    n: int,
    seed: int,
    size: tuple[int, int] = DEFAULT_SIZE,
    view: str = "cc",
    density: str | None = None,
    layout: str = "cbis-ddsm",
    monochrome: int = 2,
    burned_in_text: bool = False,
    lesion_fraction: float = 0.75,
    patient_offset: int = 0,
    *,
    spacing: float | None = None,
    fov_mm: float = DEFAULT_FOV_MM,
    bits_stored: int = 12,
    split: str = "Training",
    overwrite: bool = False,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Render ``n`` phantoms and write them as a dataset that ``medsynth.io.load_dataset`` reads.

    Images alternate left and right breast of consecutive patients ``P_00001``, ``P_00002``, ...
    (numbering starts after ``patient_offset``). Image ``i`` is phantom ``2 * patient_offset + i``
    of ``seed``: the pixels of a patient are the same in every set that includes her, and two sets
    with disjoint patient ranges hold different images even with the same seed.

    Args:
        out: output folder (created; must be empty unless ``overwrite``).
        n: number of images.
        seed: non-negative seed; the same seed gives byte-identical pixels.
        size: (rows, cols).
        view: "cc" or "mlo".
        density: BI-RADS density "a".."d" for all images, or None to draw per patient.
        layout: "cbis-ddsm", "nifti" or "folder".
        monochrome: 1 (stored inverted, PresentationLUTShape INVERSE) or 2 (cbis-ddsm layout only).
        burned_in_text: write the decoy name, ID and date into the pixels (BurnedInAnnotation YES).
        lesion_fraction: probability that an image has at least one lesion.
        patient_offset: number of patients to skip (keeps train and holdout patients apart).
        spacing: pixel spacing in mm; None gives ``fov_mm / rows``.
        fov_mm: image height in mm when ``spacing`` is None.
        bits_stored: bit depth of the stored DICOM pixels, 12 to 16 (NIfTI and PNG use 16).
        split: the CBIS-DDSM split word in folder names ("Training" or "Test").
        overwrite: replace an existing phantoms dataset in ``out``.
        workers: processes rendering in parallel (1: in this process); the files are the same
            for any number.
        progress: called as ``progress(done, n)`` after each image.

    Returns:
        the output folder.

    Raises:
        ConfigError: an option is out of range.
        OutputExistsError: ``out`` is not empty (and not a phantoms dataset to overwrite).
    """
    # 1. Check inputs
    out = Path(out)
    try:
        check_render_args(seed, size, view, density)
    except ValueError as e:
        raise ConfigError(str(e), out) from e
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}", out)
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {LAYOUTS}, got {layout!r}", out)
    if monochrome not in (1, 2):
        raise ConfigError(f"monochrome must be 1 or 2, got {monochrome!r}", out)
    if not 12 <= bits_stored <= 16:
        raise ConfigError(f"bits_stored must be 12..16, got {bits_stored!r}", out)
    if not 0.0 <= lesion_fraction <= 1.0:
        raise ConfigError(f"lesion_fraction must be in [0, 1], got {lesion_fraction!r}", out)
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers!r}", out)
    if patient_offset < 0:
        raise ConfigError(f"patient_offset must be >= 0, got {patient_offset!r}", out)
    _prepare_output(out, overwrite)

    # 2. Render and write each image
    rows: dict[str, list[dict[str, Any]]] = {"mass": [], "calc": [], "normal": []}
    cases_rows: list[dict[str, Any]] = []
    manifest_cases: list[dict[str, Any]] = []
    jobs = [
        _CaseJob(out, 2 * patient_offset + i, seed, tuple(size), view, density, layout, monochrome,
                 burned_in_text, lesion_fraction, spacing, fov_mm, bits_stored, split)
        for i in range(n)
    ]
    for i, (new_rows, cases_row, entry) in enumerate(_run_jobs(jobs, workers)):
        for key, new in new_rows.items():
            rows[key] += new
        cases_rows.append(cases_row)
        manifest_cases.append(entry)
        if progress is not None:
            progress(i + 1, n)

    # 3. Index files, then the manifest that marks the dataset complete
    if layout == "cbis-ddsm":
        _write_csv(out / "mass_case_description.csv", MASS_COLUMNS, rows["mass"])
        _write_csv(out / "calc_case_description.csv", CALC_COLUMNS, rows["calc"])
        _write_csv(out / "normal_case_description.csv", MASS_COLUMNS, rows["normal"])
    else:
        _write_csv(out / "cases.csv", CASES_COLUMNS, cases_rows)
    manifest = {
        "generator": "medsynth.phantoms",
        "seed": int(seed), "n": int(n), "size": [int(size[0]), int(size[1])], "view": view.lower(),
        "density": density, "layout": layout, "monochrome": monochrome if layout == "cbis-ddsm" else 2,
        "bits_stored": bits_stored if layout == "cbis-ddsm" else 16, "burned_in_text": burned_in_text,
        "lesion_fraction": lesion_fraction,
        "patient_offset": patient_offset, "spacing_mm": list(render_spacing(size, spacing, fov_mm)),
        "labels": {"background": 0, "mass": MASS_LABEL, "calcification": CALC_LABEL},
        "cases": manifest_cases,
    }
    atomic_write_bytes(out / "phantoms.json", json.dumps(manifest, indent=1).encode())
    return out


def render_spacing(size: tuple[int, int], spacing: float | None, fov_mm: float) -> tuple[float, float]:
    """The pixel spacing (row, col) in mm that ``render_phantom`` uses for these settings."""
    pixel = float(spacing) if spacing is not None else fov_mm / int(size[0])
    return (pixel, pixel)
