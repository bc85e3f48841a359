"""Defaults live once, in configs/train.yaml and configs/finetune.yaml: change a default there and
the model, the patch bank, DP and LoRA all follow (a Python copy of a default would not)."""

from __future__ import annotations

import shutil

import pytest
import yaml

import medsynth.config
from medsynth.config import CONFIG_DIR, load_config


@pytest.fixture()
def changed_defaults(tmp_path, monkeypatch):
    """The packaged configs with some defaults changed, in place of the real ones."""
    folder = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, folder)
    train = yaml.safe_load((folder / "train.yaml").read_text())
    train["model"]["num_inference_steps"] = 7
    train["model"]["repaint"]["jump_length"] = 4
    train["data"]["lesion_crops_per_lesion"] = 1
    train["data"]["healthy_crops_per_case"] = 0
    train["dp"]["target_epsilon"] = 3.0
    train["dp"]["grad_sample_mode"] = "hooks"
    (folder / "train.yaml").write_text(yaml.safe_dump(train))
    finetune = yaml.safe_load((folder / "finetune.yaml").read_text())
    finetune["lora"]["rank"] = 6
    (folder / "finetune.yaml").write_text(yaml.safe_dump(finetune))
    monkeypatch.setattr(medsynth.config, "CONFIG_DIR", folder)
    return train, finetune


def test_model_settings_default_to_train_yaml(changed_defaults):
    from medsynth.models.inpainter import make_config

    train, _ = changed_defaults
    config = make_config(image_size=32, repaint={"num_inference_steps": 5})
    assert config["num_inference_steps"] == 7 and config["image_size"] == 32
    assert config["repaint"] == {**train["model"]["repaint"], "num_inference_steps": 5, "jump_length": 4}
    assert set(config) == set(train["model"])


def test_unknown_model_setting_is_refused():
    from medsynth.errors import ConfigError
    from medsynth.models.inpainter import make_config

    with pytest.raises(ConfigError, match="model.num_steps"):
        make_config(num_steps=3)


def test_dp_settings_default_to_train_yaml(changed_defaults):
    from medsynth.models.privacy import DPSettings

    settings = DPSettings.from_any({"target_delta": 1e-3})
    assert settings.target_epsilon == 3.0 and settings.grad_sample_mode == "hooks" and settings.target_delta == 1e-3
    assert DPSettings.from_any(True) == DPSettings(**changed_defaults[0]["dp"])
    assert DPSettings.from_any(None) is None


def test_patch_bank_settings_default_to_train_yaml(cases, changed_defaults):
    from medsynth.models.data import build_patch_bank

    bank = build_patch_bank(cases, 32, 0.8, seed=0)  # defaults now: 1 crop per lesion, no healthy crop
    assert bank.info["n_healthy_crops"] == 0
    more = build_patch_bank(cases, 32, 0.8, {"lesion_crops_per_lesion": 3}, seed=0)
    assert more.info["n_lesion_crops"] == 3 * bank.info["n_lesion_crops"] > 0


def test_lora_rank_defaults_to_finetune_yaml(trained, bank, changed_defaults, tmp_path):
    import json

    from medsynth.models.lora import finetune_lora

    base_dir, _ = trained
    out = finetune_lora(base_dir, bank, tmp_path / "lora", steps=1, progress=False, batch_size=4, warmup_steps=1,
                        torch_threads=1)
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 6
    out = finetune_lora(base_dir, bank, tmp_path / "lora8", config={"lora": {"rank": 8}}, steps=1, progress=False,
                        batch_size=4, warmup_steps=1, torch_threads=1)
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8


def test_packaged_defaults_are_what_the_code_uses():
    """Without changes: the model's config is train.yaml's model section, unchanged."""
    from medsynth.models.inpainter import make_config

    assert make_config() == load_config(None, kind="train")["model"]
