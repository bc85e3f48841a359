"""A user's own ``nn.Module`` as an extractor (where a medical encoder plugs in, as torchmetrics' ``feature=``)."""

from __future__ import annotations

from torch import nn

from medsynth.metrics.features.base import FeatureExtractor, weights_digest


def user_extractor(module: nn.Module) -> FeatureExtractor:
    """An extractor of ``module``, which maps ``(N, 1, H, W)`` float in [0, 1] to ``(N, D)``.

    An ``input_px`` attribute of the module, when present, sets the size images are resized to;
    the fingerprint is the class name and a digest of the weights.
    """
    digest = weights_digest(module)[:16]
    input_px = getattr(module, "input_px", None)
    name = type(module).__name__
    return FeatureExtractor(module, f"user:{name}", input_px, f"user-{name}-{digest}")
