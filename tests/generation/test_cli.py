"""``medsynth generate`` end to end: one subprocess happy path, bad input through ``cli.main``.

Start-up of a fresh interpreter (torch, diffusers) dominates on a busy machine, so only the happy
path runs as a subprocess; the bad-input cases call ``medsynth.cli.main`` which returns the exit code
the console script would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_cli_happy_path_as_subprocess(tmp_path, model_dir, phantom_root):
    out = tmp_path / "out"
    args = ["--model", str(model_dir), "--backgrounds", str(phantom_root), "--masks", "shapes", "--n", "2",
            "--out", str(out), "--format", "png", "--seed", "3", "--size-mm", "4:7", "--shape", "oval,round",
            "--margin", "spiculated", "--steps", "1", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="120")
    proc = subprocess.run([sys.executable, "-m", "medsynth", "generate", *args], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "cases/s" in proc.stdout and "medsynth generate" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_complete"] == 2 and manifest["model"]["num_inference_steps"] == 1
    assert manifest["masks"]["shapes"] == ["oval", "round"] and manifest["masks"]["margins"] == ["spiculated"]


def test_cli_bad_input_exit_code_2_and_nothing_written(tmp_path, model_dir, phantom_root, capsys):
    from medsynth.cli import main

    out = tmp_path / "out"
    base = ["generate", "--model", str(model_dir), "--backgrounds", str(phantom_root), "--n", "1", "--out", str(out)]
    assert main(base + ["--format", "jpeg"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "jpeg" in err and "Traceback" not in err
    assert main(["generate", "--model", str(tmp_path), "--backgrounds", str(phantom_root), "--n", "1",
                 "--out", str(out)]) == 2
    assert "not a medsynth model" in capsys.readouterr().err
    assert main(base + ["--masks", "real:" + str(tmp_path / "missing")]) == 2
    assert not out.exists()
    # An existing output is refused with the same exit code.
    out.mkdir()
    (out / "x.txt").write_text("x")
    assert main(base + ["--format", "png", "--steps", "1", "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_cli_options_left_out_leave_the_config_file_alone(tmp_path, model_dir, phantom_root, capsys):
    import yaml

    from medsynth.cli import main

    config = tmp_path / "gen.yaml"
    config.write_text(yaml.safe_dump({"n": 2, "format": "png", "num_inference_steps": 1,
                                      "masks": {"margins": ["spiculated"], "size_mm": [4.0, 7.0]}}))
    out = tmp_path / "out"
    base = ["generate", "--model", str(model_dir), "--backgrounds", str(phantom_root), "--config", str(config),
            "--quiet"]
    assert main(base + ["--out", str(out), "--shape", "oval"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_complete"] == 2 and manifest["format"] == "png"
    assert manifest["masks"]["shapes"] == ["oval"] and manifest["masks"]["margins"] == ["spiculated"]
    assert manifest["masks"]["size_mm"] == [4.0, 7.0]
    # Shape options with real masks: bad input, refused by the API before anything is written.
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main(base + ["--out", str(bad), "--masks", f"real:{phantom_root}", "--margin", "spiculated"]) == 2
    assert "margins apply to masks shapes" in capsys.readouterr().err and not bad.exists()
