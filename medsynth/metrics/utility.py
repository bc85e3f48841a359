"""Downstream utility: does adding synthetic data help a segmentation model on real test data?

The same small MONAI ``UNet`` (Dice + cross-entropy loss) is trained on lesion-centred crops from
(a) the real training set only, (b) real + synthetic, (c) synthetic only -- with the same number of
steps, batch size and seeds -- and scored by Dice on crops of a held-out real test set. Downstream
task performance is what users of synthetic data care about; it is the "gold standard" next to the
distribution metrics of :mod:`medsynth.metrics.fidelity`.

Crops: one per connected lesion at ``roi_mm * 1.5`` around the lesion, resampled to
``roi_px * 1.5`` (so 0.5 mm/px for the defaults of 32 mm / 64 px); training takes random
``roi_px`` windows of them (the lesion is not always centred) with flips, testing the centre window.
Dice is per test crop (MONAI's ``compute_dice``; 1 when both prediction and truth are empty); the
reported CI is a 95% percentile bootstrap (``scipy.stats.bootstrap``) over test crops of the
seed-averaged per-crop Dice. Settings not given as arguments come from the ``utility`` section and
``roi_mm`` / ``roi_px`` of ``configs/evaluate.yaml``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsynth.errors import InvalidDatasetError
from medsynth.io.writers.atomic import atomic_write_text

ARMS = ("real", "real+synthetic", "synthetic")


@dataclass
class UtilityResult:
    """Dice on the real test set of a UNet trained on each data arm.

    Attributes:
        arms: per arm ``{"dice_mean", "ci95": [lo, hi], "seed_means": [...], "n_train"}``.
        n_test: number of test crops.
        settings: steps, seeds, batch size, crop size, model.
        per_case: per arm, the seed-averaged Dice of each test crop (for plots; not in the JSON).
    """

    arms: dict[str, dict[str, Any]]
    n_test: int
    settings: dict[str, Any]
    per_case: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"utility": {"arms": self.arms, "n_test": self.n_test, "settings": self.settings}}

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (atomically); returns the path."""
        return atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2))

    def save_html(self, path: str | Path) -> Path:
        """Write the self-contained HTML page of the result (atomically); returns the path."""
        from medsynth.metrics.report import utility_html

        return atomic_write_text(Path(path), utility_html(self, full_page=True))

    def _repr_html_(self) -> str:
        from medsynth.metrics.report import utility_html

        return utility_html(self)


def _crops(data: Any, what: str, roi_mm: float, roi_px: int, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    from medsynth.metrics.images import load_image_set

    big = int(round(roi_px * 1.5))
    s = load_image_set(data, roi_mm=roi_mm * 1.5, roi_px=big, with_rois=True, what=what, progress=progress)
    if s.rois is None or len(s.rois) == 0:
        raise InvalidDatasetError(f"{what} set has no lesion masks; the utility test needs masks", s.source)
    return s.rois.astype(np.float32), s.roi_masks.astype(bool)


def dice_per_case(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Dice of binary (N, H, W) predictions with MONAI's ``compute_dice``; 1 where both are empty.

    MONAI computes in float32; the values are returned as float64.
    """
    from monai.metrics import compute_dice

    y_pred = torch.from_numpy(np.ascontiguousarray(pred, dtype=bool))[:, None]
    y = torch.from_numpy(np.ascontiguousarray(truth, dtype=bool))[:, None]
    dice = compute_dice(y_pred, y, include_background=True, ignore_empty=False)
    return dice[:, 0].double().cpu().numpy()


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> list[float]:
    """Percentile 95% bootstrap confidence interval of the mean (``scipy.stats.bootstrap``).

    With fewer than two values there is nothing to resample: the interval is the value itself.
    """
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return [float(values.mean())] * 2
    ci = bootstrap(
        (values,), np.mean, n_resamples=n_boot, confidence_level=0.95, method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return [float(ci.low), float(ci.high)]


def _make_unet() -> torch.nn.Module:
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=2, in_channels=1, out_channels=2, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1
    )


def train_segmenter(
    images: np.ndarray, masks: np.ndarray, steps: int, seed: int, roi_px: int, batch_size: int = 16, lr: float = 2e-3,
    device: torch.device | str = "cpu",
) -> torch.nn.Module:
    """Train the utility UNet on crops (N, B, B) for ``steps`` steps from seed ``seed`` on ``device``
    (batches are drawn on the CPU from the seeded generator and moved there)."""
    from monai.losses import DiceCELoss

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = _make_unet().to(device)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x_all = torch.from_numpy(images)[:, None]
    y_all = torch.from_numpy(masks.astype(np.int64))[:, None]
    n, big = len(images), images.shape[-1]
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, n, (min(batch_size, max(n, 2)),), generator=gen)
        # Random roi_px window: the lesion moves around the crop, as it would in a sliding window.
        r0 = torch.randint(0, big - roi_px + 1, (len(idx),), generator=gen)
        c0 = torch.randint(0, big - roi_px + 1, (len(idx),), generator=gen)
        x = torch.stack([x_all[i, :, r : r + roi_px, c : c + roi_px] for i, r, c in zip(idx, r0, c0)])
        y = torch.stack([y_all[i, :, r : r + roi_px, c : c + roi_px] for i, r, c in zip(idx, r0, c0)])
        if torch.rand(1, generator=gen) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        if torch.rand(1, generator=gen) < 0.5:
            x, y = x.flip(-2), y.flip(-2)
        x, y = x.to(device), y.to(device)
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def predict(model: torch.nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Binary lesion predictions (N, H, W) of a trained utility UNet."""
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[s : s + batch_size]))[:, None]
            x = x.to(next(model.parameters()).device)
            out.append(model(x).argmax(1).cpu().numpy().astype(bool))
    return np.concatenate(out)


