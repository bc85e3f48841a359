"""``load_scan(path)``: one entry point for every image format medsynth reads.

Like MONAI's ``LoadImage``, it picks the readers that fit the file -- first by suffix, then by
content (magic bytes) -- tries them in that order, and returns the first success. When every
candidate fails it raises one :class:`~medsynth.errors.InvalidImageError` naming the file and
each reader's reason (a single candidate's error is re-raised as is, since its message is already
the clearest one).

Readers: DICOM (``medsynth.io.dicom``), NIfTI (``medsynth.io.nifti``), PNG/TIFF
(``medsynth.io.images``). All are lazy: the header is read here, the pixels on first ``.pixels``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from medsynth.errors import InvalidImageError
from medsynth.io.scan import Scan

__all__ = ["load_scan", "READERS", "sniff_format"]


def _dicom(path: Path, frame: int, window: bool) -> Scan:
    from medsynth.io.dicom import read_dicom

    return read_dicom(path, frame=frame, window=window)


def _nifti(path: Path, frame: int, window: bool) -> Scan:
    from medsynth.io.nifti import read_nifti

    return read_nifti(path, frame=frame)


def _image(path: Path, frame: int, window: bool) -> Scan:
    from medsynth.io.images import read_image

    return read_image(path, frame=frame)


# name -> (suffixes, reader). A file with no suffix is a DICOM candidate (DICOM files often have none).
READERS: dict[str, tuple[tuple[str, ...], Callable[[Path, int, bool], Scan]]] = {
    "dicom": ((".dcm", ".dicom", ".dic", ""), _dicom),
    "nifti": ((".nii", ".nii.gz"), _nifti),
    "image": ((".png", ".tif", ".tiff"), _image),
}


def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return path.suffix.lower()


def sniff_format(path: str | Path) -> str | None:
    """The format a file's first bytes announce ("dicom", "nifti", "image"), or None.

    DICOM: a Part 10 preamble and "DICM" marker (``pydicom.misc.is_dicom``). NIfTI: "n+1"/"n+2" magic
    (gzip-compressed files are sniffed by their suffix only). PNG and TIFF by their signatures.
    """
    from pydicom.misc import is_dicom

    if is_dicom(path):
        return "dicom"
    with open(path, "rb") as fp:
        head = fp.read(544)
    if head[344:348] in (b"n+1\x00", b"ni1\x00") or head[4:8] in (b"n+2\x00", b"ni2\x00"):
        return "nifti"
    if head.startswith(b"\x89PNG\r\n\x1a\n") or head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "image"
    return None


def load_scan(path: str | Path, *, frame: int = 0, window: bool = False) -> Scan:
    """Read an image's header and return a lazy :class:`Scan` (pixels decoded on first access).

    Args:
        path: a DICOM, NIfTI (.nii/.nii.gz), PNG or TIFF file.
        frame: frame of a multi-frame DICOM, slice of a NIfTI volume, page of a TIFF (0-based).
        window: DICOM only: apply the VOI window (default: full range; see ``medsynth.io.dicom``).

    Returns:
        The Scan.

    Raises:
        FileNotFoundError: the path does not exist.
        InvalidImageError: no reader could read it; the message lists each reader's reason.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise InvalidImageError("is a folder, not an image file (use load_dataset for folders)", path)
    suffix = _suffix(path)
    order = [name for name, (suffixes, _) in READERS.items() if suffix in suffixes]
    sniffed = sniff_format(path)
    if sniffed is not None and sniffed not in order:
        order.append(sniffed)
    if not order:
        raise InvalidImageError(
            f"unknown image format (suffix {suffix or 'none'!r}, no DICOM/NIfTI/PNG/TIFF signature)", path
        )
    errors: list[tuple[str, InvalidImageError]] = []
    for name in order:
        try:
            return READERS[name][1](path, frame, window)
        except InvalidImageError as e:
            errors.append((name, e))
    if len(errors) == 1:
        raise errors[0][1]
    reasons = "; ".join(f"{name}: {e.message}" for name, e in errors)
    raise InvalidImageError(f"no reader could read it ({reasons})", path) from errors[-1][1]
