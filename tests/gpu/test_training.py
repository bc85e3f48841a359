"""Training on CUDA: 3 steps in fp32, bf16 and fp16; stopped at 2 and resumed to 4, in the
deterministic mode, equals the uninterrupted run bit for bit (fp16: with the GradScaler's state
checkpointed)."""

from __future__ import annotations

import math

import pytest
import torch

from medsynth.models.training import train

from .conftest import TINY

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("precision", ["no", "bf16", "fp16"])
def test_three_steps(precision, bank, tmp_path):
    model = train(bank, tmp_path / "m", steps=3, progress=False, device="cuda", mixed_precision=precision, **TINY)
    card = model.model_card
    assert card["training"]["steps"] == 3 and math.isfinite(card["training"]["final_loss"])
    assert card["compute"]["device"] == "cuda" and card["compute"]["gpu"] == torch.cuda.get_device_name(0)
    assert card["compute"]["cuda"] == torch.version.cuda
    assert next(model.unet.parameters()).device.type == "cuda"
    assert all(torch.isfinite(v).all() for v in model.unet.state_dict().values())
    assert (tmp_path / "m" / "model.safetensors").is_file()


@pytest.mark.parametrize("precision", ["no", "fp16"])
def test_stop_at_two_and_resume_to_four_is_exact(precision, bank, tmp_path):
    opts = dict(progress=False, device="cuda", mixed_precision=precision, deterministic=True, **TINY)
    full = train(bank, tmp_path / "full", steps=4, **opts)
    train(bank, tmp_path / "part", steps=4, max_steps=2, **opts)
    state = torch.load(tmp_path / "part" / "checkpoints" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["environment"]["device"] == "cuda" and state["environment"]["deterministic"] is True
    assert state["environment"]["tf32_cudnn"] is False and state["environment"]["tf32_matmul"] is False
    if precision == "fp16":
        assert state["grad_scaler"] and state["grad_scaler"]["scale"] > 0
    resumed = train(bank, tmp_path / "part", steps=4, resume=True, **opts)
    assert resumed.model_card["training"]["steps"] == 4
    for k, v in full.unet.state_dict().items():
        assert torch.equal(v, resumed.unet.state_dict()[k]), k


def test_a_cpu_checkpoint_is_not_resumed_on_the_gpu_unless_forced(bank, tmp_path):
    from medsynth.errors import InvalidModelError

    train(bank, tmp_path / "m", steps=4, max_steps=2, progress=False, device="cpu", **TINY)
    with pytest.raises(InvalidModelError, match="made on cpu"):
        train(bank, tmp_path / "m", steps=4, resume=True, progress=False, device="cuda", **TINY)
    model = train(bank, tmp_path / "m", steps=4, force_resume=True, progress=False, device="cuda", **TINY)
    assert model.model_card["compute"]["previous"][0]["device"] == "cpu"
