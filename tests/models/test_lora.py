"""LoRA adapters: small adapter files, exact reload, base untouched, DP on the adapter only."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from medsynth.errors import InvalidModelError
from medsynth.models.inpainter import LesionInpainter
from medsynth.models.lora import finetune_lora

from .conftest import TINY

LORA = dict(batch_size=4, warmup_steps=1, torch_threads=1)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_adapter_round_trip(trained, bank, patches, tmp_path):
    base_dir, _ = trained
    base_sha = _sha(base_dir / "model.safetensors")
    base_before = LesionInpainter.from_pretrained(base_dir)
    out = finetune_lora(base_dir, bank, tmp_path / "lora", rank=2, steps=3, progress=False, learning_rate=1e-2, **LORA)
    assert _sha(base_dir / "model.safetensors") == base_sha  # base weights on disk untouched
    adapter_size = (out / "adapter_model.safetensors").stat().st_size
    assert adapter_size < (base_dir / "model.safetensors").stat().st_size
    card = json.loads((out / "model_card.json").read_text())
    assert card["base_model"]["sha256"] == base_sha and card["lora"]["rank"] == 2
    tuned = LesionInpainter.from_pretrained(base_dir, adapter=out)
    again = LesionInpainter.from_pretrained(base_dir, adapter=out)
    images, masks = patches
    a = tuned(images, masks, seeds=[0, 1, 2])
    assert np.array_equal(a, again(images, masks, seeds=[0, 1, 2]))
    assert not np.array_equal(a, base_before(images, masks, seeds=[0, 1, 2]))  # the adapter changes outputs
    # The base weights inside the adapted model are the originals.
    base_state = base_before.unet.state_dict()
    for k, v in tuned.base_unet().state_dict().items():
        if "lora_" in k:
            continue
        key = k.replace("base_layer.", "")
        assert torch.equal(v, base_state[key]), k
    assert tuned.model_card["adapter"]["lora"]["rank"] == 2


def test_adapter_on_other_base_is_refused(trained, bank, tmp_path):
    base_dir, _ = trained
    out = finetune_lora(base_dir, bank, tmp_path / "lora", rank=2, steps=1, progress=False, **LORA)
    from medsynth.models.training import train

    other = tmp_path / "other"
    train(bank, other, steps=1, progress=False, seed=7, **TINY)
    with pytest.raises(InvalidModelError, match="other base weights"):
        LesionInpainter.from_pretrained(other, adapter=out)


def test_dp_on_lora_parameters_only(trained, bank, tmp_path):
    base_dir, _ = trained
    dp = {"target_epsilon": 1.0, "target_delta": 1e-3, "max_grad_norm": 1.0}
    out = finetune_lora(base_dir, bank, tmp_path / "lora_dp", rank=2, steps=3, dp=dp, progress=False, **LORA)
    card = json.loads((out / "model_card.json").read_text())
    assert card["dp"]["steps"] == 3 and 0 < card["dp"]["epsilon"] <= 1.02 and card["dp"]["noise"] == "csprng"
    assert "(ε, δ)-DP" in (out / "README.md").read_text()
    n_base = sum(p.numel() for p in LesionInpainter.from_pretrained(base_dir).unet.parameters())
    assert 0 < card["trainable_parameters"] < n_base / 2
    tuned = LesionInpainter.from_pretrained(base_dir, adapter=out)
    assert tuned.model_card["adapter"]["dp"]["epsilon"] == pytest.approx(card["dp"]["epsilon"])
    assert tuned.model_card["dp"] is None  # the base was trained without DP: base + adapter is not DP


@pytest.mark.parametrize("dp", [None, {"target_epsilon": 1.0, "target_delta": 1e-3, "noise": "seeded"}])
def test_lora_resume_is_exact(trained, bank, tmp_path, dp):
    """LoRA fine-tuning stopped at step 2 and resumed (read back with weights_only=True) equals an
    uninterrupted run, plainly and under (seeded) DP."""
    import warnings

    from safetensors.torch import load_file

    base_dir, _ = trained
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="DP training with seeded noise")
        full = finetune_lora(base_dir, bank, tmp_path / "full", rank=2, steps=4, dp=dp, progress=False, **LORA)
        part = finetune_lora(base_dir, bank, tmp_path / "part", rank=2, steps=4, dp=dp, progress=False, max_steps=2,
                             **LORA)
        assert not (part / "adapter_model.safetensors").exists()
        finetune_lora(base_dir, bank, part, rank=2, steps=4, dp=dp, progress=False, resume=True, **LORA)
    a, b = load_file(str(full / "adapter_model.safetensors")), load_file(str(part / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if dp:
        cards = [json.loads((d / "model_card.json").read_text())["dp"] for d in (full, part)]
        assert cards[0]["epsilon"] == pytest.approx(cards[1]["epsilon"], rel=1e-12) and cards[1]["noise"] == "seeded"


def test_fp16_with_dp_is_refused_for_lora(trained, bank, tmp_path):
    from medsynth.errors import PrivacyError

    base_dir, _ = trained
    with pytest.raises(PrivacyError, match="fp16"):
        finetune_lora(base_dir, bank, tmp_path / "l", rank=2, steps=1, dp=True, progress=False,
                      mixed_precision="fp16", **LORA)
