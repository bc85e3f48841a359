"""medsynth: privacy-preserving synthetic medical imaging.

The public API is imported lazily, so ``import medsynth`` is cheap and the CLI starts fast::

    import medsynth
    scan = medsynth.load_scan("image.dcm")
    ds = medsynth.load_dataset("phantoms/")
    model = medsynth.LesionInpainter.from_pretrained("model/")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "load_scan": "medsynth.io.readers",
    "load_dataset": "medsynth.io.datasets",
    "describe": "medsynth.io.inspect",
    "Scan": "medsynth.io.scan",
    "Case": "medsynth.io.scan",
    "make_phantoms": "medsynth.phantoms",
    "LesionInpainter": "medsynth.models.inpainter",
    "train": "medsynth.models.training",
    "finetune_lora": "medsynth.models.lora",
    "generate": "medsynth.generation.pipeline",
    "evaluate": "medsynth.metrics.evaluate",
    "evaluate_utility": "medsynth.metrics.utility",
    "audit": "medsynth.auditing.run",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'medsynth' has no attribute {name!r}")
