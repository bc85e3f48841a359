"""Render one procedural mammography phantom in memory.

A phantom is the sum of a breast (outline, thickness roll-off, skin line, pectoral muscle in MLO),
fibroglandular tissue (1/f^3 texture thresholded to a BI-RADS density) and lesions (masses and
calcification clusters with ground-truth label map), plus a little quantum noise. The result is in
display polarity (dense tissue bright, air black) in [0, 1].

Seed rule: phantom ``index`` of a ``seed`` depends on (seed, index) only, through numpy
``SeedSequence(seed, spawn_key=(kind, index))`` streams. Images 2k and 2k+1 are the left and right
breast of patient k and share her density category and decoy identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medsynth.phantoms.anatomy import make_anatomy
from medsynth.phantoms.lesions import add_lesions
from medsynth.phantoms.phi import burn_text, burned_in_lines, patient_phi
from medsynth.phantoms.texture import DENSITY_FRACTIONS, draw_density, fibroglandular, power_law_noise

DEFAULT_SIZE = (512, 416)
DEFAULT_FOV_MM = 102.4  # image height in mm: 0.2 mm pixels at 512 rows
VIEWS = ("cc", "mlo")

# spawn_key kinds of the random streams (see the module docstring)
_IMAGE_STREAM, _PATIENT_STREAM = 0, 1


@dataclass
class Phantom:
    """One phantom mammogram in memory.

    Attributes:
        image: float32 (rows, cols) in [0, 1], display polarity (dense = bright).
        label: uint8 label map, 0 background, 1 mass, 2 calcification cluster region.
        instances: uint8 map of lesion ids: k at the pixels of ``lesions[k - 1]``, 0 elsewhere.
        breast_mask: bool, breast tissue without the pectoral muscle (where lesions may lie).
        pectoral_mask: bool, the pectoral muscle (empty in CC views).
        spacing: pixel spacing (row, col) in mm.
        laterality: "L" or "R" (left breast: chest wall at column 0).
        view: "CC" or "MLO".
        density: BI-RADS density category "a".."d".
        dense_fraction: share of the breast covered by dense tissue.
        lesions: one dict per lesion: id, type ("mass" | "calcification"), label, shape/margin (mass)
            or calc_type/distribution (calcification), size_mm, center and bbox (pixels,
            bbox = (r0, c0, r1, c1) end-exclusive), center_mm, bbox_mm, area_mm2, contrast,
            subtlety (1-5), pathology, assessment.
        seed: the dataset seed.
        index: the phantom's index in the sequence of that seed.
        phi: the patient's decoy identity (fake PHI for headers and burned-in text).
        burned_in_text: whether the name and date were written into ``image``.
    """

    image: np.ndarray
    label: np.ndarray
    instances: np.ndarray
    breast_mask: np.ndarray
    pectoral_mask: np.ndarray
    spacing: tuple[float, float]
    laterality: str
    view: str
    density: str
    dense_fraction: float
    lesions: list[dict[str, Any]] = field(default_factory=list)
    seed: int = 0
    index: int = 0
    phi: dict[str, Any] = field(default_factory=dict, repr=False)
    burned_in_text: bool = False

    @property
    def patient_index(self) -> int:
        """Index of the patient in the sequence (two images per patient)."""
        return self.index // 2


def check_render_args(seed: int, size: tuple[int, int], view: str, density: str | None) -> None:
    """Raise ValueError (showing the value) for arguments render_phantom cannot use."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    pair = isinstance(size, (tuple, list)) and len(size) == 2
    if not (pair and all(isinstance(s, (int, np.integer)) for s in size)) or min(size) < 16:
        raise ValueError(f"size must be (rows, cols) with both >= 16, got {size!r}")
    if not isinstance(view, str) or view.lower() not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    if density is not None and (not isinstance(density, str) or density.lower() not in DENSITY_FRACTIONS):
        raise ValueError(f"density must be one of {tuple(DENSITY_FRACTIONS)} or None, got {density!r}")


