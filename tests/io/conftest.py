"""Builders for the io tests: small DICOM, NIfTI and PNG files written with pydicom, nibabel and
Pillow directly (not with medsynth), so the readers are checked against files they did not write."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest


def phantom_like(shape: tuple[int, int] = (48, 40), bits: int = 12, seed: int = 0) -> np.ndarray:
    """A smooth uint16 image using the full ``bits`` range: a bright disc on noise, plus both extremes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    top = 2**bits - 1
    disc = ((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 3) ** 2) < (min(shape) / 3) ** 2
    img = rng.integers(0, top // 4, size=shape) + disc * (top // 2)
    img[0, 0], img[-1, -1] = 0, top
    return img.astype(np.uint16)


def write_dicom(
    path: Path,
    arr: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    presentation: str | None = None,
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
    transfer_syntax: str | None = None,
    extra: dict[str, Any] | None = None,
    spacing: bool = True,
) -> Path:
    """Write an MG-like DICOM with pydicom (optionally compressed with ``ds.compress``); ``spacing``
    False leaves out every pixel-spacing attribute (as film-digitised sets often do)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography - For Presentation
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.PatientName = "Decoy^Jane"
    ds.PatientID = "DECOY-001"
    ds.ImageLaterality = "L"
    ds.ViewPosition = "CC"
    if spacing:
        ds.ImagerPixelSpacing = [0.1, 0.1]
        ds.PixelSpacing = [0.2, 0.15]
    ds.set_pixel_data(np.ascontiguousarray(arr), photometric, bits_stored)
    if presentation:
        ds.PresentationLUTShape = presentation
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    if transfer_syntax is not None:
        ds.compress(transfer_syntax)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_nifti(
    path: Path, data: np.ndarray, zooms: tuple[float, ...] = (0.2, 0.15, 1.0), affine: np.ndarray | None = None
) -> Path:
    """Write a NIfTI-1 file with nibabel."""
    import nibabel as nib

    if affine is None:
        affine = np.diag([*zooms[:3], 1.0])
    img = nib.Nifti1Image(data, affine)
    img.header.set_zooms(zooms[: data.ndim])
    nib.save(img, str(path))
    return path


def write_png(path: Path, arr: np.ndarray) -> Path:
    """Write a grayscale PNG (8- or 16-bit by dtype) with Pillow."""
    from PIL import Image

    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def build() -> SimpleNamespace:
    """The builders above, as a fixture (test modules cannot import conftest under importlib mode)."""
    return SimpleNamespace(dicom=write_dicom, nifti=write_nifti, png=write_png, phantom_like=phantom_like)
