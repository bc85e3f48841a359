"""`medsynth train` and `medsynth finetune` end to end, as subprocesses, with a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

TINY_YAML = """\
model:
  image_size: 32
  spacing_mm: 0.8
  block_out_channels: [8, 16, 16]
  norm_num_groups: 4
  num_inference_steps: 4
training:
  batch_size: 4
  warmup_steps: 1
  torch_threads: 1
"""


def _run(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "medsynth", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    from medsynth.phantoms import make_phantoms

    return make_phantoms(tmp_path_factory.mktemp("ph") / "data", n=4, seed=2, size=(128, 104), lesion_fraction=1.0)


def test_train_and_finetune_happy_path(phantom_dir, tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML)
    r = _run("train", phantom_dir, "--out", tmp_path / "model", "--config", cfg, "--steps", 2, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "medsynth train" in r.stdout and "differential privacy" in r.stdout
    card = json.loads((tmp_path / "model" / "model_card.json").read_text())
    assert card["training"]["steps"] == 2 and card["image_size"] == 32
    # In-process (medsynth.cli.main returns the exit code) to spare a second interpreter start.
    from medsynth.cli import main

    rc = main(["finetune", str(tmp_path / "model"), str(phantom_dir), "--lora", "--rank", "2",
               "--out", str(tmp_path / "adapter"), "--steps", "2", "--batch-size", "4", "--quiet"])
    assert rc == 0
    assert "rank 2" in capsys.readouterr().out
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_bad_input_exits_2_without_traceback(tmp_path):
    r = _run("train", tmp_path / "does-not-exist", "--out", tmp_path / "m", "--steps", 1, "--quiet")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "error:" in r.stderr


def test_dp_flags_without_dp_exit_2(tmp_path, capsys):
    from medsynth.cli import main

    rc = main(["train", str(tmp_path), "--out", str(tmp_path / "m"), "--target-epsilon", "1", "--quiet"])
    assert rc == 2 and "--dp" in capsys.readouterr().err
