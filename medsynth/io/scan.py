"""The objects every reader returns: a lazily loaded 2-D :class:`Scan` and a :class:`Case`.

A Scan holds its header facts at once and decodes pixels only when ``.pixels`` is first read,
so a dataset of full-size mammograms can be listed without reading them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

#: The spacing of a scan whose header states none: never assumed (see :mod:`medsynth.io.spacing`).
UNKNOWN_SPACING = (math.nan, math.nan)


@dataclass
class Scan:
    """One 2-D image as medsynth sees it.

    Attributes:
        path: the file it was read from.
        shape: (rows, cols).
        spacing: pixel spacing in mm as (row, col); (nan, nan) when the file states none
            (``spacing_known`` is False; :mod:`medsynth.io.spacing` fills it in or refuses the scan).
        pixel_loader: a function returning the pixels; called once, on first access of ``pixels``.
        affine: 4x4 voxel-to-world matrix (NIfTI) or None.
        photometric: DICOM PhotometricInterpretation of the file, e.g. "MONOCHROME1"; None for non-DICOM.
        transfer_syntax: DICOM transfer syntax UID name, or None.
        modality: e.g. "MG".
        laterality: "L", "R" or None.
        view: "CC", "MLO" or None.
        bits_stored: bit depth of the stored values when known (used to scale to [0, 1]).
        metadata: anything else a reader wants to keep (never pixels).

    Pixels are float32 in display polarity: a higher value is brighter (denser tissue), whatever
    the file's photometric interpretation and presentation LUT were.
    """

    path: Path
    shape: tuple[int, int]
    spacing: tuple[float, float]
    pixel_loader: Callable[[], np.ndarray] = field(repr=False)
    affine: np.ndarray | None = field(default=None, repr=False)
    photometric: str | None = None
    transfer_syntax: str | None = None
    modality: str | None = None
    laterality: str | None = None
    view: str | None = None
    bits_stored: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    _pixels: np.ndarray | None = field(default=None, repr=False, init=False)

    @property
    def pixels(self) -> np.ndarray:
        """The pixels as a float32 (rows, cols) array, decoded on first access and cached."""
        if self._pixels is None:
            self._pixels = np.asarray(self.pixel_loader(), dtype=np.float32)
        return self._pixels

    @property
    def spacing_known(self) -> bool:
        """Whether the pixel spacing is known (stated by the file, a layout default or the user)."""
        return all(math.isfinite(float(s)) and float(s) > 0 for s in self.spacing)

    def set_spacing(self, spacing: tuple[float, float], source: str) -> None:
        """Give the scan a spacing its file did not state, and say where it came from."""
        self.spacing = (float(spacing[0]), float(spacing[1]))
        self.metadata["spacing_source"] = source

    def release(self) -> None:
        """Drop the cached pixels (they are decoded again on next access)."""
        self._pixels = None

    def unit_pixels(self) -> np.ndarray:
        """Pixels scaled to [0, 1]: by the stored bit depth when known, else by the image's own range."""
        px = self.pixels
        if self.bits_stored:
            return np.clip(px / float(2**self.bits_stored - 1), 0.0, 1.0).astype(np.float32)
        lo, hi = float(px.min()), float(px.max())
        return ((px - lo) / (hi - lo) if hi > lo else np.zeros_like(px)).astype(np.float32)


@dataclass
class Case:
    """One image with its (optional) lesion label map and case metadata, as ``load_dataset`` yields it.

    Attributes:
        case_id: unique within its dataset.
        image: the image.
        mask: the label map (0 background, >0 lesion classes) or None for an image without lesion.
        patient_id: the patient it belongs to, when the layout records one (used to keep train and
            holdout apart; never written into synthetic outputs).
        image_relpath: the image's path relative to the dataset root (how reports name it).
        metadata: layout-specific facts (e.g. CBIS-DDSM columns: abnormality type, mass shape, ...).
    """

    case_id: str
    image: Scan
    mask: Scan | None = None
    patient_id: str | None = None
    image_relpath: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
