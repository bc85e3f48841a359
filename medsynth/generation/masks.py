"""Mask sources: where the lesion outlines of a synthetic case come from.

Two sources, chosen with ``--masks``:

* ``shapes`` -- BI-RADS-like outlines drawn by the phantom lesion renderer
  (:mod:`medsynth.phantoms.lesions`): masses of shape round / oval / lobulated / irregular with
  margin circumscribed / ill_defined / spiculated, and calcification clusters (the region around
  the specks, as CBIS-DDSM outlines them). Sizes are in mm, so a lesion keeps its physical size at
  any pixel spacing.
* ``real:DATA`` -- lesion masks of a dataset :func:`medsynth.io.datasets.load_dataset` reads
  (each lesion of each label map, by training's rule), varied by a random rotation, scaling and smooth
  elastic deformation, all in mm.

A source's ``sample(rng, spacing, max_extent_mm)`` returns a :class:`LesionMask`: a tight boolean
crop at the requested pixel spacing, its class value (1 mass, 2 calcification) and a JSON-ready
description for the manifest (never a source path or patient ID).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
from scipy import ndimage

from medsynth.errors import ConfigError, InvalidDatasetError, InvalidMaskError
from medsynth.io.labels import LABELS, LESION_CLASSES
from medsynth.models.patches import default_lesion_rule, lesion_components
from medsynth.phantoms.lesions import MASS_MARGINS, MASS_SHAPES

CLASSES = LESION_CLASSES


@dataclass
class LesionMask:
    """One lesion outline, ready to be placed.

    Attributes:
        mask: bool (h, w), cropped to the lesion's bounding box, at the spacing it was asked for.
        label: class value (1 mass, 2 calcification).
        info: description for the manifest (shape, margin, size, transform...).
    """

    mask: np.ndarray
    label: int
    info: dict[str, Any] = field(default_factory=dict)

    def extent_mm(self, spacing: tuple[float, float]) -> float:
        """The larger side of the bounding box in mm."""
        return float(max(self.mask.shape[0] * spacing[0], self.mask.shape[1] * spacing[1]))


class MaskSource(Protocol):
    """What the pipeline needs from a mask source."""

    name: str

    def sample(self, rng: np.random.Generator, spacing: tuple[float, float],
               max_extent_mm: float | None = None) -> LesionMask:
        """Draw one lesion mask at ``spacing`` (row, col) mm, no larger than ``max_extent_mm``."""
        ...

    def describe(self) -> dict[str, Any]:
        """Settings of the source for the manifest (no paths)."""
        ...


def crop_to_content(mask: np.ndarray) -> np.ndarray:
    """The bounding-box crop of the True pixels of ``mask``."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise InvalidMaskError("mask is empty")
    return mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def shrink_to_fit(lesion: LesionMask, spacing: tuple[float, float], max_extent_mm: Any) -> LesionMask:
    """Scale a lesion down (nearest-area resampling) when its extent exceeds ``max_extent_mm`` (one
    number, or per class name: a model paints calcifications in larger ROIs than masses)."""
    if isinstance(max_extent_mm, dict):
        klass = "calcification" if lesion.label == LABELS["calcification"] else "mass"
        max_extent_mm = max_extent_mm.get(klass)
    if max_extent_mm is None:
        return lesion
    extent = lesion.extent_mm(spacing)
    if extent <= max_extent_mm:
        return lesion
    from skimage.transform import resize

    factor = max_extent_mm / extent * 0.98
    shape = (max(1, int(lesion.mask.shape[0] * factor)), max(1, int(lesion.mask.shape[1] * factor)))
    small = resize(lesion.mask.astype(np.float32), shape, order=1, anti_aliasing=True) > 0.5
    if not small.any():
        small[shape[0] // 2, shape[1] // 2] = True
    info = dict(lesion.info, shrunk_to_fit=round(float(factor), 4))
    return LesionMask(crop_to_content(small), lesion.label, info)


def _parse_choices(values: Sequence[str] | str | None, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    if values is None:
        return tuple(allowed)
    if isinstance(values, str):
        values = [v for v in values.replace(",", " ").split() if v]
    out = []
    for v in values:
        key = str(v).strip().lower().replace("-", "_")  # "ill-defined" is read as "ill_defined"
        if key not in allowed:
            raise ConfigError(f"unknown {what} {v!r}; choose from {', '.join(allowed)}")
        out.append(key)
    if not out:
        raise ConfigError(f"no {what} given; choose from {', '.join(allowed)}")
    return tuple(dict.fromkeys(out))


def parse_size_mm(size_mm: str | Sequence[float]) -> tuple[float, float]:
    """``"5:15"`` or ``(5, 15)`` -> (5.0, 15.0); a single number gives a fixed size."""
    try:
        if isinstance(size_mm, str):
            parts = [float(p) for p in size_mm.split(":")]
        else:
            parts = [float(p) for p in np.atleast_1d(size_mm)]
    except ValueError as e:
        raise ConfigError(f"size in mm must look like MIN:MAX (e.g. 5:15), got {size_mm!r}") from e
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not (0 < parts[0] <= parts[1]) or not all(np.isfinite(parts)):
        raise ConfigError(f"size in mm must be MIN:MAX with 0 < MIN <= MAX, got {size_mm!r}")
    return parts[0], parts[1]


def _defaults(**given: Any) -> dict[str, Any]:
    """``given`` with every None replaced by the ``masks`` setting of ``configs/generate.yaml``."""
    from medsynth.config import load_config

    section = load_config(kind="generate")["masks"]
    return {k: section[k] if v is None else v for k, v in given.items()}


class ShapeMaskSource:
    """BI-RADS-like lesion outlines drawn with the phantom lesion renderer.

    Args:
        shapes: mass shapes to draw from.
        margins: mass margins to draw from.
        size_mm: (min, max) lesion diameter in mm (a mass's body; a calcification cluster's span).
        classes: lesion classes to draw from, ``mass`` and/or ``calcification``.

    An argument left as None takes its value from the ``masks`` section of ``configs/generate.yaml``.
    """

    name = "shapes"

    def __init__(
        self,
        shapes: Sequence[str] | str | None = None,
        margins: Sequence[str] | str | None = None,
        size_mm: str | Sequence[float] | None = None,
        classes: Sequence[str] | str | None = None,
    ) -> None:
        shapes, margins, size_mm, classes = _defaults(shapes=shapes, margins=margins, size_mm=size_mm,
                                                      classes=classes).values()
        self.shapes = _parse_choices(shapes, MASS_SHAPES, "shape")
        self.margins = _parse_choices(margins, MASS_MARGINS, "margin")
        self.classes = _parse_choices(classes, CLASSES, "lesion class")
        self.size_mm = parse_size_mm(size_mm)

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "shapes": list(self.shapes), "margins": list(self.margins),
                "classes": list(self.classes), "size_mm": list(self.size_mm)}

    def sample(self, rng: np.random.Generator, spacing: tuple[float, float],
               max_extent_mm: float | None = None) -> LesionMask:
        from medsynth.phantoms import lesions as pl

        klass = self.classes[int(rng.integers(len(self.classes)))]
        size = float(rng.uniform(*self.size_mm))
        if klass == "mass":
            shape = self.shapes[int(rng.integers(len(self.shapes)))]
            margin = self.margins[int(rng.integers(len(self.margins)))]
            spicule = float(rng.uniform(0.6, 1.2)) if margin == "spiculated" else 0.0
            params = {"type": "mass", "shape": shape, "margin": margin, "size_mm": size,
                      "contrast": 0.15, "spicule_factor": spicule, "extent_mm": size / 2.0 * (1.6 + spicule)}
            render = pl.render_mass
            info = {"class": "mass", "shape": shape, "margin": margin}
        else:
            params = pl.draw_calc_params(rng)
            params["size_mm"] = size
            params["extent_mm"] = size / 2.0 + 2.0
            render = pl.render_calcifications
            info = {"class": "calcification", "calc_type": params["calc_type"],
                    "distribution": params["distribution"]}
        half = [int(np.ceil((params["extent_mm"] + 2.0) / s)) + 3 for s in spacing]
        canvas = (2 * half[0] + 1, 2 * half[1] + 1)
        # The renderer returns (window, ..., mask); only the outline is used here.
        result = render(params, (half[0] + 0.5, half[1] + 0.5), tuple(spacing), canvas, rng)
        window, region = result[0], np.asarray(result[-1], dtype=bool)
        full = np.zeros(canvas, dtype=bool)
        full[window] = region
        if not full.any():  # a lesion smaller than a pixel: keep its centre pixel
            full[half[0], half[1]] = True
        info["size_mm"] = round(size, 3)
        lesion = LesionMask(crop_to_content(full), LABELS[klass], dict(info, source=self.name))
        return shrink_to_fit(lesion, spacing, max_extent_mm)


@dataclass
class _SourceLesion:
    mask: np.ndarray  # bool, tight crop
    spacing: tuple[float, float]
    label: int
    digest: str  # sha256 of the crop, salted into the manifest by the pipeline


def _class_of(value: int) -> int:
    """Map a source label value to medsynth's classes (2 stays calcification, others are masses)."""
    return LABELS["calcification"] if int(value) == LABELS["calcification"] else LABELS["mass"]


def extract_lesions(cases: Sequence[Any]) -> list[_SourceLesion]:
    """Every lesion of every label map in ``cases`` as a tight crop (mask pixels released).

    Lesions are training's (:func:`medsynth.models.patches.lesion_components` with the
    configs/train.yaml ``merge_mm`` and ``min_lesion_mm2``), taken per label value; a calcification
    label forms one lesion per case however many specks it has (its outline is the cluster region).
    """
    rule = default_lesion_rule()
    found: list[_SourceLesion] = []
    for case in cases:
        if case.mask is None:
            continue
        labels = np.asarray(case.mask.pixels)
        spacing = tuple(float(s) for s in case.mask.spacing)
        values = [int(v) for v in np.unique(labels) if v > 0]
        for value in values:
            klass = _class_of(value)
            merge_mm = math.inf if klass == LABELS["calcification"] else rule["merge_mm"]
            for lesion in lesion_components(labels == value, spacing, merge_mm, rule["min_lesion_mm2"]):
                crop = lesion.mask
                digest = hashlib.sha256(np.packbits(crop).tobytes() + str(crop.shape).encode()).hexdigest()
                found.append(_SourceLesion(crop.copy(), spacing, klass, digest))
        case.mask.release()
    return found


def elastic_transform_mask(mask: np.ndarray, src_spacing: tuple[float, float], dst_spacing: tuple[float, float],
                           rng: np.random.Generator, scale: float, rotation_deg: float,
                           alpha_mm: float, sigma_mm: float) -> np.ndarray:
    """Resample a mask to ``dst_spacing`` with rotation, isotropic scaling and elastic deformation.

    Every geometric quantity is in mm: the output grid is built in mm around the lesion centre,
    mapped back through the inverse rotation/scale plus a smooth random displacement field (white
    noise smoothed by a Gaussian of ``sigma_mm``, scaled to ``alpha_mm`` at most), and the mask is
    sampled there with linear interpolation (threshold 0.5).
    """
    h, w = mask.shape
    diag_mm = float(np.hypot(h * src_spacing[0], w * src_spacing[1])) * scale + 4.0 * alpha_mm + 2.0
    # Odd sizes put the output centre on a pixel, so an unscaled right-angle rotation is exact.
    oh, ow = (int(np.ceil(diag_mm / dst_spacing[0])) + 2) | 1, (int(np.ceil(diag_mm / dst_spacing[1])) + 2) | 1
    y = (np.arange(oh) - (oh - 1) / 2.0)[:, None] * dst_spacing[0]
    x = (np.arange(ow) - (ow - 1) / 2.0)[None, :] * dst_spacing[1]
    theta = np.deg2rad(rotation_deg)
    cos, sin = np.cos(theta), np.sin(theta)
    # Inverse mapping: output mm -> source mm.
    sy = (cos * y + sin * x) / scale
    sx = (-sin * y + cos * x) / scale
    if alpha_mm > 0:
        sig = (sigma_mm / dst_spacing[0], sigma_mm / dst_spacing[1])
        dy = ndimage.gaussian_filter(rng.standard_normal((oh, ow)), sig, mode="reflect")
        dx = ndimage.gaussian_filter(rng.standard_normal((oh, ow)), sig, mode="reflect")
        norm = max(float(np.abs(dy).max()), float(np.abs(dx).max()), 1e-12)
        sy = sy + dy / norm * alpha_mm
        sx = sx + dx / norm * alpha_mm
    rows = sy / src_spacing[0] + (h - 1) / 2.0
    cols = sx / src_spacing[1] + (w - 1) / 2.0
    out = ndimage.map_coordinates(mask.astype(np.float32), [rows, cols], order=1, mode="constant", cval=0.0)
    return out > 0.5


class RealMaskSource:
    """Lesion masks of a dataset, varied by rotation, scaling and elastic deformation (in mm).

    Args:
        data: a dataset path (anything :func:`~medsynth.io.datasets.load_dataset` reads) or a loaded
            sequence of cases.
        scale: (min, max) isotropic scale factor.
        rotation_deg: rotations are drawn uniformly in [-rotation_deg, rotation_deg].
        elastic_alpha_mm: largest elastic displacement in mm (0 disables it).
        elastic_sigma_mm: smoothness of the displacement field in mm.
        flip: also mirror half of the masks.

    Raises:
        InvalidDatasetError: the dataset holds no lesion mask.
    An argument left as None takes its value from the ``masks`` section of ``configs/generate.yaml``.
    """

    name = "real"

    def __init__(self, data: str | Path | Sequence[Any], scale: Sequence[float] | None = None,
                 rotation_deg: float | None = None, elastic_alpha_mm: float | None = None,
                 elastic_sigma_mm: float | None = None, flip: bool = True) -> None:
        scale, rotation_deg, elastic_alpha_mm, elastic_sigma_mm = _defaults(
            scale=scale, rotation_deg=rotation_deg, elastic_alpha_mm=elastic_alpha_mm,
            elastic_sigma_mm=elastic_sigma_mm).values()
        if isinstance(data, (str, Path)):
            from medsynth.io.datasets import load_dataset

            self.root: Path | None = Path(data)
            cases = load_dataset(data)
        else:
            self.root = Path(getattr(data, "root", "")) if getattr(data, "root", None) else None
            cases = data
        self.lesions = extract_lesions(cases)
        if not self.lesions:
            raise InvalidDatasetError("has no lesion masks to take for --masks real:", self.root or "<cases>")
        self.scale = (float(scale[0]), float(scale[1]))
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"mask scale must be MIN <= MAX, both > 0, got {scale}")
        self.rotation_deg = float(rotation_deg)
        self.elastic_alpha_mm = float(elastic_alpha_mm)
        self.elastic_sigma_mm = float(elastic_sigma_mm)
        self.flip = bool(flip)

    @property
    def classes(self) -> tuple[str, ...]:
        """The lesion classes among the source lesions."""
        names = {"calcification" if les.label == LABELS["calcification"] else "mass" for les in self.lesions}
        return tuple(sorted(names))

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "n_source_lesions": len(self.lesions), "scale": list(self.scale),
                "rotation_deg": self.rotation_deg, "elastic_alpha_mm": self.elastic_alpha_mm,
                "elastic_sigma_mm": self.elastic_sigma_mm, "flip": self.flip}

    def sample(self, rng: np.random.Generator, spacing: tuple[float, float],
               max_extent_mm: float | None = None) -> LesionMask:
        k = int(rng.integers(len(self.lesions)))
        src = self.lesions[k]
        scale = float(np.exp(rng.uniform(np.log(self.scale[0]), np.log(self.scale[1]))))
        rotation = float(rng.uniform(-self.rotation_deg, self.rotation_deg))
        flipped = bool(self.flip and rng.random() < 0.5)
        mask = src.mask[:, ::-1] if flipped else src.mask
        out = elastic_transform_mask(mask, src.spacing, tuple(spacing), rng, scale, rotation,
                                     self.elastic_alpha_mm, self.elastic_sigma_mm)
        if not out.any():  # deformation lost a tiny lesion: take it rigidly
            out = elastic_transform_mask(mask, src.spacing, tuple(spacing), rng, scale, rotation, 0.0, 1.0)
        if not out.any():
            out = np.ones((1, 1), dtype=bool)
        info = {"source": self.name, "class": "calcification" if src.label == LABELS["calcification"] else "mass",
                "source_lesion_sha256": src.digest, "scale": round(scale, 4), "rotation_deg": round(rotation, 2),
                "flipped": flipped, "elastic_alpha_mm": self.elastic_alpha_mm}
        return shrink_to_fit(LesionMask(crop_to_content(out), src.label, info), spacing, max_extent_mm)


