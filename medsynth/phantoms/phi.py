"""Decoy protected health information (PHI) for phantom DICOM headers and burned-in text.

The values are fake but look real (DICOM person names, MRNs, birth dates, an institution with an
address, physicians, accession numbers, study dates and UIDs), so that the privacy audit can prove
none of them leaks into synthetic outputs. They are deterministic: one patient's decoys depend only
on (seed, patient index), so both breasts of a patient share a name.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from pydicom.uid import generate_uid

FIRST_NAMES = (
    "JANE", "MARY", "LINDA", "SUSAN", "KAREN", "NANCY", "BETTY", "HELEN", "SANDRA", "DONNA",
    "CAROL", "RUTH", "SHARON", "MICHELLE", "LAURA", "SARAH", "KIMBERLY", "DEBORAH", "JESSICA",
    "SHIRLEY", "CYNTHIA", "ANGELA", "MELISSA", "BRENDA", "AMY", "ANNA", "REBECCA", "VIRGINIA",
    "KATHLEEN", "PAMELA", "MARTHA", "DEBRA", "AMANDA", "STEPHANIE", "CAROLYN", "CHRISTINE",
)
LAST_NAMES = (
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ",
    "MARTINEZ", "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR",
    "MOORE", "JACKSON", "MARTIN", "LEE", "PEREZ", "THOMPSON", "WHITE", "HARRIS", "SANCHEZ",
    "CLARK", "RAMIREZ", "LEWIS", "ROBINSON", "WALKER", "YOUNG", "ALLEN", "KING", "WRIGHT", "SCOTT",
)
MIDDLE_INITIALS = "ABCDEFGHJKLMNPRST"
CITIES = (
    ("SPRINGFIELD", "IL", "62701"), ("RIVERSIDE", "CA", "92501"), ("FAIRVIEW", "OR", "97024"),
    ("GREENVILLE", "SC", "29601"), ("FRANKLIN", "TN", "37064"), ("MADISON", "WI", "53703"),
    ("CLINTON", "IA", "52732"), ("SALEM", "MA", "01970"), ("GEORGETOWN", "TX", "78626"),
)
STREETS = ("MAPLE AVE", "OAK ST", "HOSPITAL DR", "MEDICAL CENTER BLVD", "ELM ST", "PARK RD")
INSTITUTION_KINDS = ("GENERAL HOSPITAL", "BREAST IMAGING CENTER", "MEDICAL CENTER", "WOMENS HEALTH CLINIC")
UID_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's registered root, as its generate_uid uses


def _person(rng: np.random.Generator) -> str:
    """A DICOM person name LAST^FIRST^MIDDLE."""
    return (
        f"{rng.choice(LAST_NAMES)}^{rng.choice(FIRST_NAMES)}^{rng.choice(list(MIDDLE_INITIALS))}"
    )


def _physician(rng: np.random.Generator) -> str:
    return f"{rng.choice(LAST_NAMES)}^{rng.choice(FIRST_NAMES)}^^DR"


def patient_phi(seed: int, patient_index: int) -> dict[str, Any]:
    """Decoy identity of one patient (shared by all her images).

    Args:
        seed: the dataset seed.
        patient_index: the patient's index in the phantom sequence (image index // 2).

    Returns:
        dict of DICOM keyword → value (strings in DICOM formats) plus a few helper keys.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, patient_index)))
    city, state, zip_code = CITIES[int(rng.integers(len(CITIES)))]
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 45 * 365)))
    study = dt.date(2008, 1, 1) + dt.timedelta(days=int(rng.integers(0, 12 * 365)))
    study_time = dt.time(int(rng.integers(7, 18)), int(rng.integers(0, 60)), int(rng.integers(0, 60)))
    institution = f"{city} {rng.choice(INSTITUTION_KINDS)}"
    name = _person(rng)
    key = f"medsynth-phantom-{seed}-{patient_index}"
    return {
        "PatientName": name,
        "PatientID": f"MRN{int(rng.integers(1_000_000, 9_999_999))}",
        "PatientBirthDate": birth.strftime("%Y%m%d"),
        "PatientSex": "F",
        "PatientAge": f"{(study - birth).days // 365:03d}Y",
        "OtherPatientID": f"{int(rng.integers(100, 999))}-{int(rng.integers(10, 99))}-{int(rng.integers(1000, 9999))}",
        "InstitutionName": institution,
        "InstitutionAddress": f"{int(rng.integers(10, 9999))} {rng.choice(STREETS)}, {city}, {state} {zip_code}",
        "ReferringPhysicianName": _physician(rng),
        "PerformingPhysicianName": _physician(rng),
        "OperatorsName": _person(rng),
        "AccessionNumber": f"A{int(rng.integers(10_000_000, 99_999_999))}",
        "StudyDate": study.strftime("%Y%m%d"),
        "StudyTime": study_time.strftime("%H%M%S"),
        "StudyID": f"{int(rng.integers(1000, 99999))}",
        "StudyInstanceUID": generate_uid(UID_PREFIX, entropy_srcs=[key, "study"]),
        "RequestingPhysician": _physician(rng),
        "_uid_key": key,
    }


def image_uids(phi: dict[str, Any], laterality: str, view: str) -> dict[str, str]:
    """Series, SOP instance and frame-of-reference UIDs of one image, deterministic from the patient."""
    key = phi["_uid_key"]
    return {
        "SeriesInstanceUID": generate_uid(UID_PREFIX, entropy_srcs=[key, laterality, view, "series"]),
        "SOPInstanceUID": generate_uid(UID_PREFIX, entropy_srcs=[key, laterality, view, "sop"]),
        "FrameOfReferenceUID": generate_uid(UID_PREFIX, entropy_srcs=[key, laterality, view, "for"]),
    }


def burned_in_lines(phi: dict[str, Any]) -> list[str]:
    """The text lines a modality would burn into the image: name, ID and study date."""
    date = phi["StudyDate"]
    return [
        phi["PatientName"].split("^")[0] + ", " + phi["PatientName"].split("^")[1],
        phi["PatientID"],
        f"{date[:4]}-{date[4:6]}-{date[6:]}",
    ]


def burn_text(image: np.ndarray, lines: list[str], laterality: str) -> np.ndarray:
    """Write text lines into the image corner away from the chest wall (on the background).

    Uses Pillow's built-in bitmap font, so the result does not depend on fonts installed on the
    machine.

    Args:
        image: float32 image in [0, 1], display polarity.
        lines: the text.
        laterality: "L" (chest wall on the left, text on the right) or "R".

    Returns:
        a new float32 image with the text in white.
    """
    from PIL import Image, ImageDraw, ImageFont

    h, w = image.shape
    font = ImageFont.load_default_imagefont()  # fixed bitmap font: identical pixels everywhere
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    y = 2
    for line in lines:
        left, top, right, bottom = draw.textbbox((0, 0), line, font=font)
        x = w - (right - left) - 3 if laterality == "L" else 3
        draw.text((x, y), line, fill=255, font=font)
        y += (bottom - top) + 3
    text = np.asarray(canvas, dtype=np.float32) / 255.0
    return np.maximum(image, text).astype(np.float32)
