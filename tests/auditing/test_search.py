"""Exact top-k search (FAISS and torch paths) against a NumPy brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from medsynth.auditing.search import HAVE_FAISS, exact_topk, l2_normalize, numpy_bruteforce_topk

BACKENDS = ["torch"] + (["faiss"] if HAVE_FAISS else [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_topk_matches_bruteforce(backend):
    rng = np.random.default_rng(0)
    db = l2_normalize(rng.normal(size=(503, 32)))
    q = l2_normalize(rng.normal(size=(77, 32)))
    # Small batches and chunks so the merge across database chunks is exercised.
    s, i = exact_topk(q, db, 7, batch_size=10, db_chunk=64, backend=backend)
    ref_s, ref_i = numpy_bruteforce_topk(q, db, 7)
    np.testing.assert_allclose(s, ref_s, atol=1e-5)
    # Indices agree wherever similarities are not tied.
    full = q @ db.T
    np.testing.assert_allclose(np.take_along_axis(full, i, 1), ref_s, atol=1e-5)
    assert (i == ref_i).mean() > 0.99


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_topk_finds_planted_duplicates(backend):
    rng = np.random.default_rng(1)
    db = l2_normalize(rng.normal(size=(1000, 64)))
    q = db[[5, 500, 999]].copy()
    s, i = exact_topk(q, db, 1, backend=backend)
    assert list(i[:, 0]) == [5, 500, 999]
    np.testing.assert_allclose(s[:, 0], 1.0, atol=1e-5)


def test_exact_topk_k_clipped_and_bad_input():
    db = l2_normalize(np.eye(3, 4))
    s, i = exact_topk(db, db, 10, backend="torch")
    assert s.shape == (3, 3)
    with pytest.raises(ValueError, match="must be"):
        exact_topk(np.zeros((2, 5), np.float32), db, 1)
    with pytest.raises(ValueError, match="empty"):
        exact_topk(db, np.zeros((0, 4), np.float32), 1)
