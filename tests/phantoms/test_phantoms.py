"""Tests of the procedural mammography phantoms: rendering, determinism, geometry, layouts, CLI.

Files are read back with pydicom, nibabel and Pillow directly (independent of medsynth's readers);
a last group reads them with ``medsynth.io.load_dataset`` as the rest of medsynth will.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from medsynth.errors import ConfigError, OutputExistsError
from medsynth.phantoms import CALC_LABEL, MASS_LABEL, make_phantoms, render_phantom
from medsynth.phantoms.cbis import CALC_COLUMNS, MASS_COLUMNS
from medsynth.phantoms.layouts import CASES_COLUMNS

SMALL = (128, 104)


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture(scope="module")
def cbis_mono1(tmp_path_factory) -> Path:
    """8 small MONOCHROME1 phantoms, every image with a lesion, plus one normal-only set beside it."""
    out = tmp_path_factory.mktemp("cbis") / "mono1"
    return make_phantoms(out, n=8, seed=11, size=SMALL, monochrome=1, lesion_fraction=1.0)


# ----------------------------------------------------------------------------- rendering
def test_render_is_deterministic_and_seed_dependent():
    a = render_phantom(5, SMALL, index=3)
    b = render_phantom(5, SMALL, index=3)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.label.tobytes() == b.label.tobytes()
    assert a.lesions == b.lesions and a.phi == b.phi
    other_seed = render_phantom(6, SMALL, index=3)
    other_index = render_phantom(5, SMALL, index=4)
    assert not np.array_equal(a.image, other_seed.image)
    assert not np.array_equal(a.image, other_index.image)
    assert a.image.dtype == np.float32 and a.label.dtype == np.uint8
    assert 0.0 <= a.image.min() and a.image.max() <= 1.0


def test_patient_pairs_share_identity_and_density():
    left, right = render_phantom(2, SMALL, index=6), render_phantom(2, SMALL, index=7)
    assert (left.laterality, right.laterality) == ("L", "R")
    assert left.phi["PatientName"] == right.phi["PatientName"]
    assert left.density == right.density
    assert render_phantom(2, SMALL, index=8).phi["StudyInstanceUID"] != left.phi["StudyInstanceUID"]


@pytest.mark.parametrize("view", ["cc", "mlo"])
def test_lesions_lie_inside_the_breast_away_from_the_skin(view):
    for index in range(8):
        ph = render_phantom(21, SMALL, view, index=index, lesion_fraction=1.0)
        assert ph.lesions, "lesion_fraction=1 must give at least one lesion"
        lesion = ph.label > 0
        assert not (lesion & ~ph.breast_mask).any()
        assert not (lesion & ph.pectoral_mask).any()
        # Independent check of the gap to the skin and the image edge (scipy EDT, border = outside).
        room = ndimage.distance_transform_edt(np.pad(ph.breast_mask, 1), sampling=ph.spacing)[1:-1, 1:-1]
        assert room[lesion].min() >= 1.0, f"index {index}: a lesion touches the skin line"
        values = set(np.unique(ph.label)) - {0}
        assert values <= {MASS_LABEL, CALC_LABEL}
        assert np.array_equal(ph.instances > 0, lesion)
        for les in ph.lesions:
            r0, c0, r1, c1 = les["bbox"]
            box = ph.instances[r0:r1, c0:c1] == les["id"]
            assert (ph.instances == les["id"]).sum() == box.sum()  # the bbox holds the whole lesion
            assert box.any() and box[0].any() and box[-1].any() and box[:, 0].any() and box[:, -1].any()
            assert les["type"] in ("mass", "calcification")
            if les["type"] == "mass":
                assert les["shape"] in ("round", "oval", "lobulated", "irregular")
                assert les["margin"] in ("circumscribed", "ill_defined", "spiculated")
            else:
                assert les["calc_type"] and les["distribution"]
            assert 1 <= les["subtlety"] <= 5


def test_no_lesion_when_fraction_is_zero():
    ph = render_phantom(3, SMALL, index=0, lesion_fraction=0.0)
    assert ph.lesions == [] and not ph.label.any()


def test_lesion_sizes_follow_the_pixel_spacing():
    """The same phantom at two resolutions has the same lesions in mm."""
    coarse = render_phantom(8, (128, 104), index=2, lesion_fraction=1.0)
    fine = render_phantom(8, (256, 208), index=2, lesion_fraction=1.0)
    assert coarse.spacing == pytest.approx((0.8, 0.8)) and fine.spacing == pytest.approx((0.4, 0.4))
    assert [les["size_mm"] for les in coarse.lesions] == [les["size_mm"] for les in fine.lesions]
    for lc, lf in zip(coarse.lesions, fine.lesions):
        assert np.hypot(*(np.subtract(lc["center_mm"], lf["center_mm"]))) < 1.5
        assert np.allclose(lc["bbox_mm"], lf["bbox_mm"], rtol=0.3, atol=1.6)
        # bbox in pixels times the spacing is the bbox in mm
        r0, c0, r1, c1 = lf["bbox"]
        assert lf["bbox_mm"] == pytest.approx(((r1 - r0) * 0.4, (c1 - c0) * 0.4), abs=1e-3)
    # Masses: the area of the mask matches the drawn diameter (within shape variation).
    for index in range(10):
        ph = render_phantom(30, (256, 208), index=index, lesion_fraction=1.0)
        for les in ph.lesions:
            if les["type"] != "mass" or les["margin"] == "spiculated":
                continue
            r0, c0, r1, c1 = les["bbox"]
            area_mm2 = (ph.label[r0:r1, c0:c1] == MASS_LABEL).sum() * ph.spacing[0] * ph.spacing[1]
            nominal = np.pi * (les["size_mm"] / 2) ** 2
            assert 0.3 * nominal < area_mm2 < 1.8 * nominal, les


def test_density_orders_dense_tissue():
    fractions = {d: [] for d in "abcd"}
    brightness = {d: [] for d in "abcd"}
    for d in "abcd":
        for index in range(3):
            ph = render_phantom(4, SMALL, density=d, index=index, lesion_fraction=0.0)
            assert ph.density == d
            fractions[d].append(ph.dense_fraction)
            brightness[d].append(float(ph.image[ph.breast_mask].mean()))
    for lo, hi in zip("abc", "bcd"):
        assert max(fractions[lo]) < min(fractions[hi])
        # independent of the generator's own measure: the breast is brighter on average
        assert np.mean(brightness[lo]) < np.mean(brightness[hi])
    assert max(fractions["a"]) < 0.25 and min(fractions["d"]) > 0.75


def test_views_and_laterality():
    cc_left = render_phantom(9, SMALL, "cc", index=0)
    mlo_right = render_phantom(9, SMALL, "mlo", index=1)
    assert cc_left.view == "CC" and not cc_left.pectoral_mask.any()
    assert mlo_right.view == "MLO" and mlo_right.pectoral_mask.any()
    # Chest wall on the left for L, on the right for R; pectoral in the upper chest-wall corner.
    assert cc_left.breast_mask[:, 0].sum() > cc_left.breast_mask[:, -1].sum()
    tissue_r = mlo_right.breast_mask | mlo_right.pectoral_mask
    assert tissue_r[:, -1].sum() > tissue_r[:, 0].sum()
    rows, cols = np.nonzero(mlo_right.pectoral_mask)
    assert rows.mean() < SMALL[0] / 2 and cols.mean() > SMALL[1] / 2
    assert mlo_right.pectoral_mask[0, -1]
    # Background is dark, tissue bright
    assert cc_left.image[~(cc_left.breast_mask)].mean() < 0.1 < cc_left.image[cc_left.breast_mask].mean()


def test_bad_render_arguments_say_what_they_got():
    with pytest.raises(ValueError, match="'ap'"):
        render_phantom(0, SMALL, view="ap")
    with pytest.raises(ValueError, match="'e'"):
        render_phantom(0, SMALL, density="e")
    with pytest.raises(ValueError, match="-1"):
        render_phantom(-1, SMALL)


def test_full_size_render_timing():
    start = time.perf_counter()
    ph = render_phantom(0, index=1, view="mlo", lesion_fraction=1.0)
    elapsed = time.perf_counter() - start
    print(f"\nrender_phantom 512x416 MLO: {elapsed * 1000:.0f} ms")
    assert ph.image.shape == (512, 416) and ph.spacing == pytest.approx((0.2, 0.2))
    assert ph.label.shape == ph.breast_mask.shape == (512, 416)


# ----------------------------------------------------------------------------- CBIS-DDSM layout
def test_cbis_csvs_have_cbis_columns(cbis_mono1):
    mass_cols, mass_rows = _read_csv(cbis_mono1 / "mass_case_description.csv")
    calc_cols, calc_rows = _read_csv(cbis_mono1 / "calc_case_description.csv")
    normal_cols, normal_rows = _read_csv(cbis_mono1 / "normal_case_description.csv")
    assert mass_cols == MASS_COLUMNS and calc_cols == CALC_COLUMNS and normal_cols == MASS_COLUMNS
    for required in ("patient_id", "left or right breast", "image view", "abnormality id", "abnormality type",
                     "assessment", "pathology", "subtlety", "image file path", "ROI mask file path",
                     "cropped image file path"):
        assert required in mass_cols and required in calc_cols
    assert {"mass shape", "mass margins", "breast_density"} <= set(mass_cols)
    assert {"calc type", "calc distribution"} <= set(calc_cols)
    manifest = json.loads((cbis_mono1 / "phantoms.json").read_text())
    n_lesions = sum(len(c["lesions"]) for c in manifest["cases"])
    assert len(mass_rows) + len(calc_rows) == n_lesions and normal_rows == []
    for row in mass_rows + calc_rows:
        assert row["patient_id"].startswith("P_") and len(row["patient_id"]) == 7
        assert (cbis_mono1 / row["image file path"]).is_file()
        assert (cbis_mono1 / row["ROI mask file path"]).is_file()
        assert (cbis_mono1 / row["cropped image file path"]).is_file()
        assert row["left or right breast"] in ("LEFT", "RIGHT") and row["image view"] == "CC"
    assert {r["abnormality type"] for r in mass_rows} <= {"mass"}
    assert {r["abnormality type"] for r in calc_rows} <= {"calcification"}


def test_cbis_dicom_headers_pixels_and_decoy_phi(cbis_mono1):
    import pydicom

    manifest = json.loads((cbis_mono1 / "phantoms.json").read_text())
    _, mass_rows = _read_csv(cbis_mono1 / "mass_case_description.csv")
    _, calc_rows = _read_csv(cbis_mono1 / "calc_case_description.csv")
    by_image = {}
    for row in mass_rows + calc_rows:
        by_image.setdefault(row["image file path"], []).append(row)
    assert len(by_image) == manifest["n"]
    for image_rel, rows in by_image.items():
        entry = next(c for c in manifest["cases"] if c["case_id"] in image_rel)
        ds = pydicom.dcmread(cbis_mono1 / image_rel)
        ph = render_phantom(11, SMALL, index=entry["index"], lesion_fraction=1.0)
        assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.1.2" == ds.SOPClassUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.Modality == "MG" and ds.BodyPartExamined == "BREAST" and ds.BreastImplantPresent == "NO"
        assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.PresentationLUTShape == "INVERSE"
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx(ph.spacing)
        assert [float(v) for v in ds.ImagerPixelSpacing] == pytest.approx(ph.spacing)
        assert ds.ViewPosition == "CC" and ds.ImageLaterality == ph.laterality
        assert ds.BurnedInAnnotation == "NO" and "WindowCenter" in ds and "WindowWidth" in ds
        # MONOCHROME1: stored inverted, so 4095 - stored is the display image
        expected = np.rint(ph.image * 4095).astype(np.int32)
        assert np.array_equal(4095 - ds.pixel_array.astype(np.int32), expected)
        # decoy PHI in the usual and the hidden places
        assert str(ds.PatientName) == ph.phi["PatientName"] and ds.PatientID.startswith("MRN")
        for key in ("PatientBirthDate", "InstitutionName", "InstitutionAddress", "ReferringPhysicianName",
                    "OperatorsName", "PerformingPhysicianName", "AccessionNumber", "StudyDate", "StudyTime"):
            assert str(ds.data_element(key).value), key
        assert ds.OtherPatientIDsSequence[0].PatientID
        assert str(ds.RequestAttributesSequence[0].ScheduledPerformingPhysicianName)
        assert ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID == ds.StudyInstanceUID
        block = ds.private_block(0x0029, "MEDSYNTH PHANTOM PRIVATE")
        assert str(block[0x10].value) == ph.phi["PatientName"]
        # ROI masks: binary 0/255, the image's size, exactly this lesion
        for row in rows:
            roi = pydicom.dcmread(cbis_mono1 / row["ROI mask file path"]).pixel_array
            assert roi.shape == ph.image.shape and set(np.unique(roi)) <= {0, 255}
            les = ph.lesions[int(row["abnormality id"]) - 1]
            own = ph.instances == les["id"]
            assert np.array_equal(roi == 255, own)
            assert (ph.label[own] == les["label"]).all()
            assert row["abnormality type"] == les["type"]


def test_cbis_same_seed_gives_identical_files(tmp_path):
    a = make_phantoms(tmp_path / "a", n=3, seed=4, size=SMALL)
    b = make_phantoms(tmp_path / "b", n=3, seed=4, size=SMALL)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    c = make_phantoms(tmp_path / "c", n=3, seed=5, size=SMALL)
    dcm = next(p.relative_to(a) for p in a.rglob("*.dcm"))
    assert not any(
        (c / p.relative_to(c)).read_bytes() == (a / dcm).read_bytes() for p in c.rglob("*.dcm")
    )


def test_worker_processes_write_the_same_files(tmp_path):
    one = make_phantoms(tmp_path / "one", n=8, seed=6, size=(64, 52), workers=1)
    two = make_phantoms(tmp_path / "two", n=8, seed=6, size=(64, 52), workers=2)
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    assert all((one / rel).read_bytes() == (two / rel).read_bytes() for rel in files)


def test_monochrome2_burned_in_text_and_normals(tmp_path):
    import pydicom

    plain = make_phantoms(tmp_path / "plain", n=2, seed=7, size=(192, 156), lesion_fraction=0.0)
    text = make_phantoms(tmp_path / "text", n=2, seed=7, size=(192, 156), lesion_fraction=0.0, burned_in_text=True)
    _, normals = _read_csv(plain / "normal_case_description.csv")
    assert len(normals) == 2 and all(r["ROI mask file path"] == "" for r in normals)
    for row in normals:
        a = pydicom.dcmread(plain / row["image file path"])
        b = pydicom.dcmread(text / row["image file path"])
        assert a.PhotometricInterpretation == "MONOCHROME2" and a.PresentationLUTShape == "IDENTITY"
        assert a.BurnedInAnnotation == "NO" and b.BurnedInAnnotation == "YES"
        diff = a.pixel_array.astype(int) != b.pixel_array.astype(int)
        assert diff.sum() > 50  # letters were drawn
        rows, _ = np.nonzero(diff)
        assert rows.max() < 60  # ... in the top corner, away from the breast
    assert len(list(plain.glob("*_1"))) == 0  # no ROI folders for normal images


def test_patient_offset_selects_later_patients(tmp_path):
    base = make_phantoms(tmp_path / "base", n=4, seed=3, size=SMALL, layout="folder")
    shifted = make_phantoms(tmp_path / "shift", n=2, seed=3, size=SMALL, layout="folder", patient_offset=1)
    _, rows = _read_csv(shifted / "cases.csv")
    assert [r["patient_id"] for r in rows] == ["P_00002", "P_00002"]
    from PIL import Image

    for name in ("P_00002_LEFT_CC.png", "P_00002_RIGHT_CC.png"):
        assert np.array_equal(np.asarray(Image.open(base / "images" / name)),
                              np.asarray(Image.open(shifted / "images" / name)))


def test_output_folder_rules(tmp_path):
    out = make_phantoms(tmp_path / "x", n=1, seed=0, size=SMALL, layout="folder")
    with pytest.raises(OutputExistsError):
        make_phantoms(out, n=1, seed=0, size=SMALL)
    make_phantoms(out, n=1, seed=1, size=SMALL, layout="nifti", overwrite=True)
    assert not (out / "images" / "P_00001_LEFT_CC.png").exists()
    # A run that died half-way (no phantoms.json yet) may still be overwritten.
    (out / "phantoms.json").unlink()
    make_phantoms(out, n=1, seed=1, size=SMALL, layout="folder", overwrite=True)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        make_phantoms(foreign, n=1, seed=0, size=SMALL, overwrite=True)
    assert (foreign / "keep.txt").exists()
    with pytest.raises(ConfigError, match="layout"):
        make_phantoms(tmp_path / "y", n=1, seed=0, layout="dicomdir")
    with pytest.raises(ConfigError, match="monochrome"):
        make_phantoms(tmp_path / "z", n=1, seed=0, monochrome=3)


# ----------------------------------------------------------------------------- NIfTI and PNG
def test_nifti_layout_reads_back_with_nibabel(tmp_path):
    import nibabel as nib

    out = make_phantoms(tmp_path / "nii", n=3, seed=12, size=SMALL, layout="nifti", lesion_fraction=1.0)
    cols, rows = _read_csv(out / "cases.csv")
    assert cols == CASES_COLUMNS and len(rows) == 3
    for index, row in enumerate(rows):
        ph = render_phantom(12, SMALL, index=index, lesion_fraction=1.0)
        img = nib.load(out / "images" / f"{row['case_id']}.nii.gz")
        assert img.shape == (*SMALL, 1)
        assert np.allclose(img.affine, np.diag([ph.spacing[0], ph.spacing[1], 1.0, 1.0]))
        data = np.asarray(img.dataobj)[:, :, 0]
        assert data.dtype == np.uint16
        assert np.array_equal(data, np.rint(ph.image * 65535).astype(np.uint16))
        mask = np.asarray(nib.load(out / "masks" / f"{row['case_id']}.nii.gz").dataobj)[:, :, 0]
        assert np.array_equal(mask, ph.label)
        assert row["patient_id"] == f"P_{index // 2 + 1:05d}" and row["laterality"] == ph.laterality


def test_folder_layout_reads_back_with_pillow(tmp_path):
    from PIL import Image

    out = make_phantoms(tmp_path / "png", n=2, seed=13, size=SMALL, layout="folder", lesion_fraction=1.0)
    ph = render_phantom(13, SMALL, index=1, lesion_fraction=1.0)
    im = Image.open(out / "images" / "P_00001_RIGHT_CC.png")
    assert im.mode.startswith("I")
    assert np.array_equal(np.asarray(im).astype(np.uint16), np.rint(ph.image * 65535).astype(np.uint16))
    assert 25.4 / im.info["dpi"][0] == pytest.approx(ph.spacing[1], rel=1e-3)
    mask = np.asarray(Image.open(out / "masks" / "P_00001_RIGHT_CC.png"))
    assert mask.dtype == np.uint8 and np.array_equal(mask, ph.label)


# ----------------------------------------------------------------------------- medsynth readers
@pytest.mark.parametrize("layout", ["cbis-ddsm", "nifti", "folder"])
def test_load_dataset_reads_phantoms(tmp_path, layout):
    from medsynth.io.datasets import load_dataset

    mono = 1 if layout == "cbis-ddsm" else 2
    out = make_phantoms(tmp_path / layout, n=4, seed=14, size=SMALL, layout=layout, monochrome=mono)
    ds = load_dataset(out)
    assert len(ds) == 4
    manifest = {c["case_id"]: c for c in json.loads((out / "phantoms.json").read_text())["cases"]}
    for case in ds:
        entry = next(m for cid, m in manifest.items() if cid in case.case_id)
        ph = render_phantom(14, SMALL, index=entry["index"])
        assert case.patient_id == entry["patient_id"]
        assert case.image.shape == SMALL
        assert case.image.spacing == pytest.approx(ph.spacing, rel=1e-4)
        assert np.abs(case.image.unit_pixels() - ph.image).max() < 1e-3 if layout == "cbis-ddsm" else True
        if ph.lesions:
            assert case.mask is not None
            assert np.array_equal(case.mask.pixels > 0, ph.label > 0)
        else:
            assert case.mask is None or not case.mask.pixels.any()


# ----------------------------------------------------------------------------- CLI
def test_cli_happy_path_and_bad_size(tmp_path):
    out = tmp_path / "cli"
    ok = subprocess.run(
        [sys.executable, "-m", "medsynth", "phantoms", str(out), "--n", "2", "--seed", "1",
         "--size", "128x104", "--view", "mlo", "--density", "c", "--monochrome", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "wrote 2 phantoms" in ok.stdout
    manifest = json.loads((out / "phantoms.json").read_text())
    assert manifest["view"] == "mlo" and manifest["monochrome"] == 1
    assert {c["density"] for c in manifest["cases"]} == {"c"}
    bad = subprocess.run(
        [sys.executable, "-m", "medsynth", "phantoms", str(tmp_path / "bad"), "--n", "2", "--size", "12x"],
        capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2
    assert "error:" in bad.stderr and "--size" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_cli_rejects_bad_choices_in_process(tmp_path):
    from medsynth.cli import main

    assert main(["phantoms", str(tmp_path / "a"), "--n", "1", "--density", "e"]) == 2
    assert main(["phantoms", str(tmp_path / "b"), "--n", "1", "--layout", "zip"]) == 2
    assert main(["phantoms", str(tmp_path / "c"), "--n", "1", "--size", "128x104", "--layout", "nifti"]) == 0


def test_cli_options_override_only_what_was_typed(tmp_path):
    """--config sets n and seed; --seed on the command line wins, n stays the file's."""
    from medsynth.cli import main

    cfg = tmp_path / "ph.yaml"
    cfg.write_text("n: 3\nseed: 7\nsize: [64, 52]\nlayout: folder\nworkers: 1\n")
    assert main(["phantoms", str(tmp_path / "a"), "--config", str(cfg), "--seed", "9"]) == 0
    manifest = json.loads((tmp_path / "a" / "phantoms.json").read_text())
    assert (manifest["n"], manifest["seed"], manifest["size"], manifest["layout"]) == (3, 9, [64, 52], "folder")


