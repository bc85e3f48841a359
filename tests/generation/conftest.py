"""Shared fixtures of the generate tests: a few small phantoms and a tiny inpainting model.

Everything is session-scoped (built once) and small: 128x104 phantoms at 0.8 mm/px, a 32 px
two-level UNet, two sampling steps. The model is trained for two steps with the real training
loop when it is available (weights then come from ``train``), else saved freshly initialised --
either way a real ``LesionInpainter`` directory, loaded by ``from_pretrained``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

TINY_MODEL = {"image_size": 32, "block_out_channels": [16, 32], "norm_num_groups": 8, "num_inference_steps": 2}
PHANTOM_SIZE = (128, 104)


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory) -> Path:
    """A CBIS-DDSM-like phantom dataset of 4 images (some with lesions)."""
    from medsynth.phantoms import make_phantoms

    return Path(make_phantoms(tmp_path_factory.mktemp("phantoms") / "cbis", n=4, seed=3, size=PHANTOM_SIZE))


@pytest.fixture(scope="session")
def healthy_root(tmp_path_factory) -> Path:
    """A phantom dataset of 2 images without lesions (folder layout)."""
    from medsynth.phantoms import make_phantoms

    return Path(make_phantoms(tmp_path_factory.mktemp("healthy") / "folder", n=2, seed=5, size=PHANTOM_SIZE,
                              layout="folder", lesion_fraction=0.0))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, phantom_root) -> Path:
    """A tiny LesionInpainter directory (two training steps when training is available)."""
    out = tmp_path_factory.mktemp("model") / "tiny"
    try:
        from medsynth.models.training import train
    except ImportError:
        train = None
    if train is not None:
        train(phantom_root, out, steps=2, progress=False, batch_size=4, checkpoint_every=1000, **TINY_MODEL)
    else:
        from medsynth.models.inpainter import LesionInpainter

        torch.manual_seed(0)
        LesionInpainter(TINY_MODEL).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def model(model_dir):
    from medsynth.models.inpainter import LesionInpainter

    return LesionInpainter.from_pretrained(model_dir)
