"""The spacing rule (issue 13): a scan without a stated pixel spacing is never given an assumed 1 mm.
Loading it for training, generation, evaluation or the audit is refused with an error naming the
file, unless the user gives the spacing (or the dataset lists one, or its layout documents one)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from medsynth.errors import ConfigError, InvalidImageError
from medsynth.io.datasets import load_dataset
from medsynth.io.readers import load_scan


def _folder(tmp_path, build, *, with_spacing=("b",), rows=None):
    """images/a.dcm (no spacing) and images/b.dcm (0.2 x 0.15 mm), each with a mask, + cases.csv rows."""
    root = tmp_path / "folder"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, name in enumerate(("a", "b")):
        img = build.phantom_like((48, 40), seed=i)
        build.dicom(root / "images" / f"{name}.dcm", img, spacing=name in with_spacing)
        build.png(root / "masks" / f"{name}.png", (img > img.mean()).astype(np.uint8))
    if rows is not None:
        with open(root / "cases.csv", "w", newline="") as fp:
            w = csv.DictWriter(fp, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return root


def test_a_dicom_without_spacing_is_unknown_not_one_mm(tmp_path, build):
    from medsynth.io.inspect import describe_scan

    path = build.dicom(tmp_path / "x.dcm", build.phantom_like(), spacing=False)
    scan = load_scan(path)
    assert not scan.spacing_known and scan.metadata["spacing_source"] == "unknown"
    assert all(np.isnan(scan.spacing))
    facts = describe_scan(path)
    assert facts["spacing_mm"] is None and facts["spacing_source"] == "unknown"
    stated = load_scan(build.dicom(tmp_path / "y.dcm", build.phantom_like()))
    assert stated.spacing_known and stated.spacing == (0.2, 0.15)


def test_a_dataset_with_an_image_without_spacing_is_refused_naming_it(tmp_path, build):
    root = _folder(tmp_path, build)
    with pytest.raises(InvalidImageError, match=r"a\.dcm: states no pixel spacing.*--spacing-mm"):
        load_dataset(root)
    # Listing only (medsynth info) leaves it unknown instead.
    ds = load_dataset(root, require_spacing=False)
    assert ds.metadata["spacing_sources"]["unknown"] == 1


def test_a_given_spacing_fills_only_what_the_files_do_not_state(tmp_path, build):
    ds = load_dataset(_folder(tmp_path, build), spacing_mm=0.07)
    a, b = ds
    assert a.image.spacing == (0.07, 0.07) and a.image.metadata["spacing_source"] == "given"
    assert a.mask.spacing == (0.07, 0.07)  # the mask (PNG, no DPI) takes its image's
    assert b.image.spacing == (0.2, 0.15) and b.image.metadata["spacing_source"] == "PixelSpacing"
    assert ds.metadata["spacing_sources"] == {"given": 1, "listed": 0, "layout default": 0, "unknown": 0}
    assert load_dataset(_folder(tmp_path / "2", build), spacing_mm="0.1,0.12")[0].image.spacing == (0.1, 0.12)
    for bad in ("0", "-1", "x", "1,2,3"):
        with pytest.raises(ConfigError, match="spacing"):
            load_dataset(_folder(tmp_path / bad.replace(",", "_"), build), spacing_mm=bad)


def test_a_spacing_listed_in_cases_csv_is_used(tmp_path, build):
    rows = [{"case_id": "a", "patient_id": "P1", "spacing_mm": "0.09"},
            {"case_id": "b", "patient_id": "P2", "spacing_mm": "0.5"}]
    a, b = load_dataset(_folder(tmp_path, build, rows=rows))
    assert a.image.spacing == (0.09, 0.09) and a.image.metadata["spacing_source"] == "listed"
    assert b.image.spacing == (0.2, 0.15)  # the file's own spacing wins over the list


def _cbis(tmp_path, build, spacing: bool):
    root = tmp_path / "cbis"
    folder = root / "Mass-Training_P_00001_LEFT_CC"
    roi_dir = root / "Mass-Training_P_00001_LEFT_CC_1"
    folder.mkdir(parents=True)
    roi_dir.mkdir()
    img = build.phantom_like((64, 48))
    build.dicom(folder / "000000.dcm", img, spacing=spacing)
    roi = np.zeros((64, 48), np.uint8)
    roi[20:30, 15:25] = 255
    build.dicom(roi_dir / "000000.dcm", roi, bits_stored=8, spacing=spacing)
    columns = ["patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
               "abnormality type", "mass shape", "mass margins", "assessment", "pathology", "subtlety",
               "image file path", "cropped image file path", "ROI mask file path"]
    row = ["P_00001", "2", "LEFT", "CC", "1", "mass", "OVAL", "CIRCUMSCRIBED", "3", "BENIGN", "4",
           "Mass-Training_P_00001_LEFT_CC/000000.dcm", "", "Mass-Training_P_00001_LEFT_CC_1/000000.dcm"]
    with open(root / "mass_case_description_train_set.csv", "w", newline="") as fp:
        w = csv.writer(fp)
        w.writerow(columns)
        w.writerow(row)
    return root


def test_cbis_ddsm_without_spacing_takes_the_documented_digitizer_default(tmp_path, build):
    from medsynth.io.inspect import describe_dataset
    from medsynth.io.layouts.cbis_ddsm import DEFAULT_SPACING_MM

    root = _cbis(tmp_path, build, spacing=False)
    (case,) = load_dataset(root)
    assert case.image.spacing == (DEFAULT_SPACING_MM, DEFAULT_SPACING_MM) == (0.05, 0.05)
    assert case.image.metadata["spacing_source"].startswith("layout default (CBIS-DDSM digitizers")
    assert case.mask.spacing == (0.05, 0.05)
    (given,) = load_dataset(root, spacing_mm=0.0435)  # the user's spacing beats the layout default
    assert given.image.spacing == (0.0435, 0.0435)
    facts = describe_dataset(root)
    assert facts["images_spacing_from_layout_default"] == 1 and "42-50 um" in facts["spacing_layout_default"]
    assert facts["images_without_spacing"] == 0
    (stated,) = load_dataset(_cbis(tmp_path / "s", build, spacing=True))
    assert stated.image.spacing == (0.2, 0.15)  # a header's own spacing is kept


def test_info_says_which_images_have_no_spacing(tmp_path, build):
    from typer.testing import CliRunner

    from medsynth.cli import app

    root = _folder(tmp_path, build)
    result = CliRunner().invoke(app, ["info", str(root), "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.output)
    assert facts["images_without_spacing"] == 1 and facts["cases"] == 2


@pytest.mark.parametrize("command", ["train", "generate", "evaluate", "audit"])
def test_commands_refuse_a_scan_without_spacing_with_one_line(tmp_path, build, command):
    """Training, generation, evaluation and the audit all refuse (exit 2, one line naming the file)."""
    root = _folder(tmp_path, build)
    good = tmp_path / "good"
    (good / "images").mkdir(parents=True)
    build.dicom(good / "images" / "c.dcm", build.phantom_like())
    args = {
        "train": ["train", str(root), "--out", str(tmp_path / "m"), "--steps", "1"],
        "generate": ["generate", "--model", str(tmp_path / "nomodel"), "--backgrounds", str(root),
                     "--out", str(tmp_path / "o"), "--n", "1"],
        "evaluate": ["evaluate", "--real", str(root), "--synthetic", str(good)],
        "audit": ["audit", "--train", str(root), "--synthetic", str(good), "--holdout", str(good)],
    }[command]
    if command == "generate":  # a model directory, so that the backgrounds are what fails
        from medsynth.models.inpainter import LesionInpainter

        LesionInpainter({"image_size": 16, "block_out_channels": [8, 8], "norm_num_groups": 4}).save_pretrained(
            tmp_path / "nomodel")
    proc = subprocess.run([sys.executable, "-m", "medsynth", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr + proc.stdout
    err = proc.stderr.strip()
    assert "Traceback" not in err and "a.dcm" in err and "no pixel spacing" in err


@pytest.mark.parametrize("command", ["evaluate", "audit"])
def test_evaluate_and_audit_take_the_spacing_given(tmp_path, build, command):
    """--spacing-mm lets evaluation and the audit read the scan that states none (API: spacing_mm=)."""
    from medsynth.auditing.prepare import as_dataset
    from medsynth.metrics.images import load_image_set

    root = _folder(tmp_path, build)
    if command == "evaluate":
        s = load_image_set(root, what="real", spacing_mm=0.3, with_rois=False)
        assert len(s) == 2
        with pytest.raises(InvalidImageError, match="a.dcm"):
            load_image_set(root, what="real", with_rois=False)
    else:
        ds = as_dataset(root, "train", (0.3, 0.25))
        spacing = {c.case_id: tuple(c.image.spacing) for c in ds}
        assert spacing["a"] == pytest.approx((0.3, 0.25)) and spacing["b"] == pytest.approx((0.2, 0.15))
    good = tmp_path / "good"
    (good / "images").mkdir(parents=True)
    build.dicom(good / "images" / "c.dcm", build.phantom_like())
    args = {"evaluate": ["evaluate", "--real", str(root), "--synthetic", str(good), "--no-realism"],
            "audit": ["audit", "--train", str(root), "--synthetic", str(good), "--holdout", str(good)]}[command]
    proc = subprocess.run([sys.executable, "-m", "medsynth", *args, "--spacing-mm", "0.3"], capture_output=True,
                          text=True, timeout=300)
    assert "no pixel spacing" not in proc.stderr, proc.stderr
