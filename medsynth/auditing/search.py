"""Exact top-k nearest-neighbour search by inner product, batched so memory is bounded by the batch.

The audit compares every synthetic sample with every training sample (10k × 100k ROIs must fit on
one machine), so the search never builds the full similarity matrix: queries go through in batches
and, for the torch/NumPy path, the database in chunks too, with a running top-k merge.
FAISS (``faiss.knn``: exact, no index copy of the database) is used when installed; otherwise a
batched torch matmul does the same work. Vectors are expected L2-normalised by the caller, so inner
product is cosine similarity (and NCC for zero-mean pixel vectors).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

try:  # FAISS is a declared dependency; the fallback keeps the audit usable where its wheel is missing.
    import faiss  # type: ignore[import-untyped]

    HAVE_FAISS = True
except ImportError:  # pragma: no cover - depends on the environment
    faiss = None
    HAVE_FAISS = False


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (all-zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)


def exact_topk(
    queries: np.ndarray,
    database: np.ndarray,
    k: int,
    *,
    batch_size: int = 1024,
    db_chunk: int = 65536,
    backend: str = "auto",
    on_batch: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest inner products of each query with the database, exactly.

    Args:
        queries: (M, D) float32.
        database: (N, D) float32.
        k: neighbours per query; clipped to N.
        batch_size: queries per batch (bounds the (batch, chunk) score block in memory).
        db_chunk: database rows per block in the torch path (FAISS blocks internally).
        backend: "faiss", "torch" or "auto" (FAISS when installed).
        on_batch: called with the number of queries finished after each batch (progress bars).

    Returns:
        (similarities (M, k) float32, indices (M, k) int64), each row sorted by decreasing similarity.

    Raises:
        ValueError: shapes do not match, k < 1 or the database is empty.
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    db = np.ascontiguousarray(database, dtype=np.float32)
    if q.ndim != 2 or db.ndim != 2 or q.shape[1] != db.shape[1]:
        raise ValueError(f"queries {q.shape} and database {db.shape} must be (M, D) and (N, D)")
    if db.shape[0] == 0:
        raise ValueError("the database is empty")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, db.shape[0])
    if backend == "auto":
        backend = "faiss" if HAVE_FAISS else "torch"
    if backend == "faiss" and not HAVE_FAISS:
        raise ValueError("backend 'faiss' asked for but faiss is not installed (pip install faiss-cpu)")
    if backend not in ("faiss", "torch"):
        raise ValueError(f"unknown backend {backend!r}; use 'faiss', 'torch' or 'auto'")

    sims = np.empty((q.shape[0], k), dtype=np.float32)
    idx = np.empty((q.shape[0], k), dtype=np.int64)
    for start in range(0, q.shape[0], batch_size):
        qb = q[start : start + batch_size]
        if backend == "faiss":
            s, i = faiss.knn(qb, db, k, metric=faiss.METRIC_INNER_PRODUCT)
        else:
            s, i = _torch_topk(qb, db, k, db_chunk)
        sims[start : start + len(qb)] = s
        idx[start : start + len(qb)] = i
        if on_batch is not None:
            on_batch(len(qb))
    return sims, idx


def _torch_topk(qb: np.ndarray, db: np.ndarray, k: int, db_chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of one query batch against the database in chunks, merging the running best k."""
    import torch

    qt = torch.from_numpy(qb)
    best_s = torch.full((len(qb), 0), float("-inf"))
    best_i = torch.zeros((len(qb), 0), dtype=torch.int64)
    for c0 in range(0, db.shape[0], db_chunk):
        chunk = torch.from_numpy(db[c0 : c0 + db_chunk])
        scores = qt @ chunk.T
        kk = min(k, scores.shape[1])
        s, i = torch.topk(scores, kk, dim=1)
        cat_s = torch.cat([best_s, s], dim=1)
        cat_i = torch.cat([best_i, i + c0], dim=1)
        kk = min(k, cat_s.shape[1])
        best_s, order = torch.topk(cat_s, kk, dim=1)
        best_i = torch.gather(cat_i, 1, order)
    return best_s.cpu().numpy(), best_i.cpu().numpy()


def numpy_bruteforce_topk(queries: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: the full (M, N) similarity matrix in NumPy, then a sort. Memory grows with M × N.

    Used by the tests (as the independent reference) and by the benchmark (as the baseline).
    """
    q = np.asarray(queries, dtype=np.float32)
    db = np.asarray(database, dtype=np.float32)
    k = min(k, db.shape[0])
    scores = q @ db.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_s = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_s, axis=1, kind="stable")
    return np.take_along_axis(part_s, order, axis=1), np.take_along_axis(part, order, axis=1)
