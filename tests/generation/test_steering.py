"""The painter is steered (issue 13, item 4): the outline's class and descriptors and the steered
attributes reach an attribute-conditioned model, every lesion's conditioning is in the manifest,
and asking for a class the benchmark has not shown to help says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from medsynth.errors import ConfigError
from medsynth.generation.masks import ShapeMaskSource
from medsynth.generation.pipeline import generate
from medsynth.generation.steering import Steering

OPTS = {"mask_options": {"size_mm": "4:8"}, "progress": False}


@pytest.fixture(scope="module")
def healthy_phantom():
    from medsynth.phantoms import render_phantom

    return render_phantom(11, size=(128, 104), index=0, lesion_fraction=0.0)


class _Bg:
    def __init__(self, metadata):
        self.metadata = metadata


def test_steering_takes_the_outlines_descriptors_and_draws_the_rest():
    rng = np.random.default_rng(0)
    lesion = ShapeMaskSource(shapes="oval", margins="spiculated", size_mm="8:8", classes="mass").sample(
        rng, (0.2, 0.2))
    got = Steering.from_config({"density": "background", "pathology": ["malignant"], "birads": None,
                                "subtlety": "2,3"}).attributes(lesion, _Bg({"breast_density": "3"}), (0.2, 0.2), rng)
    assert got["class"] == "mass" and got["shape"] == "oval" and got["margin"] == "spiculated"
    assert got["density"] == "c" and got["pathology"] == "malignant" and got["subtlety"] in ("2", "3")
    assert "birads" not in got and got["size"] == pytest.approx(lesion.extent_mm((0.2, 0.2)))
    calc = ShapeMaskSource(classes="calcification").sample(rng, (0.2, 0.2))
    got = Steering().attributes(calc, _Bg({}), (0.2, 0.2), rng)
    assert got["class"] == "calcification" and "shape" not in got and "density" not in got  # no density known
    with pytest.raises(ConfigError, match="density"):
        Steering.from_config({"density": "e"})
    with pytest.raises(ConfigError, match="subtlety"):
        Steering.from_config({"subtlety": "9"})


def test_manifest_records_each_lesions_conditioning_and_the_cost(tmp_path, model, phantom_root):
    out = tmp_path / "o"
    generate(model, phantom_root, "shapes", 3, out, "png", seed=2, conditioning={"density": ["d"],
             "pathology": ["benign"]}, guidance_scale=2.0, mask_options={"size_mm": "4:8", "margins": ["ill_defined"]},
             progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["conditioning"]["density"] == ["d"]
    assert manifest["model"]["guidance_scale"] == 2.0
    assert manifest["model"]["unet_evaluations_per_lesion"] == 2 * manifest["model"]["num_inference_steps"]
    for case in manifest["cases"]:
        (lesion,) = case["lesions"]
        c = lesion["conditioning"]
        assert (c["class"], c["margin"], c["density"], c["pathology"]) == ("mass", "ill_defined", "d", "benign")
        assert c["shape"] == lesion["outline"]["shape"]


def test_the_background_density_is_asked_for_by_default(tmp_path, model, phantom_root):
    from medsynth.io.datasets import load_dataset

    densities = {c.metadata.get("breast_density") for c in load_dataset(phantom_root)}
    generate(model, phantom_root, "shapes", 3, tmp_path / "o", "png", seed=2, **OPTS)
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    got = {case["lesions"][0]["conditioning"].get("density") for case in manifest["cases"]}
    assert got and got <= {"abcd"[int(d) - 1] for d in densities if d}


def test_conditioning_changes_what_is_painted(model, healthy_phantom):
    p = healthy_phantom
    mask = np.zeros(p.image.shape, bool)
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    mask[(yy - 64) ** 2 + (xx - 40) ** 2 < 6**2] = True
    a = model.inpaint_scan(p.image, mask, p.spacing, seed=1, attributes={"margin": "spiculated"})
    b = model.inpaint_scan(p.image, mask, p.spacing, seed=1, attributes={"margin": "circumscribed"})
    c = model.inpaint_scan(p.image, mask, p.spacing, seed=1, attributes={"margin": "spiculated"})
    assert np.array_equal(a, c) and not np.array_equal(a, b)


def test_asking_for_calcifications_says_they_are_not_shown_to_help(tmp_path, model_dir, phantom_root):
    out = tmp_path / "out"
    args = ["--model", str(model_dir), "--backgrounds", str(phantom_root), "--n", "1", "--out", str(out),
            "--format", "png", "--size-mm", "4:7", "--class", "calcification", "--steps", "1", "--quiet",
            "--density", "b"]
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
    proc = subprocess.run([sys.executable, "-m", "medsynth", "generate", *args], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "note: painted calcification lesions have not been shown to raise segmentation Dice" in proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cases"][0]["lesions"][0]["conditioning"]["class"] == "calcification"
    assert manifest["cases"][0]["lesions"][0]["conditioning"]["density"] == "b"
    # The default (masses only) says nothing.
    default = ["--model", str(model_dir), "--backgrounds", str(phantom_root), "--n", "1", "--out", str(tmp_path / "m"),
               "--format", "png", "--size-mm", "4:7", "--steps", "1", "--quiet"]
    proc = subprocess.run([sys.executable, "-m", "medsynth", "generate", *default], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0 and "note:" not in proc.stderr


def test_calcifications_get_their_own_sampling_and_masses_keep_theirs(tmp_path, model_dir, phantom_root):
    """``calcification_sampling`` (configs/generate.yaml) gives calcification clusters their own sampler,
    steps and guidance: the UNet is called that many times, twice the rows under guidance, the manifest
    records it, and masses are byte-identical to a run without it."""
    import torch

    from medsynth.models.inpainter import LesionInpainter

    def counted():
        m = LesionInpainter.from_pretrained(model_dir)
        inner, calls = m.unet, []

        class Counting(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = inner

            def forward(self, sample, t, class_labels=None):
                calls.append(int(sample.shape[0]))
                return inner(sample, t, class_labels=class_labels)

        m.unet = Counting()
        return m, calls

    own = {"calcification_sampling": {"sampler": "ddim", "num_inference_steps": 3, "guidance_scale": 2.0}}
    kw = {"seed": 1, "num_inference_steps": 2, "model_batch": 2, "progress": False}
    m, calls = counted()
    generate(m, phantom_root, "shapes", 1, tmp_path / "c", "png", config=own,
             mask_options={"size_mm": "4:7", "classes": ["calcification"]}, **kw)
    assert calls == [4, 4, 4]  # 3 steps, 2 rows x 2 (guided and unguided)
    facts = json.loads((tmp_path / "c" / "manifest.json").read_text())["model"]["class_sampling"]["calcification"]
    assert facts == {"sampler": "ddim", "num_inference_steps": 3, "guidance_scale": 2.0,
                     "unet_evaluations_per_lesion": 6}
    for name, cfg in (("a", own), ("b", None)):
        m, calls = counted()
        generate(m, phantom_root, "shapes", 1, tmp_path / name, "png", config=cfg, mask_options={"size_mm": "4:7"},
                 **kw)
        assert calls == [2, 2]  # masses: 2 steps, no guidance, either way
    assert (tmp_path / "a" / "images").is_dir()
    for a in sorted((tmp_path / "a" / "images").iterdir()):
        assert a.read_bytes() == (tmp_path / "b" / "images" / a.name).read_bytes()
    with pytest.raises(ConfigError, match="sampler"):
        generate(model_dir, phantom_root, "shapes", 1, tmp_path / "x", "png",
                 config={"calcification_sampling": {"sampler": "euler"}}, **kw)
