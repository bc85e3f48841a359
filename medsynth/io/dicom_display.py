"""The grayscale display rule for DICOM pixels: modality LUT, optional VOI LUT, one presentation inversion.

The rule and the standard behind it are in ``medsynth.io.dicom``'s docstring (PS3.4 N.2.1, PS3.3
C.11.6.1.2); this module is its code. Header values are parsed through
:func:`~medsynth.io.dicom_header.header_value`, and a LUT pydicom cannot apply is an
:class:`~medsynth.errors.InvalidImageError` naming the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medsynth.errors import InvalidImageError
from medsynth.io.dicom_header import header_value

__all__ = ["polarity", "stored_range", "to_display"]


def _text(value: Any) -> str:
    return str(value).strip().upper()


def stored_range(ds: Any) -> tuple[int, int]:
    """The range of stored values BitsStored and PixelRepresentation allow."""
    bits = header_value(ds, "BitsStored", int, default=header_value(ds, "BitsAllocated", int, default=16)) or 16
    if (header_value(ds, "PixelRepresentation", int, default=0) or 0) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def polarity(ds: Any) -> tuple[bool, str | None]:
    """Whether the display rule inverts this image, and a warning for non-conforming headers.

    See ``medsynth.io.dicom``: invert once when MONOCHROME1 or PresentationLUTShape INVERSE.
    """
    photometric = header_value(ds, "PhotometricInterpretation", _text, default="MONOCHROME2")
    shape = header_value(ds, "PresentationLUTShape", _text) or None
    invert = photometric == "MONOCHROME1" or shape == "INVERSE"
    note = None
    if shape == "INVERSE" and photometric == "MONOCHROME2":
        note = "PresentationLUTShape INVERSE on a MONOCHROME2 image (non-conforming); inverted"
    elif shape == "IDENTITY" and photometric == "MONOCHROME1":
        note = "PresentationLUTShape IDENTITY on a MONOCHROME1 image (non-conforming); inverted as MONOCHROME1"
    return invert, note


def _floats(value: Any) -> list[float]:
    return [float(v) for v in (value if type(value).__name__ in ("MultiValue", "list", "tuple") else [value])]


def to_display(stored: np.ndarray, ds: Any, *, window: bool = False) -> tuple[np.ndarray, tuple[float, float], bool]:
    """Stored values → modality LUT → (VOI LUT when ``window``) → presentation inversion.

    Args:
        stored: the decoded stored values of one frame.
        ds: the header (group 0028 attributes, rescale, LUTs).
        window: apply the first VOI window / LUT (clips to the window).

    Returns:
        float32 pixels (higher = brighter), the output value range (lo, hi) the pipeline can
        produce for this header, and whether the image was inverted.

    Raises:
        InvalidImageError: a rescale, window or LUT attribute is malformed.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    # The attributes pydicom's LUT functions read, parsed here first so a bad one is named.
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        header_value(ds, keyword, float)
    if window:
        for keyword in ("WindowCenter", "WindowWidth"):
            header_value(ds, keyword, _floats)
    s_lo, s_hi = stored_range(ds)
    try:
        if "ModalityLUTSequence" in ds:
            # A LUT need not be monotonic: take the range over every stored value it can see.
            span = apply_modality_lut(np.arange(s_lo, s_hi + 1, dtype=np.int64), ds)
        else:
            span = apply_modality_lut(np.array([s_lo, s_hi], dtype=np.float64), ds)
        values = apply_modality_lut(stored, ds)
        if window and ("WindowCenter" in ds or "VOILUTSequence" in ds):
            if "VOILUTSequence" in ds:
                # A VOI LUT is indexed by integer input values.
                values, span = np.rint(values).astype(np.int64), np.rint(span).astype(np.int64)
            values = apply_voi_lut(values, ds, index=0)
            span = apply_voi_lut(np.asarray(span), ds, index=0)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError) as e:
        raise InvalidImageError(
            f"cannot apply the modality/VOI LUT of the header ({type(e).__name__}: {e})", getattr(ds, "filename", None)
        ) from e
    lo, hi = float(np.min(span)), float(np.max(span))
    values = np.asarray(values, dtype=np.float64)
    invert, _ = polarity(ds)
    if invert:
        values = (lo + hi) - values
    return values.astype(np.float32), (lo, hi), invert
