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
"""

from __future__ import annotations

import logging
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.errors import InvalidImageError
from medsynth.io.scan import Scan

logger = logging.getLogger(__name__)

# PixelData, FloatPixelData, DoubleFloatPixelData.
_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_UNDEFINED = 0xFFFFFFFF
_ITEM, _SEQ_DELIM = 0xFFFEE000, 0xFFFEE0DD

# Attributes that identify a patient, staff or institution (PS3.15 Annex E basic profile, the
# subset that carries names, IDs and addresses). Dates and private tags are reported separately.
PHI_KEYWORDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientMotherBirthName",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "IssuerOfPatientID",
    "MedicalRecordLocator",
    "MilitaryRank",
    "AccessionNumber",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "StationName",
    "ReferringPhysicianName",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "OperatorsName",
    "ScheduledPerformingPhysicianName",
)
DATE_KEYWORDS: tuple[str, ...] = (
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "AcquisitionDateTime",
    "StudyTime",
    "SeriesTime",
    "AcquisitionTime",
    "ContentTime",
)


@dataclass(frozen=True)
class PixelDataInfo:
    """Where the top-level pixel data element sits in the file (read from its header only).

    Attributes:
        keyword: "PixelData", "FloatPixelData" or "DoubleFloatPixelData".
        length: the value length in bytes, or None when undefined (encapsulated).
        offset: file offset of the value's first byte.
    """

    keyword: str
    length: int | None
    offset: int


def read_header(path: str | Path) -> tuple[Any, PixelDataInfo | None]:
    """Read a DICOM file's header, stopping before the pixel data, and check the file is whole.

    Args:
        path: the file.

    Returns:
        The pydicom ``FileDataset`` without pixel data, and where the pixel data is (None when the
        file has none).

    Raises:
        InvalidImageError: not a DICOM file, or cut short (header, native or encapsulated pixels).
    """
    from pydicom.errors import InvalidDicomError
    from pydicom.filereader import read_partial

    path = Path(path)
    size = os.path.getsize(path)
    found: dict[str, PixelDataInfo] = {}
    with open(path, "rb") as fp:

        def _stop_at_pixels(tag: int, vr: str | None, length: int) -> bool:
            # Called with the file positioned at the element's value (pydicom's stop_when hook).
            if int(tag) in _PIXEL_TAGS:
                found["px"] = PixelDataInfo(
                    _PIXEL_TAGS[int(tag)], None if length == _UNDEFINED else int(length), fp.tell()
                )
                return True
            return False

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ds = read_partial(fp, stop_when=_stop_at_pixels)
            except InvalidDicomError as e:
                raise InvalidImageError(
                    "not a DICOM file (no 'DICM' marker after the 128-byte preamble, or no file meta header)", path
                ) from e
            except (EOFError, struct.error, ValueError, KeyError, OSError) as e:
                raise InvalidImageError(f"unreadable DICOM header ({type(e).__name__}: {e})", path) from e
        _raise_on_eof_warnings(caught, path, "header")
        info = found.get("px")
        if info is not None:
            if info.length is not None:
                if info.offset + info.length > size:
                    raise InvalidImageError(
                        f"file is truncated: {info.keyword} needs {info.length} bytes from offset "
                        f"{info.offset} but the file ends at {size}",
                        path,
                    )
            else:
                _check_encapsulated(fp, info.offset, size, path)
    return ds, info


def _raise_on_eof_warnings(caught: list[warnings.WarningMessage], path: Path, where: str) -> None:
    """Turn pydicom's end-of-file warnings into errors; pass other warnings to the log."""
    for w in caught:
        msg = str(w.message)
        if "End of file" in msg or "EOF" in msg:
            raise InvalidImageError(f"file is truncated ({where}): {msg}", path)
        # Excess PixelData is reported from the header (read_dicom); other pydicom warnings are
        # about tolerated value oddities and go to the log.
        logger.info("%s: pydicom: %s", path, msg)


