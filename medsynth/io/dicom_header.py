"""A DICOM file's header: read it whole (or fail naming the file), and parse every value one guarded way.

:func:`read_header` reads up to the pixel data and checks the file is not cut short (see
``medsynth.io.dicom`` for the rules). :func:`header_value` is the one way medsynth turns a header
attribute into a Python value: a value the file holds but that does not parse (``NumberOfFrames``
``'1A'`` in pydicom's own ``badVR.dcm``) is an :class:`~medsynth.errors.InvalidImageError` naming the
file and the attribute, never a bare ``ValueError``.
"""

from __future__ import annotations

import logging
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from medsynth.errors import InvalidImageError

logger = logging.getLogger(__name__)

__all__ = ["PixelDataInfo", "first_value", "header_value", "read_header"]

# PixelData, FloatPixelData, DoubleFloatPixelData.
_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_UNDEFINED = 0xFFFFFFFF
_ITEM, _SEQ_DELIM = 0xFFFEE000, 0xFFFEE0DD
# Where enhanced (multi-frame) IODs keep per-image attributes that older IODs hold at the top level.
_SHARED_GROUP_SEQUENCES = ("PixelMeasuresSequence", "FrameAnatomySequence", "PixelValueTransformationSequence")


def header_value(
    ds: Any,
    keyword: str,
    cast: Callable[[Any], Any] | None = None,
    default: Any = None,
    *,
    path: str | Path | None = None,
) -> Any:
    """One attribute of a DICOM header as a Python value: the one place header values are parsed.

    Args:
        ds: a pydicom Dataset (a file's header or a sequence item).
        keyword: the attribute's DICOM keyword, e.g. "NumberOfFrames".
        cast: converts the value pydicom gives (``int``, ``float``, ``str``, or a function of a
            multi-valued value); None returns it unconverted.
        default: returned when the attribute is absent or its value is empty.
        path: the file, for the message (default: the dataset's ``filename``).

    Returns:
        The converted value, or ``default``.

    Raises:
        InvalidImageError: the value is present but cannot be read or converted; the message names
            the file, the attribute and the value.
    """
    try:
        value = ds[keyword].value if keyword in ds else None
    except Exception as e:  # pydicom converts raw elements lazily: any decoding error surfaces here
        raise InvalidImageError(
            f"attribute {keyword} cannot be read ({type(e).__name__}: {e})", _where(ds, path)
        ) from e
    if value is None or _is_empty(value):
        return default
    if cast is None:
        return value
    try:
        return cast(value)
    except (TypeError, ValueError, ArithmeticError, IndexError, AttributeError) as e:
        raise InvalidImageError(
            f"attribute {keyword} has a malformed value {_shown(value)} ({type(e).__name__}: {e})", _where(ds, path)
        ) from e


def first_value(
    ds: Any, keyword: str, cast: Callable[[Any], Any] | None = None, *, path: str | Path | None = None
) -> Any:
    """A top-level attribute, else the same attribute in the shared functional groups (enhanced IODs);
    None when neither holds a value. Parsed by :func:`header_value`."""
    path = _where(ds, path)
    value = header_value(ds, keyword, cast, path=path)
    if value is not None:
        return value
    for group in header_value(ds, "SharedFunctionalGroupsSequence", default=[], path=path):
        for seq_kw in _SHARED_GROUP_SEQUENCES:
            for item in header_value(group, seq_kw, default=[], path=path):
                value = header_value(item, keyword, cast, path=path)
                if value is not None:
                    return value
    return None


def _is_empty(value: Any) -> bool:
    """An empty string, bytes or multi-value (numbers and person names have no length: never empty)."""
    try:
        return len(value) == 0
    except TypeError:
        return False


def _where(ds: Any, path: str | Path | None) -> Path | None:
    if path is not None:
        return Path(path)
    filename = getattr(ds, "filename", None)
    return Path(filename) if isinstance(filename, (str, Path)) and filename else None


def _shown(value: Any) -> str:
    text = repr(value if isinstance(value, (str, bytes)) else str(value))
    return text if len(text) <= 60 else text[:57] + "..."


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
        raise_on_eof_warnings(caught, path, "header")
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


def raise_on_eof_warnings(caught: list[warnings.WarningMessage], path: Path, where: str) -> None:
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
