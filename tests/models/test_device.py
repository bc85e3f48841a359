"""The model on a device (issue 16), shown on the CPU: every random draw of the samplers is told the
model's device (so a CUDA generator draws on the GPU, point 7), a generator on another device is a
clear error, fp16 without a GPU is refused, and a checkpoint records its compute environment: a
resume in another one is refused unless forced (points 3 and 4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsynth.errors import ConfigError, InvalidModelError
from medsynth.models.inpainter import LesionInpainter
from medsynth.models.training import train

from .conftest import TINY

SMALL = {"image_size": 32, "block_out_channels": [8, 16, 16], "norm_num_groups": 4, "num_inference_steps": 3}


@pytest.fixture()
def draws(monkeypatch):
    """Every call of diffusers' randn_tensor (device asked for, generator's device), and every bare
    torch.randn without a device."""
    import diffusers.schedulers.scheduling_repaint as repaint_scheduler
    import diffusers.utils.torch_utils as torch_utils

    calls: dict[str, list] = {"randn_tensor": [], "bare_randn": []}
    real_randn_tensor, real_randn = torch_utils.randn_tensor, torch.randn

    def randn_tensor(shape, generator=None, device=None, **kw):
        gens = generator if isinstance(generator, list) else [generator]
        calls["randn_tensor"].append((None if device is None else torch.device(device),
                                      {None if g is None else g.device.type for g in gens}))
        return real_randn_tensor(shape, generator=generator, device=device, **kw)

    def randn(*args, **kw):
        if "device" not in kw:
            calls["bare_randn"].append(args)
        return real_randn(*args, **kw)

    monkeypatch.setattr(torch_utils, "randn_tensor", randn_tensor)
    monkeypatch.setattr(repaint_scheduler, "randn_tensor", randn_tensor)
    monkeypatch.setattr(torch, "randn", randn)
    return calls


@pytest.mark.parametrize("kind", ["ddim", "dpmsolver++", "repaint"])
def test_every_sampler_draw_is_told_the_models_device(kind, patches, draws):
    """diffusers' randn_tensor draws with a generator on the device it lives on, moving CPU draws to
    ``device``: a sampler that passes the model's device to every draw works with CPU seeds and with
    a CUDA generator alike (the bug was ``torch.randn`` without ``device=``, issue 16 point 7)."""
    torch.manual_seed(0)
    cfg = dict(SMALL, sampler="ddim" if kind == "repaint" else kind, conditional=kind != "repaint",
               repaint={"num_inference_steps": 4, "jump_length": 2, "jump_n_sample": 2})
    model = LesionInpainter(cfg)
    images, masks = patches
    by_seed = model(images[:2], masks[:2], seeds=[1, 2])
    by_gen = model(images[:2], masks[:2], generator=torch.Generator().manual_seed(5))
    again = model(images[:2], masks[:2], generator=torch.Generator().manual_seed(5))
    assert by_seed.shape == by_gen.shape == (2, 32, 32)
    np.testing.assert_array_equal(by_gen, again)
    assert draws["randn_tensor"], "the sampler drew no noise through randn_tensor"
    assert all(device == model.device for device, _ in draws["randn_tensor"]), draws["randn_tensor"]
    assert not draws["bare_randn"]


def test_per_sample_loss_draws_on_the_models_device(trained, patches, draws):
    _, model = trained
    images, masks = patches
    loss = model.per_sample_loss(images, masks, timesteps=100, seed=3)
    assert loss.device.type == "cpu" and loss.shape == (3,)
    assert draws["randn_tensor"] and all(d == model.device for d, _ in draws["randn_tensor"])
    assert not draws["bare_randn"]


def test_a_generator_on_another_device_is_a_clear_error(patches):
    model = LesionInpainter(SMALL)
    images, masks = patches

    class CudaGenerator:  # stands in for torch.Generator("cuda") on this CPU-only machine
        device = torch.device("cuda", 0)

    with pytest.raises(ValueError, match="generator is on cuda:0 but the model is on cpu"):
        model(images[:1], masks[:1], generator=CudaGenerator())
    with pytest.raises(ConfigError, match="CUDA is not available"):
        model.to("cuda")
    assert model.to("auto").device == torch.device("cpu")


def test_fp16_without_a_gpu_is_refused(bank, tmp_path):
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        train(bank, tmp_path / "m", steps=1, progress=False, mixed_precision="fp16", **TINY)


def _edit_checkpoint(path, **environment):
    state = torch.load(path, map_location="cpu", weights_only=False)
    state["environment"] = {**state["environment"], **environment}
    torch.save(state, path)


def test_resume_in_another_environment_is_refused_unless_forced(bank, tmp_path):
    out = tmp_path / "m"
    train(bank, out, steps=4, max_steps=2, progress=False, **TINY)
    ckpt = out / "checkpoints" / "checkpoint.pt"
    made = torch.load(ckpt, map_location="cpu", weights_only=False)["environment"]
    assert made["device"] == "cpu" and made["deterministic"] is False
    _edit_checkpoint(ckpt, device="cuda", gpu="NVIDIA H200", cuda="12.8")
    with pytest.raises(InvalidModelError, match=r"made on cuda \(NVIDIA H200\).*this run is on cpu.*--force-resume"):
        train(bank, out, steps=4, resume=True, progress=False, **TINY)
    model = train(bank, out, steps=4, force_resume=True, progress=False, **TINY)
    compute = model.model_card["compute"]
    assert compute["device"] == "cpu" and compute["previous"][0]["gpu"] == "NVIDIA H200"
    assert "resumed from: cuda (NVIDIA H200)" in (out / "README.md").read_text()
    assert model.model_card["training"]["steps"] == 4


def test_deterministic_is_recorded_and_changing_it_on_resume_is_refused(bank, tmp_path):
    """On the CPU results are bitwise the same with or without the deterministic mode (the docs'
    claim); the setting is still part of the environment a resume must match."""
    plain = train(bank, tmp_path / "plain", steps=3, progress=False, **TINY)
    det = train(bank, tmp_path / "det", steps=3, progress=False, deterministic=True, **TINY)
    assert det.model_card["compute"]["deterministic"] is True
    assert plain.model_card["compute"]["deterministic"] is False
    for k, v in plain.unet.state_dict().items():
        assert torch.equal(v, det.unet.state_dict()[k]), k
    train(bank, tmp_path / "part", steps=3, max_steps=1, progress=False, **TINY)
    with pytest.raises(InvalidModelError, match="deterministic differ"):
        train(bank, tmp_path / "part", steps=3, resume=True, deterministic=True, progress=False, **TINY)
