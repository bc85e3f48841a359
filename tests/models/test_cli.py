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


@pytest.fixture(scope="module")
def trained_by_cli(phantom_dir, tmp_path_factory):
    """(model directory, the `medsynth train` subprocess) of a 2-step run of the tiny config."""
    tmp = tmp_path_factory.mktemp("cli")
    cfg = tmp / "tiny.yaml"
    cfg.write_text(TINY_YAML)
    return tmp / "model", _run("train", phantom_dir, "--out", tmp / "model", "--config", cfg, "--steps", 2, "--quiet")


def test_train_and_finetune_happy_path(trained_by_cli, phantom_dir, tmp_path, capsys):
    model_dir, r = trained_by_cli
    assert r.returncode == 0, r.stderr
    assert "medsynth train" in r.stdout and "differential privacy" in r.stdout
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["training"]["steps"] == 2 and card["image_size"] == 32
    # In-process (medsynth.cli.main returns the exit code) to spare a second interpreter start.
    from medsynth.cli import main

    rc = main(["finetune", str(model_dir), str(phantom_dir), "--lora", "--rank", "2",
               "--out", str(tmp_path / "adapter"), "--steps", "2", "--batch-size", "4", "--quiet"])
    assert rc == 0
    assert "rank 2" in capsys.readouterr().out
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_finetune_rank_comes_from_the_config_unless_typed(trained_by_cli, phantom_dir, tmp_path):
    """`--rank` defaults to None, so a --config file's lora.rank holds unless the user types --rank
    (it used to default to 4 and silently override the file)."""
    from safetensors.torch import load_file

    from medsynth.cli import main

    model_dir, r = trained_by_cli
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "finetune.yaml"
    cfg.write_text("lora:\n  rank: 8\ntraining:\n  steps: 1\n  batch_size: 4\n  warmup_steps: 1\n  torch_threads: 1\n")
    for typed, rank in (([], 8), (["--rank", "2"], 2)):
        out = tmp_path / f"adapter-{rank}"
        rc = main(["finetune", str(model_dir), str(phantom_dir), "--config", str(cfg), "--out", str(out), "--quiet",
                   *typed])
        assert rc == 0
        assert json.loads((out / "adapter_config.json").read_text())["r"] == rank
        assert json.loads((out / "model_card.json").read_text())["lora"]["rank"] == rank
        lora_a = [t for k, t in load_file(out / "adapter_model.safetensors").items() if "lora_A" in k]
        assert lora_a and {t.shape[0] for t in lora_a} == {rank}


def test_bad_input_exits_2_without_traceback(tmp_path):
    r = _run("train", tmp_path / "does-not-exist", "--out", tmp_path / "m", "--steps", 1, "--quiet")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "error:" in r.stderr


def test_dp_flags_without_dp_exit_2(tmp_path, capsys):
    from medsynth.cli import main

    rc = main(["train", str(tmp_path), "--out", str(tmp_path / "m"), "--target-epsilon", "1", "--quiet"])
    assert rc == 2 and "--dp" in capsys.readouterr().err


def test_dp_noise_flags(tmp_path, capsys):
    """--dp-seeded-noise needs --dp and excludes --secure-mode; fp16 with --dp is refused before any work."""
    from medsynth.cli import main

    rc = main(["train", str(tmp_path), "--out", str(tmp_path / "m"), "--dp-seeded-noise", "--quiet"])
    assert rc == 2 and "--dp" in capsys.readouterr().err
    rc = main(["finetune", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "a"), "--dp", "--secure-mode",
               "--dp-seeded-noise", "--quiet"])
    assert rc == 2 and "exclude each other" in capsys.readouterr().err
    rc = main(["train", str(tmp_path), "--out", str(tmp_path / "m"), "--dp", "--mixed-precision", "fp16", "--quiet"])
    assert rc == 2 and "fp16" in capsys.readouterr().err


def test_train_class_option_trains_a_dedicated_painter_and_refuses_unknown_classes(phantom_dir, tmp_path):
    from medsynth.cli import main

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML)
    rc = main(["train", str(phantom_dir), "--out", str(tmp_path / "m"), "--config", str(cfg), "--steps", "1",
               "--class", "calcification", "--quiet"])
    assert rc == 0
    assert json.loads((tmp_path / "m" / "config.json").read_text())["classes"] == ["calcification"]
    assert main(["train", str(phantom_dir), "--out", str(tmp_path / "x"), "--config", str(cfg), "--steps", "1",
                 "--class", "cyst", "--quiet"]) == 2
    assert not (tmp_path / "x" / "config.json").exists()
