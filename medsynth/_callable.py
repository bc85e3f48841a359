"""Packages that are also functions.

``medsynth.generate`` and ``medsynth.audit`` name both a subpackage and a function of medsynth's lazy
top-level API. Once the subpackage is imported it shadows the function as an attribute of
``medsynth``, so the subpackage is made callable: ``medsynth.generate(...)`` and
``medsynth.audit(...)`` work whether or not the package was imported first.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def make_package_callable(package: str, module: str, function: str) -> None:
    """Make ``sys.modules[package]`` callable; a call runs ``module.function`` (imported lazily)."""

    class _CallablePackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module(module), function)(*args, **kwargs)

    sys.modules[package].__class__ = _CallablePackage
