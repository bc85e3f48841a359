"""The pieces of copy detection against direct computations."""

from __future__ import annotations

import numpy as np
import pytest

from medsynth.auditing.memorization import (
    InvariantPixelEmbedder,
    apply_variant,
    ncc_vectors,
    nearest_training,
    shifted_ncc,
    zoom_center,
)
from medsynth.config import load_config


def _texture(seed: int, n: int = 32) -> np.ndarray:
    """1/f^1.5 noise images in [0, 1] (mammogram-like texture, cheap)."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(n)
    amp = 1.0 / np.maximum(np.hypot(*np.meshgrid(f, f, indexing="ij")), 1.0 / n) ** 1.5
    img = np.real(np.fft.ifft2(amp * np.exp(2j * np.pi * rng.random((n, n)))))
    return ((img - img.min()) / (img.max() - img.min())).astype(np.float32)


def test_shifted_ncc_matches_brute_force():
    a = ncc_vectors(_texture(0)[None], 0.0).reshape(1, 32, 32)
    b = ncc_vectors(_texture(1)[None], 0.0).reshape(1, 32, 32)
    score, shift = shifted_ncc(a, b, 3)
    # Brute force: for every shift, sum over the overlap of a[y + dy, x + dx] * b[y, x].
    best, arg = -np.inf, None
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            s = 0.0
            for y in range(32):
                for x in range(32):
                    if 0 <= y + dy < 32 and 0 <= x + dx < 32:
                        s += a[0, y + dy, x + dx] * b[0, y, x]
            if s > best:
                best, arg = s, (dy, dx)
    assert score[0] == pytest.approx(best, abs=1e-5)
    assert tuple(shift[0]) == arg


def test_shifted_ncc_recovers_a_known_shift():
    img = _texture(2, 48)
    moved = np.pad(img, 2, mode="edge")[4:, 1:-3]  # img moved up 2 px and right 1 px, edges repeated
    a = ncc_vectors(moved[None], 0.0).reshape(1, 48, 48)
    b = ncc_vectors(img[None], 0.0).reshape(1, 48, 48)
    score, shift = shifted_ncc(a, b, 4)
    assert tuple(shift[0]) == (-2, 1) and score[0] > 0.95


def test_zoom_center_identity_and_inverse():
    img = _texture(3, 64)[None]
    np.testing.assert_array_equal(zoom_center(img, 1.0), img)
    back = zoom_center(zoom_center(img, 1.1), 1 / 1.1)
    inner = slice(10, 54)
    assert np.corrcoef(back[0, inner, inner].ravel(), img[0, inner, inner].ravel())[0, 1] > 0.97


def test_invariant_embedder_is_flip_shift_and_contrast_invariant():
    e = InvariantPixelEmbedder()
    img = _texture(4)
    variants = np.stack([img, img[:, ::-1], img[::-1], np.roll(img, (3, 5), (0, 1)), 0.2 + 0.5 * img])
    z = e.embed(variants)
    np.testing.assert_allclose(z @ z[0], 1.0, atol=1e-5)
    assert float(e.embed(_texture(5)[None])[0] @ z[0]) < 0.999


def test_nearest_training_flags_copies_not_novel_images():
    cfg = load_config(None, kind="audit")["memorization"]
    train = np.stack([_texture(s) for s in range(20)])
    novel = np.stack([_texture(s) for s in range(100, 108)])
    copies = np.stack([train[3], train[7][:, ::-1], 0.1 + 0.8 * train[11]])
    res = nearest_training(np.concatenate([novel, copies]), train, cfg, "roi")
    assert list(np.nonzero(res.flagged)[0]) == [8, 9, 10]
    assert list(res.nn_index[8:]) == [3, 7, 11]
    assert res.variant[9].startswith("hflip")
    np.testing.assert_allclose(res.carlini_ratio[8:], 0.0, atol=0.02)
    assert (res.carlini_ratio[:8] > 1.0).all()
    assert apply_variant(train[:2], "rot180@1").shape == (2, 32, 32)
