"""LesionInpainter: save/load round trip, per-sample seeding, known-region restoration, input checks,
full-size inpainting, per-sample loss, RePaint for an unconditional model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from medsynth.errors import InvalidImageError, InvalidMaskError, InvalidModelError
from medsynth.models.inpainter import LesionInpainter


def test_train_save_load_gives_identical_outputs(trained, patches):
    out_dir, model = trained
    images, masks = patches
    loaded = LesionInpainter.from_pretrained(out_dir)
    a = model(images, masks, seeds=[1, 2, 3])
    b = loaded(images, masks, seeds=[1, 2, 3])
    assert a.dtype == np.float32 and a.shape == images.shape
    assert np.array_equal(a, b)
    assert loaded.config == model.config
    for k, v in model.unet.state_dict().items():
        assert torch.equal(v, loaded.unet.state_dict()[k]), k
    card = json.loads((out_dir / "model_card.json").read_text())
    assert card["training"]["steps"] == 4 and card["dp"] is None
    assert card["data"]["fingerprint"] and card["versions"]["torch"] == torch.__version__
    readme = (out_dir / "README.md").read_text()
    assert card["data"]["fingerprint"] in readme and "32 px at 0.8 mm/px" in readme


def test_same_seed_same_output_other_seed_differs(trained, patches):
    _, model = trained
    images, masks = patches
    a = model(images[0], masks[0], seeds=[5])
    assert a.shape == images[0].shape
    assert np.array_equal(a, model(images[0], masks[0], seeds=[5]))
    assert not np.array_equal(a, model(images[0], masks[0], seeds=[6]))


def test_per_sample_seeds_are_independent_of_batch_composition(trained, patches):
    _, model = trained
    images, masks = patches
    batch = model(images, masks, seeds=[10, 11, 12])
    alone = model(images[1:2], masks[1:2], seeds=[11])
    # Bitwise equality is not promised: oneDNN may pick other kernels for another batch size.
    np.testing.assert_allclose(alone[0], batch[1], rtol=0, atol=1e-5)
    reordered = model(images[[2, 1]], masks[[2, 1]], seeds=[12, 11])
    np.testing.assert_allclose(reordered[1], batch[1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("sampler", ["ddim", "dpmsolver++"])
def test_known_region_restored_exactly_beyond_feather(trained, patches, sampler):
    _, model = trained
    model = LesionInpainter(dict(model.config, sampler=sampler), model.unet, model.model_card)
    images, masks = patches
    images = (images * 0.4).astype(np.float32)  # dark values: (2x - 1 + 1) / 2 is not exact below 0.5
    out = model(torch.from_numpy(images), torch.from_numpy(masks), seeds=[0, 1, 2])
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    out = out.numpy()
    assert out.min() >= 0.0 and out.max() <= 1.0
    # A mass may change a band of band_mm around its mask (its halo), then the feathered edge.
    band_px = model.config["band_mm"] / model.config["spacing_mm"]
    for k in range(len(images)):
        far = ndimage.distance_transform_edt(~masks[k]) > band_px + model.config["feather_px"] + 1
        assert np.array_equal(out[k][far], images[k][far])
        assert not np.allclose(out[k][masks[k]], images[k][masks[k]])
    # A calcification's region is its mask: nothing beyond the feathered edge changes.
    calc = model(images, masks, seeds=[0, 1, 2], attributes={"class": "calcification"})
    for k in range(len(images)):
        far = ndimage.distance_transform_edt(~masks[k]) > model.config["feather_px"]
        assert np.array_equal(calc[k][far], images[k][far])


@pytest.mark.parametrize(
    "make, error, text",
    [
        (lambda im, m: (im, m[:, :-4]), InvalidMaskError, "shape"),
        (lambda im, m: (im, np.zeros_like(m)), InvalidMaskError, "empty"),
        (lambda im, m: (np.where(m, np.nan, im), m), InvalidImageError, "NaN"),
        (lambda im, m: (im * 3.0, m), InvalidImageError, r"\[0, 1\]"),
        (lambda im, m: (im[:, :30, :30], m[:, :30, :30]), InvalidImageError, "multiple"),
    ],
)
def test_bad_patch_inputs(trained, patches, make, error, text):
    _, model = trained
    im, m = make(*patches)
    with pytest.raises(error, match=text):
        model(im, m, seeds=list(range(len(im))))


def test_inpaint_scan_changes_only_mask_region(trained, cases):
    _, model = trained
    image, label, spacing = next(c for c in cases if c[1].any())
    lab, n = ndimage.label(label)
    sizes = ndimage.sum(label, lab, range(1, n + 1))
    mask = lab == (1 + int(np.argmin(sizes)))
    out = model.inpaint_scan(image, mask, spacing, seed=3)
    assert out.shape == image.shape and out.dtype == np.float32
    reach_mm = model.config["band_mm"] + (model.config["feather_px"] + 1) * model.config["spacing_mm"]
    far = ndimage.distance_transform_edt(~mask, sampling=spacing) > reach_mm
    assert np.array_equal(out[far], image[far])
    assert not np.array_equal(out[mask], image[mask])
    assert np.array_equal(out, model.inpaint_scan(image, mask, spacing, seed=3))


def test_inpaint_scan_bad_inputs(trained, cases):
    _, model = trained
    image, label, spacing = cases[1]
    mask = np.zeros(image.shape, bool)
    mask[60:66, 50:56] = True
    with pytest.raises(InvalidMaskError, match="shape"):
        model.inpaint_scan(image, mask[:-1], spacing)
    with pytest.raises(InvalidMaskError, match="empty"):
        model.inpaint_scan(image, np.zeros_like(mask), spacing)
    with pytest.raises(InvalidImageError, match="NaN"):
        model.inpaint_scan(np.where(mask, np.nan, image), mask, spacing)
    air = np.zeros(image.shape, bool)
    rows, cols = np.nonzero(image <= image.min())
    air[rows[0], cols[0]] = True  # a pixel of the background outside the breast
    with pytest.raises(InvalidMaskError, match="outside the imaged tissue"):
        model.inpaint_scan(image, air, spacing)


def test_per_sample_loss_is_per_sample(trained, patches):
    _, model = trained
    images, masks = patches
    losses = model.per_sample_loss(images, masks, timesteps=[10, 500, 900], seed=1)
    assert losses.shape == (3,) and torch.all(losses > 0)
    # Sample i's noise depends on (seed, i) only: a prefix of the batch gives the same losses.
    prefix = model.per_sample_loss(images[:2], masks[:2], timesteps=[10, 500], seed=1)
    torch.testing.assert_close(prefix, losses[:2], rtol=0, atol=1e-5)
    assert not torch.allclose(model.per_sample_loss(images, masks, timesteps=[10, 500, 900], seed=2), losses)


def test_from_pretrained_missing_files(tmp_path):
    with pytest.raises(InvalidModelError, match="missing config.json"):
        LesionInpainter.from_pretrained(tmp_path)


def test_unconditional_model_samples_with_repaint(bank, tmp_path):
    from medsynth.models.training import train

    from .conftest import TINY

    model = train(bank, tmp_path / "uncond", steps=2, progress=False, conditional=False, **TINY)
    assert model.unet.config.in_channels == 1
    model.config["repaint"] = {"num_inference_steps": 4, "jump_length": 2, "jump_n_sample": 2}
    idx = np.flatnonzero(~bank.healthy.numpy())[:2]
    images, masks = bank.images[idx].numpy(), bank.masks[idx].numpy()
    out = model(images, masks, seeds=[0, 1])
    far = ndimage.distance_transform_edt(~masks[0]) > model.config["feather_px"]
    assert np.array_equal(out[0][far], images[0][far])
    alone = model(images[1:], masks[1:], seeds=[1])
    np.testing.assert_allclose(alone[0], out[1], rtol=0, atol=1e-5)


def test_config_json_is_complete_and_rebuilds_the_model(trained, tmp_path, monkeypatch):
    """The config is the constructor: config.json holds every model setting, so the model it rebuilds
    is the saved one even after a default in configs/train.yaml changes."""
    import shutil

    import yaml

    import medsynth.config
    from medsynth.config import CONFIG_DIR, load_config

    out_dir, model = trained
    saved = json.loads((out_dir / "config.json").read_text())
    assert saved == model.config and set(saved) == set(load_config(None, kind="train")["model"])
    folder = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, folder)
    train = yaml.safe_load((folder / "train.yaml").read_text())
    train["model"]["num_inference_steps"] = saved["num_inference_steps"] + 10
    train["model"]["feather_px"] = saved["feather_px"] + 1.0
    (folder / "train.yaml").write_text(yaml.safe_dump(train))
    monkeypatch.setattr(medsynth.config, "CONFIG_DIR", folder)
    assert LesionInpainter.from_pretrained(out_dir).config == saved
    assert LesionInpainter(saved, model.unet).config == saved


def test_config_json_with_an_unknown_setting_is_refused(trained, tmp_path):
    import shutil

    out_dir, _ = trained
    copy = tmp_path / "m"
    shutil.copytree(out_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "num_stepz": 3}))
    with pytest.raises(InvalidModelError, match="config.json"):
        LesionInpainter.from_pretrained(copy)


def test_noise_of_each_sample_comes_from_its_own_generator(trained, patches):
    """diffusers' randn_tensor with one generator per sample draws sample k from generator k alone,
    exactly as torch.randn would (what medsynth drew by hand before); so seeds=[s] and a generator
    seeded with s give the same sample."""
    from diffusers.utils.torch_utils import randn_tensor

    got = randn_tensor((3, 1, 8, 8), generator=[torch.Generator().manual_seed(s) for s in (3, 4, 5)],
                       device=torch.device("cpu"))
    want = torch.stack([torch.randn((1, 8, 8), generator=torch.Generator().manual_seed(s)) for s in (3, 4, 5)])
    assert torch.equal(got, want)
    _, model = trained
    images, masks = patches
    a = model(images[:1], masks[:1], seeds=[9])
    b = model(images[:1], masks[:1], generator=torch.Generator().manual_seed(9))
    assert np.array_equal(a, b)
