"""The dataset writers: every format opens unchanged in its consumer.

nibabel and MONAI (``load_decathlon_datalist`` + ``LoadImaged``) for NIfTI, pydicom + highdicom for
the DICOM image and SEG (and ``dciodvfy`` when installed), Pillow for PNG, the documented nnU-Net v2
raw-format rules in-tree, and nnU-Net's own ``verify_dataset_integrity`` in its separate environment
when it is available. nnunetv2's dependencies pull torchvision and timm, which break the CPU torch
of the main venv, so ``make test`` installs nnunetv2 and only what its dataset check imports into
``.nnunet-deps`` (``pip install --no-deps --target``) and the test puts that folder on the main
venv's PYTHONPATH. A separate environment also works: ``.venv-nnunet`` or ``$MEDSYNTH_NNUNET_PYTHON``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medsynth.errors import ConfigError, InvalidImageError, InvalidMaskError
from medsynth.io.writers import FORMATS, LABELS, get_writer, to_uint16
from medsynth.io.writers.atomic import atomic_path, atomic_write_bytes
from medsynth.utils import sha256_file

SPACING = (0.5, 0.25)


def make_case(seed: int, shape=(48, 40)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = to_uint16(rng.random(shape))
    label = np.zeros(shape, np.uint8)
    label[5:15, 6:14] = LABELS["mass"]
    if seed % 2:
        label[30:36, 20:30] = LABELS["calcification"]
    return image, label


def write_dataset(fmt: str, out: Path, n: int = 3) -> tuple[object, list[str], dict[str, tuple]]:
    options = {"uid_entropy": "test"} if fmt == "dicom" else {}
    writer = get_writer(fmt, out, **options)
    ids, cases = [], {}
    for i in range(n):
        cid = f"case_{i:04d}"
        image, label = make_case(i)
        files = writer.write_case(cid, image, label, SPACING)
        ids.append(cid)
        cases[cid] = (image, label, files)
    writer.finalize(ids)
    return writer, ids, cases


# ----------------------------------------------------------------------------- atomic writes
def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_to_uint16_rounds_and_clips():
    x = np.array([[-0.5, 0.0, 0.5, 1.0, 2.0]], np.float32)
    assert to_uint16(x).tolist() == [[0, 0, 32768, 65535, 65535]]
    with pytest.raises(InvalidImageError):
        to_uint16(np.array([[np.nan]]))


def test_writers_refuse_bad_inputs(tmp_path):
    writer = get_writer("png", tmp_path)
    image, label = make_case(0)
    with pytest.raises(InvalidImageError):
        writer.write_case("c", image.astype(np.float32), label, SPACING)
    with pytest.raises(InvalidMaskError):
        writer.write_case("c", image, np.full_like(label, 7), SPACING)
    with pytest.raises(ConfigError):
        get_writer("jpeg", tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", FORMATS)
def test_writers_are_byte_deterministic(tmp_path, fmt):
    write_dataset(fmt, tmp_path / "a")
    write_dataset(fmt, tmp_path / "b")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and files_a
    for rel in files_a:
        assert sha256_file(tmp_path / "a" / rel) == sha256_file(tmp_path / "b" / rel), rel


# ----------------------------------------------------------------------------- NIfTI consumers
def test_monai_datalist_opens_with_monai(tmp_path):
    from monai.data import load_decathlon_datalist
    from monai.transforms import LoadImaged

    _, ids, cases = write_dataset("monai", tmp_path)
    items = load_decathlon_datalist(str(tmp_path / "datalist.json"), is_segmentation=True, data_list_key="training")
    assert len(items) == len(ids)
    loader = LoadImaged(keys=["image", "label"], image_only=False)
    for item, cid in zip(items, ids):
        data = loader(item)
        image, label, _ = cases[cid]
        assert np.array_equal(np.asarray(data["image"]), image)
        assert np.array_equal(np.asarray(data["label"]), label)
        np.testing.assert_allclose(np.asarray(data["image"].pixdim)[:2], SPACING)


def test_nifti_opens_with_nibabel_and_medsynth_reader(tmp_path):
    import nibabel as nib

    from medsynth.io.readers import load_scan

    _, ids, cases = write_dataset("nnunet", tmp_path)
    for cid in ids:
        image, label, files = cases[cid]
        img = nib.load(tmp_path / files["image"])
        assert img.get_data_dtype() == np.uint16
        assert np.array_equal(np.asarray(img.dataobj), image)
        assert img.header.get_zooms()[:2] == pytest.approx(SPACING)
        lab = nib.load(tmp_path / files["label"])
        assert np.array_equal(np.asarray(lab.dataobj), label)
        assert np.allclose(img.affine, lab.affine)
        scan = load_scan(tmp_path / files["image"])
        assert scan.shape == image.shape and scan.spacing == pytest.approx(SPACING)


def check_nnunet_raw_format(root: Path) -> list[str]:
    """The documented nnU-Net v2 raw-dataset rules, checked without nnU-Net; returns the problems."""
    import nibabel as nib

    problems = []
    if not re.fullmatch(r"Dataset\d{3}_[A-Za-z0-9_-]+", root.name):
        problems.append(f"folder name {root.name} is not DatasetXXX_Name")
    meta = json.loads((root / "dataset.json").read_text())
    for key in ("channel_names", "labels", "numTraining", "file_ending"):
        if key not in meta:
            problems.append(f"dataset.json lacks {key}")
    labels = meta["labels"]
    if labels.get("background") != 0:
        problems.append("labels must map background to 0")
    if sorted(labels.values()) != list(range(len(labels))):
        problems.append(f"label values {sorted(labels.values())} are not consecutive from 0")
    ending = meta["file_ending"]
    channels = sorted(int(c) for c in meta["channel_names"])
    label_files = sorted((root / "labelsTr").glob(f"*{ending}"))
    if len(label_files) != meta["numTraining"]:
        problems.append(f"numTraining {meta['numTraining']} != {len(label_files)} label files")
    image_files = set(p.name for p in (root / "imagesTr").iterdir())
    for lf in label_files:
        case = lf.name[: -len(ending)]
        lab = nib.load(lf)
        values = set(np.unique(np.asarray(lab.dataobj)).tolist())
        if not values <= set(labels.values()):
            problems.append(f"{lf.name} has labels {values - set(labels.values())} not in dataset.json")
        for c in channels:
            name = f"{case}_{c:04d}{ending}"
            if name not in image_files:
                problems.append(f"missing image {name}")
                continue
            image_files.discard(name)
            img = nib.load(root / "imagesTr" / name)
            if img.shape != lab.shape or not np.allclose(img.affine, lab.affine):
                problems.append(f"{name} geometry differs from its label")
    if image_files:
        problems.append(f"images without labels: {sorted(image_files)}")
    return problems


def test_nnunet_layout_follows_documented_rules(tmp_path):
    writer, ids, _ = write_dataset("nnunet", tmp_path)
    root = tmp_path / writer.folder
    assert root.name == "Dataset500_MedsynthSynthetic"
    assert check_nnunet_raw_format(root) == []
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["numTraining"] == len(ids) and meta["file_ending"] == ".nii.gz"
    # The in-tree check does catch a broken dataset.
    (root / "imagesTr" / f"{ids[0]}_0000.nii.gz").unlink()
    assert any("missing image" in p for p in check_nnunet_raw_format(root))


NNUNET_DEPS = Path(__file__).resolve().parents[2] / ".nnunet-deps"


def nnunet_command() -> tuple[str, dict[str, str]] | None:
    """How to run nnU-Net's own code: a Python that has nnunetv2, and extra environment variables.

    nnunetv2 cannot live in the main venv (its dependencies pull a CUDA torchvision), so either
    ``$MEDSYNTH_NNUNET_PYTHON`` / ``.venv-nnunet`` is a separate environment, or ``.nnunet-deps``
    (made by ``make test``: nnunetv2 and the few packages its dataset check imports, installed
    with ``--no-deps``) is put on the main venv's PYTHONPATH.
    """
    env = os.environ.get("MEDSYNTH_NNUNET_PYTHON")
    if env:
        return (env, {}) if Path(env).exists() else None
    local = Path(__file__).resolve().parents[2] / ".venv-nnunet" / "bin" / "python"
    if local.exists():
        return str(local), {}
    if (NNUNET_DEPS / "nnunetv2").is_dir():
        return sys.executable, {"PYTHONPATH": str(NNUNET_DEPS)}
    return None


NNUNET_CHECK = """
import sys
import nibabel as nib
import numpy as np
from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
folder, label_file = sys.argv[1], sys.argv[2]
verify_dataset_integrity(folder, num_processes=1)
print("NNUNET_VERIFY_OK")
# The check is not a no-op: a label value missing from dataset.json must be rejected.
lab = nib.load(label_file)
bad = np.asarray(lab.dataobj).copy()
bad[0, 0] = 5
nib.save(nib.Nifti1Image(bad, lab.affine, lab.header), label_file)
try:
    verify_dataset_integrity(folder, num_processes=1)
