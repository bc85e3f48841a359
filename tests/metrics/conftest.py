"""Shared data for the metrics tests: 1/f textures with a blob (in memory) and small phantom datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


def make_textures(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """(n, size, size) float32 in [0, 1]: 1/f^3 power-law texture plus one Gaussian blob each."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(size)
    k = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    k[0, 0] = 1.0
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        spec = (rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))) / k**1.5
        im = np.real(np.fft.ifft2(spec))
        im = (im - im.min()) / (im.max() - im.min())
        cy, cx = rng.uniform(size / 4, 3 * size / 4, 2)
        r = rng.uniform(size / 16, size / 6)
        out.append(0.7 * im + 0.3 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))
    return np.clip(np.stack(out), 0.0, 1.0).astype(np.float32)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # The test machine's cores are shared; one thread per process is much faster than oversubscribing.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def textures():
    return make_textures


@pytest.fixture(scope="session")
def phantom_sets(tmp_path_factory) -> dict[str, Path]:
    """Three small CBIS-DDSM-like phantom datasets (real-train, "synthetic" stand-in, real-test)."""
    from medsynth.phantoms import make_phantoms

    root = tmp_path_factory.mktemp("phantoms")
    sets = {}
    for name, seed, n in (("train", 11, 8), ("synthetic", 12, 8), ("test", 13, 6)):
        sets[name] = make_phantoms(root / name, n=n, seed=seed, size=(192, 156), lesion_fraction=1.0)
    return sets
