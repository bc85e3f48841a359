"""The ``"domain"`` extractor: a small CNN encoder trained self-supervised on the real set.

SimCLR (NT-Xent loss) with flips, shifts of a few pixels, slight crops, intensity scaling and light
noise as augmentations, so that the embedding is invariant to them -- which is what copy detection
needs (Dar et al.). Flip invariance is made exact by averaging the embedding over the four flips.
That invariance is also its bias as a fidelity metric: augmented copies of the real set embed next
to their sources and score a far lower FID than genuinely new images (19x on lesion ROIs, 45x on
whole phantom images), so ``evaluate`` defaults to the ``random`` features and keeps this encoder
for copy detection.
The trained encoder is cached under ``cache_dir`` keyed by a content hash of the real images and
the training settings, so it is trained once per real set. The settings are the ``domain`` section
of ``configs/evaluate.yaml``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medsynth.errors import ConfigError, InvalidImageError, InvalidModelError
from medsynth.io.writers.atomic import atomic_path, atomic_write_text
from medsynth.metrics.features.base import FeatureExtractor, default_cache_dir
from medsynth.utils import progress_bar


def domain_settings(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The encoder's settings: the ``domain`` section of ``configs/evaluate.yaml`` with ``config`` over it.

    Raises:
        ConfigError: ``config`` names a setting the section lacks.
    """
    from medsynth.config import load_config

    defaults = load_config(None, kind="evaluate")["domain"]
    unknown = set(config or {}) - set(defaults)
    if unknown:
        raise ConfigError(f"unknown domain-encoder setting(s) {sorted(unknown)}; known: {sorted(defaults)}")
    return {**defaults, **(config or {})}


