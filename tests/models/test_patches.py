"""What a lesion is (lesion_components), ROI crop at a fixed mm spacing and feathered paste-back."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from medsynth.errors import ConfigError, InvalidImageError, InvalidMaskError
from medsynth.models.patches import (
    crop_roi,
    default_lesion_rule,
    feather_weights,
    lesion_components,
    lesion_crop_centres,
    lesion_rule_of,
    paste_roi,
)


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


# --- lesion_components: the one rule for "a lesion" -------------------------------------------------

def _squares(gap_px: int, shape=(60, 80)) -> np.ndarray:
    """Two 10x10 squares side by side, ``gap_px`` empty columns between them."""
    m = np.zeros(shape, np.uint8)
    m[20:30, 10:20] = 1
    m[20:30, 20 + gap_px : 30 + gap_px] = 1
    return m


@pytest.mark.parametrize("gap_px, n", [(1, 1), (8, 1), (10, 1), (11, 2), (14, 2)])
def test_parts_closer_than_the_merge_distance_are_one_lesion(gap_px, n):
    # 1 mm at 0.2 mm/px grows each part by 5 px: gaps up to 10 px (2 mm) are bridged.
    lesions = lesion_components(_squares(gap_px), (0.2, 0.2), merge_mm=1.0, min_lesion_mm2=3.0)
    assert len(lesions) == n
    if n == 1:
        (les,) = lesions
        assert les.box == (20, 10, 30, 30 + gap_px)
        assert les.area_mm2 == pytest.approx(200 * 0.04)
        assert les.mask.shape == (10, 20 + gap_px) and les.mask.sum() == 200
        # The merged region is the parts grown by 5 px (the training crop is centred on it).
        assert les.region == (15, 5, 35, 35 + gap_px)
    else:
        assert [les.box for les in lesions] == [(20, 10, 30, 20), (20, 20 + gap_px, 30, 30 + gap_px)]


def test_merge_distance_is_in_mm_at_the_finer_spacing():
    # The same 8 px gap is 0.8 mm at 0.1 mm/px (bridged by 0.5 mm) but 4 mm at 0.5 mm/px (not).
    assert len(lesion_components(_squares(8), (0.1, 0.1), 0.5, 0.0)) == 1
    assert len(lesion_components(_squares(8), (0.5, 0.5), 0.5, 0.0)) == 2
    # Anisotropic pixels: the radius follows the finer axis, the area both.
    (les,) = lesion_components(_squares(8), (0.3, 0.1), 0.5, 0.0)
    assert les.area_mm2 == pytest.approx(200 * 0.03)


def test_specks_below_the_minimum_area_are_no_lesion():
    m = np.zeros((60, 80), np.uint8)
    m[5:15, 5:15] = 1  # 100 px x 0.04 mm² = 4 mm²
    m[40:43, 60:63] = 1  # 9 px = 0.36 mm², far from the square
    m[50, 10] = 1
    lesions = lesion_components(m, (0.2, 0.2), merge_mm=1.0, min_lesion_mm2=3.0)
    assert [les.box for les in lesions] == [(5, 5, 15, 15)]
    assert len(lesion_components(m, (0.2, 0.2), merge_mm=1.0, min_lesion_mm2=0.0)) == 3
    # 4 mm² is not below 4 mm²: the bound is kept.
    assert len(lesion_components(m, (0.2, 0.2), merge_mm=1.0, min_lesion_mm2=4.0)) == 1
    assert lesion_components(m, (0.2, 0.2), merge_mm=1.0, min_lesion_mm2=4.01) == []


def _spiculated_mass(shape=(120, 120), radius=15, spicule_len=22, gap=2) -> tuple[np.ndarray, np.ndarray]:
    """A disc with 8 one-pixel-wide spicules that start ``gap`` px outside it (thin separate parts)."""
    m = np.zeros(shape, np.uint8)
    cy, cx = shape[0] // 2, shape[1] // 2
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    body = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    m[body] = 1
    for ang in np.arange(8) * np.pi / 4:
        for r in np.arange(radius + gap + 1, radius + gap + spicule_len, 0.25):
            m[int(round(cy + r * np.sin(ang))), int(round(cx + r * np.cos(ang)))] = 1
    return m, body


def test_a_spiculated_mass_is_one_lesion_with_its_spicules():
    m, body = _spiculated_mass()
    n_parts = ndimage.label(m > 0)[1]
    assert n_parts >= 9  # the body and 8 detached spicules (some may break into more pieces)
    (les,) = lesion_components(m, (0.2, 0.2), merge_mm=1.0, min_lesion_mm2=3.0)
    np.testing.assert_array_equal(les.full_mask(), m > 0)  # every spicule pixel belongs to the mass
    assert les.extent_mm((0.2, 0.2)) > 2 * (15 + 20) * 0.2
    # Without merging the spicules are specks: only the body is a lesion.
    (body_only,) = lesion_components(m, (0.2, 0.2), merge_mm=0.0, min_lesion_mm2=3.0)
    np.testing.assert_array_equal(body_only.full_mask(), body)


def test_merge_zero_keeps_diagonal_parts_apart_and_infinity_joins_everything():
    m = np.zeros((20, 20), np.uint8)
    m[2:5, 2:5] = 1
    m[5:8, 5:8] = 2  # touches the first square at one corner only
    m[15:18, 15:18] = 2
    assert len(lesion_components(m, (1.0, 1.0), 0.0, 0.0)) == 3
    (one,) = lesion_components(m, (1.0, 1.0), math.inf, 0.0)
    assert one.box == (2, 2, 18, 18) and one.area_mm2 == 27.0
    assert one.label == 2  # the most common value among its pixels


def test_lesion_label_is_the_majority_class():
    m = np.zeros((30, 30), np.uint8)
    m[5:15, 5:15] = 1
    m[8:10, 8:10] = 2
    (les,) = lesion_components(m, (0.5, 0.5), 1.0, 0.0)
    assert les.label == 1
    m[5:15, 5:15] = 2
    assert lesion_components(m, (0.5, 0.5), 1.0, 0.0)[0].label == 2


@pytest.mark.parametrize(
    "args, error, text",
    [
        ((np.zeros((2, 4, 4)), (1.0, 1.0), 1.0, 0.0), InvalidMaskError, "2-D"),
        ((np.zeros((4, 4)), (0.0, 1.0), 1.0, 0.0), ConfigError, "spacing"),
        ((np.zeros((4, 4)), (1.0, 1.0), -1.0, 0.0), ConfigError, "merge"),
        ((np.zeros((4, 4)), (1.0, 1.0), float("nan"), 0.0), ConfigError, "merge"),
        ((np.zeros((4, 4)), (1.0, 1.0), 1.0, -3.0), ConfigError, "area"),
    ],
)
def test_lesion_components_refuses_bad_arguments(args, error, text):
    with pytest.raises(error, match=text):
        lesion_components(*args)


def test_crop_centres_follow_the_merged_region_and_skip_lesions_too_large():
    m = _squares(8, shape=(200, 200))
    m[100:190, 100:190] = 1  # 18 mm at 0.2 mm/px: no room in a 16 mm ROI
    centres, too_large = lesion_crop_centres(m, (0.2, 0.2), 16.0, merge_mm=1.0, min_lesion_mm2=3.0,
                                             margin_mm=2.0)
    assert too_large == 1
    ((centre, room),) = centres
    assert centre == ((15 + 35 - 1) / 2, (5 + 43 - 1) / 2)  # the region (15, 5, 35, 43)
    assert room == pytest.approx((16.0 - 38 * 0.2) / 2 - 2.0)


def test_lesion_rule_defaults_come_from_train_yaml():
    from medsynth.config import load_config

    data = load_config(None, kind="train")["data"]
    assert default_lesion_rule() == {k: float(data[k]) for k in ("merge_mm", "min_lesion_mm2", "margin_mm")}
    assert lesion_rule_of({"merge_mm": 3, "min_lesion_mm2": None})["merge_mm"] == 3.0
    assert lesion_rule_of({"merge_mm": 3, "min_lesion_mm2": None})["min_lesion_mm2"] == float(data["min_lesion_mm2"])


# ----------------------------------------------------------------------------- paste_change (issue 13)
def _textured(shape=(240, 240), seed=0):
    """A smooth ramp plus fine random texture (the detail a coarse patch cannot hold)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    smooth = 0.3 + 0.2 * np.sin(yy / 60.0) * np.cos(xx / 80.0)
    fine = ndimage.gaussian_filter(rng.standard_normal(shape), 0.7) * 0.05
    return (smooth + fine).astype(np.float32), fine.astype(np.float32)


