"""Reading text burned into pixels, offline: ``rapidocr-onnxruntime`` (the ``medsynth[ocr]`` extra).

rapidocr-onnxruntime ships the PP-OCRv4 detection and recognition ONNX models (~15 MB) inside its
wheel and runs them with onnxruntime on the CPU: nothing is downloaded, and it pulls neither torch
nor torchvision. Its models read Latin letters and digits (and Chinese); names, MRNs and dates as
modalities burn them are what the audit needs.

Speed is set by the image size the detector sees. The image is scaled down (never up) so its
longer side is at most ``max_side_px`` and read once; text must then stay about 10 px high to be
read (measured on phantoms: Pillow's 11 px bitmap font is read at full size, misread at 0.85x,
lost at 0.5x). On 512 x 416 phantoms one image costs ~0.2 CPU-seconds, with or without three lines
of text (``benchmarks/bench_ocr.py``, figures in BENCHMARKS.md).

Text is read upright first, without the angle classifier (on 20 phantoms with burned-in text the
classifier turned some upright MRNs upside down: 16/20 read with it, 20/20 without, and 25 % less
CPU). A copy of a flipped image carries upside-down or mirrored text, which OCR reads as garbage of
middling confidence (0.65-0.85 measured on phantoms, against >= 0.97 for upright text): when any
line is read with less than 0.9 confidence, the image is read again with the angle classifier
(180° rotations), then mirrored, and the most confident reading is kept. Images without text are
read once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["PixelTextReader", "ocr_unavailable"]

_INSTALL = "pip install 'medsynth[ocr]' (rapidocr-onnxruntime)"


def ocr_unavailable() -> str:
    """Why OCR cannot run here ("" when it can)."""
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except ImportError as e:
        return f"the ocr extra is not installed ({e.name or e}); {_INSTALL}"
    except Exception as e:  # e.g. an onnxruntime or OpenCV shared library that fails to load
        return f"rapidocr-onnxruntime cannot be imported ({type(e).__name__}: {e})"
    return ""


class PixelTextReader:
    """Read the text lines of a grey-level image.

    Args:
        max_side_px: the image is scaled down so its longer side is at most this (detection cost
            grows with the pixel count).
        min_score: recognition confidence below which a line is dropped.
    """

    def __init__(self, max_side_px: int = 1024, min_score: float = 0.6) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self.max_side_px = int(max_side_px)
        self.min_score = float(min_score)
        self.confident = 0.9  # below this for any line, the mirrored image is read as well
        # "max": the detector only ever scales down. Lines of any score come back; filtered here.
        self._engine = RapidOCR(det_limit_type="max", det_limit_side_len=max(self.max_side_px, 32),
                                max_side_len=max(self.max_side_px, 32), text_score=0.0, print_verbose=False)

    def _as_uint8(self, image01: np.ndarray) -> np.ndarray:
        img = np.clip(np.nan_to_num(np.asarray(image01, dtype=np.float32)), 0.0, 1.0)
        h, w = img.shape[:2]
        scale = self.max_side_px / float(max(h, w))
        if scale < 1.0:
            from skimage.transform import resize

            img = resize(img, (max(1, round(h * scale)), max(1, round(w * scale))), order=1, anti_aliasing=True,
                         preserve_range=True)
        return np.ascontiguousarray(np.round(img * 255.0).astype(np.uint8))

    def _run(self, img: np.ndarray, use_cls: bool) -> list[tuple[str, float]]:
        result, _ = self._engine(img, use_cls=use_cls)
        return [(str(r[1]), float(r[2])) for r in (result or []) if str(r[1]).strip()]

    def read(self, image01: Any) -> list[tuple[str, float]]:
        """The text lines read in ``image01`` (float in [0, 1], display polarity), with their scores."""
        img = self._as_uint8(image01)
        readings = [self._run(img, use_cls=False)]
        # Something text-like not all read with confidence: upside-down or mirrored text (a flipped
        # copy) reads as confident-looking garbage, so the image is read again with the angle
        # classifier (180° rotations), then mirrored, and the most confident reading is kept.
        for flip in (False, True):
            best = max(readings, key=_mean_score)
            if not best or min(s for _, s in best) >= self.confident:
                break
            readings.append(self._run(np.ascontiguousarray(img[:, ::-1]) if flip else img, use_cls=True))
        return [(t, s) for t, s in max(readings, key=_mean_score) if s >= self.min_score]


def _mean_score(lines: list[tuple[str, float]]) -> float:
    return float(np.mean([s for _, s in lines])) if lines else 0.0