def _check_encapsulated(fp: Any, offset: int, size: int, path: Path) -> None:
    """Walk the items of encapsulated pixel data by their headers (no pixel bytes are read).

    pydicom only warns when the sequence delimiter is missing and then drops PixelData, so a
    truncated compressed file would otherwise look like a file without pixels.
    """
    pos = offset
    while True:
        fp.seek(pos)
        head = fp.read(8)
        if len(head) < 8:
            raise InvalidImageError(
                "file is truncated: encapsulated PixelData ends before its sequence delimiter", path
            )
        group, elem, length = struct.unpack("<HHI", head)
        tag = group << 16 | elem
        if tag == _SEQ_DELIM:
            return
        if tag != _ITEM:
            raise InvalidImageError(
                f"corrupt encapsulated PixelData: expected an item tag at offset {pos}, found "
                f"({group:04X},{elem:04X})",
                path,
            )
        pos += 8 + length
        if pos > size:
            raise InvalidImageError(
                f"file is truncated: a PixelData fragment of {length} bytes runs past the end of the "
                f"file ({size} bytes)",
                path,
            )


def _first(ds: Any, keyword: str) -> Any:
    """A top-level attribute, else the same attribute in the shared functional groups (enhanced IODs)."""
    if keyword in ds and ds[keyword].value not in (None, ""):
        return ds[keyword].value
    for group in ds.get("SharedFunctionalGroupsSequence", []) or []:
        for seq_kw in ("PixelMeasuresSequence", "FrameAnatomySequence", "PixelValueTransformationSequence"):
            for item in group.get(seq_kw, []) or []:
                if keyword in item and item[keyword].value not in (None, ""):
                    return item[keyword].value
    return None


def _spacing(ds: Any) -> tuple[tuple[float, float], str]:
    """Pixel spacing (row, col) in mm and the attribute it came from."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        value = _first(ds, keyword)
        if value is not None:
            try:
                row, col = (float(v) for v in value)
            except (TypeError, ValueError):
                continue
            if row > 0 and col > 0:
                return (row, col), keyword
    return (1.0, 1.0), "default"


def stored_range(ds: Any) -> tuple[int, int]:
    """The range of stored values BitsStored and PixelRepresentation allow."""
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def polarity(ds: Any) -> tuple[bool, str | None]:
    """Whether the display rule inverts this image, and a warning for non-conforming headers.

    See the module docstring: invert once when MONOCHROME1 or PresentationLUTShape INVERSE.
    """
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper() or None
    invert = photometric == "MONOCHROME1" or shape == "INVERSE"
    note = None
    if shape == "INVERSE" and photometric == "MONOCHROME2":
        note = "PresentationLUTShape INVERSE on a MONOCHROME2 image (non-conforming); inverted"
    elif shape == "IDENTITY" and photometric == "MONOCHROME1":
        note = "PresentationLUTShape IDENTITY on a MONOCHROME1 image (non-conforming); inverted as MONOCHROME1"
    return invert, note


def to_display(stored: np.ndarray, ds: Any, *, window: bool = False) -> tuple[np.ndarray, tuple[float, float], bool]:
    """Stored values → modality LUT → (VOI LUT when ``window``) → presentation inversion.

    Args:
        stored: the decoded stored values of one frame.
        ds: the header (group 0028 attributes, rescale, LUTs).
        window: apply the first VOI window / LUT (clips to the window).

    Returns:
        float32 pixels (higher = brighter), the output value range (lo, hi) the pipeline can
        produce for this header, and whether the image was inverted.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    s_lo, s_hi = stored_range(ds)
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
    lo, hi = float(np.min(span)), float(np.max(span))
    values = np.asarray(values, dtype=np.float64)
    invert, _ = polarity(ds)
    if invert:
        values = (lo + hi) - values
    return values.astype(np.float32), (lo, hi), invert


def find_phi(ds: Any) -> dict[str, list[str]]:
    """Where a header carries identifying data, searched through every nested sequence.

    Args:
        ds: a pydicom Dataset (header).

    Returns:
        ``{"phi": [...], "dates": [...], "private": [...], "overlays": [...]}``: attribute paths
        (e.g. ``"RequestAttributesSequence[0].PatientName"``) with a non-empty value; private
        elements and overlay data are listed whatever their value. The file meta group (0002) is
        not searched: it holds UIDs and transfer syntax, not names (UIDs are the audit's concern).
    """
    out: dict[str, list[str]] = {"phi": [], "dates": [], "private": [], "overlays": []}

    def walk(d: Any, prefix: str) -> None:
        for elem in d:
            name = elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})"
            where = f"{prefix}{name}"
            if elem.tag.is_private:
                out["private"].append(where)
            elif 0x6000 <= elem.tag.group <= 0x60FF and elem.tag.group % 2 == 0:
                if elem.tag.element == 0x3000:
                    out["overlays"].append(where)
            elif elem.keyword in PHI_KEYWORDS and _non_empty(elem.value):
                out["phi"].append(where)
            elif elem.keyword in DATE_KEYWORDS and _non_empty(elem.value):
                out["dates"].append(where)
            if elem.VR == "SQ":
                for i, item in enumerate(elem.value or []):
                    walk(item, f"{where}[{i}].")

    walk(ds, "")
    return out


