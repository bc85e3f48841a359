"""PHI check: synthetic DICOMs written here with pydicom, training DICOMs from the phantom generator."""

from __future__ import annotations

import json
import re
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



# ----------------------------------------------------------------------------- identifiers from any layout
@pytest.mark.parametrize("name, generic", [
    ("case_0000", True), ("0001", True), ("img_12", True), ("1-1", True), ("000000", True),
    ("case_0001_0000", True), ("image", True), ("LEFT_CC", True),
    ("P_00001", False), ("MRN1866453", False), ("12345678", False), ("235-37-6260", False),
    ("2012-10-04", False), ("Mass-Training_P_00001_LEFT_CC", False), ("BRCA_0042", False), ("patient_0042", False),
])
def test_generic_sequential_names(name, generic):
    from medsynth.auditing.phi import is_generic_name

    words = load_config(None, kind="audit")["phi"]["generic_name_words"]
    assert is_generic_name(name, words) is generic


def _medsynth_like(out: Path, fmt: str, n: int, seed: int) -> Path:
    """A set written by medsynth's own writers (case_0000 ...) with a manifest and README beside it."""
    from medsynth.io.writers import get_writer, to_uint16

    writer = get_writer(fmt, out, **({"uid_entropy": f"s{seed}"} if fmt == "dicom" else {}))
    rng = np.random.default_rng(seed)
    ids = [f"case_{i:04d}" for i in range(n)]
    for cid in ids:
        label = np.zeros((40, 32), np.uint8)
        label[8:16, 8:16] = 1
        writer.write_case(cid, to_uint16(rng.random((40, 32))), label, (0.5, 0.5))
    writer.finalize(ids)
    (out / "manifest.json").write_text(json.dumps({"cases": [{"case_id": c, "files": {}} for c in ids]}))
    (out / "README.md").write_text("# Synthetic\n" + "\n".join(f"- {c}" for c in ids))
    return out


@pytest.mark.parametrize("fmt", ["nnunet", "dicom"])
def test_sets_named_case_0000_do_not_collide(tmp_path, fmt):
    """Issue 14 item 3: a synthetic set named like medsynth's output (case_0000 ...) against an nnU-Net
    training set with the same conventional names passes: the names identify nobody. (The old check
    flagged "file name contains a training file name" for every case_XXXX_0000 file.)"""
    train = _medsynth_like(tmp_path / "train", "nnunet", 4, seed=1) / "Dataset500_MedsynthSynthetic"
    syn = _medsynth_like(tmp_path / "syn", fmt, 4, seed=2)
    cfg = load_config(None, kind="audit")["phi"]
    idents = training_identifiers(load_dataset(train), train, cfg)
    res = check_phi(syn, idents, cfg)
    assert res.findings == [], [f.to_dict() for f in res.findings]
    assert any(s.startswith("CASE_0000 (case ID: generic name)") for s in res.skipped_identifiers)
    # The same file names, but the training cases carry a patient identifier: now they do identify.
    (syn / "images").mkdir(exist_ok=True)
    (syn / "images" / "P_00042_extra.txt").write_text("x")
    hits = check_phi(syn, training_identifiers([_Case("P_00042", "img/P_00042_L.png")], None, cfg), cfg).findings
    assert [(f.file, f.problem) for f in hits] == [
        ("images/P_00042_extra.txt", "file name contains a training patient ID")]


class _Scan:
    def __init__(self, path: str) -> None:
        self.path = Path(path)


class _Case:
    """An in-memory training case (no files)."""

    def __init__(self, patient_id: str | None, relpath: str, case_id: str | None = None, **metadata) -> None:
        self.patient_id, self.image_relpath, self.metadata = patient_id, relpath, metadata
        self.case_id = case_id or Path(relpath).stem
        self.image, self.mask = _Scan(relpath), None