except Exception as e:
    print("NNUNET_REJECTED_BAD_LABEL", type(e).__name__)
"""


@pytest.mark.skipif(
    nnunet_command() is None,
    reason="no nnU-Net environment (.nnunet-deps, .venv-nnunet or $MEDSYNTH_NNUNET_PYTHON); "
    "nnunetv2 cannot live in the main venv (it pulls torchvision)",
)
def test_nnunet_verify_dataset_integrity(tmp_path):
    writer, _, cases = write_dataset("nnunet", tmp_path)
    label_file = tmp_path / next(iter(cases.values()))[2]["label"]
    python, extra_env = nnunet_command()
    env = dict(os.environ, nnUNet_raw=str(tmp_path), nnUNet_preprocessed=str(tmp_path / "pre"),
               nnUNet_results=str(tmp_path / "res"), **extra_env)
    proc = subprocess.run([python, "-c", NNUNET_CHECK, str(tmp_path / writer.folder), str(label_file)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "NNUNET_VERIFY_OK" in proc.stdout, proc.stdout[-2000:]
    assert "NNUNET_REJECTED_BAD_LABEL" in proc.stdout, proc.stdout[-2000:]


# ----------------------------------------------------------------------------- DICOM consumers
def test_dicom_image_and_seg_open_with_pydicom_and_highdicom(tmp_path):
    import highdicom as hd
    import pydicom

    _, ids, cases = write_dataset("dicom", tmp_path)
    uids = set()
    for cid in ids:
        image, label, files = cases[cid]
        ds = pydicom.dcmread(tmp_path / files["image"])
        assert np.array_equal(ds.pixel_array, image)
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert ds.PatientIdentityRemoved == "YES" and ds.DeidentificationMethod
        assert ds.BurnedInAnnotation == "NO" and ds.ConversionType == "SYN"
        assert "SYNTHETIC" in ds.SeriesDescription and "SYNTHETIC" in ds.ImageComments
        assert str(ds.PatientName) == f"SYNTHETIC^{cid.upper()}"
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx(SPACING)
        seg = hd.seg.segread(tmp_path / files["label"])
        assert seg.PatientName == ds.PatientName and seg.StudyInstanceUID == ds.StudyInstanceUID
        assert seg.PatientIdentityRemoved == "YES"
        lm = seg.get_pixels_by_source_instance([ds.SOPInstanceUID], combine_segments=True)
        assert np.array_equal(lm[0], label)
        described = {d.segment_label: d.segment_number for d in seg.SegmentSequence and
                     [seg.get_segment_description(k) for k in seg.segment_numbers]}
        assert described == {"mass": LABELS["mass"], "calcification": LABELS["calcification"]}
        uids |= {ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID, seg.SOPInstanceUID,
                 seg.SeriesInstanceUID, ds.file_meta.MediaStorageSOPInstanceUID}
    # Fresh UIDs: every case's image, series, study and SEG differ (study/meta UIDs repeat once).
    assert len(uids) == 5 * len(ids)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not on PATH (Debian package dicom3tools)")
def test_dicom_files_pass_dciodvfy(tmp_path):
    write_dataset("dicom", tmp_path, n=2)
    for path in sorted(tmp_path.rglob("*.dcm")):
        proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        report = proc.stdout + proc.stderr
        errors = [line for line in report.splitlines() if line.startswith("Error")]
        assert errors == [], f"{path.name}:\n{report}"


# ----------------------------------------------------------------------------- PNG
def test_png_keeps_16_bit_image_and_8_bit_mask(tmp_path):
    from PIL import Image

    _, ids, cases = write_dataset("png", tmp_path)
    for cid in ids:
        image, label, files = cases[cid]
        with Image.open(tmp_path / files["image"]) as im:
            assert im.mode == "I;16"
            assert np.array_equal(np.asarray(im), image)
        with Image.open(tmp_path / files["label"]) as im:
            assert im.mode == "L"
            assert np.array_equal(np.asarray(im), label)
