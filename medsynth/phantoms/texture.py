"""Fibroglandular texture of the phantoms: power-law (1/f^beta) noise and BI-RADS density.

Power-law noise with beta close to 3 is the standard statistical model of mammographic background
texture (Burgess et al.; see docs/REFERENCES). The dense (fibroglandular) tissue is a soft
threshold of such a field, shaped by an envelope that keeps it behind the nipple and away from the
subcutaneous fat; the threshold is set by a quantile so that the dense fraction of the breast falls
in the range of the requested BI-RADS density category (a: almost entirely fat ... d: extremely
dense).
"""

from __future__ import annotations

import numpy as np
from scipy import fft
from scipy.special import expit

# Dense-tissue fraction of the breast for each BI-RADS density category (4th-edition quartiles,
# pulled a little inside the bounds so neighbouring categories never overlap).
DENSITY_FRACTIONS: dict[str, tuple[float, float]] = {
    "a": (0.04, 0.20),
    "b": (0.28, 0.46),
    "c": (0.54, 0.72),
    "d": (0.80, 0.92),
}
# Population frequencies of the categories (roughly 10/40/40/10 % in screening populations).
DENSITY_PRIOR: dict[str, float] = {"a": 0.10, "b": 0.40, "c": 0.40, "d": 0.10}


def power_law_noise(
    shape: tuple[int, int],
    beta: float,
    rng: np.random.Generator,
    *,
    stretch: float = 1.0,
    angle: float = 0.0,
    f_min: float = 0.0,
    pad: float = 0.1,
) -> np.ndarray:
    """Gaussian noise with power spectrum ``P(f) ~ 1 / f**beta``, zero mean and unit std.

    Args:
        shape: (rows, cols) of the output.
        beta: spectral exponent (3 for mammographic texture).
        rng: the random generator.
        stretch: >1 elongates structures along ``angle`` (ducts run from the nipple to the chest wall).
        angle: direction of elongation in radians (0 = along the columns).
        f_min: frequency (cycles/pixel) below which the spectrum is flat, so that a few huge blobs
            do not dominate the field.
        pad: fraction of the size added on each axis before the FFT and cropped after, so that the
            periodic wrap-around of FFT noise does not show at the borders.

    Returns:
        float32 array of ``shape``.
    """
    h, w = shape
    # FFT sizes with small prime factors only: several times faster than arbitrary sizes.
    ph = fft.next_fast_len(int(h * (1 + pad)) + 1, real=True)
    pw = fft.next_fast_len(int(w * (1 + pad)) + 1, real=True)
    fy = np.fft.fftfreq(ph).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(pw).astype(np.float32)[None, :]
    # Rotate the frequency plane, then shrink the frequencies along the elongation direction.
    ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    fu = fx * ca + fy * sa
    fv = -fx * sa + fy * ca
    f2 = (fu * np.float32(stretch)) ** 2 + fv**2 + np.float32(f_min**2)
    f2[0, 0] = np.inf  # no DC component: zero mean
    amplitude = f2 ** np.float32(-beta / 4.0)  # amplitude = sqrt(power) = f^(-beta/2)
    # White noise drawn directly in the frequency domain (complex Gaussian): the same statistics
    # as the FFT of white pixels, without the forward transform.
    spectrum = rng.standard_normal((2, ph, pw // 2 + 1), dtype=np.float32)
    spectrum = (spectrum[0] + 1j * spectrum[1]) * amplitude
    field = fft.irfft2(spectrum, s=(ph, pw))[:h, :w]
    field -= field.mean()
    std = field.std()
    return (field / std if std > 0 else field).astype(np.float32)


def draw_density(rng: np.random.Generator) -> str:
    """A BI-RADS density category drawn with population frequencies."""
    cats = list(DENSITY_PRIOR)
    return str(rng.choice(cats, p=[DENSITY_PRIOR[c] for c in cats]))


def fibroglandular(
    radial: np.ndarray,
    skin_distance_mm: np.ndarray,
    breast: np.ndarray,
    spacing: tuple[float, float],
    density: str,
    rng: np.random.Generator,
    *,
    beta: float = 3.0,
    axis_angle: float = 0.0,
) -> tuple[np.ndarray, float, np.ndarray]:
    """Fibroglandular tissue fraction map in [0, 1] for one breast.

    Args:
        radial: normalised distance from the chest wall (0) to the skin (1), per pixel.
        skin_distance_mm: distance to the skin line in mm (0 outside the breast).
        breast: breast tissue mask (the dense fraction is measured inside it).
        spacing: pixel spacing (row, col) in mm.
        density: BI-RADS density category, one of "a", "b", "c", "d".
        rng: the random generator.
        beta: spectral exponent of the texture.
        axis_angle: direction chest wall → nipple in radians (texture is elongated along it).

    Returns:
        (tissue map float32 in [0, 1], dense fraction = share of breast pixels above 0.5, the
        fine-scale texture field used, zero mean and unit std, for faint structure elsewhere).
    """
    lo, hi = DENSITY_FRACTIONS[density]
    target = rng.uniform(lo, hi)
    shape = radial.shape
    # Scale-free texture in physical units: the cut-off frequency corresponds to ~25 mm structures.
    f_min = spacing[0] / 25.0
    coarse = power_law_noise(shape, beta, rng, stretch=1.6, angle=axis_angle, f_min=f_min)
    fine = power_law_noise(shape, beta, rng, stretch=2.2, angle=axis_angle)
    centre = rng.uniform(0.35, 0.5)
    width = rng.uniform(0.3, 0.45)
    envelope = -(((radial - centre) / width) ** 2)
    # Subcutaneous fat: a layer of a few mm under the skin holds no glandular tissue.
    fat_mm = rng.uniform(2.0, 5.0)
    subcutaneous = np.exp(-skin_distance_mm / fat_mm)
    field = 1.1 * envelope + coarse + 0.35 * fine - 2.5 * subcutaneous
    inside = field[breast]
    if inside.size == 0:
        return np.zeros(shape, np.float32), 0.0, fine
    threshold = np.quantile(inside, 1.0 - target)
    # A soft threshold: dense tissue fades into fat over a range of the field, as in real images.
    softness = 0.45 * float(inside.std())
    tissue = expit((field - threshold) / softness)
    tissue = np.where(breast, tissue, 0.0).astype(np.float32)
    return tissue, float((tissue[breast] > 0.5).mean()), fine
