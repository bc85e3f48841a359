"""NIfTI reader (nibabel): header and affine checks at once, voxels on demand.

``read_nifti(path)`` loads the header lazily (nibabel's array proxy) and returns a
:class:`~medsynth.io.scan.Scan`. Rules:

* Geometry: the affine must be usable -- finite, ``det(affine[:3, :3])`` not ~0 (an all-zero sform
  with sform_code 1 gives an all-zero affine), and its column norms equal to the header's voxel
  sizes (the fMRIPrep check). Otherwise :class:`~medsynth.errors.InvalidImageError`.
* Shape: a 2-D image stored as (rows, cols) or (rows, cols, 1) comes back as (rows, cols) -- axes are
  kept in the file's (i, j) order, as nibabel and MONAI's NibabelReader give them. Spacing is
  (zooms[0], zooms[1]) from the header.
* Volumes: a 3-D (or 4-D) file is a stack of 2-D slices along the third (and later) axes;
  ``frame=`` picks one (Fortran order: the third axis varies fastest), default 0, and
  ``metadata["n_frames"]`` says how many there are.
* Voxels: read whole when ``.pixels`` is first accessed (so a truncated ``.nii.gz`` anywhere in the
  file fails, with the file's name -- nibabel itself raises a bare ``EOFError``), scaled by
  scl_slope/inter, and rejected when any voxel is NaN or infinite. An uncompressed ``.nii`` shorter
  than its header promises fails at once. Unscaled uint8/uint16 voxels set ``bits_stored`` to 8/16
  (so ``unit_pixels()`` does not depend on the image's content).
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.errors import InvalidImageError
from medsynth.io.scan import Scan

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def check_affine(affine: np.ndarray, zooms: tuple[float, ...], path: Path) -> None:
    """Raise InvalidImageError unless the affine is finite, invertible and matches the voxel sizes.

    Args:
        affine: 4x4 voxel-to-world matrix.
        zooms: voxel sizes from the header (at least three; missing ones count as 1).
        path: the file (for the message).
    """
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InvalidImageError(f"affine is not a finite 4x4 matrix: {affine.tolist()}", path)
    linear = affine[:3, :3]
    norms = np.linalg.norm(linear, axis=0)
    det = float(np.linalg.det(linear))
    # Scale-aware singularity test: |det| relative to the product of the column norms.
    if np.any(norms == 0) or abs(det) <= 1e-6 * float(np.prod(norms)):
        raise InvalidImageError(
            f"affine is singular (det {det:.3g}, column norms {np.round(norms, 6).tolist()}); "
            "check sform/qform in the header",
            path,
        )
    sizes = np.ones(3)
    zs = [float(z) for z in zooms[:3]]
    sizes[: len(zs)] = zs
    if not np.allclose(norms, sizes, rtol=1e-3, atol=1e-5):
        raise InvalidImageError(
            f"affine column norms {np.round(norms, 6).tolist()} disagree with the header's voxel "
            f"sizes {np.round(sizes, 6).tolist()}",
            path,
        )


def read_nifti(path: str | Path, *, frame: int = 0) -> Scan:
    """Read a NIfTI-1/2 file's header now and its voxels on first access of ``.pixels``.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.
        frame: which 2-D slice of a volume (see the module docstring).

    Returns:
        A lazy Scan with ``affine`` set.

    Raises:
        InvalidImageError: not NIfTI, bad affine, truncated, frame out of range; NaN/Inf voxels and
            truncated gzip streams are raised by ``.pixels``.
    """
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    path = Path(path)
    try:
        img = nib.load(str(path))
    except (ImageFileError, EOFError, OSError, ValueError, zlib.error) as e:
        raise InvalidImageError(f"not a readable NIfTI file ({type(e).__name__}: {e})", path) from e
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InvalidImageError(f"is a {type(img).__name__}, not a NIfTI image", path)
    shape = tuple(int(s) for s in img.shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise InvalidImageError(f"has shape {shape}; a 2-D image (rows, cols[, 1]) is needed", path)
    zooms = tuple(float(z) for z in img.header.get_zooms())
    check_affine(img.affine, zooms, path)
    stack = shape[2:]
    n_frames = int(np.prod(stack)) if stack else 1
    if not 0 <= frame < n_frames:
        raise InvalidImageError(f"frame {frame} requested but the file has {n_frames} 2-D slice(s)", path)
    if not str(path).endswith(".gz"):
        # An uncompressed file shorter than its header promises: fail now, not at first access.
        offset = int(img.dataobj.offset)
        needed = offset + int(np.prod(shape)) * img.get_data_dtype().itemsize
        size = os.path.getsize(path)
        if size < needed:
            raise InvalidImageError(f"file is truncated: the header needs {needed} bytes, the file has {size}", path)
    index = np.unravel_index(frame, stack, order="F") if stack else ()
    metadata: dict[str, Any] = {
        "format": "nifti",
        "n_frames": n_frames,
        "frame": frame,
        "volume_shape": shape,
        "dtype": str(img.get_data_dtype()),
        "sform_code": int(img.header["sform_code"]),
        "qform_code": int(img.header["qform_code"]),
        "zooms": zooms,
        "spacing_source": "zooms",
    }

    def load() -> np.ndarray:
        try:
            data = np.asanyarray(img.dataobj)
        except (EOFError, OSError, ValueError, zlib.error) as e:
            raise InvalidImageError(
                f"cannot read voxels, the file is truncated or corrupt ({type(e).__name__}: {e})", path
            ) from e
        bad = ~np.isfinite(data)
        if bad.any():
            raise InvalidImageError(f"has {int(bad.sum())} NaN/Inf voxel(s)", path)
        return np.asarray(data[(slice(None), slice(None), *index)], dtype=np.float32)

    # Unsigned integer voxels without scaling have a known range, as a PNG of that depth would:
    # unit_pixels() then scales by it instead of by the image's own min/max.
    dtype = img.get_data_dtype()
    slope, inter = img.header.get_slope_inter()
    unscaled = slope in (None, 1.0) and inter in (None, 0.0)
    bits = 8 * dtype.itemsize if dtype.kind == "u" and dtype.itemsize <= 2 and unscaled else None
    return Scan(
        path=path,
        shape=(shape[0], shape[1]),
        spacing=(zooms[0], zooms[1]),
        pixel_loader=load,
        affine=np.asarray(img.affine, dtype=np.float64),
        bits_stored=bits,
        metadata=metadata,
    )
