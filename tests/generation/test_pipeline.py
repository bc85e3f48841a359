"""generate(): every format opens in its consumer; determinism, resume, sharding, safety, privacy.

All runs use phantoms (128x104 px at 0.8 mm/px) and a tiny two-step-trained inpainter.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import medsynth.generation.pipeline as pipeline
from medsynth.errors import ConfigError, InvalidDatasetError, InvalidModelError, OutputExistsError
from medsynth.generation.pipeline import case_streams, generate
from medsynth.generation.state import STATE_DIR
from medsynth.io.scan import Case, Scan
from medsynth.io.writers import to_uint16
from medsynth.utils import sha256_file

SALT = b"0123456789abcdef0123456789abcdef"
OPTS = {"mask_options": {"size_mm": "4:8"}, "progress": False}


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def check_manifest_hashes(out: Path) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    for case in manifest["cases"]:
        for f in case["files"].values():
            assert sha256_file(out / f["path"]) == f["sha256"]
    return manifest


@pytest.fixture(scope="module")
def healthy_phantom():
    from medsynth.phantoms import render_phantom

    return render_phantom(11, size=(128, 104), index=0, lesion_fraction=0.0)


@pytest.fixture(scope="module")
def one_background(healthy_phantom):
    p = healthy_phantom
    scan = Scan(path=Path("/hospital/PATIENT_0042/left_cc.dcm"), shape=p.image.shape, spacing=p.spacing,
                pixel_loader=lambda: p.image.copy(), bits_stored=None)
    return [Case(case_id="P0042_LCC", image=scan, mask=None, patient_id="PATIENT_0042",
                 image_relpath="PATIENT_0042/left_cc.dcm")]


# ----------------------------------------------------------------------------- formats
@pytest.mark.parametrize("fmt", ["nnunet", "monai", "dicom", "png"])
def test_every_format_opens_with_its_consumer(tmp_path, model_dir, phantom_root, fmt):
    out = tmp_path / "out"
    result = generate(model_dir, phantom_root, "shapes", 2, out, fmt, seed=1, batch_size=2, **OPTS)
    assert result.generated == 2 and result.manifest == out / "manifest.json"
    manifest = check_manifest_hashes(out)
    assert manifest["complete"] and [c["case_id"] for c in manifest["cases"]] == ["case_0000", "case_0001"]
    assert (out / "README.md").read_text().startswith("# Synthetic")
    assert not (out / STATE_DIR).exists()
    labels = []
    if fmt == "nnunet":
        import nibabel as nib

        from medsynth.io.datasets import load_dataset

        root = out / "Dataset500_MedsynthSynthetic"
        meta = json.loads((root / "dataset.json").read_text())
        assert meta["numTraining"] == 2 and meta["labels"]["background"] == 0
        ds = load_dataset(root)  # medsynth's own nnU-Net reader
        assert ds.layout == "nnunet" and len(ds) == 2
        for case in manifest["cases"]:
            img = nib.load(out / case["files"]["image"]["path"])
            lab = np.asarray(nib.load(out / case["files"]["label"]["path"]).dataobj)
            assert img.shape == lab.shape
            labels.append(lab)
    elif fmt == "monai":
        from monai.data import load_decathlon_datalist
        from monai.transforms import LoadImaged

        items = load_decathlon_datalist(str(out / "datalist.json"), is_segmentation=True, data_list_key="training")
        loader = LoadImaged(keys=["image", "label"])
        for item in items:
            data = loader(item)
            assert data["image"].shape == data["label"].shape
            labels.append(np.asarray(data["label"]))
    elif fmt == "dicom":
        import highdicom as hd
        import pydicom

        for case in manifest["cases"]:
            ds = pydicom.dcmread(out / case["files"]["image"]["path"])
            seg = hd.seg.segread(out / case["files"]["label"]["path"])
            lm = seg.get_pixels_by_source_instance([ds.SOPInstanceUID], combine_segments=True)[0]
            assert lm.shape == ds.pixel_array.shape
            assert ds.PatientIdentityRemoved == "YES" and "SYNTHETIC" in str(ds.PatientName)
            labels.append(lm)
    else:
        from PIL import Image

        from medsynth.io.datasets import load_dataset

        for case in manifest["cases"]:
            with Image.open(out / case["files"]["label"]["path"]) as im:
                labels.append(np.asarray(im))
        assert len(load_dataset(out)) == 2  # the folder layout medsynth reads back
    for lab, case in zip(labels, manifest["cases"]):
        lesion = case["lesions"][0]
        r0, c0, r1, c1 = lesion["bbox"]
        assert (lab[r0:r1, c0:c1] == lesion["label"]).any()
    # Every format, DICOM SEG included, reads back with its masks.
    from medsynth.io.datasets import load_dataset

    back = load_dataset(out)  # the output folder itself, as evaluate and audit are given it
    assert back.root == out and len(back) == 2
    assert fmt != "nnunet" or (out / back[0].image_relpath).is_file()
    for got, case in zip(back, manifest["cases"]):
        lesion = case["lesions"][0]
        r0, c0, r1, c1 = lesion["bbox"]
        assert got.mask is not None and (got.mask.pixels[r0:r1, c0:c1] == lesion["label"]).any()


# ----------------------------------------------------------------------------- what is painted where
def test_labels_inside_tissue_and_the_rest_untouched(tmp_path, model, one_background, healthy_phantom):
    from PIL import Image

    background = one_background[0].image.unit_pixels()
    out = tmp_path / "png"
    generate(model, one_background, "shapes", 3, out, "png", seed=2, **OPTS)
    p = healthy_phantom
    breast = p.breast_mask
    skin_mm = ndimage.distance_transform_edt(np.pad(breast, 1), sampling=p.spacing)[1:-1, 1:-1]
    original = to_uint16(background)
    for i in range(3):
        label = np.asarray(Image.open(out / "masks" / f"case_{i:04d}.png"))
        image = np.asarray(Image.open(out / "images" / f"case_{i:04d}.png"))
        lesion = label > 0
        assert lesion.any()
        assert not (lesion & ~breast).any()  # inside the phantom's true breast mask
        assert skin_mm[lesion].min() >= 3.0 - 1.2  # skin margin (3 mm), within one 0.8 mm pixel
        # Beyond the feathered ROI band around the lesion the background is unchanged, bit for bit.
        near = ndimage.binary_dilation(lesion, iterations=6)
        assert np.array_equal(image[~near], original[~near])
        assert not np.array_equal(image[lesion], original[lesion])  # something was painted


def test_pipeline_equals_inpaint_scan_reference(tmp_path, model, one_background, healthy_phantom):
    """Cases written by the batched pipeline == ``model.inpaint_scan`` (the model's own one-image
    path: crop, paint, paste) on the written mask with the recorded seed and conditioning."""
    from PIL import Image

    out = tmp_path / "png"
    generate(model, one_background, "shapes", 2, out, "png", seed=4, batch_size=2, model_batch=1, **OPTS)
    manifest = json.loads((out / "manifest.json").read_text())
    background = one_background[0].image.unit_pixels()
    for case in manifest["cases"]:
        label = np.asarray(Image.open(out / case["files"]["label"]["path"]))
        seed = case["lesions"][0]["inpaint_seed"]
        conditioning = case["lesions"][0]["conditioning"]
        assert conditioning["class"] == "mass" and conditioning["shape"] and conditioning["margin"]
        ref = model.inpaint_scan(background, label > 0, healthy_phantom.spacing, seed=seed, attributes=conditioning)
        image = np.asarray(Image.open(out / case["files"]["image"]["path"]))
        assert np.array_equal(image, to_uint16(ref))
    assert manifest["model"]["num_inference_steps"] == model.config["num_inference_steps"]


def test_case_streams_depend_only_on_seed_and_index():
    a = case_streams(3, 7)["mask"].random(4)
    b = case_streams(3, 7)["mask"].random(4)
    c = case_streams(3, 8)["mask"].random(4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


# ----------------------------------------------------------------------------- determinism, resume, sharding
@pytest.mark.parametrize("model_batch", [1, 8])
def test_byte_identical_across_batch_sizes(tmp_path, model, phantom_root, model_batch):
    for bs in (1, 3):
        generate(model, phantom_root, "shapes", 4, tmp_path / f"bs{bs}", "nnunet", seed=5, batch_size=bs,
                 model_batch=model_batch, salt=SALT, **OPTS)
    assert tree_digest(tmp_path / "bs1") == tree_digest(tmp_path / "bs3")


def test_fixed_model_batch_is_padded_so_batch_size_still_does_not_matter(tmp_path, model, phantom_root):
    # model_batch=2: batch_size 1 gives calls with one real patch and one pad, batch_size 3 gives a
    # full call and a padded one; the model always sees batches of 2.
    for bs in (1, 3):
        generate(model, phantom_root, "shapes", 3, tmp_path / f"bs{bs}", "png", seed=5, batch_size=bs,
                 model_batch=2, salt=SALT, **OPTS)
    assert tree_digest(tmp_path / "bs1") == tree_digest(tmp_path / "bs3")


def test_resume_after_kill_equals_uninterrupted_run(tmp_path, model, phantom_root, monkeypatch):
    reference = tmp_path / "ref"
    generate(model, phantom_root, "shapes", 5, reference, "dicom", seed=6, batch_size=2, salt=SALT, **OPTS)

    out = tmp_path / "killed"
    real_write = pipeline.write_record
    calls = {"n": 0}

    def dying_write(state, record):
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill")
        calls["n"] += 1
        real_write(state, record)

    monkeypatch.setattr(pipeline, "write_record", dying_write)
    monkeypatch.setattr(pipeline, "MANIFEST_EVERY_S", 0.0)  # manifest after every step
    with pytest.raises(KeyboardInterrupt):
        generate(model, phantom_root, "shapes", 5, out, "dicom", seed=6, batch_size=2, salt=SALT, **OPTS)
    monkeypatch.setattr(pipeline, "write_record", real_write)
    # The partial manifest lists only complete cases, each with its files on disk.
    partial = check_manifest_hashes(out)
    assert not partial["complete"] and partial["n_complete"] == 2
    with pytest.raises(OutputExistsError, match="resume"):
        generate(model, phantom_root, "shapes", 5, out, "dicom", seed=6, batch_size=2, **OPTS)
    with pytest.raises(OutputExistsError, match="settings differ"):
        generate(model, phantom_root, "shapes", 5, out, "dicom", seed=7, batch_size=2, resume=True, **OPTS)
    result = generate(model, phantom_root, "shapes", 5, out, "dicom", seed=6, batch_size=3, resume=True, **OPTS)
    assert result.skipped == 3 and result.generated == 2
    assert tree_digest(out) == tree_digest(reference)
    # Resuming a finished run is a no-op.
    again = generate(model, phantom_root, "shapes", 5, out, "dicom", seed=6, resume=True, **OPTS)
    assert again.generated == 0 and tree_digest(out) == tree_digest(reference)


def test_sharded_run_equals_single_process(tmp_path, model, phantom_root):
    single = tmp_path / "single"
    generate(model, phantom_root, "shapes", 3, single, "monai", seed=8, salt=SALT, **OPTS)
    sharded = tmp_path / "sharded"
    calls = []

    def barrier():
        # Stands in for accelerate's wait_for_everyone: at the first barrier of rank 0 (after it
        # prepared OUT), the other process runs its whole share.
        calls.append(1)
        if len(calls) == 1:
            r = generate(model, phantom_root, "shapes", 3, sharded, "monai", seed=8, rank=1, world_size=2, **OPTS)
            assert r.manifest is None and r.generated == 1

    r0 = generate(model, phantom_root, "shapes", 3, sharded, "monai", seed=8, salt=SALT, rank=0, world_size=2,
                  barrier=barrier, **OPTS)
    assert r0.generated == 2 and len(calls) == 2
    assert tree_digest(sharded) == tree_digest(single)


# ----------------------------------------------------------------------------- safety and bad input
def test_existing_output_is_refused_and_overwrite_is_careful(tmp_path, model, phantom_root):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not empty"):
        generate(model, phantom_root, "shapes", 1, out, "png", **OPTS)
    with pytest.raises(OutputExistsError, match="refusing to delete"):
        generate(model, phantom_root, "shapes", 1, out, "png", overwrite=True, **OPTS)
    assert (out / "notes.txt").read_text() == "mine"
    done = tmp_path / "done"
    generate(model, phantom_root, "shapes", 1, done, "png", **OPTS)
    generate(model, phantom_root, "shapes", 2, done, "png", overwrite=True, **OPTS)
    assert json.loads((done / "manifest.json").read_text())["n_complete"] == 2


def test_bad_arguments_give_clear_errors_and_write_nothing(tmp_path, model_dir, phantom_root, healthy_root):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="unknown output format 'jpeg'"):
        generate(model_dir, phantom_root, "shapes", 1, out, "jpeg", **OPTS)
    with pytest.raises(InvalidDatasetError, match="no lesion masks"):
        generate(model_dir, phantom_root, f"real:{healthy_root}", 1, out, "png", progress=False)
    not_a_model = tmp_path / "not_a_model"
    not_a_model.mkdir()
    (not_a_model / "weights.bin").write_bytes(b"\0" * 16)
    with pytest.raises(InvalidModelError, match="not a medsynth model"):
        generate(not_a_model, phantom_root, "shapes", 1, out, "png", **OPTS)
    with pytest.raises(ConfigError, match="n must be"):
        generate(model_dir, phantom_root, "shapes", 0, out, "png", **OPTS)
    with pytest.raises(ConfigError, match="mask source"):
        generate(model_dir, phantom_root, "circles", 1, out, "png", **OPTS)
    assert not out.exists()


def test_real_masks_pipeline(tmp_path, model, phantom_root, healthy_root):
    out = tmp_path / "real"
    # Options of the shapes source are refused for real masks, before anything is written.
    with pytest.raises(ConfigError, match="size_mm apply to masks shapes"):
        generate(model, healthy_root, f"real:{phantom_root}", 2, out, "png", seed=9, **OPTS)
    assert not out.exists()
    generate(model, healthy_root, f"real:{phantom_root}", 2, out, "png", seed=9, progress=False,
             mask_options={"rotation_deg": 90.0})
    manifest = json.loads((out / "manifest.json").read_text())
    outline = manifest["cases"][0]["lesions"][0]["outline"]
    assert outline["source"] == "real" and "source_lesion_id" in outline and "source_lesion_sha256" not in outline
    assert manifest["masks"]["rotation_deg"] == 90.0 and abs(outline["rotation_deg"]) <= 90.0


# ----------------------------------------------------------------------------- privacy of the manifest
def test_manifest_holds_no_source_identity(tmp_path, model, phantom_root, one_background):
    from medsynth.io.datasets import load_dataset

    out = tmp_path / "dicom"
    generate(model, phantom_root, "shapes", 3, out, "dicom", seed=10, salt=SALT, **OPTS)
    text = (out / "manifest.json").read_text() + (out / "README.md").read_text()
    forbidden = {str(phantom_root), phantom_root.name, SALT.hex()}
    for case in load_dataset(phantom_root):
        forbidden |= {case.image_relpath, Path(case.image_relpath).name, case.case_id}
        if case.patient_id:
            forbidden.add(case.patient_id)
    leaks = [f for f in forbidden if f and f in text]
    assert leaks == []
    # The DICOM outputs carry none of the source patients' identities either.
    blobs = b"".join(p.read_bytes() for p in out.rglob("*.dcm"))
    pids = {c.patient_id for c in load_dataset(phantom_root) if c.patient_id}
    assert pids and not any(pid.encode() in blobs for pid in pids)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["salt_sha256"] != SALT.hex() and len(manifest["cases"][0]["background"]["id"]) == 64
    # In-memory backgrounds with a path and patient ID in them: neither reaches the manifest.
    out2 = tmp_path / "mem"
    generate(model, one_background, "shapes", 1, out2, "png", **OPTS)
    text2 = (out2 / "manifest.json").read_text()
    assert "PATIENT_0042" not in text2 and "hospital" not in text2 and "left_cc" not in text2


def test_dp_budget_and_versions_are_recorded(tmp_path, model_dir, phantom_root):
    from medsynth.models.inpainter import LesionInpainter

    dp_model = LesionInpainter.from_pretrained(model_dir)
    dp_model.model_card["dp"] = {"epsilon": 7.5, "delta": 1e-5, "accountant": "rdp", "noise_multiplier": 1.1,
                                 "max_grad_norm": 1.0, "sample_rate": 0.05, "steps": 900, "noise": "csprng",
                                 "secure_mode": False, "poisson_sampling": True}
    out = tmp_path / "dp"
    generate(dp_model, phantom_root, "shapes", 1, out, "png", **OPTS)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["dp"]["epsilon"] == 7.5 and manifest["model"]["dp"]["delta"] == 1e-5
    # What recomputing ε needs, and where the noise came from, are recorded (for the audit).
    assert manifest["model"]["dp"]["sample_rate"] == 0.05 and manifest["model"]["dp"]["steps"] == 900
    assert manifest["model"]["dp"]["noise"] == "csprng" and manifest["model"]["cards"]["base"]["dp"]["epsilon"] == 7.5
    assert manifest["model"]["sha256"] == sha256_file(model_dir / "model.safetensors")
    assert manifest["model"]["sampler"] and manifest["versions"]["medsynth"]
    assert "(ε, δ)-DP with ε = 7.5" in (out / "README.md").read_text()
    # Seeded noise: the dataset card claims no guarantee.
    dp_model.model_card["dp"]["noise"] = "seeded"
    generate(dp_model, phantom_root, "shapes", 1, tmp_path / "seeded", "png", **OPTS)
    card = (tmp_path / "seeded" / "README.md").read_text()
    assert "seeded DP noise: an experiment, no formal guarantee" in card and "(ε, δ)-DP" not in card


def test_lesions_already_in_a_background_stay_labelled(tmp_path, model, phantom_root):
    from PIL import Image

    from medsynth.io.datasets import load_dataset

    ds = load_dataset(phantom_root)
    out = tmp_path / "png"
    generate(model, ds, "shapes", 4, out, "png", seed=12, **OPTS)
    manifest = json.loads((out / "manifest.json").read_text())
    checked = 0
    for case in manifest["cases"]:
        # The documented seed rule picks the background: stream "background" of (seed, i).
        bg = ds[int(case_streams(12, case["index"])["background"].integers(len(ds)))]
        if bg.mask is None or not (np.asarray(bg.mask.pixels) > 0).any():
            continue
        label = np.asarray(Image.open(out / case["files"]["label"]["path"]))
        source = np.asarray(bg.mask.pixels) > 0
        assert (label[source] > 0).all()
        assert case["background"]["pre_existing_lesion_pixels"] == int(source.sum())
        checked += 1
    assert checked >= 1


def test_generate_is_importable_from_the_package():
    from medsynth.generation import generate as exported

    assert exported is generate


def test_top_level_api_functions_are_not_shadowed_by_subpackages(tmp_path, model, phantom_root):
    import importlib
    import types

    import medsynth

    importlib.import_module("medsynth.generation")
    importlib.import_module("medsynth.auditing")
    from medsynth.auditing.run import audit
    from medsynth.generation.pipeline import generate as pipeline_generate

    # Importing the subpackages must not replace the API functions with modules.
    assert not isinstance(medsynth.generate, types.ModuleType) and medsynth.generate is pipeline_generate
    assert not isinstance(medsynth.audit, types.ModuleType) and medsynth.audit is audit
    r = medsynth.generate(model, phantom_root, "shapes", 1, tmp_path / "o", "png", **OPTS)
    assert r.generated == 1