class DomainEncoder(nn.Module):
    """Small CNN: four stride-2 conv blocks with GroupNorm, global average pool (4*width-d).

    ``forward`` returns the L2-normalised embedding averaged over the four flips of the input, so
    flipped copies embed identically; ``backbone`` is the plain feature used in training.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(8, cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(1, w, 2), *block(w, 2 * w, 2), *block(2 * w, 4 * w, 2), *block(4 * w, 4 * w, 2)
        )
        self.projection = nn.Sequential(nn.Linear(4 * w, 4 * w), nn.ReLU(inplace=True), nn.Linear(4 * w, 64))

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(2.0 * x - 1.0).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = torch.cat([x, x.flip(-1), x.flip(-2), x.flip(-1, -2)])
        f = F.normalize(self.backbone(views), dim=1).view(4, x.shape[0], -1).mean(0)
        return F.normalize(f, dim=1)


def augment(x: torch.Tensor, cfg: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    """One random view per image: flips, slight crop + shift (one affine resample), intensity, noise."""
    n, _, h, w = x.shape
    flip_h = torch.rand(n, generator=gen) < 0.5
    flip_v = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip_h[:, None, None, None], x.flip(-1), x)
    x = torch.where(flip_v[:, None, None, None], x.flip(-2), x)
    scale = cfg["min_crop"] + (1.0 - cfg["min_crop"]) * torch.rand(n, generator=gen)
    # Crop position within the margin left by the crop, plus a shift of up to max_shift_px.
    shift = 2.0 * cfg["max_shift_px"] / w
    tx = (1.0 - scale) * (2 * torch.rand(n, generator=gen) - 1) + shift * (2 * torch.rand(n, generator=gen) - 1)
    ty = (1.0 - scale) * (2 * torch.rand(n, generator=gen) - 1) + shift * (2 * torch.rand(n, generator=gen) - 1)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gain = 1.0 + cfg["intensity"] * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)
    x = x * gain
    sigma = cfg["noise"] * torch.rand(n, 1, 1, 1, generator=gen)
    return x + sigma * torch.randn(x.shape, generator=gen)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy over the 2N views of N images."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    n = z1.shape[0]
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(sim.device)
    return F.cross_entropy(sim, target)


def train_domain_encoder(
    images: np.ndarray, config: dict[str, Any] | None = None, progress: bool = False, device: Any = None
) -> tuple[DomainEncoder, dict[str, Any]]:
    """Train a :class:`DomainEncoder` with SimCLR on ``images`` ((N, S, S) in [0, 1] at input_px), on
    ``device`` (default CPU; the views are drawn on the CPU from the seeded generator and moved there).

    Returns:
        (encoder in eval mode, training facts: steps, seconds, final loss).
    """
    cfg = domain_settings(config)
    torch.manual_seed(cfg["seed"])  # model init; data order and augmentations use `gen`
    gen = torch.Generator().manual_seed(cfg["seed"])
    model = DomainEncoder(cfg["width"]).to(device or "cpu")
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=1e-5)
    data = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    n = data.shape[0]
    batch = min(cfg["batch_size"], n)
    start = time.perf_counter()
    loss_value = float("nan")
    model.train()
    with progress_bar(progress) as bar:
        task = bar.add_task("training domain encoder", total=cfg["steps"])
        for step in range(cfg["steps"]):
            idx = torch.randperm(n, generator=gen)[:batch]
            x = data[idx]
            v1, v2 = augment(x, cfg, gen), augment(x, cfg, gen)
            z = model.projection(model.backbone(torch.cat([v1, v2]).to(device or "cpu")))
            loss = nt_xent(z[:batch], z[batch:], cfg["temperature"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_value = float(loss.detach())
            bar.advance(task)
    model.eval().to("cpu")  # handed back (and cached) on the CPU, as every extractor starts
    return model, {
        "steps": cfg["steps"],
        "train_seconds": round(time.perf_counter() - start, 2),
        "final_loss": loss_value,
    }


def _resize_stack(images: np.ndarray, px: int) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    if tuple(x.shape[-2:]) != (px, px):
        x = F.interpolate(x, size=(px, px), mode="bilinear", align_corners=False, antialias=x.shape[-1] > px)
    return x[:, 0].clamp(0, 1).cpu().numpy()


def domain_extractor(
    real: Any,
    cache_dir: str | Path | None = None,
    config: dict[str, Any] | None = None,
    progress: bool = False,
    device: Any = None,
) -> FeatureExtractor:
    """The ``"domain"`` extractor: load the encoder cached for ``real`` or train and cache it.

    Args:
        real: the real images, (N, H, W) in [0, 1] (or anything ``load_image_set`` reads).
        cache_dir: where trained encoders live (default ``~/.cache/medsynth/features``).
        config: settings laid over the ``domain`` section of ``configs/evaluate.yaml``.
        progress: show a progress bar while training.
        device: where a new encoder is trained (default CPU); the extractor is returned on the CPU.
    """
    from safetensors.torch import load_file, save_file

    from medsynth.metrics.images import check_image_array, content_hash, load_image_set

    cfg = domain_settings(config)
    if not isinstance(real, np.ndarray):
        real = load_image_set(real, what="real", with_rois=False).images
    real = check_image_array(real, what="real images for the domain encoder")
    if len(real) < 2:
        raise InvalidImageError(f"the domain encoder needs at least 2 real images, got {len(real)}")
    small = _resize_stack(real, cfg["input_px"])
    key = content_hash(small, extra=json.dumps(cfg, sort_keys=True) + "domain-v1")
    folder = Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser() / f"domain-{key}"
    weights = folder / "model.safetensors"
    model = DomainEncoder(cfg["width"])
    if weights.exists():
        try:
            model.load_state_dict(load_file(str(weights)))
            facts = json.loads((folder / "info.json").read_text())
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise InvalidModelError(
                f"cached domain encoder is unreadable ({e}); delete the folder to retrain", folder
            ) from e
        facts["cache_hit"] = True
    else:
        model, facts = train_domain_encoder(small, cfg, progress=progress, device=device)
        facts.update({"n_train": int(len(small)), "config": cfg})
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(weights) as tmp:
            save_file(model.state_dict(), str(tmp))
        atomic_write_text(folder / "info.json", json.dumps(facts, indent=2))
        facts["cache_hit"] = False
    facts["cache_path"] = str(folder)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return FeatureExtractor(model, f"domain-simclr({key[:8]})", cfg["input_px"], f"domain-{key}", facts)
