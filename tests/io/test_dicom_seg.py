"""DICOM SEG read back (``medsynth.io.dicom_seg`` through the folder layout) and the laterality the
DICOM writer keeps.

The label maps read back are compared with the arrays that were written, with SEGs built by highdicom
directly (segment codes of another tool, overlapping segments), and -- for ``medsynth generate
--format dicom`` -- with the PNG label maps the same run writes (Pillow, an independent reader).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from medsynth.errors import InvalidDatasetError, InvalidMaskError
from medsynth.io.datasets import load_dataset
from medsynth.io.writers import LABELS, get_writer, to_uint16

SPACING = (0.5, 0.25)


def _case(seed: int, shape=(48, 40)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = to_uint16(rng.random(shape))
    label = np.zeros(shape, np.uint8)
    label[5:15, 6:14] = LABELS["mass"]
    if seed % 2:
        label[30:36, 20:30] = LABELS["calcification"]
    return image, label


def _write(out: Path, n: int = 3, laterality: str | None = None) -> dict[str, np.ndarray]:
    writer = get_writer("dicom", out, uid_entropy="seg-test")
    labels = {}
    for i in range(n):
        image, label = _case(i)
        writer.write_case(f"case_{i:04d}", image, label, SPACING, laterality=laterality)
        labels[f"case_{i:04d}"] = label
    writer.finalize(list(labels))
    return labels


def test_dicom_output_reads_back_with_its_masks(tmp_path):
    labels = _write(tmp_path / "out")
    ds = load_dataset(tmp_path / "out")  # images/ + seg/, paired by SOPInstanceUID
    assert [c.case_id for c in ds] == list(labels)
    for case in ds:
        assert case.mask is not None and case.mask.metadata["format"] == "dicom-seg"
        assert case.mask.path.name == f"{case.case_id}_seg.dcm"
        np.testing.assert_array_equal(case.mask.pixels, labels[case.case_id])
        assert case.mask.spacing == case.image.spacing


def test_pairing_is_by_uid_not_by_name(tmp_path):
    labels = _write(tmp_path / "out")
    seg = tmp_path / "out" / "seg"
    # Shuffle the SEG file names: the pairing must follow the SEGs' references, not their names.
    names = sorted(seg.iterdir())
    for i, p in enumerate(names):
        p.rename(seg / f"tmp{i}.dcm")
    for i, p in enumerate(sorted(seg.iterdir())):
        p.rename(seg / f"{names[(i + 1) % len(names)].stem}.dcm")
    for case in load_dataset(tmp_path / "out"):
        np.testing.assert_array_equal(case.mask.pixels, labels[case.case_id])


def test_seg_as_mask_file_and_wrong_references(tmp_path):
    _write(tmp_path / "out", n=2)
    root = tmp_path / "folder"
    (root / "masks").mkdir(parents=True)
    shutil.copytree(tmp_path / "out" / "images", root / "images")
    shutil.copy(tmp_path / "out" / "seg" / "case_0000_seg.dcm", root / "masks" / "case_0000.dcm")
    ds = load_dataset(root)
    np.testing.assert_array_equal(ds[0].mask.pixels, _case(0)[1])
    assert ds[1].mask is None
    # A SEG that segments another image is refused, naming it.
    shutil.copy(tmp_path / "out" / "seg" / "case_0000_seg.dcm", root / "masks" / "case_0001.dcm")
    with pytest.raises(InvalidMaskError, match=r"case_0001\.dcm.*references"):
        load_dataset(root)


def test_seg_folder_refuses_strays(tmp_path):
    _write(tmp_path / "out", n=2)
    shutil.copy(tmp_path / "out" / "images" / "case_0000.dcm", tmp_path / "out" / "seg" / "x.dcm")
    with pytest.raises(InvalidDatasetError, match="x.dcm is not a DICOM Segmentation"):
        load_dataset(tmp_path / "out")
    (tmp_path / "out" / "seg" / "x.dcm").unlink()
    (tmp_path / "out" / "images" / "case_0001.dcm").unlink()
    with pytest.raises(InvalidDatasetError, match="case_0001_seg.dcm references no image"):
        load_dataset(tmp_path / "out")


def test_segments_of_another_tool_overlap_and_calcification_wins(tmp_path):
    """A SEG written by highdicom itself with a tumour segment and an overlapping one coded as
    calcification (SCT 129748009): mass 1, calcification 2, calcification where both are."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    root = tmp_path / "ds"
    writer = get_writer("dicom", root, uid_entropy="x")
    image, _ = _case(0)
    sc = writer.build_image("img", image, SPACING)
    (root / "images").mkdir(parents=True)
    sc.save_as(root / "images" / "img.dcm", enforce_file_format=True)
    tumour = np.zeros(image.shape, bool)
    tumour[10:30, 10:30] = True
    calc = np.zeros(image.shape, bool)
    calc[25:35, 25:35] = True
    algo = hd.AlgorithmIdentificationSequence(name="other", version="1", family=codes.cid7162.ArtificialIntelligence)
    descriptions = [
        hd.seg.SegmentDescription(1, "lesion", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm,
                                  "AUTOMATIC", algo),
        hd.seg.SegmentDescription(2, "specks", codes.SCT.MorphologicallyAbnormalStructure,
                                  hd.sr.CodedConcept("129748009", "SCT", "Calcification"), "AUTOMATIC", algo),
    ]
    seg = hd.seg.Segmentation(
        source_images=[sc], pixel_array=np.stack([tumour, calc], axis=-1)[None], segmentation_type="BINARY",
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=5,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="other", manufacturer_model_name="m",
        software_versions="1", device_serial_number="1", omit_empty_frames=False,
        pixel_measures=hd.PixelMeasuresSequence(pixel_spacing=SPACING, slice_thickness=1.0))
    (root / "seg").mkdir()
    seg.save_as(root / "seg" / "other.dcm")
    expected = np.zeros(image.shape, np.uint8)
    expected[tumour] = LABELS["mass"]
    expected[calc] = LABELS["calcification"]
    np.testing.assert_array_equal(load_dataset(root)[0].mask.pixels, expected)