def test_settings_are_checked_once_in_the_api(tmp_path, capsys):
    """A bad value from a config file and the same value typed as an option end in the same message:
    the one the API raises (the CLI checks nothing itself)."""
    from medsynth.cli import main
    from medsynth.phantoms import make_phantoms_from_config

    cfg = tmp_path / "bad.yaml"
    cfg.write_text("density: 3\n")
    assert main(["phantoms", str(tmp_path / "a"), "--config", str(cfg)]) == 2
    assert "density must be one of ('a', 'b', 'c', 'd') or None, got 3" in capsys.readouterr().err
    assert main(["phantoms", str(tmp_path / "b"), "--density", "e"]) == 2
    from_option = capsys.readouterr().err
    with pytest.raises(ConfigError) as info:
        make_phantoms(tmp_path / "c", n=1, seed=0, density="e")
    assert info.value.message in from_option
    with pytest.raises(ConfigError, match="bits_stored must be an integer in 12..16, got 'x'"):
        make_phantoms_from_config(tmp_path / "d", {**_defaults(), "bits_stored": "x"})
    assert not any((tmp_path / d).exists() for d in "abcd")


def _defaults() -> dict:
    from medsynth.config import load_config

    return load_config(None, kind="phantoms")


def test_make_phantoms_from_config_matches_make_phantoms(tmp_path):
    from medsynth.phantoms import make_phantoms_from_config

    cfg = {**_defaults(), "n": 2, "seed": 4, "size": "64x52", "view": "MLO", "density": "B", "workers": 0}
    a = make_phantoms_from_config(tmp_path / "a", cfg)
    b = make_phantoms(tmp_path / "b", 2, 4, size=(64, 52), view="mlo", density="b")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


