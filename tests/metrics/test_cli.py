"""`medsynth evaluate` end to end: happy paths (subprocess and in-process) and bad input (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from medsynth.cli import main

# One torch thread in the child: the test machine's few cores are shared by parallel jobs.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _fast_config(tmp_path):
    path = tmp_path / "fast.yaml"
    path.write_text(yaml.safe_dump({"kid_subsets": 5, "ms_ssim_pairs": 10, "image_px": 64, "prdc_k": 2,
                                    "realism": {"steps": 10, "folds": 2, "bootstrap": 50},
                                    "lesion_stats": {"bootstrap": 50}}))
    return path


def test_cli_evaluate_happy_path(phantom_sets, tmp_path):
    out, page = tmp_path / "res.json", tmp_path / "rep.html"
    proc = subprocess.run(
        [sys.executable, "-m", "medsynth", "evaluate", "--real", str(phantom_sets["train"]),
         "--synthetic", str(phantom_sets["synthetic"]), "--features", "random", "--json", str(out),
         "--report", str(page), "--config", str(_fast_config(tmp_path)), "--cache-dir", str(tmp_path / "c"),
         "--no-progress"],
        capture_output=True, text=True, timeout=300, env=ENV,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    for key in ("fid", "kid", "precision", "recall", "density", "coverage", "ms_ssim", "image_fid"):
        assert data[key]["feature_extractor"] and "value" in data[key], key
    assert data["fid"]["scope"] == "lesion-rois" and data["image_fid"]["n_real"] == 8
    assert data["fid"]["floor"]["n_real_a"] + data["fid"]["floor"]["n_real_b"] == data["fid"]["n_real"]
    assert isinstance(data["realism"]["c2st_auc"], float) and len(data["realism"]["c2st_ci95"]) == 2
    assert "by_class" in data["realism"] and "contrast" in data["lesion_stats"]
    assert "fid" in proc.stdout and "not computed" in proc.stdout
    assert "C2ST AUC" in proc.stdout and "lesion statistics" in proc.stdout
    assert "data:image/png;base64," in page.read_text()


def test_cli_bad_input_exits_2_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "medsynth", "evaluate", "--real", str(tmp_path / "missing"),
         "--synthetic", str(tmp_path / "missing2"), "--features", "random", "--no-progress"],
        capture_output=True, text=True, timeout=120, env=ENV,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "missing" in proc.stderr
    # Missing options and missing weights are bad input too.
    assert main(["evaluate", "--utility", "--real-train", str(tmp_path)]) == 2
    assert main(["evaluate", "--real", str(tmp_path)]) == 2


def test_cli_inception_without_weights_is_bad_input(phantom_sets, capsys):
    code = main(["evaluate", "--real", str(phantom_sets["train"]), "--synthetic", str(phantom_sets["test"]),
                 "--features", "inception", "--no-progress"])
    assert code == 2
    assert "pt_inception-2015-12-05" in capsys.readouterr().err


def test_cli_utility_in_process(utility_sets, tmp_path):
    out = tmp_path / "u.json"
    # --steps given wins over the file; --seeds left out leaves the file's value (not the packaged 3).
    config = tmp_path / "u.yaml"
    config.write_text(yaml.safe_dump({"utility": {"seeds": 1, "crops": {"steps": 50, "batch_size": 4}}}))
    code = main(["evaluate", "--utility", "--real-train", str(utility_sets["train"]),
                 "--synthetic", str(utility_sets["synthetic"]), "--real-test", str(utility_sets["test"]),
                 "--task", "crops", "--regimes", "0.5,1", "--steps", "2", "--config", str(config),
                 "--json", str(out), "--report", str(tmp_path / "u.html"), "--no-progress"])
    assert code == 0
    utility = json.loads(out.read_text())["utility"]
    assert set(utility) >= {"crops", "splits", "settings", "summary"} and "full" not in utility
    assert set(utility["crops"]["regimes"]) == {"0.5", "1"}
    assert set(utility["crops"]["regimes"]["1"]["arms"]) == {"real", "real+synthetic", "synthetic"}
    assert {"value", "ci95", "p"} <= set(utility["crops"]["regimes"]["1"]["delta"])
    s = utility["settings"]
    assert (s["crops"]["steps"], s["seeds"], s["crops"]["batch_size"]) == (2, 1, 4)
    assert "data:image/png;base64," in (tmp_path / "u.html").read_text()
    assert main(["evaluate", "--utility", "--real-train", str(utility_sets["train"]), "--synthetic",
                 str(utility_sets["synthetic"]), "--real-test", str(utility_sets["test"]), "--regimes", "a,b"]) == 2
