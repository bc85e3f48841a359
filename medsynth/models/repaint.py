"""RePaint (Lugmayr et al. 2022): training-free inpainting with an *unconditional* diffusion model,
via diffusers' ``RePaintScheduler``. Kept as a baseline to compare with the mask-conditioned
model; it needs many more UNet evaluations (jumps back in time and resamples).

Train an unconditional model with ``train(..., conditional=False)``; ``LesionInpainter`` then
samples with this function automatically.
"""

from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def repaint_inpaint(
    unet: torch.nn.Module,
    scheduler_config: dict[str, Any],
    images: torch.Tensor,
    masks: torch.Tensor,
    generator: torch.Generator | list[torch.Generator] | None = None,
    *,
    num_inference_steps: int,
    jump_length: int,
    jump_n_sample: int,
    eta: float = 0.0,
) -> torch.Tensor:
    """Inpaint with RePaint.

    Args:
        unet: an unconditional denoiser (1 input channel, ε-prediction).
        scheduler_config: the training noise schedule (num_train_timesteps, beta_schedule, ...).
        images: (B,1,H,W) known patches in [-1, 1].
        masks: (B,1,H,W) float, 1 where to paint (medsynth's convention; RePaint's is the inverse).
        generator: one generator, or one per sample (then each sample's result is independent of
            the batch).
        num_inference_steps, jump_length, jump_n_sample, eta: RePaint's settings (the paper uses
            250, 10, 10; medsynth's defaults are the ``model.repaint`` section of ``configs/train.yaml``).

    Returns:
        (B,1,H,W) samples in [-1, 1] (the known region is re-imposed by the caller).
    """
    from diffusers import RePaintScheduler
    from diffusers.utils.torch_utils import randn_tensor

    cfg = {k: v for k, v in scheduler_config.items() if k in ("num_train_timesteps", "beta_schedule")}
    scheduler = RePaintScheduler(**cfg, eta=eta)
    scheduler.set_timesteps(num_inference_steps, jump_length, jump_n_sample, device=images.device)
    keep = 1.0 - masks  # RePaintScheduler: 1 = known pixel
    x = randn_tensor(tuple(images.shape), generator=generator, device=images.device, dtype=images.dtype)
    t_last = scheduler.timesteps[0] + 1
    for t in scheduler.timesteps:
        if t < t_last:
            eps = unet(x, t).sample
            x = scheduler.step(eps, t, x, images, keep, generator).prev_sample
        else:
            # A jump back: re-noise to the earlier, noisier timestep and sample it again.
            x = scheduler.undo_step(x, t_last, generator)
        t_last = t
    return x