def _training_set(tmp_path: Path, layout: str) -> tuple[Path, str, str]:
    """A training set without DICOM headers; returns (root, the patient's identifier, its kind)."""
    from medsynth.io.writers import get_writer, to_uint16
    from medsynth.phantoms import make_phantoms

    if layout in ("folder", "nifti"):  # cases.csv: case_id, patient_id, ...
        root = make_phantoms(tmp_path / layout, 2, seed=4, size=(48, 40), layout=layout)
        return root, "P_00001", "patient ID"
    if layout == "nnunet":  # the patient is only in the case names
        writer = get_writer("nnunet", tmp_path / "nn")
        ids = ["BRCA_P7731_L", "BRCA_P7731_R"]
        for cid in ids:
            writer.write_case(cid, to_uint16(np.random.default_rng(0).random((40, 32))),
                              np.zeros((40, 32), np.uint8), (0.5, 0.5))
        writer.finalize(ids)
        return tmp_path / "nn" / writer.folder, "BRCA_P7731_L", "case ID"
    # a MONAI datalist whose entries carry patient_id
    import nibabel as nib

    root = tmp_path / "monai"
    (root / "img").mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.zeros((40, 32, 1), np.uint16), np.eye(4)), root / "img" / "a.nii.gz")
    (root / "datalist.json").write_text(json.dumps(
        {"training": [{"image": "img/a.nii.gz", "patient_id": "HOSP-338812"}]}))
    return root, "HOSP-338812", "patient ID"


@pytest.mark.parametrize("layout", ["folder", "nifti", "nnunet", "monai"])
def test_patient_id_from_any_layout_is_found_in_synthetic_dicom(tmp_path, layout):
    """Issue 14 item 5: a PNG / NIfTI / nnU-Net / datalist training set has no DICOM header, yet a
    synthetic DICOM whose PatientID and ImageComments carry a training patient's ID is a finding.
    (The old check took identifiers only from training DICOM files and found nothing here.)"""
    train, pid, kind = _training_set(tmp_path, layout)
    syn = _medsynth_like(tmp_path / "syn", "dicom", 2, seed=3)
    cfg = load_config(None, kind="audit")["phi"]
    idents = training_identifiers(load_dataset(train), train, cfg)
    assert check_phi(syn, idents, cfg).findings == []  # the clean medsynth output first
    path = syn / "images" / "case_0001.dcm"
    ds = pydicom.dcmread(path)
    ds.PatientID = pid
    ds.ImageComments = f"synthetic, background from {pid.lower()}"  # inside free text, other case
    ds.save_as(path)
    res = check_phi(syn, idents, cfg)
    copied = {(f.file, f.keyword, f.kind) for f in res.findings if f.problem == "training identifier copied"}
    assert copied == {("images/case_0001.dcm", "PatientID", kind), ("images/case_0001.dcm", "ImageComments", kind)}
    # and the PatientID is not medsynth's synthetic pattern
    assert [(f.file, f.value) for f in res.findings if f.problem == "PatientID is not a synthetic id"] == [
        ("images/case_0001.dcm", pid)]


def test_identifying_index_columns_and_names_in_text_files(tmp_path, train_root):
    """Values of identifying columns (a datalist's "patient_name") and training DICOM names, written as
    "LAST, FIRST" in a README, are found; other columns and the names' order do not matter."""
    cfg = load_config(None, kind="audit")["phi"]
    tr = train_header(train_root)
    last, first = str(tr.PatientName).split("^")[:2]
    cases = [_Case(None, "a/x1.png", patient_name="Jane Q Doe-Smith", density="b")]
    idents = training_identifiers(cases, None, cfg)
    dicom_idents = training_identifiers(None, train_root, cfg)
    syn = tmp_path / "syn"
    write_synthetic(syn / "case_0000.dcm")
    (syn / "README.md").write_text(f"made for {first.title()} {last.title()}; reviewer jane q doe-smith; density b\n")
    found = {(f.problem, f.kind) for f in check_phi(syn, idents, cfg).findings}
    assert found == {("README.md contains a training index column 'patient_name'", "index column 'patient_name'")}
    found = {(f.problem, f.kind) for f in check_phi(syn, dicom_idents, cfg).findings}
    assert ("README.md contains a training DICOM PatientName", "DICOM PatientName") in found


def test_medsynth_dicom_output_is_clean_against_phantom_training(tmp_path, train_root):
    """The DICOM writer's own files (image + SEG: synthetic patient, fresh UIDs, placeholder dates)
    give no finding against a training set full of decoy PHI."""
    syn = _medsynth_like(tmp_path / "syn", "dicom", 3, seed=5)
    res = run(syn, train_root)
    assert res.n_dicom == 6 and res.findings == [], [f.to_dict() for f in res.findings]


