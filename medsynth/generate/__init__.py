"""Synthetic segmentation training sets: mask sources, lesion placement and the generate() pipeline.

``from medsynth.generate import generate`` or ``medsynth.generate(...)`` is the entry point; see
:mod:`medsynth.generate.pipeline` for the seed rule, batching, resume and sharding, :mod:`.masks`
for lesion outlines, :mod:`.placement` for where lesions may go and :mod:`.manifest` for what is
recorded about every case.

``medsynth.generate`` names both this package and the top-level API function; once the package is
imported, the attribute ``medsynth.generate`` *is* the package. So the package is made callable and
forwards to :func:`medsynth.generate.pipeline.generate`: ``medsynth.generate(...)`` works either way.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = ["generate"]


def __getattr__(name: str) -> Any:
    # Lazy, so importing the package does not import torch.
    if name == "generate":
        from medsynth.generate.pipeline import generate

        return generate
    raise AttributeError(f"module 'medsynth.generate' has no attribute {name!r}")


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from medsynth.generate.pipeline import generate

        return generate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