def _non_empty(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return any(_non_empty(v) for v in value)
    return str(value).strip() != ""


def read_dicom(path: str | Path, *, frame: int = 0, window: bool = False) -> Scan:
    """Read a DICOM file's header now; its pixels (one frame) on first access of ``.pixels``.

    Args:
        path: the file.
        frame: which frame of a multi-frame file (0-based).
        window: apply the VOI window/LUT (default: full dynamic range, see the module docstring).

    Returns:
        A lazy Scan in display polarity.

    Raises:
        InvalidImageError: see the module docstring; pixel-time errors are raised by ``.pixels``.
    """
    path = Path(path)
    ds, info = read_header(path)
    if info is None:
        raise InvalidImageError(
            "has no PixelData (not an image, e.g. a structured report or DICOMDIR, or the file was "
            "cut before its pixels)",
            path,
        )
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as e:
        raise InvalidImageError("has PixelData but no valid Rows/Columns", path) from e
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper() or None
    if samples != 1 or photometric not in (None, "MONOCHROME1", "MONOCHROME2"):
        raise InvalidImageError(
            f"is a colour image (PhotometricInterpretation {photometric}, SamplesPerPixel {samples}); "
            "medsynth reads grayscale (MONOCHROME1/2) images only",
            path,
        )
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if not 0 <= frame < n_frames:
        raise InvalidImageError(f"frame {frame} requested but the file has {n_frames} frame(s)", path)
    transfer_syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if info.length is not None and info.keyword == "PixelData":
        bits_alloc = int(ds.get("BitsAllocated", 16) or 16)
        expected = (rows * cols * n_frames * bits_alloc + 7) // 8
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
    bits = int(ds.get("BitsStored", 0) or 0) or None
    unit_bits = bits if bits and value_range == (0.0, float(2**bits - 1)) else None
    laterality = _first(ds, "ImageLaterality") or _first(ds, "Laterality") or _first(ds, "FrameLaterality")
    view = ds.get("ViewPosition") or None
    spacing, spacing_source = _spacing(ds)
    metadata: dict[str, Any] = {
        "format": "dicom",
        "n_frames": n_frames,
        "frame": frame,
        "inverted": invert,
        "windowed": bool(window),
        "value_range": value_range,
        "bits_stored_file": bits,
        "bits_allocated": int(ds.get("BitsAllocated", 0) or 0) or None,
        "pixel_representation": int(ds.get("PixelRepresentation", 0) or 0),
        "presentation_lut_shape": str(ds.get("PresentationLUTShape", "") or "") or None,
        "burned_in_annotation": str(ds.get("BurnedInAnnotation", "") or "") or None,
        "spacing_source": spacing_source,
        "sop_class": str(ds.get("SOPClassUID").name) if ds.get("SOPClassUID") else None,
    }

    def load() -> np.ndarray:
        return _decode(path, ds, frame, window)

    return Scan(
        path=path,
        shape=(rows, cols),
        spacing=spacing,
        pixel_loader=load,
        photometric=photometric,
        transfer_syntax=str(transfer_syntax.name) if transfer_syntax is not None else None,
        modality=str(ds.get("Modality", "") or "") or None,
        laterality=str(laterality).strip().upper() or None if laterality else None,
        view=str(view).strip().upper() or None if view else None,
        bits_stored=unit_bits,
        metadata=metadata,
    )


def _decode(path: Path, header: Any, frame: int, window: bool) -> np.ndarray:
    """Decode one frame of stored values and apply the display rule."""
    from pydicom.pixels import pixel_array

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            stored = pixel_array(path, index=frame if int(header.get("NumberOfFrames", 1) or 1) > 1 else None)
        except Exception as e:  # pydicom raises RuntimeError/ValueError/NotImplementedError per plugin
            raise InvalidImageError(f"cannot decode PixelData ({type(e).__name__}: {e})", path) from e
    _raise_on_eof_warnings(caught, path, "pixels")
    stored = np.asarray(stored)
    if stored.ndim != 2:
        raise InvalidImageError(f"decoded frame has shape {stored.shape}, expected (rows, cols)", path)
    pixels, _, _ = to_display(stored, header, window=window)
    return pixels
