"""Configs: packaged defaults, user files and dicts laid over them, unknown keys refused."""

from __future__ import annotations

import pytest

from medsynth.config import load_config
from medsynth.errors import ConfigError


def test_dict_and_file_overrides_lay_over_the_default(tmp_path):
    default = load_config(kind="audit")
    from_dict = load_config({"mia": {"auc_max": 0.7}}, kind="audit")
    assert from_dict["mia"]["auc_max"] == 0.7 and default["mia"]["auc_max"] != 0.7
    assert from_dict["memorization"] == default["memorization"]
    user = tmp_path / "audit.yaml"
    user.write_text("mia:\n  auc_max: 0.7\n")
    assert load_config(user, kind="audit") == from_dict


def test_unknown_keys_are_refused_with_the_file_named(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) mia.auc_mx in the audit config"):
        load_config({"mia": {"auc_mx": 0.7}}, kind="audit")
    bad = tmp_path / "bad.yaml"
    bad.write_text("memorisation: {}\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad, kind="audit")
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad, kind="audit")


def test_overrides_given_win_and_overrides_not_given_leave_the_file_alone(tmp_path):
    user = tmp_path / "ft.yaml"
    user.write_text("lora:\n  rank: 8\n")
    # A command-line option the user did not type arrives as None and must not override the file.
    assert load_config(user, kind="finetune", overrides={"rank": None})["lora"]["rank"] == 8
    assert load_config(user, kind="finetune", overrides={"rank": 2})["lora"]["rank"] == 2
    assert load_config(user, kind="finetune", overrides={"training.steps": 7})["training"]["steps"] == 7
    # Flat keys: top-level settings first, then the first section that has the key.
    assert load_config(kind="generate", overrides={"n": 3, "shapes": ["round"]})["n"] == 3
    assert load_config(kind="generate", overrides={"shapes": ["round"]})["masks"]["shapes"] == ["round"]
    with pytest.raises(ConfigError, match="unknown setting 'rnak'"):
        load_config(kind="finetune", overrides={"rnak": 2})
    with pytest.raises(ConfigError, match="unknown setting 'lora.rnak'"):
        load_config(kind="finetune", overrides={"lora.rnak": 2})


def test_a_dict_config_is_not_modified():
    user = {"lora": {"rank": 8}}
    load_config(user, kind="finetune", overrides={"rank": 2})
    assert user == {"lora": {"rank": 8}}


def test_finetune_takes_its_data_and_dp_sections_from_train_yaml(tmp_path, monkeypatch):
    import shutil

    import yaml

    import medsynth.config
    from medsynth.config import CONFIG_DIR

    folder = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, folder)
    train = yaml.safe_load((folder / "train.yaml").read_text())
    train["data"]["jitter_mm"] = 9.5
    train["dp"]["target_epsilon"] = 2.5
    (folder / "train.yaml").write_text(yaml.safe_dump(train))
    monkeypatch.setattr(medsynth.config, "CONFIG_DIR", folder)
    finetune = load_config(kind="finetune")
    assert finetune["data"]["jitter_mm"] == 9.5 and finetune["dp"]["target_epsilon"] == 2.5
    assert "inherit" not in finetune
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config({"inherit": {"data": "train"}}, kind="finetune")
