"""NIfTI files for the nnU-Net and MONAI writers.

A 2-D image is stored as a (rows, cols) array in the file's (i, j) axes -- the order nibabel and
MONAI's NibabelReader give back and :func:`medsynth.io.nifti.read_nifti` expects -- with a diagonal
affine holding the pixel spacing in mm. nibabel gzips deterministically (no file name, mtime 0 in
the gzip header), so equal arrays give byte-identical ``.nii.gz`` files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsynth.io.writers.atomic import atomic_path


def nifti_affine(spacing: tuple[float, float]) -> np.ndarray:
    """A 4x4 affine with (row, col) spacing on the diagonal and 1 mm for the missing third axis."""
    return np.diag([float(spacing[0]), float(spacing[1]), 1.0, 1.0])


def write_nifti(path: Path, array: np.ndarray, spacing: tuple[float, float]) -> Path:
    """Write a 2-D array as NIfTI-1 (dtype kept, no intensity scaling) atomically."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(array), nifti_affine(spacing))
    img.header.set_data_dtype(array.dtype)
    # Both codes set: "scanner" (1) coordinates, so readers agree on qform and sform.
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    img.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path
