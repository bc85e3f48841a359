"""Fixtures of the model tests: tiny phantoms and a tiny model (32 px, 8-16 channels, a few steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

# On a CPU shared with other jobs one thread is many times faster than two (no OpenMP spinning).
torch.set_num_threads(1)

# A ~20k-parameter model at 32 px, 0.8 mm/px (a 25.6 mm ROI); settings of train()/finetune_lora().
TINY = dict(
    image_size=32,
    spacing_mm=0.8,
    block_out_channels=[8, 16, 16],
    norm_num_groups=4,
    batch_size=4,
    checkpoint_every=100,
    warmup_steps=2,
    num_inference_steps=4,
    torch_threads=1,
)


@pytest.fixture(scope="session")
def cases() -> list[tuple[np.ndarray, np.ndarray, tuple[float, float]]]:
    """Six small phantoms (128 x 104 px at 0.8 mm) as (image, mask, spacing) tuples."""
    from medsynth.phantoms import render_phantom

    out = []
    for i in range(6):
        p = render_phantom(0, size=(128, 104), index=i)
        out.append((p.image, p.label > 0, tuple(p.spacing)))
    return out


@pytest.fixture(scope="session")
def bank(cases):
    from medsynth.models.data import build_patch_bank

    return build_patch_bank(cases, TINY["image_size"], TINY["spacing_mm"], {"healthy_crops_per_case": 1}, seed=0)


@pytest.fixture(scope="session")
def trained(bank, tmp_path_factory):
    """(model directory, returned model) of a 4-step run."""
    from medsynth.models.training import train

    out = tmp_path_factory.mktemp("model") / "m"
    model = train(bank, out, steps=4, progress=False, **TINY)
    return out, model


@pytest.fixture()
def patches(bank):
    """Three lesion patches with their masks (numpy, float32 / bool)."""
    idx = np.flatnonzero(~bank.healthy.numpy())[:3]
    return bank.images[idx].numpy(), bank.masks[idx].numpy()
