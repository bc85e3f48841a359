"""Defaults live once, in configs/*.yaml: change a default there and the API entry points of
generation, evaluation and the phantoms follow (a Python copy of a default would not)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

import medsynth.config
from medsynth.config import CONFIG_DIR


@pytest.fixture()
def changed_defaults(tmp_path, monkeypatch):
    """The packaged configs with some defaults changed, in place of the real ones."""
    folder = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, folder)
    generate = yaml.safe_load((folder / "generate.yaml").read_text())
    generate["masks"]["size_mm"] = [3.0, 4.0]
    generate["masks"]["classes"] = ["calcification"]
    generate["masks"]["rotation_deg"] = 12.0
    generate["placement"]["gap_mm"] = 9.0
    generate["nnunet"]["dataset_id"] = 777
    (folder / "generate.yaml").write_text(yaml.safe_dump(generate))
    evaluate = yaml.safe_load((folder / "evaluate.yaml").read_text())
    evaluate["image_px"] = 40
    (folder / "evaluate.yaml").write_text(yaml.safe_dump(evaluate))
    phantoms = yaml.safe_load((folder / "phantoms.yaml").read_text())
    phantoms["size"] = [96, 80]
    phantoms["lesion_fraction"] = 0.0
    (folder / "phantoms.yaml").write_text(yaml.safe_dump(phantoms))
    monkeypatch.setattr(medsynth.config, "CONFIG_DIR", folder)


def test_generation_parts_default_to_generate_yaml(changed_defaults, tmp_path):
    from medsynth.generation.masks import RealMaskSource, ShapeMaskSource
    from medsynth.generation.placement import PlacementSettings
    from medsynth.io.writers import get_writer

    source = ShapeMaskSource()
    assert source.size_mm == (3.0, 4.0) and source.classes == ("calcification",)
    assert ShapeMaskSource(size_mm="5:6").size_mm == (5.0, 6.0)
    assert PlacementSettings.from_config().gap_mm == 9.0
    assert PlacementSettings.from_config({"gap_mm": 1.0}).gap_mm == 1.0
    assert get_writer("nnunet", tmp_path).folder.startswith("Dataset777_")
    label = np.zeros((64, 64), np.uint8)
    label[20:30, 20:30] = 1
    mask = type("M", (), {"pixels": label, "spacing": (0.5, 0.5), "release": lambda self: None})()
    case = type("C", (), {"mask": mask})()
    assert RealMaskSource([case]).rotation_deg == 12.0


def test_image_sets_and_phantoms_default_to_their_yaml(changed_defaults, tmp_path):
    from medsynth.io.datasets import load_dataset
    from medsynth.metrics.images import load_image_set
    from medsynth.phantoms import make_phantoms

    root = make_phantoms(tmp_path / "ph", n=2, seed=0, layout="folder")
    cases = list(load_dataset(root))
    assert cases[0].image.shape == (96, 80) and all(c.mask is None for c in cases)
    assert load_image_set(root, with_rois=False).images.shape[-1] == 40
