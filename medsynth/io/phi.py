"""What counts as patient data in a DICOM header: one list of identifying attributes, one element walker.

``medsynth info`` (:func:`find_phi`) and the privacy audit (``medsynth.auditing.phi``) both read a
header through :func:`walk_elements` and decide with :func:`category`, so they flag the same
attributes. The audit may import this module; nothing here imports the audit.

What is identifying follows DICOM PS3.15 Annex E, Table E.1-1 (Application Level Confidentiality
Profile Attributes): the attributes the Basic Application Level Confidentiality Profile removes,
empties or replaces (actions X, Z, D, U and their combinations). medsynth looks for

* **names, IDs, addresses and free text about a person or an institution**
  (:data:`IDENTIFYING_KEYWORDS`, all rows of Table E.1-1) and any value of VR PN (person name);
* **dates and times** (:data:`DATE_KEYWORDS`, Table E.1-1) and any value of VR DA or DT;
* **instance UIDs** (VR UI, action U in Table E.1-1: study, series, SOP instance, frame of reference,
  also in the file meta group), except UIDs under the DICOM root ``1.2.840.10008.`` (SOP classes,
  transfer syntaxes), which name a standard, not a patient;
* **private elements** (E.3.10: the basic profile removes them unless the Retain Safe Private Option
  applies), but not the private creator elements, which name a vendor's block;
* **overlay data** (60xx,3000), which can hold burned-in text; listed, never compared as text.

Sequences are walked into, not flagged as a whole: a name in ``RequestAttributesSequence[0]`` is
reported at that path. :data:`NOT_IDENTIFYING_KEYWORDS` are never identifying, whatever their VR.
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple

from medsynth.errors import InvalidImageError

__all__ = [
    "CATEGORIES",
    "DATE_KEYWORDS",
    "DICOM_ROOT_UID",
    "ElementAt",
    "IDENTIFYING_KEYWORDS",
    "NOT_IDENTIFYING_KEYWORDS",
    "category",
    "find_phi",
    "is_identifying",
    "walk_elements",
]

#: Table E.1-1 attributes that carry names, IDs, addresses or free text about the patient, the staff
#: or the institution (dates are in DATE_KEYWORDS). Sequences of the table are walked, not listed.
IDENTIFYING_KEYWORDS: frozenset[str] = frozenset(
    {
        # Patient
        "PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDs", "OtherPatientNames",
        "PatientBirthName", "PatientMotherBirthName", "PatientBirthDate", "PatientBirthTime",
        "PatientAddress", "PatientTelephoneNumbers", "MilitaryRank", "MedicalRecordLocator",
        "EthnicGroup", "PatientComments", "AdditionalPatientHistory", "ResponsiblePerson",
        "ResponsibleOrganization",
        # Institution, equipment and staff
        "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
        "DeviceSerialNumber", "ReferringPhysicianName", "ReferringPhysicianAddress",
        "ReferringPhysicianTelephoneNumbers", "PerformingPhysicianName", "OperatorsName", "PhysiciansOfRecord",
        "NameOfPhysiciansReadingStudy", "RequestingPhysician", "ScheduledPerformingPhysicianName",
        # Study and request identifiers, free text
        "AccessionNumber", "StudyID", "RequestedProcedureID", "PerformedProcedureStepID",
        "ScheduledProcedureStepID", "AdmissionID", "ImageComments",
    }
)

#: Table E.1-1 dates and times of the study, series, acquisition, content and instance creation.
DATE_KEYWORDS: frozenset[str] = frozenset(
    {
        "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "AcquisitionDateTime",
        "InstanceCreationDate", "StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime",
    }
)

#: Never identifying, whatever their VR: who wrote the file (the same library writes training and
#: synthetic files). Private creator elements, which name a vendor's block, are never identifying either.
NOT_IDENTIFYING_KEYWORDS: frozenset[str] = frozenset(
    {"ImplementationClassUID", "ImplementationVersionName", "SourceApplicationEntityTitle"}
)

#: UIDs under this root name parts of the standard (SOP classes, transfer syntaxes), not instances.
DICOM_ROOT_UID = "1.2.840.10008."

#: The categories :func:`category` returns; all but "overlay" are identifying text the audit compares.
CATEGORIES = ("phi", "date", "uid", "private", "overlay")
_IDENTIFYING = frozenset({"phi", "date", "uid", "private"})


class ElementAt(NamedTuple):
    """One data element and where it sits in the header.

    Attributes:
        path: by keyword, e.g. ``"RequestAttributesSequence[0].PatientName"`` (tag numbers where an
            element has no keyword, e.g. private elements ``"(0029,1010)"``).
        tag_path: by tag, e.g. ``"(0040,0275)[0].(0010,0010)"``.
        element: the pydicom DataElement.
    """

    path: str
    tag_path: str
    element: Any


def walk_elements(ds: Any) -> Iterator[ElementAt]:
    """Every data element of a header: the file meta group first (when the dataset has one), then the
    dataset, depth-first into every sequence item. Private elements are included.

    Args:
        ds: a pydicom Dataset or FileDataset.

    Raises:
        InvalidImageError: an element cannot be decoded (naming the element and, when known, the file).
    """
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        yield from _walk(meta, "", "")
    yield from _walk(ds, "", "")


def _walk(ds: Any, prefix: str, tag_prefix: str) -> Iterator[ElementAt]:
    for tag_number in sorted(ds.keys()):  # the order ``for elem in ds`` gives
        try:
            elem = ds[tag_number]  # pydicom decodes a raw element here
        except Exception as e:  # any decoding error: the file is at fault, say where
            raise InvalidImageError(
                f"element {prefix}({tag_number >> 16:04X},{tag_number & 0xFFFF:04X}) cannot be read "
                f"({type(e).__name__}: {e})",
                getattr(ds, "filename", None) if isinstance(getattr(ds, "filename", None), str) else None,
            ) from e
        tag = f"({elem.tag.group:04X},{elem.tag.element:04X})"
        at = ElementAt(f"{prefix}{elem.keyword or tag}", f"{tag_prefix}{tag}", elem)
        yield at
        if elem.VR == "SQ" and elem.value is not None:
            for i, item in enumerate(elem.value):
                yield from _walk(item, f"{at.path}[{i}].", f"{at.tag_path}[{i}].")


def category(elem: Any) -> str | None:
    """What kind of patient data an element is: "phi", "date", "uid", "private", "overlay", or None.

    See the module docstring for the rule. Empty values are still classified; callers decide whether
    an empty value matters.
    """
    tag = elem.tag
    if tag.is_private_creator or elem.VR == "SQ":
        return None
    if tag.is_private:
        return "private"
    if 0x6000 <= tag.group <= 0x60FF and tag.group % 2 == 0 and tag.element == 0x3000:
        return "overlay"
    keyword = elem.keyword or ""
    if keyword in NOT_IDENTIFYING_KEYWORDS:
        return None
    if keyword in IDENTIFYING_KEYWORDS or elem.VR == "PN":
        return "phi"
    if keyword in DATE_KEYWORDS or elem.VR in ("DA", "DT"):
        return "date"
    if elem.VR == "UI" and any(not str(v).startswith(DICOM_ROOT_UID) for v in _as_list(elem.value)):
        return "uid"
    return None


def is_identifying(elem: Any) -> bool:
    """Whether an element's text identifies someone (every category but overlays)."""
    return category(elem) in _IDENTIFYING


def find_phi(ds: Any) -> dict[str, list[str]]:
    """Where a header carries patient data, by category, as keyword paths.

    Args:
        ds: a pydicom Dataset (header; its file meta group is searched too).

    Returns:
        ``{"phi": [...], "dates": [...], "uids": [...], "private": [...], "overlays": [...]}``:
        element paths (e.g. ``"RequestAttributesSequence[0].PatientName"``) with a non-empty value;
        private elements and overlay data are listed whatever their value.
    """
    out: dict[str, list[str]] = {"phi": [], "dates": [], "uids": [], "private": [], "overlays": []}
    key = {"phi": "phi", "date": "dates", "uid": "uids", "private": "private", "overlay": "overlays"}
    for at in walk_elements(ds):
        kind = category(at.element)
        if kind is None:
            continue
        if kind in ("private", "overlay") or _non_empty(at.element.value):
            out[key[kind]].append(at.path)
    return out


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


def _non_empty(value: Any) -> bool:
    return any(str(v).strip().strip("\x00").strip() != "" for v in _as_list(value))