SHAPE_OPTIONS = ("shapes", "margins", "classes", "size_mm")
REAL_OPTIONS = ("scale", "rotation_deg", "elastic_alpha_mm", "elastic_sigma_mm")


def _check_options(spec: str, given: dict[str, Any]) -> tuple[str, ...]:
    """Refuse an unknown source, an unknown option, or an option of the other source; returns the
    options the source ``spec`` takes."""
    if spec == "shapes":
        own, other, other_name = SHAPE_OPTIONS, REAL_OPTIONS, "real:DATA"
    elif spec.startswith("real:"):
        own, other, other_name = REAL_OPTIONS, SHAPE_OPTIONS, "shapes"
    else:
        raise ConfigError(f"unknown mask source {spec!r}; use 'shapes' or 'real:DATA'")
    unknown = set(given) - set(own) - set(other)
    if unknown:
        raise ConfigError(f"unknown mask option(s) {sorted(unknown)}")
    foreign = [k for k in other if k in given]
    if foreign:
        raise ConfigError(f"mask option(s) {', '.join(foreign)} apply to masks {other_name}, not {spec!r}")
    return own


def make_mask_source(spec: str | MaskSource, **options: Any) -> MaskSource:
    """A mask source from ``--masks``: ``"shapes"`` or ``"real:DATA"``; a source object passes through.

    Args:
        spec: the source spec, or an object with ``sample`` and ``describe``.
        **options: ``shapes``, ``margins``, ``size_mm``, ``classes`` for ``shapes``; ``scale``,
            ``rotation_deg``, ``elastic_alpha_mm``, ``elastic_sigma_mm`` for ``real:``. None means
            "not given"; an option of the other source is refused.

    Raises:
        ConfigError: an unknown spec or option, or an option the chosen source does not take.
        InvalidDatasetError: ``real:DATA`` with no lesion masks.
    """
    if not isinstance(spec, str):
        if not hasattr(spec, "sample") or not hasattr(spec, "describe"):
            raise ConfigError(f"a mask source needs sample() and describe(), got {type(spec).__name__}")
        return spec
    given = {k: v for k, v in options.items() if v is not None}
    _check_options(spec, given)
    if spec == "shapes":
        return ShapeMaskSource(**given)
    path = spec[len("real:"):]
    if not path:
        raise ConfigError("--masks real: needs a dataset path, e.g. real:data/cbis")
    return RealMaskSource(path, **given)


def mask_settings(section: dict[str, Any], source: str | None = None,
                  **given: Any) -> tuple[str, dict[str, Any]]:
    """The mask source and its options from the ``masks`` section of the generate config.

    The section (``configs/generate.yaml`` or a user's file) holds a ``source`` and the options of
    both sources; only the chosen source's are kept. ``source`` and the options ``given`` on the
    command line or as arguments (None: not given) win over it, and a given option the chosen source
    does not take is refused -- the same check :func:`make_mask_source` applies.

    Returns:
        (source spec, options for :func:`make_mask_source`).

    Raises:
        ConfigError: an unknown source or option, or a given option of the other source.
    """
    spec = str(source or section["source"])
    given = {k: v for k, v in given.items() if v is not None}
    own = _check_options(spec, given)
    return spec, {**{k: section[k] for k in own if k in section}, **given}