# ----------------------------------------------------------------------------- text burned into pixels
@pytest.fixture(scope="module")
def burned(tmp_path_factory) -> dict[str, Path]:
    """Training phantoms (DICOM, decoy PHI in the headers) and the same patients' images with their
    name, MRN and date burned into the pixels (PNG, no header), plus clean images (no text)."""
    from medsynth.phantoms import make_phantoms

    root = tmp_path_factory.mktemp("burned")
    return {
        "train": make_phantoms(root / "train", 4, seed=3, size=(256, 208)),
        "text": make_phantoms(root / "text", 4, seed=3, size=(256, 208), layout="folder", burned_in_text=True),
        "clean": make_phantoms(root / "clean", 4, seed=3, size=(256, 208), layout="folder"),
    }


def test_burned_in_text_is_read_and_matched(burned):
    """Issue 14 item 8: phantoms made with burned_in_text are caught: every image has text in its
    pixels, and the decoy name, MRN and date are matched to the training headers they came from."""
    pytest.importorskip("rapidocr_onnxruntime")
    from medsynth.auditing.phi import check_pixel_text

    cfg = load_config(None, kind="audit")["phi"]
    idents = training_identifiers(load_dataset(burned["train"]), burned["train"], cfg)
    res = check_pixel_text(load_dataset(burned["text"]), idents, cfg["ocr"])
    assert res.status == "checked" and res.n_images == 4
    per_image: dict[str, set[str]] = {}
    for f in res.findings:
        per_image.setdefault(f.file, set()).add(f.kind or f.problem)
    assert len(per_image) == 4
    for file, kinds in per_image.items():
        assert "text in pixels" in kinds, file
        # OCR may misread a line; at least two of the three decoys are matched in every image.
        assert len(kinds & {"DICOM PatientName", "DICOM PatientID", "DICOM StudyDate"}) >= 2, (file, kinds)
    # The clean phantoms of the same patients: nothing is read, no false alarm.
    clean = check_pixel_text(load_dataset(burned["clean"]), idents, cfg["ocr"])
    assert clean.status == "checked" and clean.n_images == 4 and clean.findings == [], clean.findings


def test_mirrored_and_rotated_text_is_read(burned):
    """A flipped copy carries mirrored text; it is read (mirrored pass) and still matched."""
    pytest.importorskip("rapidocr_onnxruntime")
    from medsynth.auditing.ocr import PixelTextReader
    from medsynth.auditing.phi import match_pixel_text

    cfg = load_config(None, kind="audit")["phi"]
    idents = training_identifiers(None, burned["train"], cfg)
    image = load_dataset(burned["text"])[2].image.unit_pixels()
    reader = PixelTextReader()
    for flipped in (image[:, ::-1], image[::-1], image[::-1, ::-1]):
        lines = [t for t, _ in reader.read(flipped)]
        kinds = {i.kind for i in match_pixel_text(lines, idents)}
        assert "DICOM PatientName" in kinds, lines


def test_pixel_text_matching_tolerates_ocr_errors(train_root):
    """Names with one misread letter, a date with its separators misplaced, an MRN with O for 0."""
    from medsynth.auditing.phi import match_pixel_text

    cfg = load_config(None, kind="audit")["phi"]
    tr = train_header(train_root)
    idents = training_identifiers(None, train_root, cfg)
    last, first = str(tr.PatientName).split("^")[:2]
    date = str(tr.StudyDate)
    misread_first = first[:-1] + ("X" if first[-1] != "X" else "Y")
    lines = [f"{last}, {misread_first}", f"{date[:4]}-{date[4:6]}{date[6:]}", str(tr.PatientID).replace("0", "O")]
    found = {i.kind: i.value for i in match_pixel_text(lines, idents)}
    assert found["DICOM PatientName"] == str(tr.PatientName).upper()
    assert found["DICOM StudyDate"] == date
    assert found["DICOM PatientID"] == str(tr.PatientID).upper()
    # Other people's text does not match.
    assert match_pixel_text(["SMYTHE, ZED", "1999-01-01", "R CC"], idents) == []


