"""The full-image task: what a user does with a segmentation training set.

A small MONAI ``DynUNet`` (nnU-Net's architecture: two 3x3 conv + instance norm + leaky ReLU per level,
strided-conv downsampling, transposed-conv upsampling, no downsampling before the first level, so the
finest level runs at the working spacing) is trained on patches of whole images, lesion-free images
included, with nnU-Net's foreground oversampling: a third of each batch is centred on a lesion pixel
(a random lesion of a random image, when that image has one), the rest anywhere in the image. Dice +
cross-entropy with batch Dice, Adam, flips, and (by default) nnU-Net's "poly" learning-rate decay,
``lr * (1 - step / steps) ** 0.9``, which ends training at a small step size instead of wherever the
last full-size step left the weights. Also by default, nnU-Net's deep supervision: the two decoder levels
below full resolution get output heads of their own, and the loss is
``monai.losses.DeepSupervisionLoss`` over all three (weights 1, 1/2, 1/4). Without it, one seed in
three of the benchmark's networks never learnt calcification clusters (lesion Dice 0.00 against
0.74-0.84 for the other seeds); with it the same network scored 0.84 (BENCHMARKS.md). Inference runs
``monai.inferers.sliding_window_inference`` over the whole test image (Gaussian-weighted windows of
the training patch size).

Images are used at one working spacing (``spacing_mm``, 0.32 mm by default: the demo phantoms' own
spacing, where a 0.2-0.8 mm calcification speck covers 0.6-2.5 pixels, and a 96 px patch spans
31 mm). Scored per test image: Dice of the prediction -- the lesions (one lesion rule) of the
0.5-thresholded probability, so specks below the minimum lesion area are dropped as they are from
the truth -- against the truth (empty on empty = 1), each
lesion's Dice within its box grown by ``window_mm`` (other lesions' pixels left out), and the
detection candidates (:mod:`.stats`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from medsynth.metrics.utility.data import FullImage
from medsynth.metrics.utility.stats import dice_per_case
from medsynth.models.patches import default_lesion_rule, lesion_components


def model_name(filters: list[int], lr_schedule: str, deep_supervision: int, foreground_fraction: float) -> str:
    """The network and training in words, for the settings (every argument from ``utility.full``)."""
    ds = f", deep supervision ({deep_supervision} extra heads)" if deep_supervision else ""
    return (f"monai DynUNet(filters={list(filters)}, strides=[1,2,...], instance norm{ds}), DiceCE (batch Dice), "
            f"Adam ({lr_schedule} learning rate), {foreground_fraction:.0%} foreground oversampling, "
            "sliding-window inference")


def make_full_net(filters: list[int], deep_supervision: int = 0) -> torch.nn.Module:
    """The DynUNet; ``deep_supervision`` > 0 adds that many output heads on the decoder levels below full
    resolution (training mode only: in eval mode the network returns its full-resolution output)."""
    from monai.networks.nets import DynUNet

    n = len(filters)
    if not 0 <= deep_supervision <= n - 2:
        raise ValueError(f"deep_supervision must lie in [0, {n - 2}] for {n} levels, got {deep_supervision}")
    return DynUNet(
        spatial_dims=2, in_channels=1, out_channels=2, kernel_size=[3] * n, strides=[1] + [2] * (n - 1),
        upsample_kernel_size=[2] * (n - 1), filters=list(filters), norm_name="instance", res_block=False,
        deep_supervision=deep_supervision > 0, deep_supr_num=max(1, deep_supervision),
    )


class _PatchSampler:
    """Patches of ``patch_px`` from zero-padded images, a share of them centred on lesion pixels."""

    def __init__(self, images: list[FullImage], patch_px: int, foreground_fraction: float, seed: int) -> None:
        self.p = patch_px
        half = patch_px // 2
        self.padded = [np.pad(fi.image, half) for fi in images]
        self.labels = [np.pad(fi.label, half) for fi in images]
        self.shapes = [fi.image.shape for fi in images]
        # Lesion pixels per lesion (in unpadded coordinates), for foreground-centred patches.
        self.lesion_pixels = [
            [np.argwhere(les.full_mask()) for les in fi.lesions] for fi in images
        ]
        self.fg = foreground_fraction
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        n_fg = int(round(size * self.fg))
        xs, ys = [], []
        for b in range(size):
            i = int(self.rng.integers(len(self.padded)))
            h, w = self.shapes[i]
            if b >= size - n_fg and self.lesion_pixels[i]:
                pix = self.lesion_pixels[i][int(self.rng.integers(len(self.lesion_pixels[i])))]
                r, c = pix[int(self.rng.integers(len(pix)))]
            else:
                r, c = int(self.rng.integers(h)), int(self.rng.integers(w))
            # (r, c) is the patch centre; in padded coordinates the patch starts there.
            x = self.padded[i][r : r + self.p, c : c + self.p]
            y = self.labels[i][r : r + self.p, c : c + self.p]
            if self.rng.random() < 0.5:
                x, y = x[:, ::-1], y[:, ::-1]
            if self.rng.random() < 0.5:
                x, y = x[::-1], y[::-1]
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
        return (torch.from_numpy(np.stack(xs))[:, None].float(),
                torch.from_numpy(np.stack(ys).astype(np.int64))[:, None])


def full_loss(deep_supervision: int = 0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss of the network :func:`make_full_net` builds: Dice + CE with batch Dice, and
    with ``deep_supervision`` heads ``monai.losses.DeepSupervisionLoss`` over them (weights 1, 1/2, 1/4)."""
    from monai.losses import DeepSupervisionLoss, DiceCELoss

    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    if not deep_supervision:
        return loss_fn
    ds_loss = DeepSupervisionLoss(loss_fn, weight_mode="exp")
    # DynUNet stacks the heads' outputs (upsampled to full size) on dim 1 in training mode.
    return lambda out, y: ds_loss(list(torch.unbind(out, dim=1)), y)


