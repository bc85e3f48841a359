"""The device rule, the deterministic mode and the environment record (medsynth.runtime), and
`--device` on every command that computes: on this CPU-only suite `--device cuda` must be a
one-line error (exit 2) before anything is read or written (issue 16)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from medsynth.errors import ConfigError
from medsynth.runtime import (
    compute_environment,
    describe_environment,
    deterministic_mode,
    environment_differences,
    process_device,
    resolve_device,
    resume_refusal,
    tf32_state,
)


def test_auto_is_cuda_when_present_else_cpu(monkeypatch):
    assert resolve_device("auto") == torch.device("cpu")  # the suite hides GPUs
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="2 visible GPU"):
        resolve_device("cuda:2")


def test_unknown_or_absent_devices_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(ConfigError, match="CUDA is not available here"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="CUDA is not available here"):
        resolve_device(torch.device("cuda", 0))


def test_each_process_of_a_launched_run_takes_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert process_device(torch.device("cuda"), 3) == torch.device("cuda", 1)
    assert process_device(torch.device("cpu"), 3) == torch.device("cpu")
    with pytest.raises(ConfigError, match="names one GPU"):
        process_device(torch.device("cuda", 1), 0)


def test_deterministic_mode_sets_and_restores_pytorch_flags(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark, tf32_state(), torch.get_float32_matmul_precision())
    with deterministic_mode(True):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert tf32_state() == {"tf32_matmul": False, "tf32_cudnn": False}
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    after = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark, tf32_state(), torch.get_float32_matmul_precision())
    assert after == before
    with deterministic_mode(False):
        assert torch.are_deterministic_algorithms_enabled() == before[0]


def test_environment_record_and_resume_rule():
    env = compute_environment("cpu", deterministic=True)
    assert env["device"] == "cpu" and env["gpu"] is None and env["torch"] == torch.__version__
    assert env["deterministic"] is True and env["tf32_cudnn"] is None  # TF32 means nothing off CUDA
    import io
    import json

    # Plain JSON values (a TorchVersion is a str subclass that weights_only=True refuses): checkpoints,
    # which carry the record, load with torch.load(weights_only=True).
    assert all(type(v) in (str, bool, type(None)) for v in env.values()) and json.loads(json.dumps(env)) == env
    buf = io.BytesIO()
    torch.save({"environment": env, "environments": [env]}, buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True)["environment"] == env
    gpu = {**env, "device": "cuda", "gpu": "NVIDIA H200", "cuda": "12.8", "tf32_cudnn": True, "tf32_matmul": False}
    assert environment_differences(env, env) == [] and environment_differences(None, env) == []
    assert environment_differences(gpu, env) == ["device", "gpu", "cuda", "tf32_matmul", "tf32_cudnn"]
    assert environment_differences(env, {**env, "cpu": "another CPU model"}) == []  # recorded, not compared
    msg = resume_refusal(gpu, env, "the checkpoint")
    assert "NVIDIA H200" in msg and "--force-resume" in msg and "device" in msg
    assert resume_refusal(env, env, "the checkpoint") is None
    assert describe_environment(gpu).startswith("cuda (NVIDIA H200), torch")


# ---------------------------------------------------------------------------------------- every command
COMMANDS = {
    "train": ["train", "{x}/data", "--out", "{x}/model"],
    "finetune": ["finetune", "{x}/model", "{x}/data", "--out", "{x}/adapter"],
    "generate": ["generate", "--model", "{x}/model", "--backgrounds", "{x}/data", "--out", "{x}/synth"],
    "evaluate": ["evaluate", "--real", "{x}/data", "--synthetic", "{x}/synth"],
    "evaluate --utility": ["evaluate", "--utility", "--real-train", "{x}/data", "--synthetic", "{x}/synth",
                           "--real-test", "{x}/data"],
    "audit": ["audit", "--train", "{x}/data", "--synthetic", "{x}/synth", "--holdout", "{x}/data"],
    "demo": ["demo", "--out", "{x}/demo", "--quick"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_cuda_here_with_one_line_before_reading_or_writing(command, tmp_path, capsys):
    """Every computing command takes --device; CUDA on a machine without it is exit 2 and one line,
    checked before any input is read (the inputs here do not even exist) or any output written."""
    from medsynth.cli import main

    args = [a.format(x=tmp_path) for a in COMMANDS[command]]
    rc = main([*args, "--device", "cuda"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "CUDA is not available here" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_every_numpy_conversion_of_a_tensor_goes_through_the_cpu():
    """`.numpy()` of a CUDA tensor raises: every one in the package is `.cpu().numpy()` (a no-op on
    CPU tensors), so moving a model or an extractor to a GPU cannot crash a conversion (issue 16, point 8)."""
    root = Path(__file__).resolve().parents[1] / "medsynth"
    bad = []
    for path in sorted(root.rglob("*.py")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"(?<!\.cpu\(\))\.numpy\(\)", line):
                bad.append(f"{path.relative_to(root.parent)}:{i}: {line.strip()}")
    assert not bad, "\n".join(bad)
