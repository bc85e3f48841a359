"""The extractor every metric talks to: a network with its input convention and a fingerprint."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medsynth.errors import InvalidModelError
from medsynth.utils import progress_bar

DEFAULT_CACHE_DIR = Path("~/.cache/medsynth/features")


def default_cache_dir() -> Path:
    """Where trained encoders and real-set features are cached: ``$MEDSYNTH_CACHE_DIR/features`` when
    that variable is set (tests and CI use a private folder), else ``~/.cache/medsynth/features``."""
    env = os.environ.get("MEDSYNTH_CACHE_DIR")
    return (Path(env) / "features") if env else DEFAULT_CACHE_DIR.expanduser()


def weights_digest(module: nn.Module) -> str:
    """SHA-256 (hex) of a module's float32 parameters and buffers, in state-dict order."""
    h = hashlib.sha256()
    for key, value in module.state_dict().items():
        h.update(key.encode())
        h.update(np.ascontiguousarray(value.detach().cpu().numpy()).tobytes())
    return h.hexdigest()


class FeatureExtractor:
    """An embedding network with its input convention.

    Args:
        module: maps ``(N, 1, input_px, input_px)`` float32 in [0, 1] to ``(N, D)``.
        name: how results name the features (e.g. ``"random-cnn-v1"``).
        input_px: side the images are resized to before ``module``; None keeps their size.
        fingerprint: identifies the weights (caches of real-set features are keyed by it).
        info: facts for reports (training time, cache hit, weights file, ...).
    """

    def __init__(
        self,
        module: nn.Module,
        name: str,
        input_px: int | None,
        fingerprint: str,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.module = module.eval()
        first = next(iter(module.parameters()), None)
        self.device = first.device if first is not None else torch.device("cpu")
        self.name = name
        self.input_px = input_px
        self.fingerprint = fingerprint
        self.info = dict(info or {})
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        """Feature dimension D."""
        if self._dim is None:
            px = self.input_px or 64
            with torch.no_grad():
                self._dim = int(self.module(torch.zeros(2, 1, px, px, device=self.device)).shape[-1])
        return self._dim

    def to(self, device: str | torch.device | None) -> "FeatureExtractor":
        """Compute the features on ``device`` (a ``torch.device`` or a name :func:`medsynth.runtime.resolve_device`
        takes; None leaves it); returns self. Images are moved there batch by batch, features come back on the CPU.
        """
        if device is not None:
            from medsynth.runtime import resolve_device

            self.device = resolve_device(device)
            self.module.to(self.device)
        return self

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Resize a ``(N, 1, H, W)`` float batch to the network's input size (anti-aliased)."""
        if self.input_px is not None and tuple(x.shape[-2:]) != (self.input_px, self.input_px):
            down = x.shape[-1] > self.input_px
            x = F.interpolate(
                x, size=(self.input_px, self.input_px), mode="bilinear", align_corners=False, antialias=down
            )
        return x

    def embed(self, images: np.ndarray, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embed ``(N, H, W)`` images in [0, 1]; returns ``(N, D)`` float32.

        Raises:
            InvalidImageError: the array is not (N, H, W), is empty, or holds values outside [0, 1].
        """
        from medsynth.metrics.images import check_image_array

        arr = check_image_array(images, what=f"images for the {self.name} features")
        out = []
        with progress_bar(progress) as bar, torch.no_grad():
            task = bar.add_task(f"features ({self.name})", total=len(arr))
            for start in range(0, len(arr), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(arr[start : start + batch_size]))[:, None]
                f = self.module(self.prepare(x.to(self.device)))
                if f.ndim != 2 or f.shape[0] != x.shape[0]:
                    raise InvalidModelError(
                        f"feature network {self.name} returned shape {tuple(f.shape)}, expected (N, D)"
                    )
                out.append(f.float().cpu().numpy())
                bar.advance(task, x.shape[0])
        return np.concatenate(out).astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return f"FeatureExtractor(name={self.name!r}, input_px={self.input_px}, fingerprint={self.fingerprint!r})"
