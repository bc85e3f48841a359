"""medsynth.io: scans in (DICOM, NIfTI, PNG/TIFF readers), datasets listed, writers out.

``load_scan`` and ``load_dataset`` are imported lazily so ``import medsynth.io.scan`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "load_scan": "medsynth.io.readers",
    "load_dataset": "medsynth.io.datasets",
    "describe": "medsynth.io.inspect",
    "Dataset": "medsynth.io.datasets",
    "Scan": "medsynth.io.scan",
    "Case": "medsynth.io.scan",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'medsynth.io' has no attribute {name!r}")
