"""evaluate(): result structure, JSON/HTML, input errors, and an end-to-end run on phantom datasets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsynth.errors import ConfigError, InvalidImageError, MedsynthError
from medsynth.metrics.evaluate import EvaluationResult, evaluate

FAST = {"kid_subsets": 10, "ms_ssim_pairs": 20, "image_px": 64, "domain": {"steps": 30, "batch_size": 16},
        "realism": {"steps": 10, "folds": 2, "bootstrap": 50, "crop_mm": 16.0},
        "lesion_stats": {"bootstrap": 50}}
METRICS = ("fid", "kid", "precision", "recall", "density", "coverage", "ms_ssim")


def test_evaluate_arrays_with_random_features(tmp_path, textures, mmd_reference):
    real, syn = textures(16, 64, seed=1), textures(16, 64, seed=2)
    res = evaluate(real, syn, features="random", cache_dir=tmp_path, config=FAST, progress=False)
    assert isinstance(res, EvaluationResult)
    for name in METRICS:
        m = res[name]
        assert {"value", "feature_extractor", "n_real", "n_synthetic"} <= set(m), name
        assert m["n_real"] == 16 and m["n_synthetic"] == 16
    assert res.value("fid") > 0 and 0 <= res.value("precision") <= 1
    # Arrays carry no masks: whole images, no image_fid beside, and no C2ST or lesion statistics.
    assert res["fid"]["scope"] == "whole-images" and "image_fid" not in res.metrics
    assert res.realism["c2st_auc"] is None and "no lesion masks" in res.realism["note"]
    assert "lesion masks" in res.lesion_stats["note"]
    assert res["fid_inception"]["computed"] is False and "pt_inception" in res["fid_inception"]["note"]
    # 16 images a set: every KID subset is the whole set, so the value is the NumPy MMD of the
    # returned features and its std over subsets is not a measurement: n/a (None), not 0.
    assert res["kid"]["subset_size"] == 16 and res["kid"]["std"] is None
    # Arrays have no patients: the floor splits the images themselves (8 and 8).
    assert res["fid"]["floor"]["n_real_a"] == 8 and res["fid"]["floor"]["value"] > 0
    assert res.value("kid") == pytest.approx(mmd_reference(res.real_features, res.synthetic_features), rel=1e-6)
    out = json.loads(res.to_json(tmp_path / "r.json").read_text())
    assert set(METRICS) <= set(out) and out["fid"]["value"] == pytest.approx(res.value("fid"))
    page = res.save_html(tmp_path / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("data:image/png;base64,") >= 3
    assert "<table" in res._repr_html_()
    # The same set against itself: FID ~ 0, every real sample covered.
    same = evaluate(real, real.copy(), features="random", cache_dir=tmp_path, config=FAST, progress=False)
    assert same.value("fid") == pytest.approx(0.0, abs=1e-6)
    assert same.value("precision") == 1.0 and same.value("coverage") == 1.0
    assert same.meta["real_feature_cache"]["hits"] >= 1  # real features reused from the first call


def test_evaluate_input_errors(tmp_path, textures):
    real = textures(8, 64, seed=1)
    with pytest.raises(InvalidImageError, match="64x64 px but synthetic images are 32x32"):
        evaluate(real, textures(8, 32, seed=2), features="random", config=FAST, progress=False)
    with pytest.raises(InvalidImageError, match="empty"):
        evaluate(real, np.zeros((0, 64, 64), np.float32), features="random", config=FAST, progress=False)
    with pytest.raises(InvalidImageError, match="at least 2"):
        evaluate(real, real[:1], features="random", config=FAST, progress=False)
    with pytest.raises(MedsynthError):
        evaluate(real, [], features="random", config=FAST, progress=False)
    with pytest.raises(MedsynthError):
        evaluate(tmp_path / "does-not-exist", real, features="random", config=FAST, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedsynthError):
        evaluate(tmp_path / "empty", real, features="random", config=FAST, progress=False)


def test_evaluate_settings_come_from_the_config_and_arguments_win(tmp_path, textures):
    real, syn = textures(6, 64, seed=1), textures(6, 64, seed=2)
    # No features argument: the config's (configs/evaluate.yaml says random, seed 0; this file says seed 4).
    res = evaluate(real, syn, cache_dir=tmp_path, config={**FAST, "features": "random", "random_seed": 4},
                   progress=False)
    assert res["fid"]["feature_extractor"] == "random-cnn(seed=4)"
    # An inception_weights argument wins over the file's (here a file that does not exist).
    with pytest.raises(MedsynthError, match="not found"):
        evaluate(real, syn, features="random", inception_weights=tmp_path / "none.pth", cache_dir=tmp_path,
                 config={**FAST, "inception_weights": None}, progress=False)
    # realism=False leaves the C2ST and the lesion statistics out (their JSON keys too).
    off = evaluate(real, syn, features="random", cache_dir=tmp_path, config=FAST, realism=False, progress=False)
    assert off.realism is None and off.lesion_stats is None and "realism" not in off.to_dict()
    # Unknown settings are refused, nested ones too.
    with pytest.raises(ConfigError, match="kid_subset"):
        evaluate(real, syn, features="random", config={"kid_subset": 3}, progress=False)
    with pytest.raises(ConfigError, match="domain.stpes"):
        evaluate(real, syn, features="random", config={"domain": {"stpes": 3}}, progress=False)


def test_evaluate_phantom_datasets_with_domain_features(tmp_path, phantom_sets):
    res = evaluate(phantom_sets["train"], phantom_sets["synthetic"], features="domain", cache_dir=tmp_path,
                   config=FAST, progress=False)
    assert res["fid"]["feature_extractor"].startswith("domain-simclr")
    # Both sets have masks: the headline metrics are on lesion ROIs; whole images come beside them.
    assert res["fid"]["scope"] == "lesion-rois" and res["fid"]["n_real"] >= 8 and res["fid"]["value"] > 0
    assert res["image_fid"]["scope"] == "whole-images" and res["image_fid"]["n_real"] == 8
    assert res.meta["feature_extractor"]["cache_hit"] is False
    # Realism: the C2ST and the lesion statistics, under the JSON keys the issue names.
    data = json.loads(res.to_json(tmp_path / "r.json").read_text())
    realism = data["realism"]
    assert isinstance(realism["c2st_auc"], float) and 0.0 <= realism["c2st_auc"] <= 1.0
    lo, hi = realism["c2st_ci95"]
    assert lo <= realism["c2st_auc"] <= hi
    assert "mass" in realism["by_class"] and "by_margin" in realism
    assert realism["most_synthetic"] and realism["roi"]["mm_per_px"] == 0.5
    assert {"contrast", "hf_power_ratio"} <= set(data["lesion_stats"])
    assert data["lesion_stats"]["settings"]["resolution"].startswith("full-resolution")
    page = res.save_html(tmp_path / "r.html").read_text()
    assert "can a classifier tell real lesions from synthetic" in page and "real-vs-real floor" in page
    assert "most obviously synthetic ROIs" in page and "radial power spectra" in page
    # Sample sheet per class and margin (issue 13): each group's ROIs of both sets, labelled as they are.
    assert "lesion ROIs per class and margin" in page and res.roi_groups
    assert any(k.startswith("mass / ") for k in res.roi_groups) and "calcification" in res.roi_groups
    for key, g in res.roi_groups.items():
        assert len(g["real"]) <= 6 and len(g["synthetic"]) <= 6 and len(g["real"]) + len(g["synthetic"]) > 0, key
    assert "C2ST AUC" in res._repr_html_()  # the notebook view has the realism section too
    again = evaluate(phantom_sets["train"], phantom_sets["test"], features="domain", cache_dir=tmp_path,
                     config=FAST, progress=False)
    assert again.meta["feature_extractor"]["cache_hit"] is True  # encoder trained once per real set
    assert again.meta["real_feature_cache"]["misses"] == 0
    assert again["image_fid"]["feature_extractor"] == res["image_fid"]["feature_extractor"]


@pytest.mark.slow
def test_evaluate_adds_fid_inception_when_weights_given(tmp_path, textures):
    import torch

    from medsynth.metrics.features import FIDInceptionV3

    torch.manual_seed(0)
    state = {k: v for k, v in FIDInceptionV3().state_dict().items() if not k.endswith("num_batches_tracked")}
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, weights)
    res = evaluate(textures(6, 64, seed=1), textures(6, 64, seed=2), features="random", inception_weights=weights,
                   cache_dir=tmp_path, config=FAST, progress=False)
    assert res["fid_inception"]["computed"] is True and res["fid_inception"]["value"] > 0
    assert res["fid_inception"]["feature_extractor"] == "fid-inception-v3"