@pytest.mark.parametrize("text,expected", [("512x416", (512, 416)), (" 64 X 52 ", (64, 52)), ([96, 80], (96, 80))])
def test_parse_size(text, expected):
    from medsynth.phantoms.layouts import parse_size

    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["12x", "64x52x3", [64.5, 52], 64])
def test_parse_size_refuses(bad):
    from medsynth.phantoms.layouts import parse_size

    with pytest.raises(ConfigError, match="ROWSxCOLS"):
        parse_size(bad)


# ----------------------------------------------------------------------------- texture statistics
def _spectral_slope(img: np.ndarray, lo: float = 0.02, hi: float = 0.25) -> float:
    """Log-log slope of the radially averaged power spectrum (numpy FFT, Hann window)."""
    img = img - img.mean()
    h, w = img.shape
    power = np.abs(np.fft.fft2(img * np.outer(np.hanning(h), np.hanning(w)))) ** 2
    f = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
    edges = np.logspace(np.log10(lo), np.log10(hi), 12)
    idx = np.digitize(f.ravel(), edges)
    filled = [k for k in range(1, len(edges)) if (idx == k).any()]
    means = [power.ravel()[idx == k].mean() for k in filled]
    centres = np.sqrt(edges[np.array(filled)] * edges[np.array(filled) - 1])
    return float(np.polyfit(np.log(centres), np.log(means), 1)[0])


