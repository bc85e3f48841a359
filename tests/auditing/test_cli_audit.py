"""`medsynth audit` end to end: exit 1 fail, 2 bad input (shared patients), 3 inconclusive, reports written
(exit 0 on a clean set with a holdout large enough to calibrate on: test_leaks.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from medsynth.cli import main


def _config(tmp_path):
    path = tmp_path / "audit.yaml"
    path.write_text("memorization:\n  embedding: invariant\n")
    return str(path)


def test_cli_planted_copies_exit_1(phantom_sets, tmp_path):
    code = main(["audit", "--train", str(phantom_sets["train"]), "--synthetic", str(phantom_sets["planted"]),
                 "--holdout", str(phantom_sets["holdout"]), "--config", _config(tmp_path), "--quiet",
                 "--json", str(tmp_path / "r.json")])
    assert code == 1
    flagged = json.loads((tmp_path / "r.json").read_text())["memorization"]["flagged"]
    assert {f["synthetic"] for f in flagged} == set(phantom_sets["planted_names"])


def test_cli_shared_patients_exit_2_without_traceback(phantom_sets, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "medsynth", "audit", "--train", str(phantom_sets["train"]),
         "--synthetic", str(phantom_sets["synthetic"]), "--holdout", str(phantom_sets["holdout_shared"]),
         "--config", _config(tmp_path), "--quiet", "--json", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "share data" in proc.stderr and "P_0000" in proc.stderr
    assert not (tmp_path / "r.json").exists()  # nothing is reported for a meaningless audit


def test_cli_unknown_config_key_exit_2(phantom_sets, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("memorization:\n  thresholds:\n    nccc: 0.9\n")
    code = main(["audit", "--train", str(phantom_sets["train"]), "--synthetic", str(phantom_sets["synthetic"]),
                 "--holdout", str(phantom_sets["holdout"]), "--config", str(bad), "--quiet"])
    assert code == 2


def test_cli_inconclusive_is_shown_and_can_fail(phantom_sets, tmp_path, capsys):
    """A holdout of 12 images is too small to calibrate on: the leak checks are inconclusive, shown as
    such (never a plain pass: verdict "inconclusive", exit 3), and `inconclusive: fail` turns them into a
    failure (exit 1)."""
    args = ["audit", "--train", str(phantom_sets["train"]), "--synthetic", str(phantom_sets["synthetic"]),
            "--holdout", str(phantom_sets["holdout"]), "--quiet", "--json", str(tmp_path / "r.json"),
            "--report", str(tmp_path / "r.html")]
    assert main([*args, "--config", _config(tmp_path)]) == 3
    assert "INCONCLUSIVE" in capsys.readouterr().out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["verdict"] == "inconclusive"
    unsure = {c["name"] for c in doc["checks"] if c["status"] == "inconclusive"}
    assert {"leak_sample_image", "leak_patient_image"} <= unsure
    assert all(c["passed"] for c in doc["checks"] if c["name"] in unsure)
    assert "INCONCLUSIVE" in (tmp_path / "r.html").read_text()
    strict = tmp_path / "strict.yaml"
    strict.write_text("inconclusive: fail\nmemorization:\n  embedding: invariant\n")
    assert main([*args, "--config", str(strict)]) == 1
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["verdict"] == "fail" and not any(c["passed"] for c in doc["checks"] if c["name"] in unsure)
