"""`medsynth demo --quick` runs the whole mission end to end, as a new user would start it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    res = subprocess.run([sys.executable, "-m", "medsynth", "demo", "--quick", "--out", str(out)],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((out / "demo-summary.json").read_text())
    assert set(summary["timings_s"]) == {"phantoms", "train", "finetune", "generate", "evaluate", "audit"}
    for report in ("evaluation.html", "audit.html"):
        html = (out / report).read_text()
        assert html.lstrip().lower().startswith("<!doctype html") and "data:image/png;base64" in html
        assert str((out / report).resolve()) in res.stdout
    audit = json.loads((out / "audit.json").read_text())
    # The verdict follows the checks ("pass" only when every check passed and none was inconclusive) and
    # the summary repeats it.
    assert audit["checks"] and all(isinstance(c["passed"], bool) for c in audit["checks"])
    unsure = any(c["status"] == "inconclusive" for c in audit["checks"])
    expected = "fail" if not all(c["passed"] for c in audit["checks"]) else "inconclusive" if unsure else "pass"
    assert audit["verdict"] == expected
    assert summary["figures"]["audit_verdict"] == audit["verdict"]
    assert summary["figures"]["dp_epsilon"] is not None and 0 < summary["figures"]["dp_epsilon"] <= 50.0
    # Utility: Dice per arm at the demo's main regime, the difference with its interval, per class, in words.
    figures = summary["figures"]
    assert set(figures["dice"]) == {"real", "real+synthetic", "synthetic"}
    assert all(0.0 <= v <= 1.0 for v in figures["dice"].values())
    delta = figures["utility_delta"]
    assert delta["value"] == pytest.approx(figures["dice"]["real+synthetic"] - figures["dice"]["real"], abs=2e-3)
    assert delta["ci95"][0] <= delta["value"] <= delta["ci95"][1] and 0 < delta["p"] <= 1
    assert delta["by_class"] and set(delta["by_class"]) <= {"mass", "calcification"}
    assert "c2st_auc" in figures  # the realism test's AUC (None until that test is part of evaluate)
    utility = json.loads((out / "utility.json").read_text())["utility"]
    assert utility["crops"]["regimes"][delta["regime"]]["delta"]["value"] == pytest.approx(delta["value"], abs=1e-3)
    assert utility["splits"]["patient_ids"]["real-train / real-test"].startswith("checked")
    lines = summary["summary"]
    assert any("Adding the synthetic set" in x and "95 % CI" in x for x in lines)
    for line in lines:
        assert line in res.stdout.replace("\n", " ") or line[:60] in res.stdout
    # the synthetic set is an nnU-Net raw dataset
    dataset_json = (
        json.loads((out / "synthetic" / "dataset.json").read_text())
        if (out / "synthetic" / "dataset.json").exists()
        else json.loads(next((out / "synthetic").glob("*/dataset.json")).read_text())
    )
    assert dataset_json["numTraining"] == 8


def test_demo_never_deletes_a_users_files(tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    for extra in ([], ["--overwrite"]):  # --overwrite only replaces an earlier demo's output
        res = subprocess.run([sys.executable, "-m", "medsynth", "demo", "--quick", "--out", str(tmp_path), *extra],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert str(tmp_path) in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert (tmp_path / "keep.txt").read_text() == "user data"
