"""A PNG contact sheet of phantoms with their lesion outlines, to look at what the generator makes.

``medsynth phantoms OUT --preview sheet.png`` (:func:`preview_dataset`) and the docs figure
``docs/images/phantoms.png`` (:func:`sample_sheet`) use it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medsynth.io.writers.atomic import atomic_path
from medsynth.phantoms.render import DEFAULT_SIZE, Phantom, render_phantom


def sample_sheet(
    path: str | Path,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    phantoms: list[Phantom] | None = None,
) -> Path:
    """Save a sheet of 8 phantoms (CC and MLO, left and right, densities a-d, every one with lesions)
    with mask outlines (red: mass, yellow: calcification cluster) and a zoom on one lesion of each.

    Args:
        path: the PNG to write (written atomically).
        seed: phantom seed.
        size: (rows, cols) of each phantom.
        phantoms: phantoms to show instead of the default selection.

    Returns:
        the PNG path.
    """
    from matplotlib.figure import Figure

    if phantoms is None:
        phantoms = [
            render_phantom(seed, size, "cc" if k < 4 else "mlo", "abcd"[k % 4], index=k, lesion_fraction=1.0)
            for k in range(8)
        ]
    cols = len(phantoms)
    fig = Figure(figsize=(2.2 * cols, 5.6))
    axes = fig.subplots(2, cols, gridspec_kw={"height_ratios": [1.25, 1]})
    axes = np.atleast_2d(axes).reshape(2, cols)
    for k, ph in enumerate(phantoms):
        top, zoom = axes[0, k], axes[1, k]
        top.imshow(ph.image, cmap="gray", vmin=0, vmax=1, interpolation="lanczos")
        for value, color in ((1, "red"), (2, "yellow")):
            if (ph.label == value).any():
                top.contour(ph.label == value, levels=[0.5], colors=color, linewidths=0.6)
        desc = []
        for les in ph.lesions:
            kind = f"{les['shape']} {les['margin']}" if les["type"] == "mass" else f"calc {les['calc_type']}"
            desc.append(f"{kind.replace('_', '-')} {les['size_mm']:.0f} mm")
        top.set_title(f"{ph.laterality}-{ph.view}  density {ph.density}\n" + "\n".join(desc[:2]), fontsize=6.5)
        if ph.lesions:
            les = ph.lesions[0]
            r, c = (int(v) for v in les["center"])
            half = int(max(les["bbox"][2] - les["bbox"][0], les["bbox"][3] - les["bbox"][1]) * 0.9) + 8
            r0, c0 = max(r - half, 0), max(c - half, 0)
            zoom.imshow(ph.image[r0 : r + half, c0 : c + half], cmap="gray", vmin=0, vmax=1)
            zoom.set_title("zoom: lesion 1", fontsize=6.5)
        else:
            zoom.axis("off")
        for ax in (top, zoom):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


def preview_dataset(root: str | Path, path: str | Path, count: int = 8) -> Path:
    """A sheet of the first ``count`` phantoms of a dataset ``make_phantoms`` wrote, rendered again
    from the settings its ``phantoms.json`` records (the same pixels: each depends on (seed, index) only).

    Args:
        root: the dataset folder.
        path: the PNG to write.
        count: how many phantoms to show (at most the dataset's size).

    Returns:
        the PNG path.
    """
    manifest = json.loads((Path(root) / "phantoms.json").read_text())
    shown = [
        render_phantom(
            manifest["seed"], tuple(manifest["size"]), manifest["view"], manifest["density"], index=case["index"],
            spacing=manifest["spacing_mm"][0], lesion_fraction=manifest["lesion_fraction"],
            burned_in_text=manifest["burned_in_text"],
        )
        for case in manifest["cases"][:count]
    ]
    return sample_sheet(path, phantoms=shown)
