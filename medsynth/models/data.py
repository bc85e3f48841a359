"""Training data for the inpainter: ROI patches at a fixed physical spacing, cut from a dataset.

Two kinds of patch go into the bank, both resampled to the model's ``spacing_mm`` so a lesion keeps
its size in millimetres:

- lesion-centred crops (each lesion of :func:`~medsynth.models.patches.lesion_components`, a few
  crops with the centre jittered) with the real lesion mask;
- healthy-tissue crops (inside the breast, no lesion in the ROI); they get a random lesion-shaped
  mask at every draw, so the model also learns to continue tissue (these carry class label 0).

The bank is computed once and deterministically (from ``seed``); per-step randomness — which
patches, flips, intensity changes, random masks — comes from the training loop's generator in
:func:`augment_batch`, so a checkpoint that stores that generator resumes exactly.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from medsynth.config import load_config
from medsynth.errors import InvalidDatasetError
from medsynth.models.patches import crop_at, lesion_crop_centres, lesion_rule_of


@dataclass
class PatchBank(torch.utils.data.Dataset):
    """The training patches, in memory.

    Attributes:
        images: (N, S, S) float32 in [0, 1].
        masks: (N, S, S) bool (all False for healthy crops; their masks are drawn per step).
        healthy: (N,) bool.
        info: where the data came from (source, layout, counts, fingerprint).
    """

    images: torch.Tensor
    masks: torch.Tensor
    healthy: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.images[i][None], self.masks[i][None].float(), self.healthy[i].float()


def _iter_sources(data: Any) -> tuple[Iterable[tuple[str, Any]], dict[str, Any]]:
    """Normalise the accepted inputs to (id, getter) pairs; a getter returns (image, mask, spacing)."""
    if isinstance(data, (str, Path)):
        from medsynth.io.datasets import load_dataset

        data = load_dataset(data)
    if isinstance(data, Sequence) and len(data) and isinstance(data[0], tuple):
        items = [(f"array-{i}", (lambda t=t: t)) for i, t in enumerate(data)]
        return items, {"source": "in-memory arrays", "layout": "arrays", "n_cases": len(items)}
    try:
        n = len(data)
    except TypeError as e:
        raise InvalidDatasetError(
            f"expected a dataset path, a Dataset of Cases or (image, mask, spacing) tuples; got {type(data).__name__}"
        ) from e

    def getter(case: Any) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float]]:
        image = case.image.unit_pixels()
        mask = None if case.mask is None else np.asarray(case.mask.pixels) > 0
        case.image.release()
        if case.mask is not None:
            case.mask.release()
        return image, mask, tuple(case.image.spacing)

    items = [(str(c.case_id), (lambda c=c: getter(c))) for c in data]
    info = {"source": str(getattr(data, "root", "dataset")), "layout": getattr(data, "layout", "?"), "n_cases": n}
    return items, info


def random_lesion_masks(n: int, size: int, spacing_mm: float, radius_mm: Sequence[float],
                        generator: torch.Generator) -> torch.Tensor:
    """``n`` random lesion-shaped masks (lobulated blobs with an irregular border), (n, size, size) bool.

    The radius in mm is uniform in ``radius_mm``; the border is a sum of a few random harmonics;
    the centre is jittered within a quarter of the patch.
    """
    if n == 0:
        return torch.zeros(0, size, size, dtype=torch.bool)
    u = torch.rand(n, 12, generator=generator)
    r_mm = radius_mm[0] + (radius_mm[1] - radius_mm[0]) * u[:, 0]
    r_px = (r_mm / spacing_mm).clamp(max=size * 0.4)
    cy = (size - 1) / 2 + (u[:, 1] - 0.5) * size * 0.25
    cx = (size - 1) / 2 + (u[:, 2] - 0.5) * size * 0.25
    elong = 0.7 + 0.6 * u[:, 3]  # aspect ratio
    rot = u[:, 4] * math.pi
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    dy, dx = yy[None] - cy[:, None, None], xx[None] - cx[:, None, None]
    c, s = torch.cos(rot)[:, None, None], torch.sin(rot)[:, None, None]
    ry, rx = (c * dy + s * dx) / elong[:, None, None], (-s * dy + c * dx) * elong[:, None, None]
    rho, theta = torch.sqrt(ry**2 + rx**2), torch.atan2(ry, rx)
    border = torch.ones_like(rho)
    for k, (ia, ip) in zip((2, 3, 5), ((5, 6), (7, 8), (9, 10))):
        amp = (0.18 / k * 2) * u[:, ia][:, None, None]
        border = border + amp * torch.cos(k * theta + 2 * math.pi * u[:, ip][:, None, None])
    return rho <= r_px[:, None, None] * border


def augment_batch(images: torch.Tensor, masks: torch.Tensor, healthy: torch.Tensor, generator: torch.Generator,
                  spacing_mm: float, data_config: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample augmentation of a (B,1,S,S) batch, all randomness from ``generator``.

    Healthy patches get a random lesion-shaped mask; then random horizontal/vertical flips and a
    small random gamma/contrast change. Returns (images in [0, 1], masks float {0, 1}).
    """
    B, _, S, _ = images.shape
    if B == 0:
        return images, masks
    new_masks = random_lesion_masks(B, S, spacing_mm, data_config["random_mask_radius_mm"], generator)
    masks = torch.where(healthy.bool()[:, None, None, None], new_masks[:, None].float(), masks)
    u = torch.rand(B, 4, generator=generator)
    if data_config["flips"]:
        hflip, vflip = (u[:, 0] < 0.5)[:, None, None, None], (u[:, 1] < 0.5)[:, None, None, None]
        images = torch.where(hflip, images.flip(-1), images)
        masks = torch.where(hflip, masks.flip(-1), masks)
        images = torch.where(vflip, images.flip(-2), images)
        masks = torch.where(vflip, masks.flip(-2), masks)
    a = float(data_config["intensity_jitter"])
    if a > 0:
        gamma = (1.0 + a * (2 * u[:, 2] - 1))[:, None, None, None]
        gain = (1.0 + a * (2 * u[:, 3] - 1))[:, None, None, None]
        images = (images.clamp(0, 1) ** gamma * gain).clamp(0, 1)
    return images, masks


