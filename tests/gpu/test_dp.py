"""DP-SGD on CUDA (opacus): 2 steps in fp32 and bf16, a resume, LoRA + DP; fp16 + DP is refused
(the DP path runs no GradScaler, so fp16 per-sample gradients would underflow)."""

from __future__ import annotations

import math

import pytest
import torch

from medsynth.errors import MedsynthError
from medsynth.models.lora import finetune_lora
from medsynth.models.training import train

from .conftest import TINY

pytestmark = pytest.mark.gpu

DP = {"target_epsilon": 50.0, "target_delta": 1e-5, "max_grad_norm": 1.0}


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_two_dp_steps(precision, bank, tmp_path):
    model = train(bank, tmp_path / "m", steps=2, dp=DP, progress=False, device="cuda", mixed_precision=precision,
                  **TINY)
    dp = model.model_card["dp"]
    assert dp and math.isfinite(dp["epsilon"]) and 0 < dp["epsilon"] <= 50.0 + 1e-6
    assert all(torch.isfinite(v).all() for v in model.unet.state_dict().values())
    assert model.model_card["compute"]["device"] == "cuda"


def test_dp_resume(bank, tmp_path):
    train(bank, tmp_path / "m", steps=4, max_steps=2, dp=DP, progress=False, device="cuda", **TINY)
    model = train(bank, tmp_path / "m", steps=4, resume=True, dp=DP, progress=False, device="cuda", **TINY)
    assert model.model_card["training"]["steps"] == 4 and model.model_card["dp"]["steps"] == 4


def test_lora_with_dp(model_dir, bank, tmp_path):
    out = finetune_lora(model_dir, bank, tmp_path / "adapter", rank=2, steps=2, dp=DP, progress=False,
                        device="cuda", batch_size=4, warmup_steps=1)
    import json

    card = json.loads((out / "model_card.json").read_text())
    assert card["dp"] and math.isfinite(card["dp"]["epsilon"]) and card["compute"]["device"] == "cuda"


def test_fp16_with_dp_is_refused(bank, tmp_path):
    with pytest.raises(MedsynthError, match="fp16"):
        train(bank, tmp_path / "m", steps=2, dp=DP, progress=False, device="cuda", mixed_precision="fp16", **TINY)
