"""Feature extractors that embed greyscale images for FID / KID / PRDC and for copy detection.

Every extractor maps images given as an ``(N, H, W)`` float array in [0, 1] to an ``(N, D)``
float32 array through :meth:`FeatureExtractor.embed` (:mod:`.base`), resizing to what its network
needs. One kind a module, chosen by :func:`get_extractor` from the registry in :mod:`.registry`:

- ``"random"`` (:mod:`.random_cnn`, the default of ``evaluate``): a fixed, randomly initialised CNN
  with NumPy-generated weights; not invariant to flips, shifts, intensity or noise, so augmented
  copies of the real set do not score better than new real images.
- ``"domain"`` (:mod:`.domain`): a small CNN encoder trained self-supervised (SimCLR) on the real
  set, invariant to flips, small shifts, crops, intensity and noise; cached. Made for copy detection
  (the audit); as a fidelity metric that invariance is a bias: it scores augmented copies of the real
  set as far closer than genuinely new images.
- ``"inception:PATH"`` (:mod:`.inception`): the FID Inception-v3, weights read from PATH only.
- any ``nn.Module`` mapping ``(N, 1, H, W)`` float in [0, 1] to ``(N, D)`` (:mod:`.user`).
"""

from __future__ import annotations

from medsynth.metrics.features.base import DEFAULT_CACHE_DIR, FeatureExtractor, default_cache_dir, weights_digest
from medsynth.metrics.features.domain import DomainEncoder, domain_extractor, domain_settings, train_domain_encoder
from medsynth.metrics.features.inception import FID_WEIGHTS_FILE, FIDInceptionV3, inception_extractor
from medsynth.metrics.features.random_cnn import RandomCNN, random_extractor
from medsynth.metrics.features.registry import EXTRACTORS, get_extractor
from medsynth.metrics.features.user import user_extractor

__all__ = [
    "DEFAULT_CACHE_DIR",
    "EXTRACTORS",
    "FID_WEIGHTS_FILE",
    "DomainEncoder",
    "FIDInceptionV3",
    "FeatureExtractor",
    "RandomCNN",
    "default_cache_dir",
    "domain_extractor",
    "domain_settings",
    "get_extractor",
    "inception_extractor",
    "random_extractor",
    "train_domain_encoder",
    "user_extractor",
    "weights_digest",
]
