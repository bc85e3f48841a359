"""Mask sources: BI-RADS shapes in mm and real masks varied by rotation, scaling and elastic warps."""

from __future__ import annotations

import numpy as np
import pytest

from medsynth.config import load_config
from medsynth.errors import ConfigError, InvalidDatasetError
from medsynth.generation.masks import (
    RealMaskSource,
    ShapeMaskSource,
    elastic_transform_mask,
    make_mask_source,
    mask_settings,
    parse_size_mm,
)
from medsynth.io.writers import LABELS


@pytest.mark.parametrize("shape", ["round", "oval", "lobulated", "irregular"])
def test_shape_masses_keep_their_size_in_mm_at_any_spacing(shape):
    src = ShapeMaskSource(shapes=[shape], margins=["circumscribed"], size_mm=(10, 10))
    areas = []
    for spacing in ((0.1, 0.1), (0.3, 0.3)):
        lesion = src.sample(np.random.default_rng(1), spacing)
        assert lesion.label == LABELS["mass"] and lesion.info["shape"] == shape
        areas.append(lesion.mask.sum() * spacing[0] * spacing[1])
        # A 10 mm mass spans roughly 10 mm (oval/irregular outlines deviate, never by 2x).
        assert 4.0 < lesion.extent_mm(spacing) < 16.0
    # Same seed, same outline in mm: the areas agree within the coarser grid's resolution.
    assert areas[0] == pytest.approx(areas[1], rel=0.15)


def test_round_mass_area_matches_a_disc():
    src = ShapeMaskSource(shapes=["round"], margins=["circumscribed"], size_mm=(12, 12))
    lesion = src.sample(np.random.default_rng(0), (0.1, 0.1))
    area = lesion.mask.sum() * 0.01
    # round masses are circles squashed by at most 10%: area between 0.9 and 1 of pi r^2.
    assert 0.85 * np.pi * 36 < area < 1.03 * np.pi * 36


def test_spiculated_margin_reaches_farther_than_circumscribed():
    def extent(margin):
        src = ShapeMaskSource(shapes=["round"], margins=[margin], size_mm=(10, 10))
        return np.mean([src.sample(np.random.default_rng(s), (0.1, 0.1)).extent_mm((0.1, 0.1)) for s in range(4)])

    assert extent("spiculated") > extent("circumscribed") + 1.0


def test_classes_and_calcification_label():
    src = ShapeMaskSource(size_mm="4:8", classes="calcification")
    lesion = src.sample(np.random.default_rng(0), (0.2, 0.2))
    assert lesion.label == LABELS["calcification"] and lesion.info["class"] == "calcification"
    mixed = ShapeMaskSource(size_mm="4:8", classes=["mass", "calcification"])
    labels = {mixed.sample(np.random.default_rng(s), (0.2, 0.2)).label for s in range(12)}
    assert labels == {1, 2}


def test_max_extent_shrinks_a_lesion():
    src = ShapeMaskSource(shapes=["round"], margins=["circumscribed"], size_mm=(20, 20))
    lesion = src.sample(np.random.default_rng(0), (0.2, 0.2), max_extent_mm=8.0)
    assert lesion.extent_mm((0.2, 0.2)) <= 8.0
    assert "shrunk_to_fit" in lesion.info


def test_bad_shape_options_are_refused():
    with pytest.raises(ConfigError, match="shape"):
        ShapeMaskSource(shapes=["square"])
    with pytest.raises(ConfigError, match="margin"):
        ShapeMaskSource(margins="fuzzy")
    with pytest.raises(ConfigError, match="MIN:MAX"):
        parse_size_mm("15:5")
    with pytest.raises(ConfigError, match="mask source"):
        make_mask_source("circles")
    assert parse_size_mm("3:9") == (3.0, 9.0)
    # One spelling is written ("ill_defined", CBIS-DDSM's); the hyphenated one is still read.
    assert ShapeMaskSource(margins="ill_defined").margins == ("ill_defined",)
    assert ShapeMaskSource(margins="ILL-DEFINED, spiculated").margins == ("ill_defined", "spiculated")


