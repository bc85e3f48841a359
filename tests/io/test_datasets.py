"""load_dataset: the layouts built by hand, the registry, mask checks, missing files, path traversal."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from medsynth.errors import InvalidDatasetError, InvalidMaskError, UnknownLayoutError
from medsynth.io.datasets import LAYOUTS, load_dataset

CBIS_COLUMNS = ["patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
                "abnormality type", "mass shape", "mass margins", "assessment", "pathology", "subtlety",
                "image file path", "cropped image file path", "ROI mask file path"]


def _write_csv(path, rows, columns=CBIS_COLUMNS):
    with open(path, "w", newline="") as fp:
        writer = csv.DictWriter(fp, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})


def _row(patient, image, roi="", kind="MASS", crop=""):
    return {"patient_id": patient, "breast_density": "2", "left or right breast": "LEFT", "image view": "CC",
            "abnormality id": "1", "abnormality type": kind, "mass shape": "OVAL", "pathology": "BENIGN",
            "image file path": image, "ROI mask file path": roi, "cropped image file path": crop}


@pytest.fixture
def cbis_root(tmp_path, build):
    """Two patients, three images: one with a mass and a calcification, one with a mass, one normal."""
    root = tmp_path / "cbis"
    shape = (48, 40)
    for name in ("Mass-Training_P_00001_LEFT_CC", "Mass-Training_P_00002_LEFT_CC", "Normal_P_00002_RIGHT_CC",
                 "roi_a", "roi_b", "roi_c"):
        (root / name).mkdir(parents=True)
    for i, name in enumerate(
        ("Mass-Training_P_00001_LEFT_CC", "Mass-Training_P_00002_LEFT_CC", "Normal_P_00002_RIGHT_CC")
    ):
        build.dicom(root / name / "000000.dcm", build.phantom_like(shape, seed=i))
    masks = {
        "roi_a": (slice(5, 15), slice(5, 15)),
        "roi_b": (slice(10, 20), slice(10, 30)),
        "roi_c": (slice(30, 40), slice(2, 8)),
    }
    for name, region in masks.items():
        roi = np.zeros(shape, dtype=np.uint8)
        roi[region] = 255
        build.dicom(root / name / "000000.dcm", roi, bits_stored=8)
    _write_csv(root / "mass_case_description_train_set.csv", [
        _row("P_00001", "Mass-Training_P_00001_LEFT_CC/000000.dcm", "roi_a/000000.dcm"),
        _row("P_00002", "Mass-Training_P_00002_LEFT_CC/000000.dcm", "roi_c/000000.dcm"),
    ])
    _write_csv(root / "calc_case_description_train_set.csv", [
        _row("P_00001", "Mass-Training_P_00001_LEFT_CC/000000.dcm", "roi_b/000000.dcm", kind="calcification"),
    ])
    _write_csv(root / "normal_case_description.csv", [_row("P_00002", "Normal_P_00002_RIGHT_CC/000000.dcm", kind="")])
    return root, masks


def test_cbis_ddsm_rows_of_one_image_become_one_case(cbis_root):
    root, masks = cbis_root
    ds = load_dataset(root)
    assert ds.layout == "cbis-ddsm" and ds.root == root and len(ds) == 3
    assert ds.patients() == ["P_00001", "P_00002"]
    assert ds.cases_with_masks() == 2
    by_id = {c.case_id: c for c in ds}
    case = by_id["Mass-Training_P_00001_LEFT_CC"]
    assert case.mask._pixels is None  # the union is built lazily
    expected = np.zeros((48, 40), dtype=np.float32)
    expected[masks["roi_a"]] = 1
    expected[masks["roi_b"]] = 2  # calcification wins on overlap
    np.testing.assert_array_equal(case.mask.pixels, expected)
    assert sorted(les["abnormality_type"] for les in case.metadata["lesions"]) == ["MASS", "calcification"]
    assert by_id["Normal_P_00002_RIGHT_CC"].mask is None
    assert case.image_relpath == "Mass-Training_P_00001_LEFT_CC/000000.dcm"


def test_cbis_ddsm_missing_file_names_csv_and_path(cbis_root):
    root, _ = cbis_root
    os.remove(root / "roi_c" / "000000.dcm")
    with pytest.raises(InvalidDatasetError, match=r"mass_case_description_train_set\.csv.*roi_c/000000\.dcm"):
        load_dataset(root)


@pytest.mark.parametrize("bad", ["../outside.dcm", "/etc/passwd"])
def test_paths_outside_the_root_are_refused(cbis_root, bad):
    root, _ = cbis_root
    (root.parent / "outside.dcm").write_bytes(b"x")
    _write_csv(root / "calc_case_description_train_set.csv", [_row("P_00001", bad, kind="calcification")])
    with pytest.raises(InvalidDatasetError, match="outside the dataset root"):
        load_dataset(root)


def test_symlink_out_of_the_root_is_refused(cbis_root, tmp_path, build):
    root, _ = cbis_root
    outside = build.dicom(tmp_path / "elsewhere.dcm", build.phantom_like((48, 40)))
    (root / "link.dcm").symlink_to(outside)
    _write_csv(root / "normal_case_description.csv", [_row("P_00003", "link.dcm", kind="")])
    with pytest.raises(InvalidDatasetError, match="outside the dataset root"):
        load_dataset(root)


def test_cbis_ddsm_swapped_roi_and_cropped_paths(cbis_root, build):
    root, masks = cbis_root
    build.dicom(root / "roi_c" / "000001.dcm", np.full((10, 6), 255, dtype=np.uint8), bits_stored=8)  # a crop
    _write_csv(root / "mass_case_description_train_set.csv", [
        _row("P_00001", "Mass-Training_P_00001_LEFT_CC/000000.dcm", "roi_a/000000.dcm"),
        _row("P_00002", "Mass-Training_P_00002_LEFT_CC/000000.dcm", roi="roi_c/000001.dcm", crop="roi_c/000000.dcm"),
    ])
    case = {c.case_id: c for c in load_dataset(root)}["Mass-Training_P_00002_LEFT_CC"]
    assert case.mask.pixels[masks["roi_c"]].min() == 1


def test_cbis_ddsm_mask_of_wrong_shape(cbis_root, build):
    root, _ = cbis_root
    build.dicom(root / "roi_c" / "000000.dcm", np.zeros((20, 20), dtype=np.uint8), bits_stored=8)
    with pytest.raises(InvalidMaskError, match=r"roi_c/000000\.dcm.*Mass-Training_P_00002_LEFT_CC/000000\.dcm"):
        load_dataset(root)


def _folder(tmp_path, build, mask_shape=(48, 40)):
    root = tmp_path / "folder"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    build.dicom(root / "images" / "a.dcm", build.phantom_like((48, 40)))
    build.png(root / "images" / "b.png", build.phantom_like((48, 40), seed=1))
    mask = np.zeros(mask_shape, dtype=np.uint8)
    mask[3:9, 4:10] = 1
    build.png(root / "masks" / "a.png", mask)
    with open(root / "cases.csv", "w") as fp:
        fp.write("case_id,patient_id,density\na,P1,b\nb,P2,c\n")
    return root, mask


def test_folder_layout(tmp_path, build):
    root, mask = _folder(tmp_path, build)
    ds = load_dataset(root, spacing_mm=0.1)  # b.png states no spacing (no DPI): it must be given
    assert ds.layout == "folder" and len(ds) == 2 and ds.patients() == ["P1", "P2"]
    a, b = ds
    assert (a.case_id, b.case_id) == ("a", "b")
    np.testing.assert_array_equal(a.mask.pixels, mask)
    assert b.mask is None and b.metadata == {"density": "c"}


def test_folder_mask_of_wrong_shape_names_both_files(tmp_path, build):
    root, _ = _folder(tmp_path, build, mask_shape=(40, 48))
    with pytest.raises(InvalidMaskError, match=r"masks/a\.png.*images/a\.dcm"):
        load_dataset(root)


def test_nnunet_layout(tmp_path, build):
    root = tmp_path / "Dataset501_Phantoms"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(3):
        img = build.phantom_like((32, 24), seed=i).astype(np.float32)
        lab = (img > img.mean()).astype(np.uint8)
        build.nifti(root / "imagesTr" / f"case_{i:03d}_0000.nii.gz", img[:, :, None])
        build.nifti(root / "labelsTr" / f"case_{i:03d}.nii.gz", lab[:, :, None])
    spec = {
        "channel_names": {"0": "MG"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": 3,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(spec))
    ds = load_dataset(root)
    assert ds.layout == "nnunet" and [c.case_id for c in ds] == ["case_000", "case_001", "case_002"]
    assert ds.metadata["labels"] == {"background": 0, "lesion": 1}
    img = build.phantom_like((32, 24), seed=2).astype(np.float32)
    np.testing.assert_array_equal(ds[2].mask.pixels, (img > img.mean()).astype(np.float32))
    os.remove(root / "labelsTr" / "case_001.nii.gz")
    with pytest.raises(InvalidDatasetError, match=r"dataset\.json.*case_001"):
        load_dataset(root)


def test_monai_datalist_matches_monai(tmp_path, build):
    from monai.data import load_decathlon_datalist

    root = tmp_path / "monai"
    (root / "data" / "img").mkdir(parents=True)
    (root / "data" / "lab").mkdir()
    items = []
    for i in range(2):
        build.png(root / "data" / "img" / f"x{i}.png", build.phantom_like((20, 20), seed=i))
        build.png(root / "data" / "lab" / f"x{i}.png", np.eye(20, dtype=np.uint8))
        items.append({"image": f"img/x{i}.png", "label": f"lab/x{i}.png", "patient_id": f"P{i}"})
    datalist = root / "lists" / "datalist.json"
    datalist.parent.mkdir()
    datalist.write_text(json.dumps({"training": items, "test": ["img/x1.png"]}))
    ds = load_dataset(datalist, base_dir=root / "data", spacing_mm=0.1)  # PNGs without DPI: spacing given
    reference = load_decathlon_datalist(datalist, base_dir=root / "data")
    assert [str(c.image.path) for c in ds] == [os.path.realpath(r["image"]) for r in reference]
    assert [str(c.mask.path) for c in ds] == [os.path.realpath(r["label"]) for r in reference]
    assert ds.layout == "monai" and ds.patients() == ["P0", "P1"]
    test = load_dataset(datalist, key="test", base_dir=root / "data", spacing_mm=0.1)
    assert len(test) == 1 and test[0].mask is None
    # Default base_dir is the JSON's folder, where these paths do not exist.
    with pytest.raises(InvalidDatasetError, match=r"datalist\.json.*img/x0\.png"):
        load_dataset(datalist)


def test_unknown_layout_lists_what_was_looked_for(tmp_path):
    (tmp_path / "random.txt").write_text("hi")
    with pytest.raises(UnknownLayoutError) as info:
        load_dataset(tmp_path)
    message = str(info.value)
    for layout in ("cbis-ddsm", "folder", "nnunet", "monai"):
        assert layout in message
    # One reason per layout of the registry, in the order they were tried.
    names = [layout.name for layout in LAYOUTS]
    assert names[0] == "generate-output" and len(names) == 5
    assert [message.index(f"{name}: ") for name in names] == sorted(message.index(f"{name}: ") for name in names)
    assert "no images/ subfolder" in message and "no *case_description*.csv at the root" in message


def test_a_file_that_is_no_index_says_so(tmp_path):
    path = tmp_path / "scan.png"
    path.write_bytes(b"not an index")
    with pytest.raises(UnknownLayoutError, match=r"scan\.png.*not a datalist \.json.*load_scan"):
        load_dataset(path)


def test_the_registry_is_the_one_list_of_layouts(tmp_path, monkeypatch, build):
    """A layout added to LAYOUTS is tried in its turn; nothing else needs to know about it."""
    import medsynth
    from medsynth.io import datasets
    from medsynth.io.layouts.base import Dataset, Found, Layout

    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    build.png(root / "images" / "a.png", build.phantom_like((16, 16)))
    assert load_dataset(root, require_spacing=False).layout == "folder"
    custom = Layout("custom", lambda p: Found(p) if (p / "images").is_dir() else "no images/",
                    lambda found, **_: Dataset(found.root, "custom", []))
    monkeypatch.setattr(datasets, "LAYOUTS", (custom, *datasets.LAYOUTS))
    assert medsynth.load_dataset(root).layout == "custom"  # the public name is the registry's load_dataset
