"""NIfTI reader: nibabel's shipped files, 2-D shapes, affine and voxel checks, truncation."""

from __future__ import annotations

import gzip
import os

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

from medsynth.errors import InvalidImageError
from medsynth.io.readers import load_scan


@pytest.mark.parametrize("name,frame", [("anatomical.nii", 12), ("example4d.nii.gz", 30), ("standard.nii.gz", 0)])
def test_nibabel_files_read_like_nibabel(name, frame):
    path = os.path.join(data_path, name)
    img = nib.load(path)
    scan = load_scan(path, frame=frame)
    stack = img.shape[2:]
    assert scan.metadata["n_frames"] == int(np.prod(stack))
    index = np.unravel_index(frame, stack, order="F")
    np.testing.assert_allclose(scan.pixels, img.get_fdata()[(slice(None), slice(None), *index)], rtol=1e-6)
    assert scan.shape == img.shape[:2]
    assert scan.spacing == pytest.approx(img.header.get_zooms()[:2])
    np.testing.assert_allclose(scan.affine, img.affine)


def test_nibabel_scaled_file_applies_slope():
    path = os.path.join(data_path, "functional.nii")  # scl_slope 0.0754
    scan = load_scan(path, frame=5)
    np.testing.assert_allclose(scan.pixels, nib.load(path).get_fdata()[:, :, 2, 1], rtol=1e-5)  # frame 5 = (z 2, t 1)


def test_2d_image_stored_with_singleton_axis(tmp_path, build):
    img = build.phantom_like().astype(np.float32)
    scan = load_scan(build.nifti(tmp_path / "flat.nii.gz", img[:, :, None], zooms=(0.2, 0.15, 1.0)))
    assert scan.shape == img.shape and scan.metadata["n_frames"] == 1
    assert scan.spacing == pytest.approx((0.2, 0.15))
    np.testing.assert_array_equal(scan.pixels, img)


@pytest.mark.slow  # imports torch through MONAI; nibabel above is the reference in the default run
def test_matches_monai_loader(tmp_path, build):
    from monai.transforms import LoadImage

    img = build.phantom_like().astype(np.float32)
    path = build.nifti(tmp_path / "m.nii.gz", img[:, :, None])
    ref = np.asarray(LoadImage(image_only=True, reader="NibabelReader")(str(path)))
    np.testing.assert_array_equal(load_scan(path).pixels, ref.reshape(img.shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_voxels_are_rejected(tmp_path, build, bad):
    img = build.phantom_like().astype(np.float32)
    img[3, 4] = bad
    scan = load_scan(build.nifti(tmp_path / "nan.nii.gz", img[:, :, None]))
    with pytest.raises(InvalidImageError, match=r"nan\.nii\.gz.*NaN/Inf"):
        scan.pixels


def test_zero_sform_affine_is_rejected(tmp_path, build):
    img = nib.Nifti1Image(build.phantom_like().astype(np.float32)[:, :, None], np.eye(4))
    img.set_sform(np.zeros((4, 4)), code=1)
    img.set_qform(None, code=0)
    path = tmp_path / "zero.nii.gz"
    nib.save(img, str(path))
    assert np.linalg.det(nib.load(str(path)).affine[:3, :3]) == 0  # what nibabel gives the user
    with pytest.raises(InvalidImageError, match=r"zero\.nii\.gz.*singular"):
        load_scan(path)


def test_affine_disagreeing_with_voxel_sizes_is_rejected(tmp_path, build):
    img = nib.Nifti1Image(build.phantom_like().astype(np.float32)[:, :, None], np.diag([0.2, 0.2, 1.0, 1.0]))
    img.header.set_zooms((0.5, 0.5, 1.0))
    path = tmp_path / "mismatch.nii"
    nib.save(img, str(path))
    with pytest.raises(InvalidImageError, match="disagree"):
        load_scan(path)


def test_truncated_nii_gz_names_the_file(tmp_path, build):
    rng = np.random.default_rng(0)
    path = build.nifti(tmp_path / "whole.nii.gz", rng.normal(size=(64, 64, 1)).astype(np.float32))
    data = path.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(data[: len(data) // 2])
    scan = load_scan(cut)  # the header is fine; nibabel fails only at get_fdata
    with pytest.raises(InvalidImageError, match=r"cut\.nii\.gz.*truncated"):
        scan.pixels
    with pytest.raises(EOFError):  # the behaviour being wrapped
        nib.load(str(cut)).get_fdata()


def test_truncated_nii_fails_at_load(tmp_path, build):
    path = build.nifti(tmp_path / "whole.nii", build.phantom_like().astype(np.float32)[:, :, None])
    cut = tmp_path / "cut.nii"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InvalidImageError, match=r"cut\.nii.*truncated"):
        load_scan(cut)


def test_gzip_of_garbage_is_an_error(tmp_path):
    path = tmp_path / "junk.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti header" * 40))
    with pytest.raises(InvalidImageError, match="junk.nii.gz"):
        load_scan(path)
