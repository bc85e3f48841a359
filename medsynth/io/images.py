"""PNG/TIFF reader (Pillow), mainly for label-map masks and exported images.

Pillow's ``Image.open`` reads the header only; pixels are decoded on first access of ``.pixels``.
Values are returned as stored (a label map keeps its labels; palette images keep their indices).
Grayscale modes only: "1", "L", "P", "I;16*", "I", "F"; an RGB(A) file is accepted when its colour
channels are equal (a gray image saved as RGB), else rejected. Multi-page TIFFs: ``frame=``.
Spacing comes from the file's DPI when it has one (25.4 / dpi mm), else it is unknown
(``metadata["spacing_source"]`` says which; :mod:`medsynth.io.spacing` decides what then happens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medsynth.errors import InvalidImageError
from medsynth.io.scan import UNKNOWN_SPACING, Scan

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
_BITS = {"1": 1, "L": 8, "P": 8, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "RGB": 8, "RGBA": 8, "LA": 8}


def read_image(path: str | Path, *, frame: int = 0) -> Scan:
    """Read a PNG or TIFF header now and its pixels on first access.

    Args:
        path: the file.
        frame: page of a multi-page TIFF (0-based).

    Returns:
        A lazy Scan; ``bits_stored`` is the mode's bit depth (None for 32-bit int/float modes).

    Raises:
        InvalidImageError: not an image Pillow can open, an unsupported mode, a missing page, or
            (from ``.pixels``) a truncated file.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            n_frames = int(getattr(im, "n_frames", 1))
            if not 0 <= frame < n_frames:
                raise InvalidImageError(f"page {frame} requested but the file has {n_frames}", path)
            im.seek(frame)
            mode, fmt = im.mode, im.format
            cols, rows = im.size
            dpi = im.info.get("dpi")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise InvalidImageError(f"not a readable PNG/TIFF image ({type(e).__name__}: {e})", path) from e
    if mode not in _BITS and mode not in ("I", "F"):
        raise InvalidImageError(f"unsupported image mode {mode!r}; grayscale or label images only", path)
    # No DPI: the spacing is unknown (never an assumed 1 mm; see medsynth.io.spacing).
    spacing, source = UNKNOWN_SPACING, "unknown"
    try:
        if dpi and float(dpi[0]) > 0 and float(dpi[1]) > 0:
            # DPI is (x, y): columns then rows.
            # Rounded to 1e-6 mm: PNG stores pixels per metre, Pillow converts to inexact DPI.
            spacing, source = (round(25.4 / float(dpi[1]), 6), round(25.4 / float(dpi[0]), 6)), "dpi"
    except (TypeError, ValueError, IndexError):
        source = "unknown (malformed dpi)"
    metadata: dict[str, Any] = {"format": fmt.lower() if fmt else None, "mode": mode, "n_frames": n_frames,
                                "frame": frame, "spacing_source": source}

    def load() -> np.ndarray:
        try:
            with Image.open(path) as im:
                im.seek(frame)
                im.load()
                arr = np.asarray(im)
        except (OSError, ValueError, SyntaxError) as e:
            raise InvalidImageError(f"cannot decode pixels, the file is truncated or corrupt ({e})", path) from e
        if arr.ndim == 3:
            colour = arr[..., :3]
            if not (np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2])):
                raise InvalidImageError(f"is a colour image (mode {mode}); grayscale or label images only", path)
            arr = colour[..., 0]
        return arr.astype(np.float32)

    return Scan(
        path=path,
        shape=(rows, cols),
        spacing=spacing,
        pixel_loader=load,
        bits_stored=_BITS.get(mode),
        metadata=metadata,
    )
