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
