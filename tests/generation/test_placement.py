"""Placement: the tissue mask from pixels, margins from skin and chest wall, no overlaps."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medsynth.generation.placement import (
    PlacementSettings,
    allowed_region,
    chest_wall_side,
    place_lesion,
    tissue_mask,
    valid_positions,
)


@pytest.mark.parametrize("index,view", [(0, "cc"), (1, "cc"), (2, "mlo"), (3, "mlo")])
def test_tissue_mask_matches_the_phantom_breast(index, view):
    from medsynth.phantoms import render_phantom

    p = render_phantom(0, size=(128, 104), view=view, index=index)
    truth = p.breast_mask | p.pectoral_mask
    got = tissue_mask(p.image)
    iou = (got & truth).sum() / (got | truth).sum()
    assert iou > 0.95
    # Phantoms: left breast has its chest wall at column 0.
    assert chest_wall_side(got) == ("left" if p.laterality == "L" else "right")


def test_tissue_mask_of_a_flat_image_is_empty():
    assert not tissue_mask(np.full((32, 32), 0.3, np.float32)).any()


def half_disc(shape=(120, 100), radius=70) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - shape[0] / 2) ** 2 + xx**2 <= radius**2  # chest wall at column 0


def test_allowed_region_keeps_margins():
    tissue = half_disc()
    spacing = (0.5, 0.5)
    settings = PlacementSettings(skin_margin_mm=4.0, chest_wall_margin_mm=6.0, gap_mm=2.0)
    occupied = np.zeros_like(tissue)
    occupied[50:60, 40:50] = True
    allowed = allowed_region(tissue, spacing, occupied, settings)
    assert allowed.any()
    cols = np.nonzero(allowed)[1]
    assert cols.min() * spacing[1] >= 6.0
    # Independent distance check: every allowed pixel is >= 4 mm from non-tissue (ignoring the chest wall).
    outside = ~tissue
    outside[:, 0] = False
    dist_skin = ndimage.distance_transform_edt(~outside, sampling=spacing)
    assert dist_skin[allowed].min() >= 4.0 - 1e-6
    dist_lesion = ndimage.distance_transform_edt(~occupied, sampling=spacing)
    assert dist_lesion[allowed].min() > 2.0


def test_placed_lesion_fits_and_never_overlaps():
    tissue = half_disc()
    rng = np.random.default_rng(0)
    lesion = np.ones((9, 7), bool)
    lesion[0, 0] = False
    occupied = np.zeros_like(tissue)
    for _ in range(6):
        allowed = allowed_region(tissue, (0.5, 0.5), occupied)
        pos = place_lesion(allowed, lesion, rng)
        assert pos is not None
        r, c = pos
        full = np.zeros_like(tissue)
        full[r : r + 9, c : c + 7] = lesion
        assert not (full & ~allowed).any()
        assert not (full & occupied).any()
        occupied |= full


def test_no_room_gives_none_and_valid_positions_is_exact():
    allowed = np.zeros((20, 20), bool)
    allowed[5:10, 5:10] = True
    lesion = np.ones((5, 5), bool)
    valid = valid_positions(allowed, lesion)
    assert np.argwhere(valid).tolist() == [[5, 5]]
    assert place_lesion(allowed, np.ones((6, 6), bool), np.random.default_rng(0)) is None


def test_large_images_use_a_conservative_coarse_grid(monkeypatch):
    import medsynth.generation.placement as placement

    tissue = half_disc((1500, 1200), radius=900)
    spacing = (0.1, 0.1)
    occupied = np.zeros_like(tissue)
    occupied[700:760, 300:380] = True
    settings = PlacementSettings(skin_margin_mm=3.0, chest_wall_margin_mm=5.0, gap_mm=2.0)
    assert placement.coarse_factor(tissue.shape) == 3
    coarse = allowed_region(tissue, spacing, occupied, settings)
    monkeypatch.setattr(placement, "COARSE_PX", 10**6)  # the exact full-resolution answer
    exact = allowed_region(tissue, spacing, occupied, settings)
    outside = ~tissue
    outside[:, 0] = False
    dist_skin = ndimage.distance_transform_edt(~outside, sampling=spacing)
    dist_lesion = ndimage.distance_transform_edt(~occupied, sampling=spacing)
    assert dist_skin[coarse].min() >= 3.0 - 1e-6  # margins still hold
    assert dist_lesion[coarse].min() > 2.0
    assert (coarse & exact).sum() / (coarse | exact).sum() > 0.97  # and little room is lost