def test_without_the_ocr_extra_pixel_text_is_not_checked(burned, monkeypatch):
    """Without rapidocr the check says "not checked" (never "pass"); asked to run it, it refuses."""
    import sys

    from medsynth.auditing.phi import check_pixel_text
    from medsynth.errors import ConfigError

    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # `import` now raises ImportError
    cfg = load_config(None, kind="audit")["phi"]
    idents = training_identifiers(None, burned["train"], cfg)
    res = check_pixel_text(load_dataset(burned["text"]), idents, cfg["ocr"])
    assert res.status == "not checked" and "medsynth[ocr]" in res.reason and res.findings == []
    with pytest.raises(ConfigError, match="medsynth\\[ocr\\]"):
        check_pixel_text(load_dataset(burned["text"]), idents, {**cfg["ocr"], "enabled": True})
    off = check_pixel_text(load_dataset(burned["text"]), idents, {**cfg["ocr"], "enabled": False})
    assert off.status == "not checked"


def test_ocr_extra_pulls_no_torch():
    """The extra brings onnxruntime and OpenCV, not torch/torchvision (which would fight the CPU torch)."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        reqs = requires("rapidocr-onnxruntime") or []
    except PackageNotFoundError:
        pytest.skip("the ocr extra is not installed")
    names = {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in reqs}
    assert "onnxruntime" in names and not names & {"torch", "torchvision", "paddlepaddle"}


def test_audit_reports_pixel_text_and_not_checked(burned, tmp_path, monkeypatch, capsys):
    """End to end through ``medsynth audit``: burned-in text fails the ``phi_pixel_text`` check (exit 1);
    without the OCR extra a clean set passes with that check "not checked" -- in the JSON (status),
    the terminal table and the HTML report -- never "pass"."""
    import importlib.util
    import sys

    from medsynth.cli import main
    from medsynth.phantoms import make_phantoms

    holdout = make_phantoms(tmp_path / "holdout", 4, seed=3, size=(256, 208), patient_offset=50)
    fresh = make_phantoms(tmp_path / "fresh", 4, seed=9, size=(256, 208), patient_offset=80, layout="folder")
    cfg = tmp_path / "audit.yaml"
    cfg.write_text("memorization:\n  embedding: invariant\n")
    common = ["audit", "--train", str(burned["train"]), "--holdout", str(holdout), "--config", str(cfg), "--quiet"]
    if importlib.util.find_spec("rapidocr_onnxruntime") is not None:
        assert main(common + ["--synthetic", str(burned["text"]), "--json", str(tmp_path / "a.json")]) == 1
        doc = json.loads((tmp_path / "a.json").read_text())
        check = next(c for c in doc["checks"] if c["name"] == "phi_pixel_text")
        assert check["passed"] is False and check["value"] == 4 and check["status"] == "fail"
        assert doc["phi"]["pixel_text"]["n_images_with_text"] == 4
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    capsys.readouterr()
    code = main(common + ["--synthetic", str(fresh), "--json", str(tmp_path / "b.json"),
                          "--report", str(tmp_path / "b.html")])
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "b.json").read_text())
    check = next(c for c in doc["checks"] if c["name"] == "phi_pixel_text")
    # four holdout images: the leak checks cannot tell (verdict "inconclusive", exit 3); nothing fails
    assert [c for c in doc["checks"] if c["passed"] is False] == []
    assert (code, doc["verdict"]) in ((0, "pass"), (3, "inconclusive"))
    assert check["status"] == "not checked" and check["value"] is None  # keeps the verdict, never a "pass"
    assert "not checked" in out and "1 not checked" in out
    assert any("NOT CHECKED" in n for n in doc["notes"])
    html = (tmp_path / "b.html").read_text()
    label = {"pass": '<div class="verdict partial">PASS (1 NOT CHECKED)</div>',  # not a plain green pass
             "inconclusive": '<div class="verdict inconclusive">INCONCLUSIVE (1 NOT CHECKED)</div>'}[doc["verdict"]]
    assert label in html
    assert '<td>phi_pixel_text</td><td><span class="na">not checked</span>' in html
