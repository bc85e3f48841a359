"""``medsynth info``: happy paths, and every bad input ends with a one-line error and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medsynth.cli import main


def _truncated_dicom(tmp_path, build):
    path = build.dicom(tmp_path / "whole.dcm", build.phantom_like())
    cut = tmp_path / "truncated.dcm"
    cut.write_bytes(path.read_bytes()[:-500])
    return cut


def _not_dicom(tmp_path, build):
    path = tmp_path / "not_dicom.dcm"
    path.write_bytes(b"%PDF-1.4 definitely not DICOM" * 10)
    return path


def _no_pixels(tmp_path, build):
    path = build.dicom(tmp_path / "no_pixels.dcm", build.phantom_like())
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    return path


def _wrong_mask(tmp_path, build):
    root = tmp_path / "wrong_mask"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    build.png(root / "images" / "c1.png", build.phantom_like((32, 32)))
    build.png(root / "masks" / "c1.png", np.zeros((16, 32), dtype=np.uint8))
    return root


def _nan_nifti(tmp_path, build):
    img = build.phantom_like().astype(np.float32)
    img[0, 0] = np.nan
    return build.nifti(tmp_path / "nan.nii.gz", img[:, :, None])


def _singular(tmp_path, build):
    img = nib.Nifti1Image(build.phantom_like().astype(np.float32)[:, :, None], np.eye(4))
    img.set_sform(np.zeros((4, 4)), code=1)
    img.set_qform(None, code=0)
    nib.save(img, str(tmp_path / "singular.nii.gz"))
    return tmp_path / "singular.nii.gz"


def _truncated_nifti(tmp_path, build):
    rng = np.random.default_rng(1)
    path = build.nifti(tmp_path / "whole.nii.gz", rng.normal(size=(64, 64, 1)).astype(np.float32))
    cut = tmp_path / "truncated.nii.gz"
    cut.write_bytes(path.read_bytes()[:-400])
    return cut


def _unknown_layout(tmp_path, build):
    folder = tmp_path / "just_files"
    folder.mkdir()
    (folder / "readme.md").write_text("nothing here")
    return folder


BAD_INPUTS = {
    "truncated DICOM": (_truncated_dicom, "truncated"),
    "non-DICOM named .dcm": (_not_dicom, "not a DICOM file"),
    "DICOM without pixels": (_no_pixels, "no PixelData"),
    "mask with the wrong shape": (_wrong_mask, "mask shape"),
    "NIfTI with NaNs": (_nan_nifti, "NaN"),
    "singular affine": (_singular, "singular"),
    "truncated .nii.gz": (_truncated_nifti, "truncated"),
    "unknown layout": (_unknown_layout, "no known dataset layout"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(tmp_path, build, capsys, case):
    make, expected = BAD_INPUTS[case]
    path = make(tmp_path, build)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert expected in err and path.name in err
    assert len(err.strip().splitlines()) <= 3  # one message (rich may soft-wrap a long path)


@pytest.mark.parametrize("case", ["truncated DICOM", "unknown layout"])
def test_bad_input_as_a_subprocess(tmp_path, build, case):
    make, expected = BAD_INPUTS[case]
    path = make(tmp_path, build)
    res = subprocess.run(
        [sys.executable, "-m", "medsynth", "info", str(path)], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and expected in res.stderr


def test_info_on_a_dicom_file(tmp_path, build, capsys):
    path = build.dicom(
        tmp_path / "mg.dcm",
        build.phantom_like(),
        photometric="MONOCHROME1",
        presentation="INVERSE",
        extra={"BurnedInAnnotation": "YES", "InstitutionName": "Decoy Hospital"},
    )
    assert main(["info", str(path), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["shape"] == [48, 40] and facts["spacing_mm"] == [0.2, 0.15]
    assert facts["photometric"] == "MONOCHROME1" and facts["inverted_for_display"] is True
    assert (facts["laterality"], facts["view"], facts["bits_stored"]) == ("L", "CC", 12)
    assert {"PatientName", "PatientID", "InstitutionName"} <= set(facts["phi_tags"])
    assert facts["burned_in_annotation"] == "YES" and facts["phi_present"] is True
    assert main(["info", str(path)]) == 0
    assert "MONOCHROME1" in capsys.readouterr().out


def test_info_on_a_dataset(tmp_path, build, capsys):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in ("a", "b", "c"):
        build.png(root / "images" / f"{name}.png", build.phantom_like((16, 16)))
    build.png(root / "masks" / "b.png", np.ones((16, 16), dtype=np.uint8))
    (root / "cases.csv").write_text("case_id,patient_id\na,P1\nb,P1\nc,P2\n")
    assert main(["info", str(root), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert (facts["layout"], facts["cases"], facts["cases_with_masks"], facts["patients"]) == ("folder", 3, 1, 2)