def build_patch_bank(
    data: Any,
    image_size: int,
    spacing_mm: float,
    data_config: dict[str, Any] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> PatchBank:
    """Cut the training patches out of ``data``.

    Args:
        data: a dataset path (anything ``load_dataset`` reads), a Dataset/sequence of Cases, or a
            list of (image in [0, 1], mask or None, (row, col) spacing mm) tuples.
        image_size: patch side in pixels.
        spacing_mm: patch pixel spacing in mm.
        data_config: settings laid over the ``data`` section of ``configs/train.yaml`` (its defaults).
        seed: seed of the crop positions.
        progress: show a rich progress bar.

    Raises:
        InvalidDatasetError: the data yields no patch at all.
        ConfigError: ``data_config`` names an unknown setting.
    """
    cfg = load_config({"data": dict(data_config or {})}, kind="train")["data"]
    items, info = _iter_sources(data)
    if cfg["max_cases"]:
        items = items[: int(cfg["max_cases"])]
    rng = np.random.default_rng(seed)
    roi_mm = image_size * spacing_mm
    imgs: list[np.ndarray] = []
    msks: list[np.ndarray] = []
    healthy: list[bool] = []
    skipped_large = 0
    ids = []
    iterator: Iterable = items
    if progress:
        from rich.progress import track

        iterator = track(items, description="cutting patches", transient=True)
    for case_id, get in iterator:
        image, mask, spacing = get()
        image = np.asarray(image, dtype=np.float32)
        sr, sc = float(spacing[0]), float(spacing[1])
        ids.append(case_id)
        lesion_any = mask is not None and bool(np.any(mask))
        if lesion_any:
            centres, too_large = lesion_crop_centres(mask, (sr, sc), roi_mm, **lesion_rule_of(cfg))
            skipped_large += too_large
            for (cy, cx), room in centres:
                jit = min(room, float(cfg["jitter_mm"]))
                for _ in range(int(cfg["lesion_crops_per_lesion"])):
                    dy, dx = rng.uniform(-jit, jit, size=2)
                    patch, pmask, _ = crop_at(
                        image, (sr, sc), (cy + dy / sr, cx + dx / sc), roi_mm, image_size, mask=mask
                    )
                    if pmask is None or not pmask.any():
                        continue
                    imgs.append(patch)
                    msks.append(pmask)
                    healthy.append(False)
        # Healthy tissue: ROI fully inside the breast and away from every lesion.
        tissue = image > (float(image.min()) + float(cfg["tissue_threshold"]))
        hh, ww = int(round(roi_mm / sr)), int(round(roi_mm / sc))
        H, W = image.shape
        if H < hh or W < ww or int(cfg["healthy_crops_per_case"]) <= 0:
            continue
        ys, xs = np.nonzero(tissue[hh // 2 : H - hh // 2, ww // 2 : W - ww // 2])
        if ys.size == 0:
            continue
        got = 0
        for _ in range(20 * int(cfg["healthy_crops_per_case"])):
            if got >= int(cfg["healthy_crops_per_case"]):
                break
            k = int(rng.integers(ys.size))
            cy, cx = ys[k] + hh // 2, xs[k] + ww // 2
            r0, c0 = int(round(cy - (hh - 1) / 2)), int(round(cx - (ww - 1) / 2))
            window = (slice(max(r0, 0), r0 + hh), slice(max(c0, 0), c0 + ww))
            if tissue[window].mean() < 0.95 or (lesion_any and mask[window].any()):
                continue
            patch, _, _ = crop_at(image, (sr, sc), (cy, cx), roi_mm, image_size)
            imgs.append(patch)
            msks.append(np.zeros((image_size, image_size), dtype=bool))
            healthy.append(True)
            got += 1
    if not imgs:
        raise InvalidDatasetError(
            f"no training patch could be cut from {info['source']} ({len(items)} cases; "
            f"{skipped_large} lesion(s) larger than the {roi_mm:.0f} mm ROI)"
        )
    images = torch.from_numpy(np.clip(np.stack(imgs), 0, 1).astype(np.float32))
    masks = torch.from_numpy(np.stack(msks))
    healthy_t = torch.tensor(healthy, dtype=torch.bool)
    h = hashlib.sha256()
    for arr in (images.cpu().numpy(), masks.cpu().numpy()):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update("\n".join(ids).encode())
    info.update(
        n_cases=len(items),
        n_lesion_crops=int((~healthy_t).sum()),
        n_healthy_crops=int(healthy_t.sum()),
        n_lesions_too_large=skipped_large,
        lesion_rule=lesion_rule_of(cfg),  # read back by the membership-inference audit to cut the same crops
        image_size=image_size,
        spacing_mm=spacing_mm,
        fingerprint=h.hexdigest(),
    )
    return PatchBank(images, masks, healthy_t, info)
