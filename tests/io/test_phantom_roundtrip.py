"""Phantoms written by ``medsynth.phantoms`` read back by ``medsynth.io`` equal to what was rendered.

The expected values come from ``render_phantom`` (in memory) and the writer's documented stored
encoding (``round(image * (2**bits - 1))``), not from the readers."""

from __future__ import annotations

import numpy as np
import pytest

phantoms = pytest.importorskip("medsynth.phantoms")

from medsynth.io.datasets import load_dataset  # noqa: E402

SIZE = (64, 52)
N, SEED = 6, 11


def _index(case) -> int:
    """Phantom index of a case: patient P_k holds indices 2(k-1) (left) and 2(k-1)+1 (right)."""
    patient = int(case.patient_id.split("_")[1])
    side = case.image.laterality or case.metadata["laterality"]  # NIfTI/PNG: from cases.csv
    return 2 * (patient - 1) + (0 if side == "L" else 1)


def _expected(index: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    ph = phantoms.render_phantom(SEED, SIZE, index=index)
    top = 2**bits - 1
    return np.rint(np.clip(ph.image, 0, 1) * top).astype(np.float32), ph.label.astype(np.float32)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    base = tmp_path_factory.mktemp("phantoms")
    return {
        (layout, mono): phantoms.make_phantoms(
            base / f"{layout}-{mono}", n=N, seed=SEED, size=SIZE, layout=layout, monochrome=mono
        )
        for layout, mono in [("cbis-ddsm", 2), ("cbis-ddsm", 1), ("nifti", 2), ("folder", 2)]
    }


@pytest.mark.parametrize(
    "layout,mono,expected_layout,bits",
    [
        ("cbis-ddsm", 2, "cbis-ddsm", 12),
        ("cbis-ddsm", 1, "cbis-ddsm", 12),
        ("nifti", 2, "folder", 16),
        ("folder", 2, "folder", 16),
    ],
)
def test_phantoms_read_back_equal(written, layout, mono, expected_layout, bits):
    ds = load_dataset(written[(layout, mono)])
    assert ds.layout == expected_layout and len(ds) == N
    assert len(ds.patients()) == N // 2
    with_lesions = 0
    for case in ds:
        image, label = _expected(_index(case), bits)
        assert case.image.shape == SIZE
        np.testing.assert_array_equal(case.image.pixels, image)
        assert case.image.bits_stored == bits
        if label.any():
            with_lesions += 1
            np.testing.assert_array_equal(case.mask.pixels, label)
        else:
            assert case.mask is None
    assert ds.cases_with_masks() == with_lesions


def test_monochrome1_and_2_phantoms_read_to_the_same_polarity(written):
    m2 = {c.case_id: c for c in load_dataset(written[("cbis-ddsm", 2)])}
    m1 = {c.case_id: c for c in load_dataset(written[("cbis-ddsm", 1)])}
    assert m1.keys() == m2.keys()
    for case_id, case in m1.items():
        assert case.image.photometric == "MONOCHROME1" and m2[case_id].image.photometric == "MONOCHROME2"
        np.testing.assert_array_equal(case.image.unit_pixels(), m2[case_id].image.unit_pixels())
        # Breast tissue brighter than the air around it, as rendered (not only equal to MONOCHROME2).
        breast = phantoms.render_phantom(SEED, SIZE, index=_index(case)).breast_mask
        px = case.image.pixels
        assert px[breast].mean() > px[~breast].mean() + 0.1 * 4095


def test_phantom_spacing_and_view_survive(written):
    case = load_dataset(written[("cbis-ddsm", 2)])[0]
    ph = phantoms.render_phantom(SEED, SIZE, index=_index(case))
    assert case.image.spacing == pytest.approx(tuple(ph.spacing))
    assert case.image.view == "CC" and case.image.laterality in ("L", "R")
