"""PHI check: synthetic DICOMs written here with pydicom, training DICOMs from the phantom generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medsynth.auditing.phi import check_phi, training_identifiers
from medsynth.config import load_config
from medsynth.io.datasets import load_dataset

MG = "1.2.840.10008.5.1.4.1.1.1.2"


@pytest.fixture(scope="module")
def train_root(tmp_path_factory) -> Path:
    from medsynth.phantoms import make_phantoms

    return make_phantoms(tmp_path_factory.mktemp("phi") / "train", 4, seed=3, size=(48, 40))


def train_header(root: Path) -> pydicom.Dataset:
    return pydicom.dcmread(sorted(root.rglob("*.dcm"))[0], stop_before_pixels=True)


def write_synthetic(path: Path, **attrs) -> Path:
    """A clean synthetic MG DICOM (fresh UIDs, identity removed), with ``attrs`` laid over it."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MG
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MG
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID = f"SYNTHETIC^{path.stem.upper()}", f"SYNTHETIC_{path.stem.upper()}"
    ds.Modality, ds.SeriesDescription = "MG", "L CC"
    ds.PatientIdentityRemoved, ds.DeidentificationMethod = "YES", "medsynth synthetic"
    ds.BurnedInAnnotation = "NO"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = np.zeros((8, 8), np.uint16).tobytes()
    for k, v in attrs.items():
        setattr(ds, k, v)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def run(syn: Path, train: Path):
    """The PHI check of ``syn`` against the training set ``train`` (patients P_00001, P_00002)."""
    cfg = load_config(None, kind="audit")["phi"]
    return check_phi(syn, training_identifiers(load_dataset(train), train, cfg), cfg)


def test_clean_synthetic_passes(train_root, tmp_path):
    for i in range(3):
        write_synthetic(tmp_path / "syn" / f"case_{i:04d}.dcm")
    (tmp_path / "syn" / "manifest.json").write_text(json.dumps({"cases": [{"id": "case_0000", "background": "ab12"}]}))
    res = run(tmp_path / "syn", train_root)
    assert res.n_dicom == 3
    assert res.findings == [], [f.to_dict() for f in res.findings]
    assert res.ocr_done is False


def test_copied_patient_name_fails(train_root, tmp_path):
    name = str(train_header(train_root).PatientName)
    write_synthetic(tmp_path / "syn" / "case_0000.dcm")
    write_synthetic(tmp_path / "syn" / "case_0001.dcm", PatientName=name)
    res = run(tmp_path / "syn", train_root)
    hits = [f for f in res.findings if f.keyword == "PatientName" and f.problem == "training identifier copied"]
    assert len(hits) == 1 and hits[0].file == "case_0001.dcm" and hits[0].value == name.upper()
    assert hits[0].source.endswith(".dcm") and hits[0].kind == "DICOM PatientName"
    # ... and the name is not medsynth's synthetic pattern either.
    assert [f.file for f in res.findings if f.problem == "PatientName is not a synthetic name"] == ["case_0001.dcm"]


def test_leaks_in_sequences_private_tags_and_file_meta(train_root, tmp_path):
    tr = train_header(train_root)
    item = Dataset()
    item.AccessionNumber = tr.AccessionNumber  # nested two levels deep
    outer = Dataset()
    outer.ReferencedSeriesSequence = Sequence([item])
    p = write_synthetic(tmp_path / "syn" / "a.dcm", RequestAttributesSequence=Sequence([outer]))
    ds = pydicom.dcmread(p)
    block = ds.private_block(0x0011, "ACME SYNTH", create=True)
    block.add_new(0x01, "LO", f"from {tr.PatientID} archive")  # embedded in free text
    ds.file_meta.MediaStorageSOPInstanceUID = tr.SOPInstanceUID  # the classic file-meta leak
    ds.save_as(p)  # (enforce_file_format would rewrite the file meta from the dataset)
    res = run(tmp_path / "syn", train_root)
    values = {f.value for f in res.findings}
    assert str(tr.AccessionNumber).upper() in values
    assert str(tr.PatientID).upper() in values
    assert tr.SOPInstanceUID in values
    assert any(f.problem == "training UID reused" and f.tag.startswith("(0002,0003)") for f in res.findings)
    assert any("[0]" in f.tag for f in res.findings)  # the path into the sequence is reported


def test_flags_identity_burned_in_and_repeated_uids(train_root, tmp_path):
    uid = generate_uid()
    write_synthetic(tmp_path / "syn" / "a.dcm", SOPInstanceUID=uid, PatientIdentityRemoved="NO")
    write_synthetic(tmp_path / "syn" / "b.dcm", SOPInstanceUID=uid, BurnedInAnnotation="YES")
    problems = {f.problem for f in run(tmp_path / "syn", train_root).findings}
    assert "PatientIdentityRemoved is not YES" in problems
    assert "BurnedInAnnotation is YES" in problems
    assert "SOPInstanceUID repeated" in problems


def test_file_names_and_manifest_with_patient_ids_or_paths(train_root, tmp_path):
    write_synthetic(tmp_path / "syn" / "P_00002_synthetic.dcm")
    (tmp_path / "syn" / "manifest.json").write_text(
        json.dumps({"background": str(train_root.resolve() / "x.dcm"), "note": "P_000012 is another id"}))
    res = run(tmp_path / "syn", train_root)
    problems = sorted(f.problem for f in res.findings)
    assert "file name contains a training patient ID" in problems
    assert "manifest.json contains a training source path" in problems
    # P_000012 is not P_00001 (whole-token match), so no patient-ID finding in the manifest.
    assert "manifest.json contains a training patient ID" not in problems