@pytest.mark.parametrize("given, written", [("R", "R"), ("LEFT", "L"), ("l", "L"), (None, ""), ("B", "")])
def test_dicom_keeps_the_laterality_of_its_background(tmp_path, given, written):
    import pydicom

    _write(tmp_path, n=1, laterality=given)
    image = pydicom.dcmread(tmp_path / "images" / "case_0000.dcm")
    seg = pydicom.dcmread(tmp_path / "seg" / "case_0000_seg.dcm")
    assert image.Laterality == written
    assert "Laterality" not in seg  # the SEG IOD may not carry it here; its source image does
    assert load_dataset(tmp_path)[0].image.laterality == (written or None)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not on PATH (Debian package dicom3tools)")
def test_dciodvfy_has_no_laterality_warning_when_the_side_is_known(tmp_path):
    _write(tmp_path, n=1, laterality="L")
    for path in sorted(tmp_path.rglob("*.dcm")):
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        text = report.stdout + report.stderr
        assert not [line for line in text.splitlines() if line.startswith("Error")], text
        assert "Laterality" not in text, text


def test_generate_dicom_reads_back_masks_and_laterality(tmp_path):
    """``medsynth generate --format dicom`` and ``--format png`` of one run paint the same lesions: the
    SEG label maps read back equal the PNG label maps (Pillow), and every image keeps the side of a
    background (all backgrounds here are right breasts)."""
    import pydicom
    import torch
    from PIL import Image

    from medsynth.generation import generate
    from medsynth.models.inpainter import LesionInpainter
    from medsynth.phantoms import make_phantoms

    torch.manual_seed(0)
    model = LesionInpainter({"image_size": 32, "block_out_channels": [16, 32], "norm_num_groups": 8,
                             "num_inference_steps": 2})
    phantoms = make_phantoms(tmp_path / "bg", 4, seed=3, size=(128, 104), layout="folder", lesion_fraction=0.0)
    right = [c for c in load_dataset(phantoms) if c.metadata.get("laterality") == "R"]
    assert right and all(c.image.laterality is None for c in right)  # PNG: the side is in cases.csv only
    opts = {"masks": "shapes", "n": 2, "seed": 4, "progress": False, "salt": b"s" * 32}
    generate(model, right, out=tmp_path / "dcm", format="dicom", **opts)
    generate(model, right, out=tmp_path / "png", format="png", **opts)
    dcm, png = load_dataset(tmp_path / "dcm"), load_dataset(tmp_path / "png")
    assert [c.case_id for c in dcm] == [c.case_id for c in png] == ["case_0000", "case_0001"]
    for a, b in zip(dcm, png):
        with Image.open(b.mask.path) as im:
            expected = np.asarray(im)
        assert expected.any()
        np.testing.assert_array_equal(a.mask.pixels, expected)
        assert pydicom.dcmread(a.image.path, stop_before_pixels=True).Laterality == "R"
