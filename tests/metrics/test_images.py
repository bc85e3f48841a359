"""Lesion ROIs of an image set are the lesions training cuts (models.patches.lesion_components)."""

from __future__ import annotations

import numpy as np

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
