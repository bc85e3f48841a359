"""Synthetic segmentation training sets: mask sources, lesion placement and the generate() pipeline.

``from medsynth.generate import generate`` or ``medsynth.generate(...)`` is the entry point; see
:mod:`medsynth.generate.pipeline` for the seed rule, batching, resume and sharding, :mod:`.masks`
for lesion outlines, :mod:`.placement` for where lesions may go and :mod:`.manifest` for what is
recorded about every case.

The package is callable (see :mod:`medsynth._callable`): ``medsynth.generate(...)`` runs
:func:`medsynth.generate.pipeline.generate`.
"""

from __future__ import annotations

from typing import Any

from medsynth._callable import make_package_callable

__all__ = ["generate"]


def __getattr__(name: str) -> Any:
    # Lazy, so importing the package does not import torch.
    if name == "generate":
        from medsynth.generate.pipeline import generate

        return generate
    raise AttributeError(f"module 'medsynth.generate' has no attribute {name!r}")


make_package_callable(__name__, "medsynth.generate.pipeline", "generate")
