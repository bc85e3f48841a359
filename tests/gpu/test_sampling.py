"""Sampling on CUDA: DDIM, DPM-Solver++ and RePaint give patches of the right shape and range with
the known region exact; the same seeds give the same bits; CPU and CUDA agree closely; a CUDA
generator works; ``per_sample_loss`` matches the CPU's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsynth.models.inpainter import LesionInpainter
from medsynth.models.patches import feather_weights
from medsynth.runtime import deterministic_mode

from .conftest import TINY_MODEL

pytestmark = pytest.mark.gpu

# a priori bounds, in [0, 1] pixel units, for 4 sampling steps of a ~20k-parameter UNet: fp32 on both
# sides (TF32 off) differs by float rounding (~1e-6 per op); TF32 convolutions (PyTorch's cuDNN
# default) round products to 10 mantissa bits (~5e-4 relative per layer).
ATOL_FP32 = 1e-3
ATOL_TF32 = 2e-2


def _model(kind: str, model_dir) -> LesionInpainter:
    if kind == "repaint":  # an unconditional model (RePaint's), freshly initialised from a fixed seed
        torch.manual_seed(0)
        return LesionInpainter(dict(TINY_MODEL, conditional=False,
                                    repaint={"num_inference_steps": 6, "jump_length": 3, "jump_n_sample": 2}))
    model = LesionInpainter.from_pretrained(model_dir)
    model.config["sampler"] = kind
    return model


@pytest.mark.parametrize("kind", ["ddim", "dpmsolver++", "repaint"])
def test_sampler_on_cuda(kind, model_dir, patches):
    images, masks = patches
    cpu = _model(kind, model_dir)
    gpu = _model(kind, model_dir).to("cuda")
    assert gpu.device.type == "cuda"
    seeds = [11, 12, 13]
    out = gpu(images, masks, seeds=seeds)
    # Shape, range, known region exact.
    assert out.shape == images.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    for i in range(len(images)):
        outside = feather_weights(masks[i], gpu.config["feather_px"]) == 0
        np.testing.assert_array_equal(out[i][outside], images[i][outside])
    # Same seeds, same bits.
    np.testing.assert_array_equal(out, gpu(images, masks, seeds=seeds))
    # CPU and CUDA agree closely: the seeds' noise is drawn on the CPU for both.
    ref = cpu(images, masks, seeds=seeds)
    np.testing.assert_allclose(out, ref, atol=ATOL_TF32, rtol=0)
    with deterministic_mode():
        np.testing.assert_allclose(gpu(images, masks, seeds=seeds), ref, atol=ATOL_FP32, rtol=0)


@pytest.mark.parametrize("kind", ["ddim", "repaint"])
def test_a_cuda_generator_draws_on_the_gpu(kind, model_dir, patches):
    images, masks = patches
    gpu = _model(kind, model_dir).to("cuda")
    a = gpu(images, masks, generator=torch.Generator("cuda").manual_seed(0))
    b = gpu(images, masks, generator=torch.Generator("cuda").manual_seed(0))
    assert a.shape == images.shape and 0 <= a.min() and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="generator is on cuda"):
        _model(kind, model_dir)(images, masks, generator=torch.Generator("cuda").manual_seed(0))


def test_per_sample_loss_matches_the_cpu(model_dir, patches):
    images, masks = patches
    cpu = LesionInpainter.from_pretrained(model_dir)
    gpu = LesionInpainter.from_pretrained(model_dir, device="cuda")
    for t in (None, 50, [10, 500, 900]):
        ref = cpu.per_sample_loss(images, masks, timesteps=t, seed=4)
        with deterministic_mode():
            got = gpu.per_sample_loss(images, masks, timesteps=t, seed=4)
        assert got.device.type == "cpu" and got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
