"""DICOM reader: header first, pixels on demand, in display polarity.

``read_dicom(path)`` parses the header only (pydicom ``read_partial`` stopping at the pixel data,
like ``dcmread(..., stop_before_pixels=True)``) and returns a :class:`~medsynth.io.scan.Scan`
whose pixels are decoded on first access. Compressed transfer syntaxes (JPEG 2000, JPEG-LS,
JPEG lossless, RLE) decode through pydicom's pylibjpeg plugins.

Display rule (what ``Scan.pixels`` holds)
-----------------------------------------
The standard's grayscale pipeline is applied in its order (PS3.4 N.2.1):

1. **Modality LUT** -- Rescale Slope/Intercept or Modality LUT Sequence (``apply_modality_lut``).
2. **VOI LUT / window** -- *not applied by default*: medsynth wants the full dynamic range, so pixels
   are the raw modality values. ``window=True`` applies ``apply_voi_lut`` (first window / LUT).
3. **Presentation LUT** -- the image is inverted, **once**, when PhotometricInterpretation is
   MONOCHROME1 *or* PresentationLUTShape is INVERSE. In an image IOD, PS3.3 (General Image /
   DX Image module) says INVERSE "shall be used if Photometric Interpretation is MONOCHROME1": the
   shape names the *same* inversion that MONOCHROME1 implies, not a second one. So MONOCHROME1 +
   INVERSE is inverted once (a XOR of the two would double-invert it back to dark-is-dense, the
   known viewer bug); MONOCHROME2 + IDENTITY is left as is; the non-conforming combinations
   (MONOCHROME2 + INVERSE, MONOCHROME1 + IDENTITY) are inverted too and logged as a warning.

Inversion follows C.11.6.1.2, ``P = maximum - value``, over the *range the pipeline can produce*
(never the image's own min/max, which would make the result depend on content):
``inverted = lo + hi - value`` with (lo, hi) the output range of steps 1-2 for the stored value
range. For the usual mammogram (unsigned, no or identity rescale) that is ``2**BitsStored - 1 -
value``, and ``Scan.bits_stored`` is set so ``unit_pixels()`` maps to [0, 1]. When the range is
something else (e.g. CT in HU), ``bits_stored`` is None and the range is kept in
``metadata["value_range"]``.

Multi-frame files: ``frame=`` picks the frame (default 0); ``metadata["n_frames"]`` says how many
there are. Only that frame is decoded.

Broken files fail loudly, naming the file, as :class:`~medsynth.errors.InvalidImageError`:
not DICOM, no PixelData, a native PixelData shorter than Rows x Columns x frames (also when the file
itself is cut short -- checked from the header against the file size, where pydicom would only
warn), encapsulated pixel data without its sequence delimiter (pydicom only warns "End of file
reached before delimiter" and drops the PixelData), colour images. PixelData *longer* than
expected (CBIS-DDSM mammograms carry one extra byte) is read, the excess ignored, with a warning.
A header value that does not parse (``NumberOfFrames`` ``'1A'``) is an InvalidImageError naming the
attribute: every value is read through :func:`~medsynth.io.dicom_header.header_value`.

The reader is split along its seams: ``dicom_header.py`` reads the header, checks the file is whole
and parses values; ``dicom_display.py`` is the display rule above; ``phi.py`` says which attributes
identify a patient (what ``medsynth info`` flags and the audit checks).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.errors import InvalidImageError
from medsynth.io.dicom_display import polarity, stored_range, to_display
from medsynth.io.dicom_header import first_value, header_value, raise_on_eof_warnings, read_header
from medsynth.io.scan import UNKNOWN_SPACING, Scan

logger = logging.getLogger(__name__)

__all__ = ["read_dicom"]


def _text(value: Any) -> str:
    return str(value).strip().upper()


def _pair(value: Any) -> tuple[float, float]:
    row, col = (float(v) for v in value)
    return row, col


def _spacing(ds: Any, path: Path) -> tuple[tuple[float, float], str]:
    """Pixel spacing (row, col) in mm and the attribute it came from.

    A malformed or non-positive spacing attribute is skipped (with a warning) for the next one.
    Without any, the spacing is unknown: (nan, nan) with source "unknown", never an assumed 1 mm
    (:mod:`medsynth.io.spacing` refuses such scans where millimetres matter, unless told the spacing).
    """
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        try:
            value = first_value(ds, keyword, _pair, path=path)
        except InvalidImageError as e:
            logger.warning("%s; skipped", e)
            continue
        if value is not None and value[0] > 0 and value[1] > 0:
            return value, keyword
    return UNKNOWN_SPACING, "unknown"


def read_dicom(path: str | Path, *, frame: int = 0, window: bool = False) -> Scan:
    """Read a DICOM file's header now; its pixels (one frame) on first access of ``.pixels``.

    Args:
        path: the file.
        frame: which frame of a multi-frame file (0-based).
        window: apply the VOI window/LUT (default: full dynamic range, see the module docstring).

    Returns:
        A lazy Scan in display polarity.

    Raises:
        InvalidImageError: see the module docstring; also a header value that does not parse (naming
            the attribute); pixel-time errors are raised by ``.pixels``.
    """
    path = Path(path)
    ds, info = read_header(path)
    if info is None:
        raise InvalidImageError(
            "has no PixelData (not an image, e.g. a structured report or DICOMDIR, or the file was "
            "cut before its pixels)",
            path,
        )

    def value(keyword: str, cast: Any = None, default: Any = None) -> Any:
        return header_value(ds, keyword, cast, default, path=path)

    rows, cols = value("Rows", int), value("Columns", int)
    if rows is None or cols is None:
        raise InvalidImageError("has PixelData but no valid Rows/Columns", path)
    samples = value("SamplesPerPixel", int, 1) or 1
    photometric = value("PhotometricInterpretation", _text) or None
    if samples != 1 or photometric not in (None, "MONOCHROME1", "MONOCHROME2"):
        raise InvalidImageError(
            f"is a colour image (PhotometricInterpretation {photometric}, SamplesPerPixel {samples}); "
            "medsynth reads grayscale (MONOCHROME1/2) images only",
            path,
        )
    n_frames = value("NumberOfFrames", int, 1) or 1
    if not 0 <= frame < n_frames:
        raise InvalidImageError(f"frame {frame} requested but the file has {n_frames} frame(s)", path)
    meta = getattr(ds, "file_meta", None)
    transfer_syntax = header_value(meta, "TransferSyntaxUID", path=path) if meta is not None else None
    bits_alloc = value("BitsAllocated", int)
    if info.length is not None and info.keyword == "PixelData":
        expected = (rows * cols * n_frames * (bits_alloc or 16) + 7) // 8
        if info.length < expected:
            raise InvalidImageError(
                f"PixelData is {info.length} bytes, shorter than Rows x Columns x frames x "
                f"BitsAllocated/8 = {expected} bytes",
                path,
            )
        if info.length > expected:
            logger.warning(
                "%s: PixelData has %d byte(s) more than Rows x Columns x frames x BitsAllocated/8 = %d "
                "(one extra byte is a known CBIS-DDSM quirk); the excess is ignored",
                path, info.length - expected, expected,
            )
    invert, note = polarity(ds)
    if note:
        logger.warning("%s: %s", path, note)
    s_lo, s_hi = stored_range(ds)
    _, value_range, _ = to_display(np.array([s_lo], dtype=np.int64), ds, window=window)
    bits = value("BitsStored", int) or None
    unit_bits = bits if bits and value_range == (0.0, float(2**bits - 1)) else None
    lateralities = (first_value(ds, k, _text, path=path) for k in ("ImageLaterality", "Laterality", "FrameLaterality"))
    laterality = next((v for v in lateralities if v), None)
    spacing, spacing_source = _spacing(ds, path)
    sop_class = value("SOPClassUID", lambda uid: str(uid.name))
    metadata: dict[str, Any] = {
        "format": "dicom",
        "n_frames": n_frames,
        "frame": frame,
        "inverted": invert,
        "windowed": bool(window),
        "value_range": value_range,
        "bits_stored_file": bits,
        "bits_allocated": bits_alloc or None,
        "pixel_representation": value("PixelRepresentation", int, 0) or 0,
        "presentation_lut_shape": value("PresentationLUTShape", str) or None,
        "burned_in_annotation": value("BurnedInAnnotation", str) or None,
        "spacing_source": spacing_source,
        "sop_class": sop_class,
    }

    def load() -> np.ndarray:
        return _decode(path, ds, frame, n_frames, window)

    return Scan(
        path=path,
        shape=(rows, cols),
        spacing=spacing,
        pixel_loader=load,
        photometric=photometric,
        transfer_syntax=str(transfer_syntax.name) if transfer_syntax is not None else None,
        modality=value("Modality", str) or None,
        laterality=laterality,
        view=value("ViewPosition", _text) or None,
        bits_stored=unit_bits,
        metadata=metadata,
    )


def _decode(path: Path, header: Any, frame: int, n_frames: int, window: bool) -> np.ndarray:
    """Decode one frame of stored values and apply the display rule."""
    from pydicom.pixels import pixel_array

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            stored = pixel_array(path, index=frame if n_frames > 1 else None)
        except Exception as e:  # pydicom raises RuntimeError/ValueError/NotImplementedError per plugin
            raise InvalidImageError(f"cannot decode PixelData ({type(e).__name__}: {e})", path) from e
    raise_on_eof_warnings(caught, path, "pixels")
    stored = np.asarray(stored)
    if stored.ndim != 2:
        raise InvalidImageError(f"decoded frame has shape {stored.shape}, expected (rows, cols)", path)
    pixels, _, _ = to_display(stored, header, window=window)
    return pixels
