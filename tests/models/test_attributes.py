"""Attribute conditioning: the vocabulary and its CBIS-DDSM spellings, null tokens and condition
dropout, the summed class embedding, attributes matched to the right lesion, classifier-free
guidance (its cost counted), and models saved before attributes still loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medsynth.models import attributes as attrs


@pytest.mark.parametrize("name, raw, want", [
    ("margin", "CIRCUMSCRIBED-ILL_DEFINED", "circumscribed"),
    ("margin", "ILL_DEFINED", "ill_defined"),
    ("margin", "ill-defined", "ill_defined"),
    ("margin", "OBSCURED", None),
    ("shape", "IRREGULAR-ARCHITECTURAL_DISTORTION", "irregular"),
    ("calc_type", "FINE_LINEAR_BRANCHING", "fine_linear_branching"),
    ("pathology", "BENIGN_WITHOUT_CALLBACK", "benign"),
    ("pathology", "MALIGNANT", "malignant"),
    ("density", "3", "c"),
    ("density", 4, "d"),
    ("birads", "4", "4"),
    ("subtlety", 5.0, "5"),
    ("subtlety", "", None),
    ("density", float("nan"), None),
])
def test_cbis_spellings_normalise_to_medsynths_vocabulary(name, raw, want):
    assert attrs.normalise(name, raw) == want


def test_encode_decode_round_trip_and_null_tokens():
    full = {"class": "mass", "shape": "oval", "margin": "spiculated", "calc_type": None, "distribution": None,
            "size": "bin3", "density": "b", "pathology": "malignant", "birads": "5", "subtlety": "2"}
    codes = attrs.encode(full)
    assert attrs.decode(codes) == full
    assert len(set(codes)) == len(codes) and max(codes) < attrs.vocabulary_size()
    # Missing or unknown values take each attribute's own null token (its offset).
    sparse = attrs.encode({"class": "calcification", "margin": "obscured"})
    offs = attrs.offsets()
    assert [c - offs[n] for c, n in zip(sparse, attrs.ATTRIBUTES)][1:] == [0] * (len(attrs.ATTRIBUTES) - 1)
    assert attrs.encode({"class": "mass", "size": 7.5}) == attrs.encode({"class": "mass", "size": "bin2"})
    with pytest.raises(Exception, match="class"):
        attrs.encode({"shape": "oval"})


def test_condition_dropout_keeps_the_class_and_drops_at_the_stated_rates():
    codes = torch.tensor([attrs.encode({"class": "mass", "shape": "oval", "margin": "spiculated", "size": 8.0,
                                        "density": "c"})] * 20000)
    out = attrs.drop_descriptors(codes, p_all=0.2, p_each=0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:, 0], codes[:, 0])
    dropped = (out != codes).float().mean(0)[1:]
    known = (codes[0] != torch.tensor(list(attrs.offsets().values())))[1:]
    # P(a descriptor is null) = 1 - (1 - p_all)(1 - p_each) = 0.28 for the ones that were set.
    np.testing.assert_allclose(dropped[known].numpy(), 0.28, atol=0.015)
    assert torch.equal(attrs.null_descriptors(codes)[:, 1:], torch.tensor(list(attrs.offsets().values()))[1:].
                       expand(len(codes), -1))


def test_summed_embedding_is_the_sum_of_the_rows():
    emb = attrs.SummedEmbedding(20, 6)
    idx = torch.tensor([[0, 3, 7], [19, 3, 3]])
    want = torch.stack([emb.weight[row].sum(0) for row in idx])
    torch.testing.assert_close(emb(idx), want)
    assert emb(torch.tensor([4])).shape == (1, 6)


def test_bank_attributes_match_the_phantoms_own_record(tmp_path):
    """Each lesion crop carries the descriptors of its own lesion: the CSV row whose ROI mask overlaps it
    (checked against the phantoms' phantoms.json, written by the renderer)."""
    from medsynth.io.datasets import load_dataset
    from medsynth.models.data import build_patch_bank
    from medsynth.phantoms import make_phantoms

    root = make_phantoms(tmp_path / "ph", n=6, seed=4, size=(160, 128), lesion_fraction=1.0)
    truth = json.loads((root / "phantoms.json").read_text())
    want = {(les["type"], les.get("shape"), les.get("margin"), les.get("calc_type"), les.get("distribution"))
            for case in truth["cases"] for les in case["lesions"]}
    bank = build_patch_bank(load_dataset(root), 32, 0.8, {"lesion_crops_per_lesion": 1, "healthy_crops_per_case": 1},
                            calcification_spacing_mm="auto")
    got = set()
    for row in bank.codes[~bank.healthy].tolist():
        a = attrs.decode(row)
        got.add((a["class"], a["shape"], a["margin"], a["calc_type"], a["distribution"]))
        assert a["density"] is not None and a["pathology"] is not None and a["size"] is not None
    assert got and got <= want
    healthy = [attrs.decode(r) for r in bank.codes[bank.healthy].tolist()]
    assert all(h["class"] == "healthy" and h["shape"] is None for h in healthy)
    # Calcification crops are cut at the data's own spacing (0.64 mm here), masses at 0.8 mm.
    calc = [attrs.decode(r)["class"] == "calcification" for r in bank.codes.tolist()]
    sp = bank.spacing.numpy().astype(float)
    assert bank.info["calcification_spacing_mm"] == pytest.approx(0.64)
    np.testing.assert_allclose(sp[np.asarray(calc)], 0.64, rtol=1e-6)
    np.testing.assert_allclose(sp[~np.asarray(calc) & ~bank.healthy.numpy()], 0.8, rtol=1e-6)


class _Counting(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.inner, self.calls, self.rows = unet, 0, 0

    def forward(self, sample, t, class_labels=None):
        self.calls += 1
        self.rows += sample.shape[0]
        return self.inner(sample, t, class_labels=class_labels)


def test_guidance_costs_two_unet_evaluations_per_step_and_changes_the_result(trained, patches):
    from medsynth.models.inpainter import LesionInpainter

    _, model = trained
    images, masks = patches
    wrapped = _Counting(model.unet)
    m = LesionInpainter(model.config, wrapped, model.model_card)
    steps = m.config["num_inference_steps"]
    plain = m(images, masks, seeds=[0, 1, 2], attributes={"margin": "spiculated"}, guidance_scale=1.0)
    assert wrapped.rows == 3 * steps and m.unet_evaluations(steps, 1.0) == steps
    wrapped.rows = 0
    guided = m(images, masks, seeds=[0, 1, 2], attributes={"margin": "spiculated"}, guidance_scale=3.0)
    assert wrapped.rows == 2 * 3 * steps and m.unet_evaluations(steps, 3.0) == 2 * steps
    assert not np.array_equal(plain, guided)
    # Guidance 1 is the conditional prediction itself; the descriptors reach the UNet.
    other = m(images, masks, seeds=[0, 1, 2], attributes={"margin": "circumscribed"}, guidance_scale=1.0)
    assert not np.array_equal(plain, other)


def test_a_model_saved_before_attributes_loads_and_samples_as_before(bank, tmp_path, patches):
    from medsynth.models.inpainter import LEGACY_SETTINGS, LesionInpainter
    from medsynth.models.training import train

    from .conftest import TINY

    first = train(bank, tmp_path / "first", steps=2, progress=False, attributes=False, **TINY)
    assert first.unet.config.in_channels == 3
    config = json.loads((tmp_path / "first" / "config.json").read_text())
    new_keys = ("attributes", "vocabulary", "calcification_spacing_mm", "condition_dropout", "descriptor_dropout",
                "guidance_scale", "band_mm", "texture_transmission", "max_roi_factor")
    legacy = {k: v for k, v in config.items() if k not in new_keys}
    (tmp_path / "first" / "config.json").write_text(json.dumps(legacy))
    loaded = LesionInpainter.from_pretrained(tmp_path / "first")
    assert loaded.config["attributes"] is LEGACY_SETTINGS["attributes"] is False and not loaded.attributed
    images, masks = patches
    np.testing.assert_array_equal(loaded(images, masks, seeds=[1, 2, 3]), first(images, masks, seeds=[1, 2, 3]))
    with pytest.raises(Exception, match="without attributes"):
        loaded(images, masks, seeds=[1, 2, 3], attributes={"margin": "spiculated"})


def test_a_dedicated_calcification_painter_learns_only_calcifications_and_refuses_masses(tmp_path):
    """``classes: [calcification]`` cuts calcification crops and healthy crops at the calcification
    spacing only; the trained model records its classes, and generate refuses to paint masses with it
    (an unknown class in the setting is refused too)."""
    from medsynth.errors import ConfigError
    from medsynth.generation.pipeline import generate
    from medsynth.io.datasets import load_dataset
    from medsynth.models.data import build_patch_bank
    from medsynth.models.training import train
    from medsynth.phantoms import make_phantoms

    from .conftest import TINY

    root = make_phantoms(tmp_path / "ph", n=8, seed=4, size=(160, 128), lesion_fraction=1.0)
    data = load_dataset(root)
    opts = {"lesion_crops_per_lesion": 1, "healthy_crops_per_case": 1}
    both = build_patch_bank(data, 32, 0.8, opts, calcification_spacing_mm="auto")
    calc = build_patch_bank(data, 32, 0.8, opts, calcification_spacing_mm="auto", classes=["calcification"])
    names = [attrs.decode(r)["class"] for r in calc.codes.tolist()]
    assert both.info["n_mass_crops"] > 0 and calc.info["n_mass_crops"] == 0
    assert calc.info["n_calcification_crops"] == both.info["n_calcification_crops"] > 0
    assert set(names) == {"calcification", "healthy"} and calc.info["classes"] == ["calcification"]
    np.testing.assert_allclose(calc.spacing.numpy(), 0.64, rtol=1e-6)  # healthy crops too: no 0.8 mm crop
    assert (both.spacing.numpy()[both.healthy.numpy()] > 0.7).any()
    with pytest.raises(ConfigError, match="classes must be"):
        build_patch_bank(data, 32, 0.8, opts, calcification_spacing_mm="auto", classes=["cyst"])

    settings = {k: v for k, v in TINY.items() if k != "spacing_mm"}
    model = train(data, tmp_path / "m", steps=2, progress=False, spacing_mm=0.8, classes=["calcification"],
                  lesion_crops_per_lesion=1, **settings)
    assert model.classes == ("calcification",) and model.model_card["data"]["n_mass_crops"] == 0
    bg = make_phantoms(tmp_path / "bg", n=2, seed=5, size=(160, 128), lesion_fraction=0.0)
    with pytest.raises(ConfigError, match="paints only calcification"):
        generate(tmp_path / "m", bg, "shapes", 1, tmp_path / "s", "nnunet", progress=False)
    with pytest.raises(ConfigError, match="paints only calcification"):  # real masks: masses among them
        generate(tmp_path / "m", bg, f"real:{root}", 4, tmp_path / "r", "nnunet", progress=False,
                 num_inference_steps=2)
    res = generate(tmp_path / "m", bg, "shapes", 1, tmp_path / "s", "nnunet", progress=False,
                   mask_options={"classes": ["calcification"]}, num_inference_steps=2)
    assert res.lesions == {"calcification": 1}