def evaluate_utility(
    real_train: Any,
    synthetic: Any,
    real_test: Any,
    steps: int | None = None,
    seeds: int | None = None,
    batch_size: int | None = None,
    roi_mm: float | None = None,
    roi_px: int | None = None,
    arms: tuple[str, ...] = ARMS,
    progress: bool = True,
    *,
    config: str | Path | dict[str, Any] | None = None,
    device: str | None = None,
) -> UtilityResult:
    """Train the utility UNet on each arm and score Dice on the real test set.

    Args:
        real_train, synthetic, real_test: anything :func:`medsynth.metrics.images.load_image_set`
            reads (dataset path, Dataset, ImageSet with ROIs); each needs lesion masks.
        steps: optimisation steps per model (the same for every arm).
        seeds: number of seeds (0..seeds-1) per arm.
        batch_size: crops per step.
        roi_mm, roi_px: physical size and pixels of the scored crops.
        arms: which of ``"real"``, ``"real+synthetic"``, ``"synthetic"`` to train.
        progress: show a progress bar over the trainings.
        config: a path or dict laid over ``configs/evaluate.yaml``; ``steps``, ``seeds`` and
            ``batch_size`` not given come from its ``utility`` section, ``roi_mm`` and ``roi_px``
            from its top level.
        device: where the UNets train and predict (``"auto"``: CUDA when present); None: ``device``
            of the config.

    Raises:
        InvalidDatasetError: a set is empty or has no lesion masks.
        ConfigError: steps or seeds below 1, an unknown arm or setting.
    """
    from medsynth.config import load_config
    from medsynth.errors import ConfigError
    from medsynth.utils import progress_bar

    cfg = load_config(config, kind="evaluate", overrides={
        "utility.steps": steps, "utility.seeds": seeds, "utility.batch_size": batch_size,
        "roi_mm": roi_mm, "roi_px": roi_px, "device": device,
    })
    from medsynth.runtime import resolve_device

    device = resolve_device(cfg["device"])
    steps, seeds, batch_size = (cfg["utility"][k] for k in ("steps", "seeds", "batch_size"))
    roi_mm, roi_px = cfg["roi_mm"], cfg["roi_px"]
    if steps < 1 or seeds < 1:
        raise ConfigError(f"steps and seeds must be >= 1, got steps={steps}, seeds={seeds}")
    bad = [a for a in arms if a not in ARMS]
    if bad:
        raise ConfigError(f"unknown utility arm(s) {bad}; known: {list(ARMS)}")
    x_real, m_real = _crops(real_train, "real-train", roi_mm, roi_px, progress)
    x_syn, m_syn = _crops(synthetic, "synthetic", roi_mm, roi_px, progress)
    x_test, m_test = _crops(real_test, "real-test", roi_mm, roi_px, progress)
    off = (x_test.shape[-1] - roi_px) // 2
    x_test = np.ascontiguousarray(x_test[:, off : off + roi_px, off : off + roi_px])
    m_test = np.ascontiguousarray(m_test[:, off : off + roi_px, off : off + roi_px])
    data = {
        "real": (x_real, m_real),
        "real+synthetic": (np.concatenate([x_real, x_syn]), np.concatenate([m_real, m_syn])),
        "synthetic": (x_syn, m_syn),
    }
    results: dict[str, dict[str, Any]] = {}
    per_case: dict[str, np.ndarray] = {}
    start = time.perf_counter()
    with progress_bar(progress) as bar:
        task = bar.add_task("training utility UNets", total=len(arms) * seeds)
        for arm in arms:
            x, m = data[arm]
            dices = []
            for seed in range(seeds):
                model = train_segmenter(x, m, steps, seed, roi_px, batch_size, device=device)
                dices.append(dice_per_case(predict(model, x_test), m_test))
                bar.advance(task)
            d = np.stack(dices)  # (seeds, n_test)
            per_case[arm] = d.mean(0)
            results[arm] = {
                "dice_mean": float(d.mean()),
                "ci95": bootstrap_ci(d.mean(0)),
                "seed_means": [float(v) for v in d.mean(1)],
                "n_train": int(len(x)),
            }
    settings = {
        "steps": steps,
        "seeds": seeds,
        "batch_size": batch_size,
        "roi_mm": roi_mm,
        "roi_px": roi_px,
        "model": "monai UNet(channels=(16,32,64,128), strides=(2,2,2), num_res_units=1), DiceCELoss, Adam 2e-3",
        "seconds": round(time.perf_counter() - start, 1),
        "device": str(device),
    }
    return UtilityResult(arms=results, n_test=int(len(x_test)), settings=settings, per_case=per_case)
