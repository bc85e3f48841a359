"""Synthetic segmentation training sets: mask sources, lesion placement and the generate() pipeline.

``medsynth.generate(...)`` (or ``from medsynth.generation import generate``) is the entry point; see
:mod:`medsynth.generation.pipeline` for the seed rule, batching, resume and sharding, :mod:`.masks`
for lesion outlines, :mod:`.placement` for where lesions may go and :mod:`.manifest` for what is
recorded about every case.

The package is named ``generation``, not ``generate``, so that it never shadows the function
``medsynth.generate`` once imported.
"""

from __future__ import annotations

from typing import Any

__all__ = ["generate"]


def __getattr__(name: str) -> Any:
    # Lazy, so importing the package does not import torch.
    if name == "generate":
        from medsynth.generation.pipeline import generate

        return generate
    raise AttributeError(f"module 'medsynth.generation' has no attribute {name!r}")
