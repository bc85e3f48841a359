"""Breast geometry of a phantom: outline (CC or MLO), pectoral muscle, skin line, thickness roll-off.

Everything is drawn for a left breast (chest wall at column 0, nipple pointing right); the renderer
flips the finished image for a right breast, as mammograms are hung back to back.
The outline is a tilted super-ellipse centred on the chest wall with a few smooth harmonic bumps;
MLO views tilt it downwards, let it run out of the top edge into the axilla and put the pectoral
muscle in the upper chest-wall corner. Compressed breast thickness is constant in the middle and
falls off over the last ~1 cm to the skin, which is why a mammogram darkens towards its edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass
class Anatomy:
    """Geometry of one breast (left orientation).

    Attributes:
        breast: breast tissue mask, pectoral muscle excluded (where lesions may be).
        pectoral: pectoral muscle mask (empty in CC).
        pectoral_depth: 0 at the muscle's front edge rising to 1 in the image corner (0 outside).
        skin_distance_mm: distance to the skin line in mm, 0 outside.
        room_mm: distance in mm to the nearest place a lesion must not reach: the skin line, the
            pectoral muscle or the image border.
        thickness: relative compressed thickness in [0, 1] (1 in the middle of the breast).
        radial: normalised distance from the chest wall (0) to the skin line (1).
        axis_angle: direction chest wall → nipple in radians (row axis downwards).
    """

    breast: np.ndarray
    pectoral: np.ndarray
    pectoral_depth: np.ndarray
    skin_distance_mm: np.ndarray
    room_mm: np.ndarray
    thickness: np.ndarray
    radial: np.ndarray
    axis_angle: float


def make_anatomy(
    shape: tuple[int, int], spacing: tuple[float, float], view: str, rng: np.random.Generator
) -> Anatomy:
    """Draw the breast geometry.

    All random draws are fractions of the image size, so the same generator state gives the same
    anatomy (in mm) at any resolution.

    Args:
        shape: (rows, cols).
        spacing: pixel spacing (row, col) in mm.
        view: "cc" or "mlo".
        rng: the random generator.
    """
    h, w = shape
    if view == "cc":
        origin_row = h * rng.uniform(0.46, 0.54)
        depth = w * rng.uniform(0.70, 0.88)
        half_height = h * rng.uniform(0.31, 0.41)
        tilt = np.deg2rad(rng.uniform(-5.0, 5.0))
    else:
        origin_row = h * rng.uniform(0.34, 0.42)
        depth = w * rng.uniform(0.68, 0.85)
        half_height = h * rng.uniform(0.50, 0.58)
        tilt = np.deg2rad(rng.uniform(14.0, 24.0))
    # Python floats keep the image arrays in float32 (numpy scalars would promote to float64).
    origin_row, depth, half_height, tilt = float(origin_row), float(depth), float(half_height), float(tilt)
    harmonics = [(k, rng.uniform(0.0, 0.025), rng.uniform(0, 2 * np.pi)) for k in range(2, 7)]  # k = 2..6 in order

    rows = (np.arange(h, dtype=np.float32) + 0.5) * 1.0
    cols = (np.arange(w, dtype=np.float32) + 0.5) * 1.0
    dy = rows[:, None] - origin_row
    dx = np.broadcast_to(cols[None, :], (h, w))
    ct, st = np.cos(tilt), np.sin(tilt)
    u = dx * ct + dy * st  # along the chest wall → nipple axis
    v = -dx * st + dy * ct
    rho = np.sqrt((u / depth) ** 2 + (v / half_height) ** 2)
    # cos(k*theta + phase) = Re(e^{i phase} z^k) with z = e^{i theta}: powers of z are much
    # cheaper than arctan2 and one cosine per harmonic.
    z = (u / depth + 1j * (v / half_height)).astype(np.complex64)
    z /= np.maximum(np.abs(z), np.float32(1e-6))
    bound = np.ones_like(rho)
    zk = z
    for k, amp, phase in harmonics:
        zk = zk * z  # z^k, k = 2, 3, ...
        bound += np.float32(amp) * (zk * np.complex64(np.exp(1j * phase))).real
    radial = (rho / bound).astype(np.float32)
    breast_all = radial < 1.0

    pectoral = np.zeros((h, w), bool)
    pectoral_depth = np.zeros((h, w), np.float32)
    if view == "mlo":
        # Triangle in the upper chest-wall corner with a slightly convex front edge.
        top_cols = np.flatnonzero(breast_all[0])
        reach = (top_cols.max() + 1) if top_cols.size else w * 0.3
        base = min(w * rng.uniform(0.22, 0.38), 0.8 * reach)
        height = h * rng.uniform(0.38, 0.58)
        bulge = rng.uniform(0.0, 0.5)
        a = np.broadcast_to(cols[None, :] / base, (h, w))
        b = rows[:, None] / height
        front = a + b - bulge * a * b  # < 1 inside the muscle
        pectoral = (front < 1.0) & breast_all
        # The muscle is thickest (brightest) in the corner and thins towards its front edge.
        pectoral_depth = np.where(pectoral, np.clip(1.0 - front, 0.0, 1.0), 0.0).astype(np.float32)
    breast = breast_all & ~pectoral

    # Distance to the skin: image edges are not skin (the breast continues past the chest wall).
    skin_px = ndimage.distance_transform_edt(breast_all, sampling=spacing)
    skin_distance_mm = np.where(breast_all, skin_px, 0.0).astype(np.float32)
    # Room for lesions: the skin distance, cut by the image border and the pectoral muscle.
    border_rows = np.minimum(rows, h - rows)[:, None] * spacing[0]
    border_cols = np.minimum(cols, w - cols)[None, :] * spacing[1]
    room_mm = np.minimum(skin_distance_mm, np.minimum(border_rows, border_cols))
    if pectoral.any():
        room_mm = np.minimum(room_mm, ndimage.distance_transform_edt(~pectoral, sampling=spacing))
    room_mm = np.where(breast, room_mm, 0.0).astype(np.float32)
    rolloff_mm = rng.uniform(7.0, 12.0)
    t = np.clip(skin_distance_mm / rolloff_mm, 0.0, 1.0)
    thickness = np.sqrt(1.0 - (1.0 - t) ** 2).astype(np.float32) * breast_all
    return Anatomy(
        breast=breast,
        pectoral=pectoral,
        pectoral_depth=pectoral_depth,
        skin_distance_mm=skin_distance_mm,
        room_mm=room_mm,
        thickness=thickness.astype(np.float32),
        radial=radial,
        axis_angle=float(tilt),
    )