def test_paste_change_at_the_images_spacing_is_the_plain_paste():
    from medsynth.models.patches import paste_change

    image, mask = _image_and_mask()
    patch, pmask, box = crop_roi(image, mask, (0.5, 0.5), roi_mm=32.0, out_px=64)  # 0.5 mm: no resampling
    painted = np.where(pmask, np.clip(patch + 0.2, 0, 1), patch).astype(np.float32)
    a = paste_change(image, painted, patch, box, mask, mask, feather_mm=1.0)
    b = paste_roi(image, painted, box, mask, feather_mm=1.0)
    np.testing.assert_allclose(a, b, atol=1e-6)
    far = ndimage.distance_transform_edt(~mask) * 0.5 > 1.0
    assert np.array_equal(a[far], image[far])


def test_paste_change_keeps_the_background_detail_and_a_sharp_outline():
    """A coarse patch (0.5 mm) painted into a 0.1 mm image: the fine texture inside the lesion is the
    image's own (scaled by the transmission), and the lesion's edge follows the full-resolution mask,
    where plain upsampling of the patch (paste_roi) blurs both."""
    from medsynth.models.patches import paste_change

    image, fine = _textured()
    yy, xx = np.mgrid[:240, :240]
    mask = (yy - 120) ** 2 + (xx - 120) ** 2 < 40**2  # 8 mm disc at 0.1 mm/px
    patch, pmask, box = crop_roi(image, mask, (0.1, 0.1), roi_mm=32.0, out_px=64)
    bump = 0.25
    fraction = crop_roi(mask.astype(np.float32), mask, (0.1, 0.1), 32.0, 64)[0]  # area fraction per patch pixel
    painted = (patch + bump * fraction).astype(np.float32)
    out = paste_change(image, painted, patch, box, mask, mask, feather_mm=0.5)
    change = out - image
    dist_in = ndimage.distance_transform_edt(mask)
    dist_out = ndimage.distance_transform_edt(~mask)
    assert np.all(np.abs(change[dist_in > 3] - bump) < 0.03)  # the lesion's density, the texture untouched
    assert np.abs(change[(dist_out >= 1) & (dist_out <= 2)]).max() < 0.2 * bump  # sharp outside the outline
    assert change[(dist_in >= 1) & (dist_in <= 2)].min() > 0.8 * bump  # ... and inside it
    plain = paste_roi(image, painted, box, mask, feather_mm=0.5)
    inside = dist_in > 3
    # The plain paste replaces the fine texture by the patch's blur; paste_change keeps it.
    assert np.corrcoef((plain - image)[inside], fine[inside])[0, 1] < -0.5
    # A transmission of 0.5 halves the texture inside the lesion, and only there.
    half = paste_change(image, painted, patch, box, mask, mask, feather_mm=0.5, transmission=0.5)
    detail = image - ndimage.gaussian_filter(image, 2.5)
    kept = (half - ndimage.gaussian_filter(half, 2.5))[dist_in > 6].std() / detail[dist_in > 6].std()
    assert 0.4 < kept < 0.65
    assert np.array_equal(half[dist_out > 5], out[dist_out > 5])
