"""LesionInpainter: a small pixel-space diffusion model that paints a lesion inside a mask on a patch
of breast tissue, conditioned on the tissue around it.

The UNet (diffusers ``UNet2DModel``) sees three channels, the layout of diffusers' inpainting UNets
in pixel space: [noisy patch, mask, patch with the masked region blanked]. It is trained with a
DDPM (cosine) noise schedule to predict the noise, the loss weighted up inside the (dilated) mask.
Sampling uses DDIM with "trailing" timesteps (DPM-Solver++ optional); after every step the known
region, noised to the current level, is put back, and at the end it is restored exactly, blended
into the painted lesion across a feathered edge. An unconditional model (``conditional: false``)
is sampled with RePaint instead (see :mod:`medsynth.models.repaint`).

The config *is* the constructor: ``LesionInpainter(config)`` lays ``config`` over the ``model``
section of ``configs/train.yaml`` (the one place of its defaults), and the complete config is saved
as ``config.json`` beside the weights (:mod:`medsynth.models.pretrained`), so a saved model does not
change when a default does. LoRA adapters are attached with :meth:`LesionInpainter.load_adapter`
(:mod:`medsynth.models.adapters`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medsynth.config import load_config
from medsynth.errors import InvalidImageError, InvalidMaskError, InvalidModelError
from medsynth.models import adapters
from medsynth.models.patches import check_image_and_mask, crop_roi, feather_weights, paste_roi
from medsynth.models.pretrained import PretrainedMixin
from medsynth.utils import derive_seed


def make_config(**overrides: Any) -> dict[str, Any]:
    """The complete model config: the ``model`` section of ``configs/train.yaml`` with ``overrides``
    laid over it (nested ``repaint`` settings too).

    Raises:
        ConfigError: an override names no model setting.
    """
    return load_config({"model": overrides}, kind="train")["model"]


def build_unet(config: dict[str, Any]):
    """A ``UNet2DModel`` for ``config`` (3 input channels when conditional, 1 otherwise)."""
    from diffusers import UNet2DModel

    blocks = list(config["block_out_channels"])
    n = len(blocks)
    attn_last = bool(config["attention"])
    down = tuple("AttnDownBlock2D" if (attn_last and i == n - 1) else "DownBlock2D" for i in range(n))
    up = tuple("AttnUpBlock2D" if (attn_last and i == 0) else "UpBlock2D" for i in range(n))
    return UNet2DModel(
        sample_size=int(config["image_size"]),
        in_channels=3 if config["conditional"] else 1,
        out_channels=1,
        block_out_channels=tuple(blocks),
        layers_per_block=int(config["layers_per_block"]),
        down_block_types=down,
        up_block_types=up,
        norm_num_groups=int(config["norm_num_groups"]),
        add_attention=attn_last,
        num_class_embeds=2 if (config["conditional"] and config["class_conditional"]) else None,
    )


def scheduler_config(config: dict[str, Any]) -> dict[str, Any]:
    """The diffusers noise-scheduler settings the model was trained with."""
    return {
        "num_train_timesteps": int(config["num_train_timesteps"]),
        "beta_schedule": config["beta_schedule"],
        "prediction_type": config["prediction_type"],
    }


def make_noise_scheduler(config: dict[str, Any]):
    """The DDPM scheduler used in training (adds noise; holds the alphas)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**scheduler_config(config))


def dilate(mask: torch.Tensor, px: int) -> torch.Tensor:
    """Square dilation of a (B,1,H,W) float mask by ``px`` pixels."""
    if px <= 0:
        return mask
    return F.max_pool2d(mask, kernel_size=2 * px + 1, stride=1, padding=px)


def unet_input(noisy: torch.Tensor, mask: torch.Tensor, x0: torch.Tensor, conditional: bool) -> torch.Tensor:
    """The UNet's input: [noisy, mask, known image with the mask blanked] or just the noisy patch."""
    if not conditional:
        return noisy
    return torch.cat([noisy, mask, x0 * (1.0 - mask)], dim=1)


