"""The CBIS-DDSM-like DICOM tree of the phantoms: MG images, ROI masks and cropped lesions, with decoy PHI.

``medsynth.phantoms.layouts.make_phantoms`` calls :func:`write_cbis_case` once per image and writes
the case-description CSVs with :data:`MASS_COLUMNS` / :data:`CALC_COLUMNS`. The headers carry decoy
PHI (``medsynth.phantoms.phi``) where real files carry it, including the places de-identifiers are
known to miss: nested sequences, private tags and the file meta group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medsynth.io.writers.atomic import atomic_path
from medsynth.phantoms.phi import image_uids
from medsynth.phantoms.render import Phantom

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
_DENSITY_NUMBER = {"a": 1, "b": 2, "c": 3, "d": 4}
SIDE = {"L": "LEFT", "R": "RIGHT"}
# DICOM PatientOrientation (row direction \ column direction) of the usual mammogram hanging.
_ORIENTATION = {("L", "CC"): ["A", "R"], ("R", "CC"): ["P", "L"], ("L", "MLO"): ["A", "FR"], ("R", "MLO"): ["P", "FL"]}
_VIEW_CODE = {"CC": ("R-10242", "cranio-caudal"), "MLO": ("R-10226", "medio-lateral oblique")}


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


def write_cbis_case(
    root: Path, phantom: Phantom, stored: np.ndarray, patient_id: str, split: str, bits_stored: int, monochrome: int
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Write one image (``stored``: its stored pixel values), its ROI masks and cropped lesions.

    Returns:
        (CSV rows by file: "mass", "calc", "normal"; the paths written, relative to ``root``).
    """
    side = SIDE[phantom.laterality]
    types = {les["type"] for les in phantom.lesions}
    prefix = "Mass" if "mass" in types else "Calc" if types else "Normal"
    base = f"{patient_id}_{side}_{phantom.view}"
    image_rel = f"{prefix}-{split}_{base}/000000.dcm"
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
