"""PNG writer for quick looks: 16-bit greyscale images and 8-bit label maps.

Layout (the ``folder`` layout :func:`medsynth.io.datasets.load_dataset` reads)::

    OUT/images/case_0000.png   16-bit greyscale, the full uint16 range
    OUT/masks/case_0000.png    8-bit label map (0 background, 1 mass, 2 calcification)

PNG has no pixel-spacing field that viewers agree on, so the spacing is stored in the manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsynth.io.writers.atomic import atomic_path
from medsynth.io.writers.base import check_case


def write_png(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 or uint16 2-D array as a greyscale PNG atomically (bit depth kept)."""
    from PIL import Image

    array = np.ascontiguousarray(array)
    if array.ndim != 2 or array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"PNG writer takes 2-D uint8/uint16 arrays, got {array.dtype} {array.shape}")
    # Pillow maps uint16 to mode "I;16" (a 16-bit greyscale PNG) and uint8 to "L" (8-bit).
    img = Image.fromarray(array)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", optimize=False)
    return path


class PngWriter:
    """Write cases as 16-bit PNG images and 8-bit PNG masks.

    Args:
        out: output root.
    """

    format = "png"

    def __init__(self, out: Path) -> None:
        self.out = Path(out)

    def write_case(self, case_id: str, image: np.ndarray, label: np.ndarray,
                   spacing: tuple[float, float], laterality: str | None = None) -> dict[str, Path]:
        image, label = check_case(image, label)
        img_rel = Path("images") / f"{case_id}.png"
        lab_rel = Path("masks") / f"{case_id}.png"
        write_png(self.out / img_rel, image)
        write_png(self.out / lab_rel, label)
        return {"image": img_rel, "label": lab_rel}

    def finalize(self, case_ids: list[str]) -> list[Path]:
        return []
