"""The crop task: a small MONAI ``UNet`` (Dice + cross-entropy) trained on lesion-centred crops.

Crops are cut at 1.5 x ``roi_mm`` around each lesion and resampled to 1.5 x ``roi_px`` (0.5 mm/px for
the defaults 32 mm / 64 px); training takes random ``roi_px`` windows of them with flips, so the lesion
is not always centred; testing scores the centre window of each real test crop.
"""

from __future__ import annotations

import numpy as np
import torch

MODEL_NAME = "monai UNet(channels=(16,32,64,128), strides=(2,2,2), num_res_units=1), DiceCELoss, Adam"


def make_crop_unet() -> torch.nn.Module:
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=2, in_channels=1, out_channels=2, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1
    )


def train_crop_segmenter(
    images: np.ndarray, masks: np.ndarray, steps: int, seed: int, roi_px: int, batch_size: int = 16, lr: float = 2e-3,
    device: torch.device | str = "cpu",
) -> torch.nn.Module:
    """Train the crop UNet on crops (N, B, B) for ``steps`` steps from seed ``seed`` on ``device``
    (batches are drawn on the CPU from the seeded generator, then moved)."""
    from monai.losses import DiceCELoss

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = make_crop_unet().to(device)
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


def predict_crops(model: torch.nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Binary lesion predictions (N, H, W) of a trained crop UNet."""
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[s : s + batch_size]))[:, None]
            x = x.to(next(model.parameters()).device)
            out.append(model(x).argmax(1).cpu().numpy().astype(bool))
    return np.concatenate(out)


def centre_window(crops: np.ndarray, roi_px: int) -> np.ndarray:
    """The centre ``roi_px`` window of (N, B, B) crops."""
    off = (crops.shape[-1] - roi_px) // 2
    return np.ascontiguousarray(crops[:, off : off + roi_px, off : off + roi_px])


__all__ = ["MODEL_NAME", "centre_window", "make_crop_unet", "predict_crops", "train_crop_segmenter"]