def test_rigid_transform_matches_numpy_rotation():
    """90 degree rotation, scale 1, same spacing, no elastic part == np.rot90 (independent reference)."""
    rng = np.random.default_rng(0)
    mask = np.zeros((15, 25), bool)
    mask[3:12, 4:21] = True
    mask[3:6, 4:8] = False  # asymmetric, so a wrong direction would show
    out = elastic_transform_mask(mask, (1.0, 1.0), (1.0, 1.0), rng, 1.0, 90.0, 0.0, 1.0)
    rows, cols = np.nonzero(out)
    got = out[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    expected = [np.rot90(mask[3:12, 4:21], k) for k in (1, 3)]
    assert any(got.shape == e.shape and np.array_equal(got, e) for e in expected)


def test_scaling_changes_area_by_scale_squared():
    mask = np.zeros((40, 40), bool)
    yy, xx = np.mgrid[:40, :40]
    mask[(yy - 20) ** 2 + (xx - 20) ** 2 <= 15**2] = True
    rng = np.random.default_rng(0)
    out = elastic_transform_mask(mask, (0.5, 0.5), (0.25, 0.25), rng, 1.5, 0.0, 0.0, 1.0)
    area_in = mask.sum() * 0.25
    area_out = out.sum() * 0.0625
    assert area_out == pytest.approx(area_in * 1.5**2, rel=0.05)


def test_elastic_deformation_moves_the_outline_but_keeps_its_size():
    mask = np.zeros((60, 60), bool)
    mask[15:45, 15:45] = True
    rigid = elastic_transform_mask(mask, (0.2, 0.2), (0.2, 0.2), np.random.default_rng(0), 1.0, 0.0, 0.0, 1.0)
    warped = elastic_transform_mask(mask, (0.2, 0.2), (0.2, 0.2), np.random.default_rng(0), 1.0, 0.0, 1.0, 2.0)
    from medsynth.generation.masks import crop_to_content

    assert crop_to_content(rigid).all()  # the square stays a full rectangle without warping
    assert crop_to_content(warped).mean() < 0.97  # warped: its straight edges bend
    assert warped.sum() == pytest.approx(rigid.sum(), rel=0.25)


def test_real_masks_come_from_the_dataset_and_vary(phantom_root):
    from medsynth.io.datasets import load_dataset

    cases = load_dataset(phantom_root)
    src = RealMaskSource(phantom_root)
    assert len(src.lesions) >= 1
    total_source = sum(int((np.asarray(c.mask.pixels) > 0).any()) for c in cases if c.mask is not None)
    assert total_source >= 1
    draws = [src.sample(np.random.default_rng(s), (0.4, 0.4)) for s in range(4)]
    for d in draws:
        assert d.mask.any() and d.label in (1, 2)
        assert "source_lesion_sha256" in d.info
        assert not any(isinstance(v, str) and str(phantom_root) in v for v in d.info.values())
    assert len({d.mask.tobytes() for d in draws}) > 1


def test_real_source_without_masks_is_refused(healthy_root):
    with pytest.raises(InvalidDatasetError, match="no lesion masks"):
        make_mask_source(f"real:{healthy_root}")


def test_real_mask_lesions_follow_the_training_lesion_rule():
    from medsynth.generation.masks import extract_lesions

    class _Mask:
        def __init__(self, pixels):
            self.pixels, self.spacing = pixels, (0.2, 0.2)

        def release(self):
            pass

    class _Case:
        def __init__(self, pixels):
            self.mask = _Mask(pixels)

    label = np.zeros((120, 120), np.uint8)
    label[10:30, 10:30] = LABELS["mass"]
    label[10:30, 32:36] = LABELS["mass"]  # a fragment 0.4 mm from the mass: part of it
    label[60:62, 60:62] = LABELS["mass"]  # a 0.16 mm² speck: no lesion
    label[80:95, 20:35] = LABELS["calcification"]
    label[80:95, 90:105] = LABELS["calcification"]  # far apart, but one calcification finding per case
    found = extract_lesions([_Case(label)])
    assert sorted((les.label, les.mask.shape, int(les.mask.sum())) for les in found) == [
        (LABELS["mass"], (20, 26), 480), (LABELS["calcification"], (15, 85), 450)]


def test_mask_settings_keep_the_chosen_sources_options_and_lay_given_ones_over_them():
    section = load_config(None, kind="generate")["masks"]
    source, options = mask_settings(section)
    assert source == "shapes"
    assert options == {k: section[k] for k in ("shapes", "margins", "classes", "size_mm")}
    source, options = mask_settings(section, shapes=["oval"], margins=None, size_mm="4:7")
    assert options["shapes"] == ["oval"] and options["size_mm"] == "4:7"
    assert options["margins"] == section["margins"]  # None: not given, the file's value stays
    source, options = mask_settings(section, source="real:data/x", rotation_deg=30.0)
    assert source == "real:data/x"
    real_keys = ("scale", "rotation_deg", "elastic_alpha_mm", "elastic_sigma_mm")
    assert options == {**{k: section[k] for k in real_keys}, "rotation_deg": 30.0}
    # A user file may set real: as its source while the shape options keep their defaults.
    assert mask_settings({**section, "source": "real:data/x"})[0] == "real:data/x"


def test_options_of_the_other_source_are_refused_by_the_api_and_the_merge(healthy_root):
    section = load_config(None, kind="generate")["masks"]
    with pytest.raises(ConfigError, match="shapes, margins apply to masks shapes, not 'real:data/x'"):
        mask_settings(section, source="real:data/x", shapes=["oval"], margins=["spiculated"])
    with pytest.raises(ConfigError, match="scale apply to masks real:DATA"):
        mask_settings(section, scale=[1.0, 2.0])
    with pytest.raises(ConfigError, match="mask source"):
        mask_settings(section, source="circles")
    with pytest.raises(ConfigError, match="unknown mask option"):
        mask_settings(section, colour="red")
    # make_mask_source applies the same rule, before reading the dataset.
    with pytest.raises(ConfigError, match="size_mm apply to masks shapes"):
        make_mask_source(f"real:{healthy_root}", size_mm="4:8")
    with pytest.raises(ConfigError, match="rotation_deg apply to masks real:DATA"):
        make_mask_source("shapes", rotation_deg=10.0)
    assert make_mask_source("shapes", rotation_deg=None, size_mm="4:8").size_mm == (4.0, 8.0)
