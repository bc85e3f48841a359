"""``get_extractor(spec)``: one entry point for every kind of features, chosen from a registry.

A new kind of features is one builder added to :data:`EXTRACTORS`, not one more ``elif``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from torch import nn

from medsynth.errors import ConfigError
from medsynth.metrics.features.base import FeatureExtractor
from medsynth.metrics.features.domain import domain_extractor
from medsynth.metrics.features.inception import inception_extractor
from medsynth.metrics.features.random_cnn import random_extractor
from medsynth.metrics.features.user import user_extractor


def _random(arg: str, real: Any, cache_dir: str | Path | None, config: dict[str, Any] | None,
            progress: bool, device: Any = None) -> FeatureExtractor:
    return random_extractor(**(config or {}))


def _domain(arg: str, real: Any, cache_dir: str | Path | None, config: dict[str, Any] | None,
            progress: bool, device: Any = None) -> FeatureExtractor:
    if real is None:
        raise ConfigError("the 'domain' features are trained on the real set: pass real=...")
    return domain_extractor(real, cache_dir=cache_dir, config=config, progress=progress, device=device)


def _inception(arg: str, real: Any, cache_dir: str | Path | None, config: dict[str, Any] | None,
               progress: bool, device: Any = None) -> FeatureExtractor:
    return inception_extractor(arg or None)


# The name before the first ":" of a spec -> builder(text after the ":", real, cache_dir, config, progress,
# device=): device is where an extractor that learns (domain) trains; every extractor is moved there after.
EXTRACTORS: dict[str, Callable[[str, Any, str | Path | None, dict[str, Any] | None, bool], FeatureExtractor]] = {
    "random": _random,
    "domain": _domain,
    "inception": _inception,
}


def get_extractor(
    spec: str | nn.Module | FeatureExtractor,
    real: Any = None,
    cache_dir: str | Path | None = None,
    config: dict[str, Any] | None = None,
    progress: bool = False,
    device: Any = None,
) -> FeatureExtractor:
    """Build the extractor ``spec`` names.

    Args:
        spec: ``"random"``, ``"domain"``, ``"inception:PATH"``, an ``nn.Module`` mapping
            ``(N, 1, H, W)`` in [0, 1] to ``(N, D)`` (an ``input_px`` attribute, when present, sets
            the size images are resized to), or a ready :class:`FeatureExtractor`.
        real: the real images ((N, H, W) in [0, 1], or a dataset); required for ``"domain"``.
        cache_dir: cache of trained domain encoders (default ``~/.cache/medsynth/features``).
        config: settings of the extractor (``"domain"``: laid over the ``domain`` section of
            ``configs/evaluate.yaml``; ``"random"``: ``seed``, ``input_px``).
        progress: show progress bars.
        device: where the features are computed (and the domain encoder trained): a
            ``torch.device`` or a name (``"auto"``, ``"cpu"``, ``"cuda"``); None: where the
            network already is (the CPU for medsynth's own).

    Raises:
        ConfigError: unknown spec, ``"domain"`` without real images, a device this machine lacks.
        MissingWeightsError: ``"inception"`` without a weights file.
    """
    if isinstance(spec, FeatureExtractor):
        return spec.to(device)
    if isinstance(spec, nn.Module):
        return user_extractor(spec).to(device)
    if not isinstance(spec, str):
        raise ConfigError(
            f"features must be 'domain', 'random', 'inception:PATH' or an nn.Module, got {type(spec).__name__}"
        )
    kind, _, arg = spec.partition(":")
    build = EXTRACTORS.get(kind.strip().lower())
    if build is None:
        raise ConfigError(f"unknown features {spec!r}; choose 'domain', 'random' or 'inception:PATH'")
    if device is not None:
        from medsynth.runtime import resolve_device

        device = resolve_device(device)
    return build(arg, real, cache_dir, config, progress, device=device).to(device)
