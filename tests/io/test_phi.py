"""What counts as patient data (medsynth.io.phi): the list, the walker, and ``info`` and the audit agreeing."""

from __future__ import annotations

import re
import shutil

import pydicom
import pytest
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medsynth.io.phi import (
    DATE_KEYWORDS,
    IDENTIFYING_KEYWORDS,
    NOT_IDENTIFYING_KEYWORDS,
    category,
    find_phi,
    walk_elements,
)


def test_every_listed_keyword_is_a_dicom_attribute():
    """A misspelt keyword would never match anything: each must be in pydicom's data dictionary."""
    for keyword in IDENTIFYING_KEYWORDS | DATE_KEYWORDS | NOT_IDENTIFYING_KEYWORDS:
        assert tag_for_keyword(keyword) is not None, keyword
    # Sequences are walked into, not listed; the two lists do not overlap.
    assert not [k for k in IDENTIFYING_KEYWORDS | DATE_KEYWORDS if dictionary_VR(tag_for_keyword(k)) == "SQ"]
    assert not IDENTIFYING_KEYWORDS & DATE_KEYWORDS


def _header() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"
    ds.PatientName = "Decoy^Jane"
    ds.PatientSex = "F"
    ds.ConsultingPhysicianName = "Not^Listed"  # not on the keyword list: a PN is a name wherever it is
    ds.CalibrationDate = "20200101"  # not on the keyword list: a DA is a date wherever it is
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5"
    item = Dataset()
    item.AccessionNumber = "A123"
    outer = Dataset()
    outer.ReferencedSeriesSequence = Sequence([item])
    ds.RequestAttributesSequence = Sequence([outer])
    ds.add_new(0x60003000, "OW", b"\x00\x01")  # overlay data
    ds.private_block(0x0011, "ACME", create=True).add_new(0x01, "LO", "secret")
    return ds


def test_walk_elements_covers_file_meta_nesting_and_private_tags():
    walked = list(walk_elements(_header()))
    assert walked[0].tag_path.startswith("(0002,")  # file meta first
    paths = {at.path: at.tag_path for at in walked}
    nested = "RequestAttributesSequence[0].ReferencedSeriesSequence[0].AccessionNumber"
    assert paths[nested] == "(0040,0275)[0].(0008,1115)[0].(0008,0050)"
    assert paths["(0011,1001)"] == "(0011,1001)" and paths["MediaStorageSOPInstanceUID"] == "(0002,0003)"


def test_categories():
    kinds = {at.path: category(at.element) for at in walk_elements(_header())}
    assert kinds["PatientName"] == kinds["ConsultingPhysicianName"] == "phi"
    assert kinds["CalibrationDate"] == "date"
    assert kinds["SOPInstanceUID"] == kinds["MediaStorageSOPInstanceUID"] == "uid"
    assert kinds["(0011,1001)"] == "private" and kinds["(6000,3000)"] == "overlay"
    # Standard UIDs, the writer's own identity, private creators, sequences and plain facts are not PHI.
    for path in ("SOPClassUID", "TransferSyntaxUID", "ImplementationClassUID", "(0011,0010)",
                 "RequestAttributesSequence", "PatientSex"):
        assert kinds[path] is None, path
    found = find_phi(_header())
    assert "RequestAttributesSequence[0].ReferencedSeriesSequence[0].AccessionNumber" in found["phi"]
    assert found["overlays"] == ["(6000,3000)"] and found["private"] == ["(0011,1001)"]


def _keyword_path(tag_path: str) -> str:
    """'(0040,0275)[0].(0010,0010)' -> 'RequestAttributesSequence[0].PatientName' (an independent parse)."""
    def name(match: re.Match) -> str:
        tag = int(match.group(1) + match.group(2), 16)
        return keyword_for_tag(tag) or match.group(0)

    return re.sub(r"\(([0-9A-F]{4}),([0-9A-F]{4})\)", name, tag_path)


def test_info_and_the_audit_flag_the_same_fields(tmp_path):
    """A phantom with decoy PHI in nested sequences, private tags and the file meta: every field
    ``medsynth info`` flags is one the audit reports when the file is released as it is, and back."""
    from medsynth.auditing.phi import check_phi, training_identifiers
    from medsynth.config import load_config
    from medsynth.io.inspect import describe
    from medsynth.phantoms import make_phantoms

    train = make_phantoms(tmp_path / "train", 2, seed=5, size=(64, 52), lesion_fraction=1.0)
    image = sorted(train.glob("Mass-*/000000.dcm"))[0]
    facts = describe(image)
    by_info = set(facts["phi_tags"] + facts["date_tags"] + facts["uid_tags"] + facts["private_tags"])

    (tmp_path / "synthetic").mkdir()
    shutil.copy(image, tmp_path / "synthetic" / "copy.dcm")
    cfg = load_config(None, kind="audit")["phi"]
    result = check_phi(tmp_path / "synthetic", training_identifiers(None, train, cfg), cfg)
    by_audit = {
        _keyword_path(f.tag)
        for f in result.findings
        if f.problem in ("training identifier copied", "training UID reused")
    }
    assert by_info == by_audit, (sorted(by_info - by_audit), sorted(by_audit - by_info))
    # The decoys sit where de-identifiers miss them, and both find them there.
    for path in ("PatientName", "OtherPatientIDsSequence[0].PatientID",
                 "RequestAttributesSequence[0].ScheduledPerformingPhysicianName", "(0029,1010)",
                 "MediaStorageSOPInstanceUID", "StudyDate"):
        assert path in by_info, path
    assert facts["phi_present"] is True


def test_find_phi_on_a_file_read_by_pydicom(tmp_path):
    """The walker works on what dcmread returns too (the audit reads files with pydicom)."""
    ds = _header()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path / "h.dcm"
    ds.save_as(path, enforce_file_format=True)
    found = find_phi(pydicom.dcmread(path))
    assert "PatientName" in found["phi"] and "MediaStorageSOPInstanceUID" in found["uids"]


@pytest.mark.parametrize("keyword", sorted(IDENTIFYING_KEYWORDS)[:3])
def test_empty_values_are_not_flagged(keyword):
    ds = Dataset()
    setattr(ds, keyword, "")
    assert find_phi(ds)["phi"] == []


def test_an_element_that_cannot_be_decoded_is_a_medsynth_error():
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    from medsynth.errors import InvalidImageError

    ds = Dataset()
    ds.set_original_encoding(False, True)
    tag = Tag(0x00280106)  # SmallestImagePixelValue, US: 3 bytes cannot be 16-bit values
    ds._dict[tag] = RawDataElement(tag, "US", 3, b"\x01\x02\x03", 0, False, True)
    with pytest.raises(InvalidImageError, match=r"element \(0028,0106\) cannot be read"):
        find_phi(ds)