def diffusion_loss(
    unet: torch.nn.Module,
    noise_scheduler: Any,
    x0: torch.Tensor,
    mask: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    config: dict[str, Any],
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample training loss, shape (B,): noise-prediction MSE weighted up inside the mask.

    Args:
        unet: the denoiser.
        noise_scheduler: a DDPM scheduler (``add_noise``).
        x0: (B,1,H,W) clean patches in [-1, 1].
        mask: (B,1,H,W) float {0,1}.
        noise: (B,1,H,W) standard normal.
        timesteps: (B,) integer timesteps.
        config: the model config (conditional, mask_loss_weight, mask_dilate_px).
        labels: (B,) class labels (1 lesion, 0 healthy tissue); lesion when None.
    """
    noisy = noise_scheduler.add_noise(x0, noise, timesteps)
    pred = unet(unet_input(noisy, mask, x0, config["conditional"]), timesteps,
                class_labels=class_labels(config, x0.shape[0], x0.device, labels)).sample
    weight = 1.0 + (float(config["mask_loss_weight"]) - 1.0) * dilate(mask, int(config["mask_dilate_px"]))
    err = (pred.float() - noise.float()) ** 2
    return (err * weight).flatten(1).sum(1) / weight.flatten(1).sum(1)


def class_labels(config: dict[str, Any], batch: int, device: torch.device,
                 labels: torch.Tensor | None = None) -> torch.Tensor | None:
    """The UNet's class labels: None for a model without them, else ``labels`` or all 1 (lesion)."""
    if not (config["conditional"] and config["class_conditional"]):
        return None
    if labels is None:
        return torch.ones(batch, dtype=torch.long, device=device)
    return labels.to(device=device, dtype=torch.long)


def check_generator_device(generator: Any, device: torch.device) -> None:
    """Refuse a generator the sampler cannot draw from for a model on ``device``.

    Every draw of the samplers goes through diffusers' ``randn_tensor`` with ``device=`` the model's:
    a CPU generator draws on the CPU and the noise is moved (the same noise on every device), a
    generator on the model's device draws there. A generator on another device cannot draw
    tensors for this one.

    Raises:
        ValueError: naming both devices.
    """
    gen_device = getattr(generator, "device", None)
    if gen_device is None:
        return
    gen_device = torch.device(gen_device)
    if gen_device.type == "cpu":
        return
    same = gen_device.type == device.type and (gen_device.index or 0) == (device.index or 0)
    if not same:
        raise ValueError(f"the generator is on {gen_device} but the model is on {device}: pass a generator on "
                         f"{device} or on the CPU (or move the model with .to({str(gen_device)!r}))")


class LesionInpainter(PretrainedMixin):
    """Mask-conditioned diffusion inpainter for lesion patches.

    Args:
        config: model settings; missing ones take their defaults from ``configs/train.yaml``'s
            ``model`` section (see :func:`make_config`).
        unet: the denoiser; a freshly initialised one is built from ``config`` when None.
        model_card: facts about how the weights were made (data, steps, DP); see ``save_pretrained``.

    Raises:
        ConfigError: ``config`` names an unknown setting.

    Example::

        model = LesionInpainter.from_pretrained("model/")
        out = model(patches, masks, seeds=[0, 1, 2])      # (B, H, W) float32 in [0, 1]
        full = model.inpaint_scan(image, mask, spacing=(0.1, 0.1), seed=0)
    """

    def __init__(self, config: dict[str, Any] | None = None, unet: torch.nn.Module | None = None,
                 model_card: dict[str, Any] | None = None) -> None:
        self.config = make_config(**(config or {}))
        self.unet = unet if unet is not None else build_unet(self.config)
        self.unet.eval()
        self.model_card: dict[str, Any] = dict(model_card or {})
        self.model_card.setdefault("dp", None)
        self.noise_scheduler = make_noise_scheduler(self.config)

    # ------------------------------------------------------------------ adapters (save / load: PretrainedMixin)
    def load_adapter(self, adapter: str | Path) -> "LesionInpainter":
        """Attach a LoRA adapter saved by :func:`medsynth.models.lora.finetune_lora` (in place); returns self.

        Raises:
            InvalidModelError: not an adapter directory, or an adapter of other base weights.
        """
        return adapters.load_adapter(self, adapter)

    def base_unet(self, merged: bool = False) -> torch.nn.Module:
        """The plain ``UNet2DModel`` (a merged copy when a LoRA adapter is loaded and ``merged``)."""
        return adapters.base_unet(self.unet, merged)

    def to(self, device: str | torch.device) -> "LesionInpainter":
        """Move the weights to ``device`` ("cpu", "cuda", "cuda:1", or "auto": CUDA when present); returns self.

        Raises:
            ConfigError: a device this machine does not have.
        """
        from medsynth.runtime import resolve_device

        self.unet.to(resolve_device(device))
        return self

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    # ------------------------------------------------------------------ inputs
    def _check_patches(self, images: Any, masks: Any) -> tuple[torch.Tensor, torch.Tensor, bool, bool]:
        """Validate patches; return (patches in [0,1] (B,1,H,W), mask float (B,1,H,W), was_2d, was_numpy)."""
        was_numpy = not isinstance(images, torch.Tensor)
        img = torch.as_tensor(np.asarray(images) if was_numpy else images).detach().to("cpu", torch.float32)
        msk = torch.as_tensor(np.asarray(masks)) if not isinstance(masks, torch.Tensor) else masks.detach().cpu()
        if img.ndim not in (2, 3):
            raise InvalidImageError(f"expected patches of shape (H, W) or (B, H, W), got {tuple(img.shape)}")
        was_2d = img.ndim == 2
        if tuple(msk.shape) != tuple(img.shape):
            raise InvalidMaskError(f"mask shape {tuple(msk.shape)} differs from image shape {tuple(img.shape)}")
        if was_2d:
            img, msk = img[None], msk[None]
        if img.shape[0] == 0:
            raise InvalidImageError("got an empty batch of patches")
        factor = 2 ** (len(self.config["block_out_channels"]) - 1)
        if img.shape[1] % factor or img.shape[2] % factor:
            raise InvalidImageError(f"patch size {tuple(img.shape[1:])} must be a multiple of {factor}")
        bad = ~torch.isfinite(img)
        if bad.any():
            raise InvalidImageError(f"image holds {int(bad.sum())} NaN/inf pixel(s)")
        lo, hi = float(img.min()), float(img.max())
        if lo < -1e-4 or hi > 1 + 1e-4:
            raise InvalidImageError(f"patch values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]")
        msk = (msk > 0).to(torch.float32)
        empty = [i for i in range(msk.shape[0]) if not bool(msk[i].any())]
        if empty:
            raise InvalidMaskError(f"mask is empty for sample(s) {empty}")
        return img.clamp(0, 1)[:, None], msk[:, None], was_2d, was_numpy

    @staticmethod
    def _generators(
        batch: int, seeds: Sequence[int] | None, generator: torch.Generator | None
    ) -> list[torch.Generator] | torch.Generator | None:
        if seeds is not None and generator is not None:
            raise ValueError("give either seeds (one per sample) or generator, not both")
        if seeds is None:
            return generator
        seeds = [int(s) for s in (np.atleast_1d(np.asarray(seeds)))]
        if len(seeds) != batch:
            raise ValueError(f"got {len(seeds)} seeds for a batch of {batch}")
        return [torch.Generator("cpu").manual_seed(s) for s in seeds]

    def make_sampling_scheduler(self, sampler: str | None = None):
        """The scheduler used to sample: DDIM ("trailing" timesteps) or DPM-Solver++."""
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        sampler = sampler or self.config["sampler"]
        base = scheduler_config(self.config)
        if sampler == "ddim":
            return DDIMScheduler(**base, timestep_spacing="trailing", clip_sample=True)
        if sampler in ("dpmsolver++", "dpm++"):
            return DPMSolverMultistepScheduler(**base, algorithm_type="dpmsolver++", timestep_spacing="trailing")
        raise InvalidModelError(f"unknown sampler {sampler!r}; use 'ddim' or 'dpmsolver++'")

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def __call__(
        self,
        images: np.ndarray | torch.Tensor,
        masks: np.ndarray | torch.Tensor,
        seeds: Sequence[int] | None = None,
        generator: torch.Generator | None = None,
        num_inference_steps: int | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Paint a lesion inside each mask.

        Args:
            images: (H, W) or (B, H, W) patches, float in [0, 1], at the model's spacing.
            masks: same shape, bool (or > 0): where to paint.
            seeds: one int per sample; sample k's result then depends only on (its inputs, seeds[k]),
                not on the rest of the batch. Their noise is drawn on the CPU and moved to the
                model's device, so a seed gives the same noise on every device.
            generator: a single torch.Generator for the whole batch (alternative to ``seeds``), on
                the CPU or on the model's device (a CUDA generator then draws on the GPU).
            num_inference_steps: sampling steps (default ``config["num_inference_steps"]``).

        Returns:
            The patches with lesions painted in: same shape and kind (numpy or torch) as
            ``images``, float32 in [0, 1]. Pixels farther than ``feather_px`` from the mask equal
            the input exactly.

        Raises:
            InvalidImageError, InvalidMaskError: bad shapes, NaN, values outside [0, 1], empty mask.
            ValueError: ``generator`` lives on another device than the model (and not on the CPU).
        """
        # 1. Check inputs.
        known01, mask, was_2d, was_numpy = self._check_patches(images, masks)
        gens = self._generators(known01.shape[0], seeds, generator)
        device = self.device
        check_generator_device(generator, device)
        # 2. Put the known patches on the model's device, in [-1, 1] as the UNet was trained.
        known01, mask = known01.to(device), mask.to(device)
        x0 = known01 * 2.0 - 1.0
        # 3. Denoise: a conditional model with its sampler, an unconditional one with RePaint.
        if self.config["conditional"]:
            x = self._denoise(x0, mask, gens, num_inference_steps)
        else:
            from medsynth.models.repaint import repaint_inpaint

            rp = self.config["repaint"]
            x = repaint_inpaint(
                self.unet, scheduler_config(self.config), x0, mask, generator=gens,
                num_inference_steps=int(num_inference_steps or rp["num_inference_steps"]),
                jump_length=int(rp["jump_length"]), jump_n_sample=int(rp["jump_n_sample"]),
            )
        # 4. Restore the known region exactly, blending across a feathered edge. Blend with the input
        # itself, not (x0 + 1) / 2: that float round trip is not exact for values below 0.5.
        mask_np = mask[:, 0].cpu().numpy() > 0.5
        weight = torch.from_numpy(np.stack([feather_weights(m, self.config["feather_px"]) for m in mask_np]))
        weight = weight[:, None].to(device)
        gen_01 = ((x.float() + 1.0) / 2.0).clamp(0, 1)
        out = torch.where(weight > 0, known01 + weight * (gen_01 - known01), known01).clamp(0, 1)[:, 0].cpu()
        # 5. Hand back what was given: numpy or torch, (H, W) or (B, H, W).
        if was_2d:
            out = out[0]
        return out.cpu().numpy().astype(np.float32) if was_numpy else out.to(torch.float32)

    def _denoise(
        self, x0: torch.Tensor, mask: torch.Tensor, gens: Any, num_inference_steps: int | None
    ) -> torch.Tensor:
        """The conditional sampling loop; after every step but the last the known region is put back,
        noised to the level of the next step. Noise comes from ``gens`` (one generator per sample
        when seeds were given: diffusers' ``randn_tensor`` then draws each sample from its own)."""
        from diffusers.utils.torch_utils import randn_tensor

        # a. Timesteps.
        scheduler = self.make_sampling_scheduler()
        scheduler.set_timesteps(int(num_inference_steps or self.config["num_inference_steps"]), device=x0.device)
        timesteps = scheduler.timesteps
        labels = class_labels(self.config, x0.shape[0], x0.device)
        # b. Initial noise.
        shape = tuple(x0.shape)
        x = randn_tensor(shape, generator=gens, device=x0.device) * scheduler.init_noise_sigma
        # c. Denoising loop.
        for i, t in enumerate(timesteps):
            inp = unet_input(scheduler.scale_model_input(x, t), mask, x0, True)
            eps = self.unet(inp, t, class_labels=labels).sample
            x = scheduler.step(eps, t, x).prev_sample
            if i + 1 < len(timesteps):
                noise = randn_tensor(shape, generator=gens, device=x0.device)
                known = self.noise_scheduler.add_noise(x0, noise, timesteps[i + 1 : i + 2].to("cpu").long())
                x = mask * x + (1.0 - mask) * known.to(x.dtype)
        return x

    def inpaint_scan(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        spacing: tuple[float, float],
        seed: int = 0,
        num_inference_steps: int | None = None,
    ) -> np.ndarray:
        """Paint a lesion into a full-size image: crop the ROI at the model's mm spacing, inpaint,
        paste back with a feathered edge. Memory is bounded by the ROI.

        Args:
            image: (rows, cols) float image in [0, 1] (e.g. ``Scan.unit_pixels()``).
            mask: (rows, cols) binary mask where the lesion goes.
            spacing: (row, col) pixel spacing of ``image`` in mm.
            seed: sampling seed (the result depends only on inputs and seed).
            num_inference_steps: sampling steps (default from the config).

        Returns:
            A float32 copy of ``image`` with the lesion painted in; pixels farther than
            ``feather_px * spacing_mm`` from the mask are unchanged.

        Raises:
            InvalidImageError, InvalidMaskError: wrong shape, NaN, empty mask, a mask that lies
                outside the imaged tissue or does not fit in the model's ROI.
        """
        image, mask = check_image_and_mask(image, mask)
        lo, hi = float(image.min()), float(image.max())
        if lo < -1e-4 or hi > 1 + 1e-4:
            raise InvalidImageError(
                f"image values must lie in [0, 1] (use Scan.unit_pixels()), got [{lo:.4g}, {hi:.4g}]"
            )
        # A mask mostly on the image's background (air, its minimum value) lies outside the tissue.
        on_background = float(np.mean(image[mask] <= lo + 1e-6))
        if hi > lo and on_background > 0.5:
            raise InvalidMaskError(
                f"mask lies outside the imaged tissue ({on_background:.0%} of it on background pixels)"
            )
        size, sp = int(self.config["image_size"]), float(self.config["spacing_mm"])
        patch, patch_mask, box = crop_roi(
            image, mask, spacing, size * sp, size, margin_mm=float(self.config["roi_margin_mm"])
        )
        result = self(
            np.clip(patch, 0, 1)[None], patch_mask[None], seeds=[seed], num_inference_steps=num_inference_steps
        )
        return paste_roi(image, result[0], box, mask, feather_mm=float(self.config["feather_px"]) * sp)

    # ------------------------------------------------------------------ loss (membership inference)
    @torch.no_grad()
    def per_sample_loss(
        self,
        images: np.ndarray | torch.Tensor,
        masks: np.ndarray | torch.Tensor,
        timesteps: int | Sequence[int] | torch.Tensor | None = None,
        seed: int = 0,
    ) -> torch.Tensor:
        """The diffusion training loss of each sample, shape (B,), for membership inference.

        Sample i's noise (and timestep, when ``timesteps`` is None) comes from its own generator
        seeded by (seed, i), so the losses of a batch equal those computed one at a time.

        Args:
            images, masks: (B, H, W) or (H, W) patches in [0, 1] and masks, as for ``__call__``.
            timesteps: one timestep for all, one per sample, or None for a random one per sample.
            seed: base seed of the noise.
        """
        from diffusers.utils.torch_utils import randn_tensor

        known01, mask, _, _ = self._check_patches(images, masks)
        x0 = known01 * 2.0 - 1.0
        B = x0.shape[0]
        gens = [torch.Generator("cpu").manual_seed(derive_seed(seed, i)) for i in range(B)]
        T = int(self.config["num_train_timesteps"])
        if timesteps is None:
            t = torch.stack([torch.randint(0, T, (), generator=g) for g in gens])
        else:
            t = torch.as_tensor(timesteps, dtype=torch.long).flatten()
            t = t.expand(B).clone() if t.numel() == 1 else t
            if t.numel() != B or int(t.min()) < 0 or int(t.max()) >= T:
                raise ValueError(f"timesteps must be one int or {B} ints in [0, {T}), got {timesteps}")
        noise = randn_tensor(tuple(x0.shape), generator=gens, device=self.device)
        device = self.device
        was_training = self.unet.training
        self.unet.eval()
        try:
            loss = diffusion_loss(self.unet, self.noise_scheduler, x0.to(device), mask.to(device), noise,
                                  t.to(device), self.config)
        finally:
            self.unet.train(was_training)
        return loss.float().cpu()
