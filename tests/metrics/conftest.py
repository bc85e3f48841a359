"""Shared data and references of the metrics tests.

Data: 1/f textures with a blob (in memory) and small phantom datasets. References (test-only, so
not in the library): a Fréchet distance with ``scipy.linalg.sqrtm``, KID as a NumPy unbiased MMD,
and an extractor wrapped as torchmetrics' ``feature=`` image module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn


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


def frechet_distance_scipy(real: np.ndarray, fake: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets, with ``scipy.linalg.sqrtm``.

    ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2))``; when the product is singular, ``eps`` is
    added to the diagonals (as pytorch-fid does). Independent of torchmetrics; used as reference.
    """
    from scipy import linalg

    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.atleast_2d(np.cov(real, rowvar=False)), np.atleast_2d(np.cov(fake, rowvar=False))
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def mmd2_unbiased_poly(x: np.ndarray, y: np.ndarray) -> float:
    """Independent NumPy KID of one subset: unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    d = x.shape[1]
    kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
    m = len(x)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    )


class ExtractorModule(nn.Module):
    """An extractor as torchmetrics' ``feature=`` module: images in, ``(N, D)`` features out.

    Accepts ``(N, C, H, W)`` or ``(N, H, W)`` tensors, uint8 in [0, 255] (torchmetrics'
    ``normalize=False``) or float in [0, 1] (``normalize=True``); colour channels are averaged to
    grey. ``num_features`` spares torchmetrics a dummy forward pass.
    """

    def __init__(self, extractor) -> None:
        super().__init__()
        self.extractor = extractor
        self.net = extractor.module  # registered so .to()/.eval() reach it
        self.num_features = extractor.dim

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        x = imgs.float() / 255.0 if imgs.dtype == torch.uint8 else imgs.float()
        if x.ndim == 3:
            x = x[:, None]
        if x.shape[1] != 1:
            x = x.mean(dim=1, keepdim=True)
        with torch.no_grad():
            return self.net(self.extractor.prepare(x.clamp(0.0, 1.0)))


@pytest.fixture(scope="session")
def frechet_reference():
    """The scipy Fréchet distance (:func:`frechet_distance_scipy`)."""
    return frechet_distance_scipy


@pytest.fixture(scope="session")
def extractor_module():
    """The class :class:`ExtractorModule` (torchmetrics' image-module route of an extractor)."""
    return ExtractorModule


@pytest.fixture(scope="session")
def mmd_reference():
    """The NumPy unbiased MMD^2 of KID (:func:`mmd2_unbiased_poly`)."""
    return mmd2_unbiased_poly
