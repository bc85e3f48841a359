"""Downstream utility: Dice helpers against hand computations, and an end-to-end run on phantoms."""

from __future__ import annotations

import numpy as np
import pytest

from medsynth.errors import ConfigError, InvalidDatasetError
from medsynth.metrics.utility import bootstrap_ci, dice_per_case, evaluate_utility


def test_dice_and_bootstrap():
    truth = np.zeros((3, 4, 4), bool)
    truth[0, :2] = True  # 8 px
    truth[1, 0, 0] = True
    pred = np.zeros_like(truth)
    pred[0, :1] = True  # 4 px, all inside -> 2*4/(4+8)
    # case 1: missed entirely -> 0; case 2: both empty -> 1
    np.testing.assert_allclose(dice_per_case(pred, truth), [8 / 12, 0.0, 1.0])
    v = np.random.default_rng(0).uniform(size=50)
    lo, hi = bootstrap_ci(v)
    assert lo < v.mean() < hi and hi - lo < 0.4


def test_utility_end_to_end_on_phantoms(phantom_sets, tmp_path):
    res = evaluate_utility(phantom_sets["train"], phantom_sets["synthetic"], phantom_sets["test"],
                           steps=3, seeds=2, batch_size=4, progress=False)
    assert set(res.arms) == {"real", "real+synthetic", "synthetic"}
    assert res.n_test >= 6
    for arm, r in res.arms.items():
        assert 0.0 <= r["dice_mean"] <= 1.0 and len(r["seed_means"]) == 2
        assert r["ci95"][0] <= r["dice_mean"] + 1e-9 and r["dice_mean"] <= r["ci95"][1] + 1e-9
    assert res.arms["real+synthetic"]["n_train"] == res.arms["real"]["n_train"] + res.arms["synthetic"]["n_train"]
    assert '"arms"' in res.to_json(tmp_path / "u.json").read_text()
    assert "data:image/png;base64," in res._repr_html_()


def test_utility_input_errors(phantom_sets, textures):
    with pytest.raises(InvalidDatasetError, match="no lesion masks"):
        evaluate_utility(
            phantom_sets["train"], textures(4, 64), phantom_sets["test"], steps=1, seeds=1, progress=False
        )
    with pytest.raises(ConfigError, match="steps"):
        evaluate_utility(
            phantom_sets["train"], phantom_sets["synthetic"], phantom_sets["test"], steps=0, progress=False
        )
