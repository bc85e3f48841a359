"""Training data for the inpainter: ROI patches at fixed physical spacings, cut from a dataset, each
with the attributes of its lesion.

Three kinds of patch go into the bank (all ``image_size`` pixels):

- mass-centred crops (each mass of :func:`~medsynth.models.patches.lesion_components`, a few crops
  with the centre jittered) at the model's ``spacing_mm``, with the real lesion mask;
- calcification crops at ``calcification_spacing_mm`` (the data's own spacing by default, so the
  specks are drawn as they are): windows centred on the cluster, or on random points of it when the
  cluster is larger than a window;
- healthy-tissue crops (inside the breast, no lesion in the ROI) at both spacings; they get a random
  lesion-shaped mask at every draw, so the model also learns to continue tissue (class "healthy").

Each patch carries attribute codes (:mod:`medsynth.models.attributes`): its class, its size, the case's
breast density, and the descriptors of the dataset's lesion record that matches it (CBIS-DDSM
CSV rows matched by the bounding box of their ROI mask; a folder's ``cases.csv`` when unambiguous;
(image, label map, spacing, metadata) tuples whose metadata lists lesions with a ``bbox``, as the
phantoms' do). What the data does not say is a null token.

The bank is computed once and deterministically (from ``seed``); per-step randomness — which
patches, flips, intensity changes, random masks, condition dropout — comes from the training loop's
generator in :func:`augment_batch`, so a checkpoint that stores that generator resumes exactly.
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
from medsynth.errors import ConfigError, InvalidDatasetError
from medsynth.models import attributes as attrs
from medsynth.models.patches import Lesion, crop_at, lesion_components, lesion_rule_of


@dataclass
class PatchBank(torch.utils.data.Dataset):
    """The training patches, in memory.

    Attributes:
        images: (N, S, S) float32 in [0, 1].
        masks: (N, S, S) bool (all False for healthy crops; their masks are drawn per step).
        healthy: (N,) bool.
        info: where the data came from (source, layout, counts, fingerprint, measured texture transmission).
        codes: (N, n_attributes) long, the attribute codes (default: class mass / healthy, the rest null).
        spacing: (N,) float32, each patch's spacing in mm (default: ``info["spacing_mm"]``).
    """

    images: torch.Tensor
    masks: torch.Tensor
    healthy: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)
    codes: torch.Tensor | None = None
    spacing: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = int(self.images.shape[0])
        if self.codes is None:  # no attributes known: lesion crops are masses, the rest healthy tissue
            klass = torch.where(self.healthy, 0, 1).long()
            offs = attrs.offsets()
            codes = torch.tensor(list(offs.values()), dtype=torch.long)[None].repeat(n, 1)
            codes[:, 0] = offs["class"] + 1 + klass
            self.codes = codes
        if self.spacing is None:
            self.spacing = torch.full((n,), float(self.info.get("spacing_mm", float("nan"))), dtype=torch.float32)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return (self.images[i][None], self.masks[i][None].float(), self.healthy[i].float(), self.codes[i],
                self.spacing[i])


def _iter_sources(data: Any, spacing_mm: Any = None) -> tuple[list[tuple[str, Any, Any]], dict[str, Any]]:
    """Normalise the accepted inputs to (id, getter, spacing) triples; a getter returns (image, label
    map or None, spacing, lesion records, density, metadata) and the spacing is known without the
    pixels. A scan whose file states no spacing takes ``spacing_mm`` or is refused (medsynth.io.spacing)."""
    from medsynth.io.spacing import resolve_spacing

    if isinstance(data, (str, Path)):
        from medsynth.io.datasets import load_dataset

        data = load_dataset(data, spacing_mm=spacing_mm)
    elif hasattr(data, "__iter__") and len(data) and hasattr(data[0], "image"):
        resolve_spacing(data, spacing_mm)  # cases loaded elsewhere: the same rule
    if isinstance(data, Sequence) and len(data) and isinstance(data[0], tuple):
        for i, t in enumerate(data):
            if not all(math.isfinite(float(v)) and float(v) > 0 for v in t[2]):
                raise InvalidDatasetError(f"case {i}: pixel spacing must be positive and known, got {t[2]}")
        def tuple_getter(t: tuple) -> tuple:
            meta = t[3] if len(t) > 3 and t[3] is not None else {}
            return t[0], t[1], t[2], list(meta.get("lesions") or []), attrs.case_density(meta), meta

        items = [(f"array-{i}", (lambda t=t: tuple_getter(t)), tuple(t[2])) for i, t in enumerate(data)]
        return items, {"source": "in-memory arrays", "layout": "arrays", "n_cases": len(items)}
    try:
        n = len(data)
    except TypeError as e:
        raise InvalidDatasetError(
            f"expected a dataset path, a Dataset of Cases or (image, mask, spacing) tuples; got {type(data).__name__}"
        ) from e

    def getter(case: Any) -> tuple:
        image = case.image.unit_pixels()
        mask = None if case.mask is None else np.asarray(case.mask.pixels)
        case.image.release()
        records = _case_records(case) if mask is not None else []
        if case.mask is not None:
            case.mask.release()
        meta = dict(case.metadata or {})
        return image, mask, tuple(case.image.spacing), records, attrs.case_density(meta), meta

    items = [(str(c.case_id), (lambda c=c: getter(c)), tuple(c.image.spacing)) for c in data]
    info = {"source": str(getattr(data, "root", "dataset")), "layout": getattr(data, "layout", "?"), "n_cases": n}
    return items, info


def _case_records(case: Any) -> list[dict[str, Any]]:
    """The lesion records of a CBIS-DDSM-style case (one CSV row per lesion) with the bounding box of
    each row's ROI mask, so a lesion of the label map can be matched to its row."""
    rows = list((case.metadata or {}).get("lesions") or [])
    paths = list((case.mask.metadata or {}).get("roi_paths") or [])
    if not rows or len(paths) != len(rows):
        return []
    from medsynth.io.readers import load_scan

    out = []
    for row, path in zip(rows, paths):
        try:
            roi = load_scan(path)
            black = float(roi.metadata.get("value_range", (0.0, 0.0))[0])
            fg = roi.pixels > black
            roi.release()
        except Exception:  # an unreadable ROI only costs its attributes; the union mask reader reports it
            continue
        if not fg.any():
            continue
        r, c = np.nonzero(fg)
        rec = dict(row)
        rec["bbox"] = (int(r.min()), int(c.min()), int(r.max()) + 1, int(c.max()) + 1)
        out.append(rec)
    return out


