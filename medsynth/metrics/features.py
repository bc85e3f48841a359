"""Feature extractors that embed greyscale images for FID / KID / PRDC and for copy detection.

Every extractor maps images given as an ``(N, H, W)`` float array in [0, 1] to an ``(N, D)``
float32 array through :meth:`FeatureExtractor.embed`, resizing to what its network needs. Four kinds,
chosen by :func:`get_extractor`:

- ``"random"``: a fixed, randomly initialised CNN (Naeem et al. 2020 show random embeddings are
  informative outside natural images). Its weights come from a NumPy ``Generator`` (PCG64, seeded),
  not from torch's RNG, so they are bit-identical on every machine and torch version.
- ``"domain"`` (default for evaluation): a small CNN encoder trained self-supervised (SimCLR,
  NT-Xent loss) on the real set with flips, shifts of a few pixels, slight crops, intensity
  scaling and light noise as augmentations, so that its embedding is invariant to them -- which is
  what copy detection needs (Dar et al.). Flip invariance is made exact by averaging the embedding
  over the four flips. The trained encoder is cached under ``cache_dir`` keyed by a content hash of
  the real images and the training config, so it is trained once per real set.
- ``"inception:PATH"``: the FID Inception-v3 (TensorFlow 2015-12-05 weights, as ported by
  pytorch-fid in ``pt_inception-2015-12-05-6726825d.pth``), implemented here without torchvision;
  the 2048-d pool features. The weights are read from PATH only -- nothing is downloaded.
- any ``nn.Module`` mapping ``(N, 1, H, W)`` float in [0, 1] to ``(N, D)``.

:class:`ExtractorModule` wraps an extractor as an ``nn.Module`` with ``num_features`` so that it
can be passed as torchmetrics' ``feature=`` argument.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medsynth.errors import ConfigError, InvalidImageError, InvalidModelError, MissingWeightsError
from medsynth.io.writers.atomic import atomic_path, atomic_write_text
from medsynth.utils import progress_bar

DEFAULT_CACHE_DIR = Path("~/.cache/medsynth/features")


def default_cache_dir() -> Path:
    """Where trained encoders and real-set features are cached: ``$MEDSYNTH_CACHE_DIR/features`` when
    that variable is set (tests and CI use a private folder), else ``~/.cache/medsynth/features``."""
    env = os.environ.get("MEDSYNTH_CACHE_DIR")
    return (Path(env) / "features") if env else DEFAULT_CACHE_DIR.expanduser()
FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"


# --------------------------------------------------------------------------------------------------
# The extractor every metric talks to


class FeatureExtractor:
    """An embedding network with its input convention.

    Args:
        module: maps ``(N, 1, input_px, input_px)`` float32 in [0, 1] to ``(N, D)``.
        name: how results name the features (e.g. ``"random-cnn-v1"``).
        input_px: side the images are resized to before ``module``; None keeps their size.
        fingerprint: identifies the weights (caches of real-set features are keyed by it).
        info: facts for reports (training time, cache hit, weights file, ...).
    """

    def __init__(
        self,
        module: nn.Module,
        name: str,
        input_px: int | None,
        fingerprint: str,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.module = module.eval()
        self.name = name
        self.input_px = input_px
        self.fingerprint = fingerprint
        self.info = dict(info or {})
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        """Feature dimension D."""
        if self._dim is None:
            px = self.input_px or 64
            with torch.no_grad():
                self._dim = int(self.module(torch.zeros(2, 1, px, px)).shape[-1])
        return self._dim

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Resize a ``(N, 1, H, W)`` float batch to the network's input size (anti-aliased)."""
        if self.input_px is not None and tuple(x.shape[-2:]) != (self.input_px, self.input_px):
            down = x.shape[-1] > self.input_px
            x = F.interpolate(
                x, size=(self.input_px, self.input_px), mode="bilinear", align_corners=False, antialias=down
            )
        return x

    def embed(self, images: np.ndarray, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embed ``(N, H, W)`` images in [0, 1]; returns ``(N, D)`` float32.

        Raises:
            InvalidImageError: the array is not (N, H, W), is empty, or holds values outside [0, 1].
        """
        from medsynth.metrics.images import check_image_array

        arr = check_image_array(images, what=f"images for the {self.name} features")
        out = []
        with progress_bar(progress) as bar, torch.no_grad():
            task = bar.add_task(f"features ({self.name})", total=len(arr))
            for start in range(0, len(arr), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(arr[start : start + batch_size]))[:, None]
                f = self.module(self.prepare(x))
                if f.ndim != 2 or f.shape[0] != x.shape[0]:
                    raise InvalidModelError(
                        f"feature network {self.name} returned shape {tuple(f.shape)}, expected (N, D)"
                    )
                out.append(f.float().cpu().numpy())
                bar.advance(task, x.shape[0])
        return np.concatenate(out).astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return f"FeatureExtractor(name={self.name!r}, input_px={self.input_px}, fingerprint={self.fingerprint!r})"


class ExtractorModule(nn.Module):
    """An extractor as torchmetrics' ``feature=`` module: images in, ``(N, D)`` features out.

    Accepts ``(N, C, H, W)`` or ``(N, H, W)`` tensors, uint8 in [0, 255] (torchmetrics'
    ``normalize=False``) or float in [0, 1] (``normalize=True``); colour channels are averaged to
    grey. ``num_features`` spares torchmetrics a dummy forward pass.
    """

    def __init__(self, extractor: FeatureExtractor) -> None:
        super().__init__()
        self.extractor = extractor
        self.net = extractor.module  # registered so .to()/.eval() reach it
        self.num_features = extractor.dim

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        x = imgs.float() / 255.0 if imgs.dtype == torch.uint8 else imgs.float()
        if x.ndim == 3:
            x = x[:, None]
        if x.shape[1] != 1:
            x = x.mean(dim=1, keepdim=True)
        with torch.no_grad():
            return self.net(self.extractor.prepare(x.clamp(0.0, 1.0)))


# --------------------------------------------------------------------------------------------------
# "random": a seeded random CNN with NumPy-generated weights

_RANDOM_CHANNELS = (16, 32, 64, 128, 128)


class RandomCNN(nn.Module):
    """Five 3x3 stride-2 conv layers with ReLU; features = global mean of the last two layers (256-d).

    Weights are He-normal from ``numpy.random.default_rng(seed)`` (bit-identical everywhere); biases 0.
    """

    def __init__(self, seed: int = 0) -> None:
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


def weights_digest(module: nn.Module) -> str:
    """SHA-256 (hex) of a module's float32 parameters and buffers, in state-dict order."""
    h = hashlib.sha256()
    for key, value in module.state_dict().items():
        h.update(key.encode())
        h.update(np.ascontiguousarray(value.detach().cpu().numpy()).tobytes())
    return h.hexdigest()


def random_extractor(seed: int = 0, input_px: int = 128) -> FeatureExtractor:
    """The ``"random"`` extractor: :class:`RandomCNN` seeded with ``seed`` at ``input_px``."""
    net = RandomCNN(seed)
    return FeatureExtractor(
        net, f"random-cnn(seed={seed})", input_px, "random-" + weights_digest(net)[:16], {"seed": seed}
    )


# --------------------------------------------------------------------------------------------------
# "domain": a small SimCLR encoder trained on the real set

DOMAIN_DEFAULTS: dict[str, Any] = {
    "input_px": 64,
    "width": 16,
    "steps": 200,
    "batch_size": 64,
    "lr": 1e-3,
    "temperature": 0.2,
    "seed": 0,
    "max_shift_px": 4,
    "min_crop": 0.85,
    "intensity": 0.2,
    "noise": 0.03,
}


class DomainEncoder(nn.Module):
    """Small CNN: four stride-2 conv blocks with GroupNorm, global average pool (4*width-d).

    ``forward`` returns the L2-normalised embedding averaged over the four flips of the input, so
    flipped copies embed identically; ``backbone`` is the plain feature used in training.
    """

    def __init__(self, width: int = 32) -> None:
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
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def train_domain_encoder(
    images: np.ndarray, config: dict[str, Any] | None = None, progress: bool = False
) -> tuple[DomainEncoder, dict[str, Any]]:
    """Train a :class:`DomainEncoder` with SimCLR on ``images`` ((N, S, S) in [0, 1] at input_px).

    Returns:
        (encoder in eval mode, training facts: steps, seconds, final loss).
    """
    cfg = {**DOMAIN_DEFAULTS, **(config or {})}
    torch.manual_seed(cfg["seed"])  # model init; data order and augmentations use `gen`
    gen = torch.Generator().manual_seed(cfg["seed"])
    model = DomainEncoder(cfg["width"])
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
            z = model.projection(model.backbone(torch.cat([v1, v2])))
            loss = nt_xent(z[:batch], z[batch:], cfg["temperature"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_value = float(loss.detach())
            bar.advance(task)
    model.eval()
    return model, {
        "steps": cfg["steps"],
        "train_seconds": round(time.perf_counter() - start, 2),
        "final_loss": loss_value,
    }


def _resize_stack(images: np.ndarray, px: int) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    if tuple(x.shape[-2:]) != (px, px):
        x = F.interpolate(x, size=(px, px), mode="bilinear", align_corners=False, antialias=x.shape[-1] > px)
    return x[:, 0].clamp(0, 1).numpy()


def domain_extractor(
    real: Any,
    cache_dir: str | Path | None = None,
    config: dict[str, Any] | None = None,
    progress: bool = False,
) -> FeatureExtractor:
    """The ``"domain"`` extractor: load the encoder cached for ``real`` or train and cache it.

    Args:
        real: the real images, (N, H, W) in [0, 1] (or anything ``load_image_set`` reads).
        cache_dir: where trained encoders live (default ``~/.cache/medsynth/features``).
        config: overrides of :data:`DOMAIN_DEFAULTS`.
        progress: show a progress bar while training.
    """
    from safetensors.torch import load_file, save_file

    from medsynth.metrics.images import check_image_array, content_hash, load_image_set

    unknown = set(config or {}) - set(DOMAIN_DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown domain-encoder setting(s) {sorted(unknown)}; known: {sorted(DOMAIN_DEFAULTS)}")
    cfg = {**DOMAIN_DEFAULTS, **(config or {})}
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
        model, facts = train_domain_encoder(small, cfg, progress=progress)
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


# --------------------------------------------------------------------------------------------------
# "inception:PATH": the FID Inception-v3, written after pytorch-fid's FIDInception blocks


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm (eps 1e-3) + ReLU, named ``conv`` / ``bn`` as in the weights file."""

    def __init__(self, cin: int, cout: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pool leaves the zero padding out of the mean (FID Inception quirk).
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_tf_avg_pool(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionC(nn.Module):
    def __init__(self, cin: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_tf_avg_pool(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionE(nn.Module):
    """Inception-E; ``pool="avg"`` for Mixed_7b (TF average pool), ``"max"`` for Mixed_7c.

    The FID network's last block max-pools where the paper average-pools (a quirk of the 2015
    TensorFlow graph that pytorch-fid reproduces); features only match the reference with it.
    """

    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = _tf_avg_pool(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 with the weights file's module names; ``forward`` gives pool3 (N, 2048).

    Input: (N, 1 or 3, H, W) in [0, 1]; it is resized to 299x299 (bilinear), grey is repeated to
    RGB and values are scaled to [-1, 1], as pytorch-fid does. ``fc`` (1008 classes) is kept only
    so that the weights file loads strictly; it is not used for features.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, pool="avg")
        self.Mixed_7c = FIDInceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2.0 * x - 1.0
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))


_MISSING_WEIGHTS_HELP = (
    "FID-Inception needs the standard weights file {name} (the TensorFlow 2015-12-05 Inception "
    "ported by pytorch-fid, also used by torch-fidelity). medsynth never downloads it: fetch it on "
    "a machine with internet access from the pytorch-fid releases page (fid_weights), copy it here "
    "and pass --features inception:/path/to/{name}"
)


def inception_extractor(path: str | Path | None) -> FeatureExtractor:
    """The ``"inception:PATH"`` extractor, weights read from ``path`` only.

    Raises:
        MissingWeightsError: no path given, or the file does not exist.
        InvalidModelError: the file is not a state dict of the FID Inception (names or shapes differ).
    """
    if path is None or str(path).strip() == "":
        raise MissingWeightsError(_MISSING_WEIGHTS_HELP.format(name=FID_WEIGHTS_FILE))
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(
            "weights file not found. " + _MISSING_WEIGHTS_HELP.format(name=FID_WEIGHTS_FILE), path
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types (pickle, zip, runtime errors)
        raise InvalidModelError(f"cannot read the Inception weights ({type(e).__name__}: {e})", path) from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InvalidModelError(f"expected a state dict, got a {type(state).__name__}", path)
    net = FIDInceptionV3()
    expected = net.state_dict()
    # BatchNorm's num_batches_tracked counters are absent from the 2018 file and unused in eval.
    wanted = {k for k in expected if not k.endswith("num_batches_tracked")}
    given = {k for k in state if not k.endswith("num_batches_tracked")}
    if wanted != given:
        missing, extra = sorted(wanted - given), sorted(given - wanted)
        raise InvalidModelError(
            f"not the FID Inception state dict: {len(missing)} missing key(s) {missing[:3]}, "
            f"{len(extra)} unexpected key(s) {extra[:3]}",
            path,
        )
    bad = [k for k in wanted if tuple(state[k].shape) != tuple(expected[k].shape)]
    if bad:
        k = bad[0]
        raise InvalidModelError(
            f"{len(bad)} tensor(s) of the wrong shape, e.g. {k}: {tuple(state[k].shape)} "
            f"instead of {tuple(expected[k].shape)}",
            path,
        )
    net.load_state_dict({k: state[k] for k in wanted}, strict=False)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return FeatureExtractor(
        net, "fid-inception-v3", None, "inception-" + weights_digest(net)[:16], {"weights": str(path)}
    )


# --------------------------------------------------------------------------------------------------
# The factory


def get_extractor(
    spec: str | nn.Module | FeatureExtractor,
    real: Any = None,
    cache_dir: str | Path | None = None,
    config: dict[str, Any] | None = None,
    progress: bool = False,
) -> FeatureExtractor:
    """Build the extractor ``spec`` names.

    Args:
        spec: ``"random"``, ``"domain"``, ``"inception:PATH"``, an ``nn.Module`` mapping
            ``(N, 1, H, W)`` in [0, 1] to ``(N, D)`` (an ``input_px`` attribute, when present, sets
            the size images are resized to), or a ready :class:`FeatureExtractor`.
        real: the real images ((N, H, W) in [0, 1], or a dataset); required for ``"domain"``.
        cache_dir: cache of trained domain encoders (default ``~/.cache/medsynth/features``).
        config: settings of the extractor (``"domain"``: overrides of :data:`DOMAIN_DEFAULTS`;
            ``"random"``: ``seed``, ``input_px``).
        progress: show progress bars.

    Raises:
        ConfigError: unknown spec, or ``"domain"`` without real images.
        MissingWeightsError: ``"inception"`` without a weights file.
    """
    if isinstance(spec, FeatureExtractor):
        return spec
    if isinstance(spec, nn.Module):
        digest = weights_digest(spec)[:16]
        input_px = getattr(spec, "input_px", None)
        return FeatureExtractor(spec, f"user:{type(spec).__name__}", input_px, f"user-{type(spec).__name__}-{digest}")
    if not isinstance(spec, str):
        raise ConfigError(
            f"features must be 'domain', 'random', 'inception:PATH' or an nn.Module, got {type(spec).__name__}"
        )
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "random":
        return random_extractor(**(config or {}))
    if kind == "domain":
        if real is None:
            raise ConfigError("the 'domain' features are trained on the real set: pass real=...")
        return domain_extractor(real, cache_dir=cache_dir, config=config, progress=progress)
    if kind == "inception":
        return inception_extractor(arg or None)
    raise ConfigError(f"unknown features {spec!r}; choose 'domain', 'random' or 'inception:PATH'")