@pytest.mark.parametrize("beta", [2.0, 3.0])
def test_power_law_noise_has_the_requested_exponent(beta):
    from medsynth.phantoms.texture import power_law_noise

    rng = np.random.default_rng(0)
    slopes = [-_spectral_slope(power_law_noise((256, 256), beta, rng)) for _ in range(4)]
    assert abs(np.mean(slopes) - beta) < 0.25, slopes
    field = power_law_noise((64, 48), beta, rng)
    assert field.shape == (64, 48) and abs(field.mean()) < 1e-4 and abs(field.std() - 1) < 1e-3


def test_breast_texture_is_close_to_one_over_f_cubed():
    """Mammographic background has beta ~ 3 (Burgess); the rendered breast should be near it."""
    slopes = []
    for index in range(4):
        ph = render_phantom(1, (256, 208), index=index, lesion_fraction=0.0)
        rows, cols = np.nonzero(ph.breast_mask)
        r, c = int(rows.mean()), int(cols.mean())
        roi = ph.image[r - 48 : r + 48, c - 48 : c + 48]
        assert ph.breast_mask[r - 48 : r + 48, c - 48 : c + 48].mean() > 0.95
        slopes.append(-_spectral_slope(roi, lo=0.03, hi=0.3))
    print(f"\nbreast texture beta: {np.round(slopes, 2)}")
    assert 2.2 < np.mean(slopes) < 3.6, slopes


def test_one_class_table_and_one_margin_spelling():
    from medsynth.generation.masks import MASS_MARGINS as generation_margins
    from medsynth.io.labels import LABELS
    from medsynth.io.layouts.cbis_ddsm import CBIS_LABELS
    from medsynth.io.writers import LABELS as written_labels
    from medsynth.phantoms.lesions import MASS_MARGINS

    assert written_labels is LABELS
    assert (MASS_LABEL, CALC_LABEL) == (LABELS["mass"], LABELS["calcification"])
    assert CBIS_LABELS == {"mass": LABELS["mass"], "calcification": LABELS["calcification"]}
    assert generation_margins is MASS_MARGINS and "ill_defined" in MASS_MARGINS
