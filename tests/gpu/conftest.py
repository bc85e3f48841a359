"""The ``gpu`` test set (``pytest -m gpu``; docs/gpus.md): the CUDA paths of sampling, training,
DP and generation with tiny models, in under five minutes on one GPU.

It *fails* without CUDA instead of skipping: run on a machine whose GPU is not visible (a CPU-only
PyTorch, ``CUDA_VISIBLE_DEVICES`` empty, a driver problem), a green "all skipped" would claim a GPU
check that never ran. The normal suite deselects it (``-m 'not slow and not gpu'`` in pyproject.toml).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

# A ~20k-parameter model at 32 px, 0.8 mm/px (a 25.6 mm ROI); settings of train()/finetune_lora().
TINY = dict(image_size=32, spacing_mm=0.8, block_out_channels=[8, 16, 16], norm_num_groups=4, batch_size=4,
            checkpoint_every=100, warmup_steps=1, num_inference_steps=4)
TINY_MODEL = {k: TINY[k] for k in ("image_size", "spacing_mm", "block_out_channels", "norm_num_groups",
                                   "num_inference_steps")}


@pytest.fixture(scope="session", autouse=True)
def _needs_cuda():
    if not torch.cuda.is_available():
        pytest.fail(
            f"the gpu test set needs a CUDA device, and PyTorch {torch.__version__} (CUDA {torch.version.cuda}) sees "
            f"none (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); run it on a GPU machine",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def cases() -> list[tuple[np.ndarray, np.ndarray, tuple[float, float]]]:
    """Six small phantoms (128 x 104 px at 0.8 mm) as (image, mask, spacing) tuples."""
    from medsynth.phantoms import render_phantom

    return [(p.image, p.label > 0, tuple(p.spacing)) for p in (render_phantom(0, size=(128, 104), index=i)
                                                              for i in range(6))]


@pytest.fixture(scope="session")
def bank(cases):
    from medsynth.models.data import build_patch_bank

    return build_patch_bank(cases, TINY["image_size"], TINY["spacing_mm"], {"healthy_crops_per_case": 1}, seed=0)


@pytest.fixture(scope="session")
def model_dir(bank, tmp_path_factory):
    """A tiny model trained 4 steps on the CPU (the same weights for every test that compares devices)."""
    from medsynth.models.training import train

    out = tmp_path_factory.mktemp("gpu-model") / "m"
    train(bank, out, steps=4, progress=False, device="cpu", **TINY)
    return out


@pytest.fixture()
def patches(bank):
    """Three lesion patches with their masks (numpy, float32 / bool)."""
    idx = np.flatnonzero(~bank.healthy.numpy())[:3]
    return bank.images[idx].numpy(), bank.masks[idx].numpy()


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory):
    from medsynth.phantoms import make_phantoms

    return make_phantoms(tmp_path_factory.mktemp("gpu-phantoms") / "cbis", n=4, seed=3, size=(128, 104))