def _iou(a: Sequence[int], b: Sequence[int]) -> float:
    r0, c0 = max(a[0], b[0]), max(a[1], b[1])
    r1, c1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, r1 - r0) * max(0, c1 - c0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _record_class(record: dict[str, Any]) -> str | None:
    kind = str(record.get("type") or record.get("abnormality_type") or "").lower()
    if not kind and record.get("label") is not None:
        kind = {1: "mass", 2: "calcification"}.get(int(record["label"]), "")
    return "calcification" if kind.startswith("calc") else "mass" if kind.startswith("mass") else None


def lesion_attributes(lesion: Lesion, spacing: tuple[float, float], records: list[dict[str, Any]],
                      density: str | None, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The attributes of one lesion: its class (from its label), size (its extent), the case's density,
    and the descriptors of the record of the same class whose bounding box overlaps it most (CBIS-DDSM
    row, phantom lesion); without records, a folder ``cases.csv``'s unambiguous columns."""
    klass = "calcification" if lesion.label == 2 else "mass"
    out: dict[str, Any] = {"class": klass, "size": lesion.extent_mm(spacing), "density": density}
    best, best_iou = None, 0.0
    for rec in records:
        if rec.get("bbox") is None or _record_class(rec) not in (None, klass):
            continue
        iou = _iou(lesion.box, rec["bbox"])
        if iou > best_iou:
            best, best_iou = rec, iou
    if best is not None and best_iou > 0.1:
        row = {k.replace(" ", "_"): v for k, v in best.items()}
        row.setdefault("mass_shape", row.get("shape"))
        row.setdefault("mass_margins", row.get("margin"))
        row.setdefault("calc_distribution", row.get("distribution"))
        out.update({k: v for k, v in attrs.row_attributes(row).items() if v is not None})
    elif metadata and not records:
        out.update({k: v for k, v in attrs.folder_attributes(metadata, klass).items() if v is not None})
    if klass == "mass":
        out.pop("calc_type", None), out.pop("distribution", None)
    else:
        out.pop("shape", None), out.pop("margin", None)
    return out


def random_lesion_masks(n: int, size: int, spacing_mm: float | torch.Tensor, radius_mm: Sequence[float],
                        generator: torch.Generator) -> torch.Tensor:
    """``n`` random lesion-shaped masks (lobulated blobs with an irregular border), (n, size, size) bool.

    The radius in mm is uniform in ``radius_mm``; the border is a sum of a few random harmonics;
    the centre is jittered within a quarter of the patch. ``spacing_mm`` is one number or one per mask.
    """
    if n == 0:
        return torch.zeros(0, size, size, dtype=torch.bool)
    u = torch.rand(n, 12, generator=generator)
    r_mm = radius_mm[0] + (radius_mm[1] - radius_mm[0]) * u[:, 0]
    r_px = (r_mm / torch.as_tensor(spacing_mm, dtype=torch.float32)).clamp(max=size * 0.4)
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
                  spacing_mm: float | torch.Tensor, data_config: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample augmentation of a (B,1,S,S) batch, all randomness from ``generator``.

    Healthy patches get a random lesion-shaped mask (its size in mm at each patch's ``spacing_mm``,
    one number or one per patch); then random horizontal/vertical flips and a small random
    gamma/contrast change. Returns (images in [0, 1], masks float {0, 1}).
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


def lesion_classes(value: Any) -> tuple[str, ...]:
    """The lesion classes a model learns (its ``classes`` setting): None = both; else a non-empty list of
    ``mass`` / ``calcification``."""
    if value is None:
        return attrs.LESION_CLASSES
    names = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if not names or any(n not in attrs.LESION_CLASSES for n in names):
        raise ConfigError(f"classes must be null or a non-empty list of {', '.join(attrs.LESION_CLASSES)}; "
                          f"got {value!r}")
    return tuple(k for k in attrs.LESION_CLASSES if k in names)


def resolve_calcification_spacing(value: Any, spacing_mm: float, spacings: Sequence[tuple[float, float]]) -> float:
    """The calcification patch spacing: a number as given, None = ``spacing_mm`` (one scale), "auto" =
    the median of the data's finer pixel side, at least 0.1 mm (specks of 0.1-1 mm stay 1-10 px)."""
    if value is None:
        return float(spacing_mm)
    if isinstance(value, str):
        if value != "auto":
            raise ConfigError(f"calcification_spacing_mm must be a number, null or 'auto', got {value!r}")
        finest = [min(float(s[0]), float(s[1])) for s in spacings if all(np.isfinite(s))]
        if not finest:
            return float(spacing_mm)
        return round(max(float(np.median(finest)), 0.1), 4)
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"calcification_spacing_mm must be > 0, got {value}")
    return value


def _detail_ratio(image: np.ndarray, lesion: Lesion, spacing: tuple[float, float], coarse_mm: float,
                  others: np.ndarray) -> float | None:
    """How much of the fine detail (above the Nyquist frequency of ``coarse_mm``) a lesion keeps: the
    std of that detail inside the lesion (eroded by one coarse pixel) over its std in a 1-3 mm ring."""
    from scipy import ndimage
    from skimage.transform import resize

    sr, sc = float(spacing[0]), float(spacing[1])
    if coarse_mm <= 1.5 * min(sr, sc):
        return None
    pad = int(math.ceil(4.0 / min(sr, sc)))
    r0, c0, r1, c1 = lesion.box
    H, W = image.shape
    win = (slice(max(r0 - pad, 0), min(r1 + pad, H)), slice(max(c0 - pad, 0), min(c1 + pad, W)))
    patch = image[win]
    own = lesion.full_mask()[win]
    f = min(sr, sc) / coarse_mm
    small = resize(patch, (max(2, int(patch.shape[0] * f)), max(2, int(patch.shape[1] * f))), order=1,
                   anti_aliasing=True, preserve_range=True)
    detail = patch - resize(small, patch.shape, order=1, preserve_range=True)
    dist_out = ndimage.distance_transform_edt(~own, sampling=(sr, sc))
    dist_in = ndimage.distance_transform_edt(own, sampling=(sr, sc))
    inside = dist_in > coarse_mm
    ring = (dist_out > 1.0) & (dist_out <= 3.0) & ~others[win] & (patch > float(image.min()) + 0.05)
    if inside.sum() < 16 or ring.sum() < 16:
        return None
    return float(detail[inside].std() / max(detail[ring].std(), 1e-6))


def build_patch_bank(
    data: Any,
    image_size: int,
    spacing_mm: float,
    data_config: dict[str, Any] | None = None,
    seed: int = 0,
    progress: bool = False,
    *,
    calcification_spacing_mm: float | str | None = None,
    band_mm: float = 0.0,
    classes: Any = None,
) -> PatchBank:
    """Cut the training patches out of ``data``.

    Args:
        data: a dataset path (anything ``load_dataset`` reads), a Dataset/sequence of Cases, or a
            list of (image in [0, 1], label map or mask or None, (row, col) spacing mm[, metadata])
            tuples; a label map's value 2 is a calcification, other values masses; metadata (a dict)
            may give ``density`` and ``lesions`` (dicts with ``bbox`` and descriptors).
        image_size: patch side in pixels.
        spacing_mm: patch pixel spacing of masses and tissue, in mm.
        data_config: settings laid over the ``data`` section of ``configs/train.yaml`` (its defaults).
        seed: seed of the crop positions.
        progress: show a rich progress bar.
        calcification_spacing_mm: patch spacing of calcifications: None = ``spacing_mm`` (one scale,
            as the first model), "auto" = the data's own (see :func:`resolve_calcification_spacing`).
        band_mm: masses' editable band; their crops keep at least the band plus 1 mm of context.
        classes: the lesion classes to cut (the model's ``classes``): None = both; ``["calcification"]``
            = a dedicated calcification painter's crops (healthy ones at its spacing only).

    Raises:
        InvalidDatasetError: the data yields no patch at all.
        ConfigError: ``data_config`` names an unknown setting.
    """
    cfg = load_config({"data": dict(data_config or {})}, kind="train")["data"]
    items, info = _iter_sources(data, cfg["spacing_mm"])
    if cfg["max_cases"]:
        items = items[: int(cfg["max_cases"])]
    fine_mm = resolve_calcification_spacing(calcification_spacing_mm, spacing_mm, [sp for _, _, sp in items])
    two_scales = abs(fine_mm - float(spacing_mm)) > 1e-9
    classes = lesion_classes(classes)
    # Healthy crops at the scale of each class learnt (a dedicated calcification painter: the fine one only).
    scales = (sorted({fine_mm if k == "calcification" else float(spacing_mm) for k in classes}, reverse=True)
              if two_scales else [float(spacing_mm)])
    rng = np.random.default_rng(seed)
    rule = lesion_rule_of(cfg)
    margin = max(rule["margin_mm"], float(band_mm) + 1.0) if band_mm > 0 else rule["margin_mm"]
    imgs: list[np.ndarray] = []
    msks: list[np.ndarray] = []
    healthy: list[bool] = []
    codes: list[list[int]] = []
    spacings: list[float] = []
    ratios: dict[str, list[float]] = {"mass": [], "calcification": []}
    skipped_large = 0
    ids = []

    def add(patch: np.ndarray, pmask: np.ndarray, attributes: dict[str, Any], sp: float, is_healthy: bool) -> None:
        imgs.append(patch)
        msks.append(pmask)
        healthy.append(is_healthy)
        codes.append(attrs.encode(attributes))
        spacings.append(sp)

    iterator: Iterable = items
    if progress:
        from rich.progress import track

        iterator = track(items, description="cutting patches", transient=True)
    for case_id, get, _ in iterator:
        image, label_map, spacing, records, density, meta = get()
        image = np.asarray(image, dtype=np.float32)
        sr, sc = float(spacing[0]), float(spacing[1])
        ids.append(case_id)
        labels = None if label_map is None else np.asarray(label_map)
        if labels is not None and labels.dtype == bool:
            labels = labels.astype(np.uint8)
        lesion_any = labels is not None and bool(np.any(labels))
        lesions = lesion_components(labels, (sr, sc), rule["merge_mm"], rule["min_lesion_mm2"]) if lesion_any else []
        all_lesions = labels > 0 if lesion_any else None
        for lesion in lesions:
            attributes = lesion_attributes(lesion, (sr, sc), records, density, meta)
            klass = attributes["class"]
            if klass not in classes:
                continue
            sp = fine_mm if klass == "calcification" else float(spacing_mm)
            roi_mm = image_size * sp
            own = lesion.full_mask()
            r0, c0, r1, c1 = lesion.region
            extent = max((r1 - r0) * sr, (c1 - c0) * sc)
            room = (roi_mm - extent) / 2 - (margin if klass == "mass" else rule["margin_mm"])
            ratio = _detail_ratio(image, lesion, (sr, sc), sp, all_lesions & ~own)
            if ratio is not None:
                ratios[klass].append(ratio)
            if room < 0 and klass == "mass":
                skipped_large += 1
                continue
            centre = ((r0 + r1 - 1) / 2, (c0 + c1 - 1) / 2)
            points = np.argwhere(own) if room < 0 else None
            jit = min(max(room, 0.0), float(cfg["jitter_mm"]))
            for _ in range(int(cfg["lesion_crops_per_lesion"])):
                if points is not None:  # a cluster larger than one window: windows on random points of it
                    cy, cx = points[int(rng.integers(len(points)))]
                else:
                    dy, dx = rng.uniform(-jit, jit, size=2)
                    cy, cx = centre[0] + dy / sr, centre[1] + dx / sc
                patch, pmask, _ = crop_at(image, (sr, sc), (cy, cx), roi_mm, image_size, mask=own)
                if pmask is None or not pmask.any():
                    continue
                add(patch, pmask, attributes, sp, False)
        # Healthy tissue: ROI fully inside the breast and away from every lesion, at each scale.
        tissue = image > (float(image.min()) + float(cfg["tissue_threshold"]))
        H, W = image.shape
        for sp in scales:
            roi_mm = image_size * sp
            hh, ww = int(round(roi_mm / sr)), int(round(roi_mm / sc))
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
                if tissue[window].mean() < 0.95 or (lesion_any and all_lesions[window].any()):
                    continue
                patch, _, _ = crop_at(image, (sr, sc), (cy, cx), roi_mm, image_size)
                add(patch, np.zeros((image_size, image_size), dtype=bool), {"class": "healthy", "density": density},
                    sp, True)
                got += 1
    if not imgs:
        raise InvalidDatasetError(
            f"no training patch could be cut from {info['source']} ({len(items)} cases; "
            f"{skipped_large} lesion(s) larger than the {image_size * spacing_mm:.0f} mm ROI)"
        )
    images = torch.from_numpy(np.clip(np.stack(imgs), 0, 1).astype(np.float32))
    masks = torch.from_numpy(np.stack(msks))
    healthy_t = torch.tensor(healthy, dtype=torch.bool)
    codes_t = torch.tensor(codes, dtype=torch.long)
    spacing_t = torch.tensor(spacings, dtype=torch.float32)
    h = hashlib.sha256()
    for arr in (images.cpu().numpy(), masks.cpu().numpy(), codes_t.cpu().numpy(), spacing_t.cpu().numpy()):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update("\n".join(ids).encode())
    klass_of = {v: k for k, v in enumerate(attrs.CLASS_VALUES)}
    cls = codes_t[:, 0] - attrs.offsets()["class"] - 1
    info.update(
        n_cases=len(items),
        n_lesion_crops=int((~healthy_t).sum()),
        n_mass_crops=int((cls == klass_of["mass"]).sum()),
        n_calcification_crops=int((cls == klass_of["calcification"]).sum()),
        n_healthy_crops=int(healthy_t.sum()),
        n_lesions_too_large=skipped_large,
        lesion_rule=rule,  # read back by the membership-inference audit to cut the same crops
        image_size=image_size,
        spacing_mm=float(spacing_mm),
        calcification_spacing_mm=fine_mm,
        classes=list(classes),
        texture_transmission={k: round(float(np.median(v)), 3) for k, v in ratios.items() if len(v) >= 3},
        attributes_known={name: int((codes_t[:, k] != attrs.offsets()[name]).sum())
                          for k, name in enumerate(attrs.ATTRIBUTES)},
        fingerprint=h.hexdigest(),
    )
    return PatchBank(images, masks, healthy_t, info, codes_t, spacing_t)
