"""Memorization: is any synthetic image (or lesion ROI) a copy of a training one?

For each synthetic sample the nearest training samples are found in several spaces:

- **NCC of pixels** (Akbar et al.): zero-mean, unit-norm, lightly blurred pixel vectors; the inner
  product is the normalised cross-correlation. The synthetic sample and its flips are searched
  exactly (FAISS inner product), then the best candidates are re-scored with the maximum NCC over
  small shifts (FFT cross-correlation), so flipped, shifted, slightly cropped, intensity-rescaled
  and lightly noised copies still score close to 1.
- **SSIM** (scikit-image) of the best-aligned pair, on intensity-standardised pixels.
- **Cosine of embeddings** from a feature extractor (the self-supervised ``domain`` encoder of
  :mod:`medsynth.metrics.features`, or ``invariant``: a flip- and shift-invariant Fourier-magnitude
  representation of the pixels that needs no training).
- **Carlini et al.'s ratio**: ℓ2 distance to the nearest training sample over α × the mean distance
  to the n nearest (α = 0.5, n = 50), in the normalised pixel space; near 0 for a copy, near
  2 when the nearest neighbour is no closer than the rest.

A sample is flagged when any space with a threshold crosses it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import ndimage

from medsynth.auditing.search import exact_topk, l2_normalize

#: Mirror images of the synthetic sample tried against the training set (a copy may be flipped).
FLIPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda a: a,
    "hflip": lambda a: a[..., :, ::-1],
    "vflip": lambda a: a[..., ::-1, :],
    "rot180": lambda a: a[..., ::-1, ::-1],
}


def zoom_center(arr: np.ndarray, zoom: float) -> np.ndarray:
    """(N, p, p) images magnified by ``zoom`` about their centre, same size (edges extended).

    A copy made by cropping a few percent and resizing back is the original magnified by
    1 / (1 - crop); zooming the synthetic image by the inverse undoes it. Bilinear, through
    torch's ``grid_sample`` (many times faster than ``scipy.ndimage.affine_transform`` on stacks).
    """
    if zoom == 1.0:
        return arr
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[:, None]
    inv = 1.0 / float(zoom)
    grid = _zoom_grid(inv, int(x.shape[-2]), int(x.shape[-1])).expand(len(x), -1, -1, -1)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[:, 0].cpu().numpy()


@functools.lru_cache(maxsize=64)
def _zoom_grid(inv: float, h: int, w: int) -> Any:
    """The sampling grid of a zoom about the centre, shape (1, h, w, 2); the same for every image.

    align_corners=True: -1 and 1 are the first and last pixel centres, so (p - 1) / 2 stays put.
    """
    import torch
    import torch.nn.functional as F

    theta = torch.tensor([[[inv, 0.0, 0.0], [0.0, inv, 0.0]]], dtype=torch.float32)
    return F.affine_grid(theta, [1, 1, h, w], align_corners=True)


def variant_names(cfg: dict[str, Any]) -> list[str]:
    """Every (flip, zoom) pair searched, as "flip@zoom" names."""
    return [f"{f}@{float(z):g}" for f in cfg["flips"] if f in FLIPS for z in cfg["zooms"]]


def apply_variant(arr: np.ndarray, name: str) -> np.ndarray:
    """Apply a "flip@zoom" variant to (N, p, p) or (p, p) images."""
    flip, _, zoom = name.partition("@")
    single = arr.ndim == 2
    out = zoom_center(np.ascontiguousarray(FLIPS[flip](arr[None] if single else arr)), float(zoom or 1.0))
    return np.ascontiguousarray(out[0] if single else out)


def band_pass(arr: np.ndarray, blur_sigma: float, highpass_sigma: float = 0.0) -> np.ndarray:
    """(N, p, p) images lightly blurred (``blur_sigma``) minus a wide blur (``highpass_sigma``, 0 = off).

    The light blur makes NCC robust to noise and sub-pixel shifts; removing the wide blur removes
    the breast outline and density gradient that every mammogram shares, so NCC measures the tissue
    pattern that identifies an image. Both kernels are symmetric, so filtering commutes with flips.
    """
    arr = np.asarray(arr, dtype=np.float32)
    out = ndimage.gaussian_filter(arr, sigma=(0, blur_sigma, blur_sigma)) if blur_sigma > 0 else arr
    if highpass_sigma > 0:
        out = out - ndimage.gaussian_filter(arr, sigma=(0, highpass_sigma, highpass_sigma))
    return out


def center_normalize(arr: np.ndarray) -> np.ndarray:
    """(N, p, p) → (N, p*p) zero-mean unit-norm vectors (their inner product is the NCC)."""
    flat = np.asarray(arr, dtype=np.float32).reshape(len(arr), -1)
    return l2_normalize(flat - flat.mean(axis=1, keepdims=True))


def ncc_vectors(arr: np.ndarray, blur_sigma: float, highpass_sigma: float = 0.0) -> np.ndarray:
    """(N, p, p) images → (N, p*p) band-passed, zero-mean unit-norm vectors (inner product = NCC)."""
    return center_normalize(band_pass(arr, blur_sigma, highpass_sigma))


def shifted_ncc(a: np.ndarray, b: np.ndarray, max_shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Maximum NCC of pairs over shifts up to ``max_shift`` px, by FFT cross-correlation.

    Args:
        a, b: (B, p, p) zero-mean unit-norm images (as from :func:`ncc_vectors`, reshaped).
        max_shift: largest shift tried along each axis.

    Returns:
        (best NCC (B,), best shift (B, 2) as (dy, dx) with a[y + dy, x + dx] ≈ b[y, x]).
        Zero padding keeps the correlation linear (no wrap-around); the norm is the full image's,
        so a shifted score is a slight under-estimate (the border that left the frame counts as lost).
    """
    from scipy import fft

    bsz, h, w = a.shape
    if max_shift <= 0:
        return np.einsum("bij,bij->b", a, b), np.zeros((bsz, 2), dtype=np.int64)
    shape = (h + max_shift, w + max_shift)
    # scipy.fft keeps float32 in single precision and uses every core (numpy's FFT is float64, one core).
    fa = fft.rfft2(a, s=shape, workers=-1)
    fb = fft.rfft2(b, s=shape, workers=-1)
    corr = fft.irfft2(fa * np.conj(fb), s=shape, workers=-1)  # corr[s] = sum_x a[x + s] b[x]
    m = max_shift
    rows = np.r_[0 : m + 1, shape[0] - m : shape[0]]
    cols = np.r_[0 : m + 1, shape[1] - m : shape[1]]
    window = corr[:, rows][:, :, cols]
    flat = window.reshape(bsz, -1)
    best = flat.argmax(axis=1)
    shifts = np.r_[0 : m + 1, -m:0]
    dy, dx = shifts[best // len(cols)], shifts[best % len(cols)]
    return flat[np.arange(bsz), best].astype(np.float32), np.stack([dy, dx], axis=1).astype(np.int64)


def aligned_ssim(a: np.ndarray, b: np.ndarray, shift: tuple[int, int]) -> float:
    """SSIM of ``a`` and ``b`` after shifting by ``shift`` (as :func:`shifted_ncc` returns it), on
    the overlapping region, each image standardised first so an intensity rescaling does not count."""
    from skimage.metrics import structural_similarity

    dy, dx = int(shift[0]), int(shift[1])
    h, w = a.shape
    # a[y + dy, x + dx] ~ b[y, x]: keep the rows/cols where both exist.
    ay0, ay1 = max(dy, 0), h + min(dy, 0)
    ax0, ax1 = max(dx, 0), w + min(dx, 0)
    aa = a[ay0:ay1, ax0:ax1]
    bb = b[ay0 - dy : ay1 - dy, ax0 - dx : ax1 - dx]
    aa = (aa - aa.mean()) / (aa.std() + 1e-8)
    bb = (bb - bb.mean()) / (bb.std() + 1e-8)
    win = min(7, min(aa.shape) - (1 - min(aa.shape) % 2))
    if win < 3:
        return float("nan")
    rng = float(max(aa.max(), bb.max()) - min(aa.min(), bb.min())) or 1.0
    return float(structural_similarity(aa, bb, data_range=rng, win_size=win))


class InvariantPixelEmbedder:
    """A training-free embedding invariant to flips, circular shifts and intensity scaling.

    The log-magnitude of the 2-D Fourier transform does not change under (circular) shifts; summing
    it over the four mirror images of the frequency plane makes it flip-invariant; the low-frequency
    block is kept, centred and L2-normalised, so a contrast change does not count either.
    """

    name = "invariant-pixels"

    def __init__(self, n_freq: int = 12) -> None:
        self.n_freq = n_freq

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W) in [0, 1] → (N, D) float32."""
        x = np.asarray(images, dtype=np.float32)
        x = x - x.mean(axis=(1, 2), keepdims=True)
        mag = np.abs(np.fft.fft2(x))
        # Mirror images of the frequency plane: index k -> -k (mod n) along each axis.
        neg_r = (-np.arange(x.shape[1])) % x.shape[1]
        neg_c = (-np.arange(x.shape[2])) % x.shape[2]
        mag = mag + mag[:, neg_r, :] + mag[:, :, neg_c] + mag[:, neg_r][:, :, neg_c]
        # Scale out the contrast before the log, so the log does not bring it back.
        mag = mag / (np.linalg.norm(mag.reshape(len(x), -1), axis=1)[:, None, None] + 1e-12)
        # Indices [-n..n] along each axis: the low-frequency block around DC (DC itself is 0).
        k = self.n_freq
        idx = np.r_[0 : k + 1, -k:0]
        block = np.log1p(100.0 * mag[:, idx][:, :, idx])
        flat = block.reshape(len(x), -1)
        flat = flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-12)
        return flat.astype(np.float32)


def make_embedder(spec: str | None, train_arrays: np.ndarray, cache_dir: Any = None,
                  options: dict[str, Any] | None = None, device: Any = None) -> Any:
    """The embedding used for the cosine space: ``None``/"none" (skip), "invariant", or any spec
    :func:`medsynth.metrics.features.get_extractor` takes ("domain", "random", "inception:PATH"),
    fitted on the training arrays where the extractor learns, computed on ``device``."""
    if spec in (None, "none"):
        return None
    if spec == "invariant":
        return InvariantPixelEmbedder()
    from medsynth.metrics.features import get_extractor

    return get_extractor(spec, real=train_arrays, cache_dir=cache_dir, config=options or None, device=device)


def flag_samples(scores: dict[str, np.ndarray | None],
                 thresholds: dict[str, float | None]) -> tuple[np.ndarray, list[list[str]]]:
    """Which samples cross any space's threshold, and which spaces each crossed.

    Args:
        scores: per space ("ncc", "ssim", "carlini_ratio", "embedding_cosine"), one score per sample
            (None: the space was not computed).
        thresholds: per space, the threshold (None: report only). A sample is flagged at NCC, SSIM or
            cosine >= its threshold, or at Carlini ratio <= its threshold; NaN never crosses.
    """
    m = len(next(v for v in scores.values() if v is not None))
    flagged = np.zeros(m, dtype=bool)
    reasons: list[list[str]] = [[] for _ in range(m)]
    for key in ("ncc", "ssim", "carlini_ratio", "embedding_cosine"):
        values, limit = scores.get(key), thresholds.get(key)
        if values is None or limit is None:
            continue
        below = key == "carlini_ratio"
        values = np.nan_to_num(np.asarray(values), nan=np.inf if below else -np.inf)
        hit = values <= float(limit) if below else values >= float(limit)
        flagged |= hit
        for i in np.nonzero(hit)[0]:
            reasons[i].append(key)
    return flagged, reasons


@dataclass
class ScopeResult:
    """Nearest-neighbour evidence for one scope ("image" or "roi") of the synthetic set.

    Arrays have one row per synthetic sample of the scope.
    """

    scope: str
    nn_index: np.ndarray  # index of the nearest training sample (by shifted NCC)
    ncc: np.ndarray  # best NCC over flips and shifts
    variant: list[str]  # the flip@zoom that gave it
    shift: np.ndarray  # (M, 2) the shift that gave it
    ssim: np.ndarray  # SSIM of the best-aligned pair
    carlini_ratio: np.ndarray  # d_nn / (alpha * mean d of the n nearest)
    nn_distance: np.ndarray  # ℓ2 distance to the nearest, in normalised pixel space (= sqrt(2 - 2 NCC))
    embedding_cosine: np.ndarray | None  # best cosine in the embedding space, or None
    embedding_index: np.ndarray | None
    embedding_name: str | None
    flagged: np.ndarray  # bool
    reasons: list[list[str]]

    def scores(self) -> dict[str, np.ndarray | None]:
        """Each space's scores by name (None: not computed)."""
        return {"ncc": self.ncc, "ssim": self.ssim, "carlini_ratio": self.carlini_ratio,
                "embedding_cosine": self.embedding_cosine}

    def reflag(self, thresholds: dict[str, float | None]) -> None:
        """Flag again with other thresholds (the calibrated ones)."""
        self.flagged, self.reasons = flag_samples(self.scores(), thresholds)


