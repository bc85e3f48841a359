"""Lesions of the phantoms: BI-RADS-like masses and calcification clusters, with ground truth.

Masses take a BI-RADS shape (round, oval, lobulated, irregular) and margin (circumscribed,
ill_defined, spiculated); sizes are drawn in mm and turned into pixels with the pixel spacing, so
the same seed gives the same lesion in mm at any resolution. Calcifications are clusters of tiny
bright specks (punctate, amorphous, pleomorphic, fine linear branching) spread in a BI-RADS
distribution (clustered, linear, segmental, regional); their ground truth, like CBIS-DDSM's ROI
outlines, is the region around the cluster, not each speck.

Every lesion sits inside the breast tissue (pectoral muscle excluded), at least a couple of mm away
from the skin line and the image border, and lesions do not overlap.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage.morphology import convex_hull_image

from medsynth.io.labels import LABELS

MASS_LABEL = LABELS["mass"]
CALC_LABEL = LABELS["calcification"]

# The BI-RADS vocabulary of every lesion description medsynth writes (phantom metadata, CBIS-DDSM
# CSVs, generation manifests). One spelling each: "ill_defined", as CBIS-DDSM writes it (there a
# "-" joins two margins, e.g. "CIRCUMSCRIBED-ILL_DEFINED"); user input may say "ill-defined".
MASS_SHAPES = ("round", "oval", "lobulated", "irregular")
MASS_MARGINS = ("circumscribed", "ill_defined", "spiculated")
CALC_TYPES = ("punctate", "amorphous", "pleomorphic", "fine_linear_branching")
CALC_DISTRIBUTIONS = ("clustered", "linear", "segmental", "regional")

# P(margin | shape): irregular masses are mostly spiculated or ill-defined, round/oval mostly sharp.
_MARGIN_GIVEN_SHAPE = {
    "round": (0.6, 0.3, 0.1),
    "oval": (0.6, 0.3, 0.1),
    "lobulated": (0.45, 0.4, 0.15),
    "irregular": (0.1, 0.4, 0.5),
}
_SKIN_MARGIN_MM = 2.5  # minimum gap between a lesion's outer extent and the skin / image edge


def _pick(rng: np.random.Generator, options: tuple[str, ...], p: tuple[float, ...] | None = None) -> str:
    return str(options[rng.choice(len(options), p=p)])


def _diagnosis(rng: np.random.Generator, p_malignant: float) -> dict[str, Any]:
    malignant = rng.random() < p_malignant
    if malignant:
        return {"pathology": "MALIGNANT", "assessment": int(rng.choice([4, 5], p=[0.4, 0.6]))}
    pathology = "BENIGN" if rng.random() < 0.75 else "BENIGN_WITHOUT_CALLBACK"
    return {"pathology": pathology, "assessment": int(rng.choice([2, 3, 4], p=[0.3, 0.4, 0.3]))}


def _mass_radius_fn(shape: str, radius_mm: float, rng: np.random.Generator):
    """Outline of a mass as r(theta) in mm (vectorised over theta)."""
    if shape == "round":
        squash = rng.uniform(0.9, 1.0)
        phi = rng.uniform(0, np.pi)
        return lambda th: radius_mm * squash / np.sqrt(
            (squash * np.cos(th - phi)) ** 2 + np.sin(th - phi) ** 2
        )
    if shape == "oval":
        ratio = rng.uniform(0.55, 0.8)
        phi = rng.uniform(0, np.pi)
        return lambda th: radius_mm * ratio / np.sqrt(
            (ratio * np.cos(th - phi)) ** 2 + np.sin(th - phi) ** 2
        )
    if shape == "lobulated":
        lobes = int(rng.integers(3, 6))
        amp = rng.uniform(0.14, 0.24)
        phase = rng.uniform(0, 2 * np.pi)
        ratio = rng.uniform(0.75, 1.0)
        phi = rng.uniform(0, np.pi)

        def lobulated(th: np.ndarray) -> np.ndarray:
            base = ratio / np.sqrt((ratio * np.cos(th - phi)) ** 2 + np.sin(th - phi) ** 2)
            scallops = np.abs(np.cos(lobes * th / 2.0 + phase)) ** 0.6
            return radius_mm * base * (1.0 - amp + amp * scallops) / (1.0 - amp / 3.0)

        return lobulated
    # irregular: many random harmonics give an angular, uneven outline
    ks = np.arange(2, 11)
    amps = rng.normal(0.0, 0.16, ks.size) / ks**0.75
    phases = rng.uniform(0, 2 * np.pi, ks.size)

    def irregular(th: np.ndarray) -> np.ndarray:
        wobble = sum(a * np.cos(k * th + p) for k, a, p in zip(ks, amps, phases))
        return radius_mm * np.clip(1.0 + wobble, 0.45, 1.6)

    return irregular


def _patch_grid(center: tuple[float, float], extent_mm: float, spacing: tuple[float, float], shape):
    """Pixel window around ``center`` covering ``extent_mm``; offsets from the centre in mm."""
    cy, cx = center
    hy, hx = int(np.ceil(extent_mm / spacing[0])) + 2, int(np.ceil(extent_mm / spacing[1])) + 2
    r0, r1 = max(int(cy) - hy, 0), min(int(cy) + hy + 1, shape[0])
    c0, c1 = max(int(cx) - hx, 0), min(int(cx) + hx + 1, shape[1])
    dy = ((np.arange(r0, r1) + 0.5) - cy)[:, None] * spacing[0]
    dx = ((np.arange(c0, c1) + 0.5) - cx)[None, :] * spacing[1]
    return (slice(r0, r1), slice(c0, c1)), dy, dx


def draw_mass_params(rng: np.random.Generator) -> dict[str, Any]:
    """Random BI-RADS description of a mass (shape, margin, diameter in mm, contrast, diagnosis)."""
    shape = _pick(rng, MASS_SHAPES, (0.2, 0.3, 0.2, 0.3))
    margin = _pick(rng, MASS_MARGINS, _MARGIN_GIVEN_SHAPE[shape])
    size_mm = float(rng.uniform(6.0, 18.0))
    p_malignant = {"spiculated": 0.85, "ill_defined": 0.55, "circumscribed": 0.15}[margin]
    if shape == "irregular":
        p_malignant = min(1.0, p_malignant + 0.15)
    params = {
        "type": "mass",
        "shape": shape,
        "margin": margin,
        "size_mm": round(size_mm, 2),
        "contrast": float(rng.uniform(0.10, 0.20)),
        "spicule_factor": float(rng.uniform(0.9, 1.6)) if margin == "spiculated" else 0.0,
    }
    params.update(_diagnosis(rng, p_malignant))
    params["extent_mm"] = size_mm / 2.0 * (1.6 + params["spicule_factor"])
    return params


def draw_calc_params(rng: np.random.Generator) -> dict[str, Any]:
    """Random BI-RADS description of a calcification cluster."""
    calc_type = _pick(rng, CALC_TYPES, (0.3, 0.2, 0.3, 0.2))
    if calc_type == "fine_linear_branching":
        distribution = _pick(rng, CALC_DISTRIBUTIONS, (0.3, 0.4, 0.3, 0.0))
    else:
        distribution = _pick(rng, CALC_DISTRIBUTIONS, (0.65, 0.1, 0.1, 0.15))
    size_mm = float(
        {"clustered": rng.uniform(5, 12), "linear": rng.uniform(8, 16),
         "segmental": rng.uniform(10, 18), "regional": rng.uniform(12, 20)}[distribution]
    )
    p_malignant = {"punctate": 0.15, "amorphous": 0.4, "pleomorphic": 0.7, "fine_linear_branching": 0.85}[
        calc_type
    ]
    params = {
        "type": "calcification",
        "calc_type": calc_type,
        "distribution": distribution,
        "size_mm": round(size_mm, 2),
        "n_specks": int(rng.integers(6, 26)),
        "contrast": float(rng.uniform(0.2, 0.3) if calc_type == "amorphous" else rng.uniform(0.3, 0.55)),
    }
    params.update(_diagnosis(rng, p_malignant))
    params["extent_mm"] = size_mm / 2.0 + 2.0
    return params


def render_mass(
    params: dict[str, Any],
    center: tuple[float, float],
    spacing: tuple[float, float],
    shape: tuple[int, int],
    rng: np.random.Generator,
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray, np.ndarray]:
    """Render a mass in a window around ``center``.

    Returns:
        (window slices, intensity float32 in [0, contrast], opacity float32 in [0, 1], mask bool)
        for that window; opacity is how much the mass replaces the fat beneath it.
    """
    radius = params["size_mm"] / 2.0
    outline = _mass_radius_fn(params["shape"], radius, rng)
    window, dy, dx = _patch_grid(center, params["extent_mm"] + 1.0, spacing, shape)
    r = np.hypot(dy, dx)
    th = np.arctan2(dy, dx)
    r_edge = outline(th)
    signed = r_edge - r  # mm inside the outline
    pixel_mm = min(spacing)
    if params["margin"] == "ill_defined":
        edge = max(0.14 * radius, pixel_mm)
    else:
        edge = max(0.12, 0.5 * pixel_mm)
    body = 0.5 * (1.0 + np.tanh(signed / edge))
    dome = np.sqrt(np.clip(1.0 - (r / r_edge) ** 2, 0.0, 1.0))
    profile = body * (0.55 + 0.45 * dome)
    mask = signed > 0

    if params["margin"] == "spiculated":
        n = int(rng.integers(10, 24))
        angles = (np.arange(n) + rng.uniform(-0.4, 0.4, n)) * (2 * np.pi / n) + rng.uniform(0, 2 * np.pi)
        lengths = radius * params["spicule_factor"] * rng.uniform(0.3, 1.0, n)
        widths = rng.uniform(0.12, 0.32, n)
        bends = rng.normal(0.0, 0.12, n)  # sideways offset of the midpoint, as a fraction of the length
        spicules = np.zeros_like(profile)
        for ang, length, width, bend in zip(angles, lengths, widths, bends):
            # Each spicule is a slightly bent line (two segments) from inside the outline outwards,
            # tapering and fading towards its tip.
            root = float(outline(np.array(ang)))
            direction = np.array([np.sin(ang), np.cos(ang)])
            normal = np.array([direction[1], -direction[0]])
            p0 = 0.7 * root * direction
            p2 = (root + length) * direction
            p1 = (p0 + p2) / 2 + bend * (root * 0.3 + length) * normal
            dist = np.full(profile.shape, np.inf, np.float32)
            along = np.zeros(profile.shape, np.float32)
            for k, (a, b) in enumerate(((p0, p1), (p1, p2))):
                vy, vx = b - a
                t = np.clip(((dy - a[0]) * vy + (dx - a[1]) * vx) / (vy * vy + vx * vx), 0.0, 1.0)
                d = np.hypot(dy - (a[0] + t * vy), dx - (a[1] + t * vx))
                closer = d < dist
                dist = np.where(closer, d, dist)
                along = np.where(closer, (k + t) / 2.0, along)
            # Thin lines blur to the pixel size; below it their contrast drops (partial volume).
            sigma = np.maximum(width * (1.0 - 0.6 * along), 0.5 * pixel_mm)
            gain = np.minimum(1.0, (width * (1.0 - 0.6 * along)) / sigma)
            spicules = np.maximum(spicules, gain * np.exp(-0.5 * (dist / sigma) ** 2) * (1.0 - along) ** 0.5)
        profile = np.maximum(profile, 0.7 * spicules)
        mask |= spicules > 0.5
    intensity = (params["contrast"] * profile).astype(np.float32)
    return window, intensity, profile.astype(np.float32), mask


def render_calcifications(
    params: dict[str, Any],
    center: tuple[float, float],
    spacing: tuple[float, float],
    shape: tuple[int, int],
    rng: np.random.Generator,
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """Render a calcification cluster in a window around ``center``.

    Returns:
        (window slices, intensity float32, cluster-region mask bool) for that window.
    """
    n = params["n_specks"]
    half = params["size_mm"] / 2.0
    axis = rng.uniform(0, np.pi)
    dist = params["distribution"]
    if dist == "clustered":
        along = np.clip(rng.normal(0, half / 2.0, n), -half, half)
        across = np.clip(rng.normal(0, half / 2.0, n), -half, half)
    elif dist == "linear":
        along = rng.uniform(-half, half, n)
        across = rng.normal(0, 0.35, n)
    elif dist == "segmental":
        along = np.clip(rng.normal(0, half / 2.0, n), -half, half)
        across = np.clip(rng.normal(0, half / 5.0, n), -half / 2.5, half / 2.5)
    else:  # regional: scattered over a wide area
        rad = half * np.sqrt(rng.uniform(0, 1, n))
        ang = rng.uniform(0, 2 * np.pi, n)
        along, across = rad * np.cos(ang), rad * np.sin(ang)
    py = along * np.sin(axis) + across * np.cos(axis)
    px = along * np.cos(axis) - across * np.sin(axis)

    ctype = params["calc_type"]
    if ctype == "fine_linear_branching":
        major = rng.uniform(0.6, 2.0, n)
        minor = rng.uniform(0.12, 0.22, n)
        orient = axis + rng.normal(0, 0.5, n)
    elif ctype == "pleomorphic":
        major = rng.uniform(0.2, 0.8, n)
        minor = major * rng.uniform(0.4, 1.0, n)
        orient = rng.uniform(0, np.pi, n)
    elif ctype == "amorphous":
        major = rng.uniform(0.25, 0.45, n)
        minor = major * rng.uniform(0.7, 1.0, n)
        orient = rng.uniform(0, np.pi, n)
    else:  # punctate
        major = rng.uniform(0.2, 0.5, n)
        minor = major * rng.uniform(0.85, 1.0, n)
        orient = rng.uniform(0, np.pi, n)
    brightness = params["contrast"] * rng.uniform(0.6, 1.0, n)

    window, dy, dx = _patch_grid(center, params["extent_mm"], spacing, shape)
    pixel_mm = min(spacing)
    # (n, 1, 1) against (1, h, w): all specks at once.
    ry = dy[None] - py[:, None, None]
    rx = dx[None] - px[:, None, None]
    co, so = np.cos(orient)[:, None, None], np.sin(orient)[:, None, None]
    a = rx * co + ry * so
    b = -rx * so + ry * co
    sig_a = major[:, None, None] / 2.5
    sig_b = minor[:, None, None] / 2.5
    floor = 0.45 * pixel_mm
    # Specks smaller than a pixel spread to the pixel and lose peak contrast (partial volume).
    gain = (sig_a * sig_b) / (np.maximum(sig_a, floor) * np.maximum(sig_b, floor))
    sig_a, sig_b = np.maximum(sig_a, floor), np.maximum(sig_b, floor)
    specks = gain * np.exp(-0.5 * ((a / sig_a) ** 2 + (b / sig_b) ** 2))
    intensity = (brightness[:, None, None] * specks).max(axis=0).astype(np.float32)

    # Ground truth: the region around the cluster (specks grown by ~1 mm, then their convex hull).
    near = (np.hypot(ry, rx) <= (major[:, None, None] / 2.0 + 1.0)).any(axis=0)
    region = convex_hull_image(near) if near.any() else near
    return window, intensity, region


def add_lesions(
    breast: np.ndarray,
    room_mm: np.ndarray,
    tissue: np.ndarray,
    spacing: tuple[float, float],
    rng: np.random.Generator,
    lesion_fraction: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Place and render the lesions of one image.

    Args:
        breast: where lesions may go (breast tissue, pectoral muscle excluded).
        room_mm: distance in mm to the skin, the pectoral muscle or the image border.
        tissue: fibroglandular fraction map (for the subtlety rating).
        spacing: pixel spacing (row, col) in mm.
        rng: the random generator (lesion stream of this phantom).
        lesion_fraction: probability that the image has at least one lesion.

    Returns:
        (additive intensity float32, mass opacity float32 in [0, 1] (masses are dense tissue: the
        renderer fills the fat beneath them), label map uint8, instance map uint8 (lesion id k at
        the pixels of lesion k), list of per-lesion metadata dicts).
    """
    shape = breast.shape
    signal = np.zeros(shape, np.float32)
    opacity = np.zeros(shape, np.float32)
    label = np.zeros(shape, np.uint8)
    instances = np.zeros(shape, np.uint8)
    lesions: list[dict[str, Any]] = []
    if rng.random() >= lesion_fraction:
        return signal, opacity, label, instances, lesions
    count = int(rng.choice([1, 2, 3], p=[0.7, 0.25, 0.05]))
    placed: list[tuple[float, float, float]] = []  # (row_mm, col_mm, extent_mm)
    for _ in range(count):
        params = draw_mass_params(rng) if rng.random() < 0.6 else draw_calc_params(rng)
        # Candidates are drawn as fractions of the image so that placement does not depend on
        # the resolution; the first one with room enough wins.
        candidates = rng.uniform(0.0, 1.0, (256, 2))
        center = None
        for scale in (1.0, 0.75, 0.55):
            need = params["extent_mm"] * scale + _SKIN_MARGIN_MM
            for fy, fx in candidates:
                row, col = fy * shape[0], fx * shape[1]
                if room_mm[int(row), int(col)] < need:
                    continue
                ymm, xmm = row * spacing[0], col * spacing[1]
                if any(np.hypot(ymm - y, xmm - x) < e + params["extent_mm"] * scale + 1.0 for y, x, e in placed):
                    continue
                center = (row, col)
                break
            if center is not None:
                if scale != 1.0:
                    params["size_mm"] = round(params["size_mm"] * scale, 2)
                    params["extent_mm"] *= scale
                break
        if center is None:
            continue  # no room left in a small breast: fewer lesions, never one crossing the skin
        if params["type"] == "mass":
            window, intensity, fill, mask = render_mass(params, center, spacing, shape, rng)
            opacity[window] = np.maximum(opacity[window], fill)
            value = MASS_LABEL
        else:
            window, intensity, mask = render_calcifications(params, center, spacing, shape, rng)
            value = CALC_LABEL
        mask &= breast[window]
        if not mask.any():
            continue
        signal[window] = np.maximum(signal[window], intensity)
        label[window][mask] = value
        instances[window][mask] = len(lesions) + 1
        placed.append((center[0] * spacing[0], center[1] * spacing[1], params["extent_mm"]))
        rows, cols = np.nonzero(mask)
        r0, c0 = window[0].start + rows.min(), window[1].start + cols.min()
        r1, c1 = window[0].start + rows.max() + 1, window[1].start + cols.max() + 1
        local_density = float(tissue[window][mask].mean())
        # Subtlety 1 (subtle) .. 5 (obvious): contrast against the surrounding dense tissue.
        strength = params["contrast"] / (0.20 if value == MASS_LABEL else 0.55)
        subtlety = int(np.clip(np.round(1.0 + 4.5 * strength - 2.0 * local_density), 1, 5))
        entry = {k: v for k, v in params.items() if k not in ("extent_mm", "spicule_factor")}
        entry.update(
            id=len(lesions) + 1,
            label=value,
            center=(round(float(center[0]), 2), round(float(center[1]), 2)),
            center_mm=(round(center[0] * spacing[0], 3), round(center[1] * spacing[1], 3)),
            bbox=(int(r0), int(c0), int(r1), int(c1)),
            bbox_mm=(round((r1 - r0) * spacing[0], 3), round((c1 - c0) * spacing[1], 3)),
            area_mm2=round(float(mask.sum()) * spacing[0] * spacing[1], 3),
            contrast=round(params["contrast"], 4),
            subtlety=subtlety,
        )
        lesions.append(entry)
    return signal, opacity, label, instances, lesions
