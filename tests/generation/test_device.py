"""generate() on a device (issue 16, point 3): `--device cpu` is honoured where `auto` would pick
CUDA, the manifest records the compute environment, and a resume in another environment is
refused unless forced (then the manifest and the dataset card name both)."""

from __future__ import annotations

import json

import pytest
import torch

import medsynth.generation.pipeline as pipeline
from medsynth.errors import OutputExistsError
from medsynth.generation.pipeline import generate
from medsynth.generation.state import STATE_DIR
from medsynth.runtime import resolve_device

from .test_pipeline import OPTS, SALT, tree_digest


def test_generate_device_cpu_is_honoured_where_auto_would_pick_cuda(tmp_path, model_dir, phantom_root, monkeypatch):
    from medsynth.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU host, as far as "auto" can tell
    assert resolve_device("auto").type == "cuda"
    out = tmp_path / "cpu"
    rc = main(["generate", "--model", str(model_dir), "--backgrounds", str(phantom_root), "--out", str(out),
               "--n", "2", "--format", "png", "--size-mm", "4:8", "--device", "cpu", "--quiet"])
    assert rc == 0
    compute = json.loads((out / "manifest.json").read_text())["compute"]
    assert compute["device"] == "cpu" and compute["gpu"] is None and compute["torch"] == torch.__version__
    assert "Computed on cpu, torch" in (out / "README.md").read_text()


def test_deterministic_is_recorded_and_changes_no_byte_on_the_cpu(tmp_path, model, phantom_root):
    plain = generate(model, phantom_root, "shapes", 2, tmp_path / "plain", "png", seed=3, salt=SALT, **OPTS)
    det = generate(model, phantom_root, "shapes", 2, tmp_path / "det", "png", seed=3, salt=SALT,
                   deterministic=True, **OPTS)
    assert plain.compute["deterministic"] is False and det.compute["deterministic"] is True
    manifest = json.loads((tmp_path / "det" / "manifest.json").read_text())
    assert manifest["compute"]["deterministic"] is True
    digest = {k: v for k, v in tree_digest(tmp_path / "plain").items() if k.startswith("images")}
    assert digest and digest == {k: v for k, v in tree_digest(tmp_path / "det").items() if k.startswith("images")}


def test_resume_in_another_environment_is_refused_unless_forced(tmp_path, model, phantom_root, monkeypatch):
    reference = tmp_path / "ref"
    generate(model, phantom_root, "shapes", 4, reference, "png", seed=6, batch_size=2, salt=SALT, **OPTS)
    out = tmp_path / "killed"
    real_write = pipeline.write_record
    calls = {"n": 0}

    def dying_write(state, record):
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill")
        calls["n"] += 1
        real_write(state, record)

    monkeypatch.setattr(pipeline, "write_record", dying_write)
    with pytest.raises(KeyboardInterrupt):
        generate(model, phantom_root, "shapes", 4, out, "png", seed=6, batch_size=2, salt=SALT, **OPTS)
    monkeypatch.setattr(pipeline, "write_record", real_write)
    # The interrupted run says it was made on a GPU.
    run = out / STATE_DIR / "run.json"
    state = json.loads(run.read_text())
    assert state["settings"]["environment"]["device"] == "cpu"
    state["settings"]["environment"].update(device="cuda", gpu="NVIDIA H200", cuda="12.8")
    run.write_text(json.dumps(state))
    with pytest.raises(OutputExistsError, match=r"made on cuda \(NVIDIA H200\).*--force-resume"):
        generate(model, phantom_root, "shapes", 4, out, "png", seed=6, batch_size=2, resume=True, **OPTS)
    result = generate(model, phantom_root, "shapes", 4, out, "png", seed=6, batch_size=2, force_resume=True, **OPTS)
    assert result.skipped == 2 and result.generated == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["compute"]["device"] == "cpu" and manifest["compute"]["previous"][0]["gpu"] == "NVIDIA H200"
    assert "resumed from a run on cuda (NVIDIA H200)" in (out / "README.md").read_text()
    images = {k: v for k, v in tree_digest(out).items() if k.startswith("images")}
    assert images == {k: v for k, v in tree_digest(reference).items() if k.startswith("images")}