LR_SCHEDULES = ("poly", "constant")
# Training precision of the whole-image network (after "auto" is resolved, medsynth.runtime): bf16 where the
# chip computes it natively, ~1.7x faster per step on the AVX512-BF16 CPU here (BENCHMARKS.md).
MIXED_PRECISION = ("no", "bf16")


def scheduled_lr(lr: float, step: int, steps: int, schedule: str = "poly") -> float:
    """The learning rate of step ``step`` (0-based) of ``steps``: nnU-Net's ``lr * (1 - step / steps) ** 0.9``
    for ``poly``, ``lr`` for ``constant``."""
    if schedule == "constant":
        return lr
    return lr * (1.0 - step / steps) ** 0.9


def train_full_segmenter(images: list[FullImage], steps: int, seed: int, patch_px: int, batch_size: int,
                         lr: float, foreground_fraction: float, filters: list[int],
                         device: torch.device | str = "cpu", lr_schedule: str = "poly",
                         deep_supervision: int = 0, mixed_precision: str = "no") -> torch.nn.Module:
    """Train the full-image DynUNet on patches of ``images`` for ``steps`` steps from seed ``seed`` on
    ``device`` (patches are sampled on the CPU, then moved). ``lr_schedule``: ``poly`` (nnU-Net's
    ``(1 - step / steps) ** 0.9`` decay) or ``constant``. ``deep_supervision``: extra output heads on the
    lower decoder levels, their losses weighted 1/2, 1/4 (0 = none). ``mixed_precision``: ``no`` (fp32) or
    ``bf16`` (the forward pass under bf16 autocast, the loss and the weights in fp32)."""
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {lr_schedule!r}")
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, got {mixed_precision!r}")
    device = torch.device(device)
    torch.manual_seed(seed)
    # channels_last: at most a few % less time per step on the CPU here, within run-to-run noise
    # (BENCHMARKS.md); convolution backward dominates either way.
    model = make_full_net(filters, deep_supervision).to(device, memory_format=torch.channels_last)
    sampler = _PatchSampler(images, patch_px, foreground_fraction, seed)
    loss_fn = full_loss(deep_supervision)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = scheduled_lr(lr, step, steps, lr_schedule)
        x, y = sampler.batch(batch_size)
        x, y = x.to(device).contiguous(memory_format=torch.channels_last), y.to(device)
        training_step(model, opt, loss_fn, x, y, mixed_precision)
    return model.eval()