def render_phantom(
    seed: int,
    size: tuple[int, int] = DEFAULT_SIZE,
    view: str = "cc",
    density: str | None = None,
    *,
    index: int = 0,
    spacing: float | None = None,
    fov_mm: float = DEFAULT_FOV_MM,
    lesion_fraction: float = 0.75,
    burned_in_text: bool = False,
) -> Phantom:
    """Render phantom ``index`` of ``seed``.

    Args:
        seed: non-negative dataset seed.
        size: (rows, cols) in pixels.
        view: "cc" or "mlo".
        density: BI-RADS density "a".."d"; None draws the patient's category (10/40/40/10 %).
        index: position in the phantom sequence; even = left breast, odd = right breast of patient
            ``index // 2``.
        spacing: pixel spacing in mm (square pixels); None gives ``fov_mm / rows``, so the anatomy
            has the same size in mm at every resolution.
        fov_mm: image height in mm when ``spacing`` is None.
        lesion_fraction: probability that the image has at least one lesion.
        burned_in_text: write the decoy name, ID and study date into the pixels.

    Returns:
        the :class:`Phantom`.

    Raises:
        ValueError: an argument is out of range (the message shows it).
    """
    # 1. Check inputs
    check_render_args(seed, size, view, density)
    if not 0.0 <= lesion_fraction <= 1.0:
        raise ValueError(f"lesion_fraction must be in [0, 1], got {lesion_fraction!r}")
    rows, cols = int(size[0]), int(size[1])
    pixel = float(spacing) if spacing is not None else fov_mm / rows
    if pixel <= 0:
        raise ValueError(f"spacing must be positive, got {spacing!r}")
    sp = (pixel, pixel)
    view = view.lower()

    # 2. Random streams: one per component, so changing one never shifts another
    image_seq = np.random.SeedSequence(int(seed), spawn_key=(_IMAGE_STREAM, int(index)))
    anat_rng, tex_rng, lesion_rng, noise_rng = (np.random.default_rng(s) for s in image_seq.spawn(4))
    patient_rng = np.random.default_rng(
        np.random.SeedSequence(int(seed), spawn_key=(_PATIENT_STREAM, int(index) // 2))
    )
    patient_density = draw_density(patient_rng)
    density = density.lower() if density is not None else patient_density
    laterality = "L" if index % 2 == 0 else "R"

    # 3. Anatomy, fibroglandular tissue and lesion placement (drawn as a left breast)
    anat = make_anatomy((rows, cols), sp, view, anat_rng)
    tissue, dense_fraction, mottle = fibroglandular(
        anat.radial, anat.skin_distance_mm, anat.breast, sp, density, tex_rng, axis_angle=anat.axis_angle
    )
    inside = anat.breast | anat.pectoral
    signal, opacity, label, instances, lesions = add_lesions(
        anat.breast, anat.room_mm, tissue, sp, lesion_rng, lesion_fraction
    )
    # A mass is dense tissue: it fills the fat it sits in, and adds its own contrast on top (step 5).
    tissue = tissue + (1.0 - tissue) * opacity

    # 4. Intensities: attenuation of fat vs glandular tissue times the thickness roll-off
    fat_level = tex_rng.uniform(0.26, 0.34)
    gland_level = tex_rng.uniform(0.62, 0.72)
    # Fine fibrous structure inside the dense tissue (1/f^3 again, but without the large scales).
    strands = power_law_noise((rows, cols), 3.0, tex_rng, stretch=2.0, angle=anat.axis_angle, f_min=sp[0] / 10.0)
    attenuation = (
        fat_level
        + (gland_level - fat_level) * tissue
        + 0.02 * mottle
        # masses are homogeneous: the fibrous structure fades inside them
        + 0.06 * strands * tissue * (1.0 - 0.7 * opacity)
    )
    if anat.pectoral.any():
        pect_level = tex_rng.uniform(0.62, 0.76)
        muscle = pect_level * (0.88 + 0.2 * np.sqrt(anat.pectoral_depth)) + 0.02 * mottle + 0.03 * strands
        attenuation = np.where(anat.pectoral, muscle, attenuation)
    # Periphery is equalised on processed ("for presentation") images: thin edge stays visible.
    image = inside * (0.35 + 0.65 * anat.thickness) * attenuation
    skin_line = 0.10 * np.exp(-anat.skin_distance_mm / 0.5) * inside
    image = image + skin_line

    # 5. Lesion contrast
    image = image + signal * (0.6 + 0.4 * anat.thickness)

    # 6. Quantum noise, range
    image = image + noise_rng.normal(0.0, 0.006, (rows, cols)) * (0.3 + inside)
    # A smooth shoulder instead of a hard clip, so the brightest masses keep their texture.
    knee = np.float32(0.88)
    image = np.where(image > knee, knee + (1 - knee) * np.tanh((image - knee) / (1 - knee)), image)
    image = np.clip(image, 0.0, 1.0).astype(np.float32)

    # 7. Right breasts are the mirror image (chest wall on the right)
    breast, pectoral = anat.breast, anat.pectoral
    if laterality == "R":
        image, label, instances = image[:, ::-1].copy(), label[:, ::-1].copy(), instances[:, ::-1].copy()
        breast, pectoral = breast[:, ::-1].copy(), pectoral[:, ::-1].copy()
        for les in lesions:
            r, c = les["center"]
            les["center"] = (r, round(cols - c, 2))
            les["center_mm"] = (les["center_mm"][0], round((cols - c) * sp[1], 3))
            r0, c0, r1, c1 = les["bbox"]
            les["bbox"] = (r0, cols - c1, r1, cols - c0)

    phi = patient_phi(int(seed), int(index) // 2)
    if burned_in_text:
        image = burn_text(image, burned_in_lines(phi), laterality)
    return Phantom(
        image=image,
        label=label,
        instances=instances,
        breast_mask=breast,
        pectoral_mask=pectoral,
        spacing=sp,
        laterality=laterality,
        view=view.upper(),
        density=density,
        dense_fraction=dense_fraction,
        lesions=lesions,
        seed=int(seed),
        index=int(index),
        phi=phi,
        burned_in_text=burned_in_text,
    )
