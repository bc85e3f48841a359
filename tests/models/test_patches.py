"""ROI crop at a fixed mm spacing and feathered paste-back."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medsynth.errors import InvalidImageError, InvalidMaskError
from medsynth.models.patches import crop_roi, feather_weights, paste_roi


def _image_and_mask(shape=(300, 240), center=(150, 120), radius=20):
    rng = np.random.default_rng(0)
    image = rng.uniform(0.2, 0.8, size=shape).astype(np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = (yy - center[0]) ** 2 + (xx - center[1]) ** 2 < radius**2
    return image, mask


def test_crop_keeps_size_in_mm():
    image, mask = _image_and_mask(radius=25)  # 50 px at 0.1 mm = 5 mm wide
    patch, pmask, box = crop_roi(image, mask, (0.1, 0.1), roi_mm=32.0, out_px=64)
    assert patch.shape == pmask.shape == (64, 64)
    assert box.patch_spacing == pytest.approx((0.5, 0.5))
    # Area in mm² is kept through the resampling (to within the boundary pixels).
    area_src = mask.sum() * 0.01
    area_patch = pmask.sum() * 0.25
    assert area_patch == pytest.approx(area_src, rel=0.1)
    # The mask is centred in the patch.
    cy, cx = ndimage.center_of_mass(pmask)
    assert abs(cy - 31.5) < 1.5 and abs(cx - 31.5) < 1.5


def test_paste_back_changes_only_mask_and_feather_band():
    image, mask = _image_and_mask()
    patch, pmask, box = crop_roi(image, mask, (0.1, 0.1), roi_mm=32.0, out_px=64)
    edited = np.where(pmask, 1.0, patch).astype(np.float32)
    out = paste_roi(image, edited, box, mask, feather_mm=1.0)
    dist = ndimage.distance_transform_edt(~mask) * 0.1  # mm from the mask
    far = dist > 1.0
    assert np.array_equal(out[far], image[far])  # bit for bit beyond the feathered edge
    assert np.allclose(out[mask][ndimage.binary_erosion(mask, iterations=8)[mask]], 1.0, atol=1e-5)
    assert not np.array_equal(out[mask], image[mask])


def test_roi_at_image_border_is_padded_and_pasted_inside():
    image, mask = _image_and_mask(center=(15, 15), radius=10)
    patch, pmask, box = crop_roi(image, mask, (0.1, 0.1), roi_mm=32.0, out_px=64, margin_mm=0.5)
    assert box.r0 < 0 and box.c0 < 0
    out = paste_roi(image, np.ones_like(patch), box, mask, feather_mm=0.5)
    assert out.shape == image.shape
    far = ndimage.distance_transform_edt(~mask) * 0.1 > 0.5
    assert np.array_equal(out[far], image[far])


def test_feather_weights_profile():
    m = np.zeros((20, 20), bool)
    m[8:12, 8:12] = True
    w = feather_weights(m, 3.0)
    assert np.all(w[m] == 1.0)
    assert w[10, 12] == pytest.approx(2 / 3)  # 1 px outside
    assert w[10, 13] == pytest.approx(1 / 3)  # 2 px outside
    assert w[10, 16] == 0.0  # 5 px outside


@pytest.mark.parametrize(
    "make, error, text",
    [
        (lambda im, m: (im, m[:-1]), InvalidMaskError, "shape"),
        (lambda im, m: (im, np.zeros_like(m)), InvalidMaskError, "empty"),
        (lambda im, m: (np.where(m, np.nan, im), m), InvalidImageError, "NaN"),
        (lambda im, m: (im[None], m[None]), InvalidImageError, "2-D"),
    ],
)
def test_bad_inputs(make, error, text):
    image, mask = _image_and_mask()
    im, m = make(image, mask)
    with pytest.raises(error, match=text):
        crop_roi(im, m, (0.1, 0.1), roi_mm=32.0, out_px=64)


def test_mask_larger_than_roi_and_roi_outside_image():
    image, mask = _image_and_mask(radius=140)
    with pytest.raises(InvalidMaskError, match="too large"):
        crop_roi(image, mask, (0.1, 0.1), roi_mm=16.0, out_px=64)
    image, mask = _image_and_mask()
    with pytest.raises(InvalidMaskError, match="outside the image"):
        crop_roi(image, mask, (0.1, 0.1), roi_mm=16.0, out_px=64, center=(-500, -500))