def training_step(model: torch.nn.Module, opt: torch.optim.Optimizer,
                  loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                  mixed_precision: str = "no") -> None:
    """One optimiser step of the whole-image network: the forward pass under bf16 autocast for
    ``mixed_precision="bf16"``, the loss and the update in fp32."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=mixed_precision == "bf16"):
        out = model(x)
    loss = loss_fn(out.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


# Test-time mirroring: the flips of the image predicted and averaged (as the network trained on them).
MIRROR_AXES: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))


def predict_full(model: torch.nn.Module, image: np.ndarray, patch_px: int, overlap: float,
                 sw_batch_size: int = 8, mirror: bool = False) -> np.ndarray:
    """Lesion probability (rows, cols) of a whole image by sliding-window inference. ``mirror``:
    nnU-Net's test-time mirroring: the logits of the image and of its three flips (left-right, up-down,
    both), each flipped back, are averaged before the softmax (the network trained with these flips)."""
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    x = x.to(next(model.parameters()).device)
    flips = MIRROR_AXES if mirror else ((),)  # torch.flip over no axis is the identity
    with torch.no_grad():
        logits = sum(torch.flip(sliding_window_inference(torch.flip(x, axes), (patch_px, patch_px), sw_batch_size,
                                                         model, overlap=overlap, mode="gaussian"), axes)
                     for axes in flips) / len(flips)
    return torch.softmax(logits, dim=1)[0, 1].cpu().numpy()


@dataclass
class ImageScore:
    """What one test image contributes.

    Attributes:
        dice: Dice of the whole image (empty on empty = 1).
        lesion_dice: per true lesion, Dice within its window.
        lesion_score: per true lesion, the best score of a candidate touching it (0: missed).
        fp_scores: scores of the candidates that touch no true lesion.
    """

    dice: float
    lesion_dice: np.ndarray
    lesion_score: np.ndarray
    fp_scores: np.ndarray


def score_image(prob: np.ndarray, fi: FullImage, spacing_mm: float, candidate_threshold: float,
                window_mm: float) -> ImageScore:
    """Score one probability map against its image's lesions (see the module docstring)."""
    rule = default_lesion_rule()
    sp = (spacing_mm, spacing_mm)
    # The prediction is the lesions of the 0.5 map by the one lesion rule: specks below the minimum
    # lesion area are no lesion, in the prediction as in the truth.
    pred = np.zeros(prob.shape, dtype=bool)
    for les in lesion_components(prob > 0.5, sp, rule["merge_mm"], rule["min_lesion_mm2"]):
        r0, c0, r1, c1 = les.box
        pred[r0:r1, c0:c1] |= les.mask
    dice = float(dice_per_case(pred[None], fi.label[None])[0])
    truth = np.zeros(fi.label.shape, dtype=np.int32)
    for k, les in enumerate(fi.lesions):
        r0, c0, r1, c1 = les.box
        truth[r0:r1, c0:c1][les.mask] = k + 1
    lesion_score = np.zeros(len(fi.lesions))
    fp = []
    for cand in lesion_components(prob >= candidate_threshold, sp, rule["merge_mm"], rule["min_lesion_mm2"]):
        r0, c0, r1, c1 = cand.box
        score = float(prob[r0:r1, c0:c1][cand.mask].max())
        hit = np.unique(truth[r0:r1, c0:c1][cand.mask])
        hit = hit[hit > 0]
        if hit.size:
            lesion_score[hit - 1] = np.maximum(lesion_score[hit - 1], score)
        else:
            fp.append(score)
    grow = int(np.ceil(window_mm / spacing_mm))
    lesion_dice = np.zeros(len(fi.lesions))
    for k, les in enumerate(fi.lesions):
        r0, c0, r1, c1 = les.box
        r0, c0 = max(r0 - grow, 0), max(c0 - grow, 0)
        r1, c1 = min(r1 + grow, truth.shape[0]), min(c1 + grow, truth.shape[1])
        window = truth[r0:r1, c0:c1]
        other = (window > 0) & (window != k + 1)
        lesion_dice[k] = dice_per_case((pred[r0:r1, c0:c1] & ~other)[None], (window == k + 1)[None])[0]
    return ImageScore(dice, lesion_dice, lesion_score, np.asarray(fp, dtype=np.float64))


__all__ = ["LR_SCHEDULES", "MIRROR_AXES", "MIXED_PRECISION", "ImageScore", "full_loss", "make_full_net", "model_name",
           "predict_full", "scheduled_lr", "score_image", "train_full_segmenter", "training_step"]