def nearest_training(
    synthetic: np.ndarray,
    train: np.ndarray,
    cfg: dict[str, Any],
    scope: str,
    embedder: Any = None,
    on_progress: Callable[[int], None] | None = None,
) -> ScopeResult:
    """Nearest training sample of every synthetic sample in every space, and which are copies.

    Synthetic samples go through in batches (every flip and zoom of a batch is searched, then
    re-scored), so memory is bounded by the batch and the training vectors.

    Args:
        synthetic: (M, p, p) float32 in [0, 1].
        train: (N, p, p) float32 in [0, 1].
        cfg: the ``memorization`` section of the audit config.
        scope: "image" or "roi" (kept in the result).
        embedder: an object with ``.embed(images) -> (N, D)``, or None to skip that space.
        on_progress: called with the number of synthetic samples finished after each batch.
    """
    m, p = len(synthetic), train.shape[-1]
    variants = variant_names(cfg)
    blur, hp = float(cfg["blur_sigma"]), float(cfg["highpass_sigma"])
    batch = int(cfg["batch_size"])
    train_vecs = ncc_vectors(train, blur, hp)
    train_imgs = train_vecs.reshape(-1, p, p)
    n_near = min(int(cfg["carlini_n"]), len(train))
    rerank_k = min(int(cfg["rerank_k"]), len(train))
    n_var = int(cfg["rerank_variants"])
    k = max(n_near, rerank_k)
    max_shift = int(cfg["max_shift_px"])

    best_ncc = np.full(m, -np.inf, dtype=np.float32)
    best_j = np.zeros(m, dtype=np.int64)
    best_v = np.zeros(m, dtype=np.int64)
    best_shift = np.zeros((m, 2), dtype=np.int64)
    d_near_mean = np.zeros(m, dtype=np.float64)
    for s0 in range(0, m, batch):
        sl = slice(s0, min(s0 + batch, m))
        rows = np.arange(sl.start, sl.stop)
        nb = len(rows)
        top1 = np.full(nb, -np.inf, dtype=np.float32)
        qstack = np.empty((len(variants), nb, p * p), dtype=np.float32)
        cand_s = np.empty((nb, len(variants) * rerank_k), dtype=np.float32)
        cand_j = np.empty((nb, len(variants) * rerank_k), dtype=np.int64)
        cand_v = np.empty((nb, len(variants) * rerank_k), dtype=np.int64)
        # Filtering commutes with flips and (to within the small change of scale) with the zooms,
        # so the batch is filtered once and every variant is made from the filtered images.
        filtered = band_pass(synthetic[sl], blur, hp)
        for v, name in enumerate(variants):
            # 1. Exact inner-product search of this flip/zoom of the batch.
            qstack[v] = center_normalize(apply_variant(filtered, name))
            sims, idx = exact_topk(qstack[v], train_vecs, k, batch_size=batch)
            # Carlini's n nearest come from the variant whose plain search matched best.
            better = sims[:, 0] > top1
            top1[better] = sims[better, 0]
            d = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * sims[:, :n_near].astype(np.float64)))
            d_near_mean[rows[better]] = d[better].mean(axis=1)
            cols = slice(v * rerank_k, (v + 1) * rerank_k)
            cand_s[:, cols], cand_j[:, cols], cand_v[:, cols] = sims[:, :rerank_k], idx[:, :rerank_k], v
        # 2. Re-score the rerank_k most similar distinct training samples with the maximum NCC over
        #    small shifts, each under the (up to) rerank_variants flips/zooms that matched it best
        #    (the best unshifted match is not always the best once shifted).
        order = np.argsort(-cand_s, axis=1, kind="stable")
        n_pairs = rerank_k * n_var
        pick_j = np.empty((nb, n_pairs), dtype=np.int64)
        pick_v = np.empty((nb, n_pairs), dtype=np.int64)
        for b in range(nb):
            chosen: dict[int, list[int]] = {}
            for c in order[b]:
                j, v = int(cand_j[b, c]), int(cand_v[b, c])
                if j in chosen:
                    if len(chosen[j]) < n_var and v not in chosen[j]:
                        chosen[j].append(v)
                elif len(chosen) < rerank_k:
                    chosen[j] = [v]
            pairs = [(j, v) for j, vs in chosen.items() for v in vs]
            pairs += [pairs[0]] * (n_pairs - len(pairs))  # pad with a repeat (scored twice, harmless)
            pick_j[b], pick_v[b] = [j for j, _ in pairs], [v for _, v in pairs]
        for r in range(n_pairs):
            q = qstack[pick_v[:, r], np.arange(nb)].reshape(-1, p, p)
            score, shift = shifted_ncc(q, train_imgs[pick_j[:, r]], max_shift)
            hit = score > best_ncc[rows]
            best_ncc[rows[hit]], best_j[rows[hit]] = score[hit], pick_j[hit, r]
            best_v[rows[hit]], best_shift[rows[hit]] = pick_v[hit, r], shift[hit]
        if on_progress is not None:
            on_progress(nb)
    best_ncc = np.clip(best_ncc, -1.0, 1.0)

    # 3. Carlini's ratio in the normalised pixel space (the nearest is the best-aligned one).
    d_nn = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * best_ncc.astype(np.float64)))
    alpha = float(cfg["carlini_alpha"])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(d_near_mean > 0, d_nn / (alpha * d_near_mean), 0.0).astype(np.float32)

    # 4. SSIM of each best-aligned pair, on the unfiltered pixels.
    ssim = np.empty(m, dtype=np.float32)
    for v in np.unique(best_v):
        members = np.nonzero(best_v == v)[0]
        aligned = apply_variant(synthetic[members], variants[v])
        for i, syn in zip(members, aligned):
            ssim[i] = aligned_ssim(syn, train[best_j[i]], tuple(best_shift[i]))

    # 5. Cosine similarity of embeddings; flips are searched too (not every encoder is invariant).
    emb_cos = emb_idx = None
    if embedder is not None:
        e_train = l2_normalize(embedder.embed(train))
        emb_cos = np.full(m, -np.inf, dtype=np.float32)
        emb_idx = np.zeros(m, dtype=np.int64)
        for flip in cfg["flips"]:
            e_syn = l2_normalize(embedder.embed(apply_variant(synthetic, f"{flip}@1")))
            s, i = exact_topk(e_syn, e_train, 1, batch_size=batch)
            better = s[:, 0] > emb_cos
            emb_cos[better], emb_idx[better] = s[better, 0], i[better, 0]

    # 6. Flags: any space over its threshold.
    flagged, reasons = flag_samples(
        {"ncc": best_ncc, "ssim": ssim, "carlini_ratio": ratio, "embedding_cosine": emb_cos}, cfg["thresholds"]
    )

    return ScopeResult(
        scope=scope,
        nn_index=best_j,
        ncc=best_ncc,
        variant=[variants[v] for v in best_v],
        shift=best_shift,
        ssim=ssim,
        carlini_ratio=ratio,
        nn_distance=d_nn.astype(np.float32),
        embedding_cosine=emb_cos,
        embedding_index=emb_idx,
        embedding_name=getattr(embedder, "name", None) if embedder is not None else None,
        flagged=flagged,
        reasons=reasons,
    )
