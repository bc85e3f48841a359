"""What every dataset writer shares: the label classes, pixel quantisation and the writer protocol.

A writer puts one synthetic case (image + label map) into its format's folder layout and, at the
end, writes the format's index (nnU-Net ``dataset.json``, MONAI datalist). Images arrive already
quantised to 16-bit integers (:func:`to_uint16`), so every format stores exactly the same values and
written files are byte-identical whenever the pixel values are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from medsynth.errors import InvalidImageError, InvalidMaskError
from medsynth.io.labels import LABELS  # the class table every writer declares (re-exported)

UINT16_MAX = 65535


def to_uint16(image01: np.ndarray) -> np.ndarray:
    """Quantise a float image in [0, 1] to uint16 (0..65535), rounding to nearest."""
    image01 = np.asarray(image01, dtype=np.float64)
    if not np.all(np.isfinite(image01)):
        raise InvalidImageError("image holds NaN/inf values")
    return np.round(np.clip(image01, 0.0, 1.0) * UINT16_MAX).astype(np.uint16)


def check_case(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a quantised image and its label map before writing; return them typed.

    Raises:
        InvalidImageError: the image is not a 2-D uint16 array.
        InvalidMaskError: the label map's shape differs or it holds values outside :data:`LABELS`.
    """
    image = np.asarray(image)
    label = np.asarray(label)
    if image.ndim != 2 or image.dtype != np.uint16:
        raise InvalidImageError(f"writers take 2-D uint16 images (see to_uint16), got {image.dtype} {image.shape}")
    if label.shape != image.shape:
        raise InvalidMaskError(f"label map shape {label.shape} differs from image shape {image.shape}")
    bad = sorted(set(np.unique(label).tolist()) - set(LABELS.values()))
    if bad:
        raise InvalidMaskError(f"label map holds values {bad} outside the known classes {LABELS}")
    return image, label.astype(np.uint8)


class DatasetWriter(Protocol):
    """The interface of the format writers (nnunet, monai, dicom, png).

    Attributes:
        out: the output root; every path a writer returns is relative to it.
        format: the format's name.
    """

    out: Path
    format: str

    def write_case(self, case_id: str, image: np.ndarray, label: np.ndarray,
                   spacing: tuple[float, float], laterality: str | None = None) -> dict[str, Path]:
        """Write one case atomically; return {"image": relpath, "label": relpath, ...}.

        ``laterality`` is the background's breast ("L"/"R", None when unknown); formats with a field
        for it (DICOM) record it, the others have none and ignore it."""
        ...

    def finalize(self, case_ids: list[str]) -> list[Path]:
        """Write the format's index files for ``case_ids`` (in that order); return their relpaths."""
        ...
