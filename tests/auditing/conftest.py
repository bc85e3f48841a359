"""Phantom datasets for the audit tests: train, holdout (other patients), novel synthetic sets and a
synthetic set with transformed copies of training images planted in it. Small (128 x 104) images."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.transform import resize

SIZE = (128, 104)
N_TRAIN = 12

# Each planted copy: training case index -> the transform applied to image and mask.
PLANTED = {
    0: "exact",
    2: "hflip",
    4: "shift3",
    6: "crop_resize",
    8: "intensity",
    10: "noise",
}


def transform(name: str, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
    """A copy of (image, mask) as someone might disguise it."""
    if name == "exact":
        return image, mask
    if name == "hflip":
        return image[:, ::-1], mask[:, ::-1]
    if name == "shift3":
        # 3 px down and 3 px left; the uncovered border repeats the edge.
        pad = np.pad(image, 3, mode="edge")
        pm = np.pad(mask, 3)
        return pad[0:-6, 6:], pm[0:-6, 6:]
    if name == "crop_resize":
        h, w = image.shape
        c = 4  # ~3-4% off each side, resized back
        im = resize(image[c:h - c, c:w - c], (h, w), order=1, preserve_range=True)
        mk = resize(mask[c:h - c, c:w - c].astype(float), (h, w), order=0, preserve_range=True)
        return im, mk
    if name == "intensity":
        return 0.25 + 0.6 * image, mask
    if name == "noise":
        return np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1), mask
    raise ValueError(name)


def write_png16(path: Path, unit: np.ndarray, spacing_mm: tuple[float, float]) -> None:
    """A 16-bit PNG that states its spacing (as DPI): a PNG without one is refused (medsynth.io.spacing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dpi = (25.4 / float(spacing_mm[1]), 25.4 / float(spacing_mm[0]))  # PIL's dpi is (x, y)
    Image.fromarray(np.clip(np.round(unit * 65535), 0, 65535).astype(np.uint16)).save(path, dpi=dpi)


@pytest.fixture(scope="session")
def phantom_sets(tmp_path_factory) -> dict[str, Path]:
    from medsynth.io.datasets import load_dataset
    from medsynth.phantoms import make_phantoms

    root = tmp_path_factory.mktemp("audit")
    sets = {
        "train": make_phantoms(root / "train", N_TRAIN, seed=11, size=SIZE),
        "holdout": make_phantoms(root / "holdout", N_TRAIN, seed=11, size=SIZE, patient_offset=50),
        "synthetic": make_phantoms(root / "synthetic", N_TRAIN, seed=12, size=SIZE, patient_offset=100,
                                   layout="folder"),
        # Same patient IDs as train (P_00001...) but other pixels: the overlap must be found by ID.
        "holdout_shared": make_phantoms(root / "holdout_shared", 4, seed=99, size=SIZE),
    }
    # The novel set with transformed copies of training images planted in it.
    planted = root / "planted"
    shutil.copytree(sets["synthetic"], planted)
    train = load_dataset(sets["train"])
    rng = np.random.default_rng(0)
    with open(planted / "cases.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
        fields = list(rows[0].keys())
    planted_names = {}
    for i, how in PLANTED.items():
        case = train[i]
        image = case.image.unit_pixels()
        mask = case.mask.pixels if case.mask is not None else np.zeros(image.shape)
        im, mk = transform(how, image, mask, rng)
        name = f"S_{900 + i:05d}_copy"
        write_png16(planted / "images" / f"{name}.png", np.asarray(im), case.image.spacing)
        if np.asarray(mk).any():
            mk_path = planted / "masks" / f"{name}.png"
            Image.fromarray(np.asarray(mk).astype(np.uint8)).save(mk_path)
        rows.append({**{k: "" for k in fields}, "case_id": name, "patient_id": f"S_{900 + i:05d}"})
        planted_names[f"images/{name}.png"] = (case.image_relpath, how)
    with open(planted / "cases.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    sets["planted"] = planted
    sets["planted_names"] = planted_names  # type: ignore[assignment]
    return sets


# Fast settings for the tests: a training-free invariant embedding (the domain encoder has its own test).
FAST = {"memorization": {"embedding": "invariant"}}
