"""The ``"random"`` extractor: a fixed, randomly initialised CNN.

Naeem et al. 2020 show random embeddings are informative outside natural images. The weights come
from a NumPy ``Generator`` (PCG64, seeded), not from torch's RNG, so they are bit-identical on every
machine and torch version.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medsynth.metrics.features.base import FeatureExtractor, weights_digest

_RANDOM_CHANNELS = (16, 32, 64, 128, 128)


class RandomCNN(nn.Module):
    """Five 3x3 stride-2 conv layers with ReLU; features = global mean of the last two layers (256-d).

    Weights are He-normal from ``numpy.random.default_rng(seed)`` (bit-identical everywhere); biases 0.
    """

    def __init__(self, seed: int) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        layers = []
        cin = 1
        for cout in _RANDOM_CHANNELS:
            conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
            w = rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(w.astype(np.float32)))
                conv.bias.zero_()
            layers.append(conv)
            cin = cout
        self.convs = nn.ModuleList(layers)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = 2.0 * x - 1.0  # centre the input so the first layer sees signed values
        pooled = []
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if i >= len(self.convs) - 2:
                pooled.append(x.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)



def random_extractor(seed: int | None = None, input_px: int = 128) -> FeatureExtractor:
    """The ``"random"`` extractor: :class:`RandomCNN` seeded with ``seed`` at ``input_px``.

    ``seed`` defaults to ``random_seed`` of ``configs/evaluate.yaml``.
    """
    if seed is None:
        from medsynth.config import load_config

        seed = int(load_config(None, kind="evaluate")["random_seed"])
    net = RandomCNN(seed)
    # The input size is part of what the features are: cached real-set features are keyed by it too.
    fingerprint = f"random-{weights_digest(net)[:16]}-{input_px}px"
    info = {"seed": seed, "input_px": input_px}
    return FeatureExtractor(net, f"random-cnn(seed={seed})", input_px, fingerprint, info)
