"""Lesion ROIs of an image set are the lesions training cuts (models.patches.lesion_components)."""

from __future__ import annotations

import numpy as np
import pytest

from medsynth.metrics.images import lesion_rois


def test_lesion_rois_are_training_lesions():
    rng = np.random.default_rng(0)
    image = rng.uniform(0.2, 0.8, (200, 160)).astype(np.float32)
    label = np.zeros(image.shape, np.uint8)
    label[40:60, 40:60] = 1
    label[40:60, 62:70] = 1  # 0.4 mm from the first part: the same lesion
    label[150:152, 120:122] = 1  # a 0.16 mm² speck: no lesion
    label[140:170, 20:50] = 2
    rois = lesion_rois(image, label, (0.2, 0.2), roi_mm=32.0, roi_px=64)
    assert len(rois) == 2
    # The first ROI holds both parts: 560 px of 0.04 mm² = 22.4 mm², at 0.5 mm/px in the patch.
    assert abs(rois[0][1].sum() * 0.25 - 22.4) < 2.5


def test_fixed_grid_rois_keep_one_mm_grid_for_large_lesions():
    from medsynth.metrics.images import lesion_rois

    image = np.linspace(0, 1, 400 * 400, dtype=np.float32).reshape(400, 400)
    label = np.zeros(image.shape, np.uint8)
    label[50:250, 50:250] = 1  # 40 mm at 0.2 mm/px: larger than a 32 mm ROI
    (fit_patch, fit_mask), = lesion_rois(image, label, (0.2, 0.2), roi_mm=32.0, roi_px=64, fit=True)
    (grid_patch, grid_mask), = lesion_rois(image, label, (0.2, 0.2), roi_mm=32.0, roi_px=64, fit=False)
    assert fit_mask.sum() < 64 * 64  # the fitted crop zooms out to hold the whole lesion
    assert grid_mask.all()  # on the 0.5 mm grid the ROI shows the lesion's central 32 mm
    # The grid ROI's rows step by 0.5 mm = 2.5 source rows of the ramp (400 px per unit -> 1/400 a row).
    step = np.diff(grid_patch[:, 32]).mean()
    assert step == pytest.approx(2.5 * 400 / (400 * 400 - 1), rel=0.02)


def test_groups_and_margins_come_from_the_patient_or_the_manifest(tmp_path):
    import json

    from medsynth.io.layouts.base import Dataset
    from medsynth.io.scan import Case, Scan
    from medsynth.metrics.images import load_image_set

    def case(cid, label, patient=None, metadata=None):
        image = np.full(label.shape, 0.4, np.float32)
        scan = Scan(tmp_path / f"{cid}.png", label.shape, (0.5, 0.5), lambda: image * 255, bits_stored=8)
        mask = Scan(tmp_path / f"{cid}_mask.png", label.shape, (0.5, 0.5), lambda: label.astype(np.float32))
        return Case(cid, scan, mask, patient, metadata=metadata or {})

    two = np.zeros((120, 120), np.uint8)
    two[10:30, 10:30] = 1
    two[80:100, 80:100] = 1
    (tmp_path / "manifest.json").write_text(json.dumps({"cases": [
        {"case_id": "case_0000", "background": {"id": "abc"},
         "lesions": [{"label": 1, "bbox": [10, 10, 30, 30], "outline": {"margin": "spiculated"}},
                     {"label": 1, "bbox": [80, 80, 100, 100], "outline": {"margin": "circumscribed"}}]}]}))
    synthetic = load_image_set(Dataset(tmp_path, "nnunet", [case("case_0000", two)]), roi_mm=16, roi_px=32)
    assert synthetic.groups == ["background:abc"] and synthetic.roi_groups == ["background:abc"] * 2
    assert synthetic.roi_margins == ["spiculated", "circumscribed"]  # matched by box
    assert synthetic.roi_labels.tolist() == [1, 1]
    # A real case: its patient; CBIS-DDSM's "mass margins" column, one described mass -> its margin.
    one = np.zeros((120, 120), np.uint8)
    one[40:60, 40:60] = 1
    real = load_image_set([case("r1", one, patient="P_1", metadata={"lesions": [
        {"label": 1, "mass_margins": "ILL_DEFINED"}]}), case("r2", one)], roi_mm=16, roi_px=32)
    assert real.groups == ["patient:P_1", "case:r2"]
    assert real.roi_margins == ["ill_defined", None]
