"""LesionInpainter: a small pixel-space diffusion model that paints a lesion inside a mask on a patch
of breast tissue, conditioned on the tissue around it and on the lesion's attributes.

The UNet (diffusers ``UNet2DModel``) sees, in pixel space, the layout of diffusers' inpainting UNets
plus one channel: [noisy patch, lesion mask, editable region, patch with the editable region
blanked]. The editable region is the mask grown by ``band_mm`` for masses, so the model can paint
an ill-defined margin's halo or spicules just outside the outline while the label stays the mask;
training's known region excludes the band too. The lesion's attributes (class, BI-RADS shape and
margin, calcification type and distribution, size, breast density, pathology, assessment,
subtlety; :mod:`medsynth.models.attributes`) are embedded and added to the timestep embedding;
missing ones take a null token, and classifier-free guidance (``guidance_scale`` > 1) compares the
prediction with and without the descriptors (two UNet evaluations per step).

Two scales, one UNet. Masses (and healthy tissue) are painted at ``spacing_mm`` (0.5 mm: a 64 px
patch holds a 32 mm ROI); calcifications, whose specks are 0.1-1 mm, at
``calcification_spacing_mm`` (by default the training data's own spacing). A calcification cluster
larger than one patch is painted in a larger ROI: the UNet is convolutional. At paste-back only the
*change* the model made (painted minus given patch) is resampled to the image grid, split at the
full-resolution outline so the lesion's edge stays sharp, and added to the image: the background
keeps its detail above the model's Nyquist frequency (a mammogram is a projection: the tissue's
texture stays visible through a lesion, attenuated by ``texture_transmission``, a factor measured on
the training data). When the model's spacing equals the image's, this is a plain paste.

Training uses a DDPM (cosine) noise schedule with ε-prediction, the loss weighted up inside the
(dilated) editable region. Sampling uses DPM-Solver++ (or DDIM) with "trailing" timesteps; after
every step the known region, noised to the current level, is put back, and at the end it is
restored exactly, blended into the painted region across a feathered edge. An unconditional model
(``conditional: false``) is sampled with RePaint instead (see :mod:`medsynth.models.repaint`).
Models saved before attribute conditioning (``attributes`` absent from their config.json) load and
sample as they did (three input channels, a lesion/healthy label, one scale).

The config *is* the constructor: ``LesionInpainter(config)`` lays ``config`` over the ``model``
section of ``configs/train.yaml`` (the one place of its defaults), and the complete config is saved
as ``config.json`` beside the weights (:mod:`medsynth.models.pretrained`), so a saved model does not
change when a default does. LoRA adapters are attached with :meth:`LesionInpainter.load_adapter`
(:mod:`medsynth.models.adapters`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medsynth.config import load_config
from medsynth.errors import ConfigError, InvalidImageError, InvalidMaskError, InvalidModelError
from medsynth.models import adapters
from medsynth.models import attributes as attrs
from medsynth.models.patches import (
    RoiBox,
    check_image_and_mask,
    crop_at,
    crop_roi,
    feather_weights,
    paste_change,
    paste_roi,
)
from medsynth.models.pretrained import PretrainedMixin
from medsynth.utils import derive_seed

# What a config saved before attribute conditioning lacks, and the behaviour it had.
LEGACY_SETTINGS: dict[str, Any] = {"attributes": False}


def make_config(**overrides: Any) -> dict[str, Any]:
    """The complete model config: the ``model`` section of ``configs/train.yaml`` with ``overrides``
    laid over it (nested ``repaint`` settings too).

    Raises:
        ConfigError: an override names no model setting.
    """
    return load_config({"model": overrides}, kind="train")["model"]


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
    """A saved config.json as this version reads it: a model saved before attribute conditioning
    (no ``attributes`` key) keeps its behaviour (3 input channels, lesion/healthy label, one scale)."""
    if "attributes" in config:
        return config
    return {**config, **LEGACY_SETTINGS}


def is_attributed(config: Mapping[str, Any]) -> bool:
    """Whether a model config describes the attribute-conditioned model (region channel, two scales)."""
    return bool(config["conditional"] and config.get("attributes"))


def vocabulary_of(config: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The attribute vocabulary a model was built with (saved in its config)."""
    vocab = config.get("vocabulary")
    if not vocab:
        return dict(attrs.VOCABULARY)
    return {str(k): tuple(str(v) for v in values) for k, values in vocab.items()}


def build_unet(config: dict[str, Any]):
    """A ``UNet2DModel`` for ``config``: 4 input channels for the attribute-conditioned model (its
    class embedding sums the attributes' embeddings), 3 for the earlier conditional one, 1 unconditional."""
    from diffusers import UNet2DModel

    blocks = list(config["block_out_channels"])
    n = len(blocks)
    attn_last = bool(config["attention"])
    down = tuple("AttnDownBlock2D" if (attn_last and i == n - 1) else "DownBlock2D" for i in range(n))
    up = tuple("AttnUpBlock2D" if (attn_last and i == 0) else "UpBlock2D" for i in range(n))
    attributed = is_attributed(config)
    if attributed:
        in_channels, n_embeds = 4, attrs.vocabulary_size(vocabulary_of(config))
    else:
        in_channels = 3 if config["conditional"] else 1
        n_embeds = 2 if (config["conditional"] and config["class_conditional"]) else None
    unet = UNet2DModel(
        sample_size=int(config["image_size"]),
        in_channels=in_channels,
        out_channels=1,
        block_out_channels=tuple(blocks),
        layers_per_block=int(config["layers_per_block"]),
        down_block_types=down,
        up_block_types=up,
        norm_num_groups=int(config["norm_num_groups"]),
        add_attention=attn_last,
        num_class_embeds=n_embeds,
    )
    if attributed:
        plain = unet.class_embedding
        summed = attrs.SummedEmbedding(plain.num_embeddings, plain.embedding_dim)
        summed.weight.data.copy_(plain.weight.data)
        unet.class_embedding = summed
    return unet


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


def disk_dilate(mask: torch.Tensor, px: torch.Tensor | float) -> torch.Tensor:
    """Dilation of a (B,1,H,W) float mask by a disk of radius ``px`` (per sample when a (B,) tensor),
    through a distance-like max-pool cascade: radius r is r one-pixel cross steps, each 4-neighbour."""
    radius = torch.as_tensor(px, dtype=torch.float32).reshape(-1)
    if radius.numel() == 1:
        radius = radius.expand(mask.shape[0])
    steps = int(torch.ceil(radius.max()).item()) if radius.numel() else 0
    out = mask
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]], dtype=mask.dtype, device=mask.device)
    # Alternate cross and square steps: an octagon, close to a disk.
    for k in range(steps):
        if k % 2 == 0:
            grown = (F.conv2d(out, cross[None, None], padding=1) > 0).to(mask.dtype)
        else:
            grown = F.max_pool2d(out, kernel_size=3, stride=1, padding=1)
        active = (radius > k).to(mask.dtype).to(mask.device)[:, None, None, None]
        out = active * grown + (1 - active) * out
    return out


def unet_input(noisy: torch.Tensor, mask: torch.Tensor, x0: torch.Tensor, conditional: bool,
               region: torch.Tensor | None = None) -> torch.Tensor:
    """The UNet's input: [noisy, mask, editable region, known image with the region blanked] (the
    attribute-conditioned model, ``region`` given), [noisy, mask, known image with the mask blanked]
    (the earlier model), or just the noisy patch (unconditional)."""
    if not conditional:
        return noisy
    if region is not None:
        return torch.cat([noisy, mask, region, x0 * (1.0 - region)], dim=1)
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
    *,
    region: torch.Tensor | None = None,
    codes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample training loss, shape (B,): noise-prediction MSE weighted up inside the editable region.

    Args:
        unet: the denoiser.
        noise_scheduler: a DDPM scheduler (``add_noise``).
        x0: (B,1,H,W) clean patches in [-1, 1].
        mask: (B,1,H,W) float {0,1}: the lesion.
        noise: (B,1,H,W) standard normal.
        timesteps: (B,) integer timesteps.
        config: the model config (conditional, mask_loss_weight, mask_dilate_px, attributes).
        labels: (B,) class labels of the earlier model (1 lesion, 0 healthy tissue); lesion when None.
        region: (B,1,H,W) float {0,1}: what the model may change (the attribute-conditioned model;
            the mask when None).
        codes: (B, n_attributes) attribute codes (the attribute-conditioned model; a mass with no
            descriptors when None).
    """
    attributed = is_attributed(config)
    if attributed and region is None:
        region = mask
    noisy = noise_scheduler.add_noise(x0, noise, timesteps)
    inp = unet_input(noisy, mask, x0, config["conditional"], region if attributed else None)
    pred = unet(inp, timesteps, class_labels=class_labels(config, x0.shape[0], x0.device, labels, codes)).sample
    editable = region if attributed else mask
    weight = 1.0 + (float(config["mask_loss_weight"]) - 1.0) * dilate(editable, int(config["mask_dilate_px"]))
    err = (pred.float() - noise.float()) ** 2
    return (err * weight).flatten(1).sum(1) / weight.flatten(1).sum(1)


def default_codes(config: Mapping[str, Any], batch: int, klass: str = "mass") -> torch.Tensor:
    """Attribute codes of ``batch`` lesions of class ``klass`` with every descriptor null."""
    row = attrs.encode({"class": klass}, vocabulary_of(config))
    return torch.tensor([row] * batch, dtype=torch.long)


def class_labels(config: dict[str, Any], batch: int, device: torch.device,
                 labels: torch.Tensor | None = None, codes: torch.Tensor | None = None) -> torch.Tensor | None:
    """The UNet's class labels: attribute codes (B, n) for the attribute-conditioned model (a mass
    with no descriptors when ``codes`` is None); for the earlier model None without labels, else
    ``labels`` or all 1 (lesion)."""
    if is_attributed(config):
        if codes is None:
            codes = default_codes(config, batch)
        return codes.to(device=device, dtype=torch.long)
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


@dataclass
class RoiJob:
    """One lesion between :meth:`LesionInpainter.prepare_roi` and :meth:`LesionInpainter.finish_roi`.

    Attributes:
        patch: (S, S) float32 in [0, 1]: the image around the lesion at the model's spacing for its class.
        mask: (S, S) bool: the lesion in the patch.
        region: (S, S) bool: what the model may change (the mask, grown by ``band_mm`` for masses).
        codes: the lesion's attribute codes (one row).
        box: where the patch came from.
        full_region: (rows, cols) bool: the editable region at the image's resolution.
        klass: the lesion's class.
    """

    patch: np.ndarray
    mask: np.ndarray
    region: np.ndarray
    codes: list[int]
    box: RoiBox
    full_region: np.ndarray
    klass: str


class LesionInpainter(PretrainedMixin):
    """Mask- and attribute-conditioned diffusion inpainter for lesion patches.

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
        full = model.inpaint_scan(image, mask, spacing=(0.1, 0.1), seed=0,
                                  attributes={"class": "mass", "margin": "spiculated"})
    """

    def __init__(self, config: dict[str, Any] | None = None, unet: torch.nn.Module | None = None,
                 model_card: dict[str, Any] | None = None) -> None:
        self.config = make_config(**(config or {}))
        if is_attributed(self.config) and not self.config.get("vocabulary"):
            self.config["vocabulary"] = {k: list(v) for k, v in attrs.VOCABULARY.items()}
        self.unet = unet if unet is not None else build_unet(self.config)
        self.unet.eval()
        self.model_card: dict[str, Any] = dict(model_card or {})
        self.model_card.setdefault("dp", None)
        self.noise_scheduler = make_noise_scheduler(self.config)

    @staticmethod
    def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
        """A saved config.json as this version reads it (:func:`upgrade_config`; called by ``from_pretrained``)."""
        return upgrade_config(config)

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

    # ------------------------------------------------------------------ scales and attributes
    @property
    def attributed(self) -> bool:
        """Whether this is the attribute-conditioned model (region channel, two scales)."""
        return is_attributed(self.config)

    def spacing_for(self, klass: str = "mass") -> float:
        """The patch spacing (mm/px) lesions of class ``klass`` are painted at."""
        fine = self.config.get("calcification_spacing_mm")
        if self.attributed and klass == "calcification" and fine not in (None, "auto"):
            return float(fine)
        return float(self.config["spacing_mm"])

    @property
    def classes(self) -> tuple[str, ...]:
        """The lesion classes this model learnt to paint (its ``classes`` setting; null: all)."""
        return tuple(self.config.get("classes") or attrs.LESION_CLASSES)

    def band_mm_for(self, klass: str = "mass") -> float:
        """How far outside the mask the model may paint for class ``klass`` (masses only)."""
        return float(self.config.get("band_mm") or 0.0) if (self.attributed and klass != "calcification") else 0.0

    def transmission_for(self, klass: str = "mass") -> float:
        """The share of the background's fine detail kept inside a painted lesion of class ``klass``."""
        value = self.config.get("texture_transmission")
        if isinstance(value, Mapping):
            value = value.get(klass)
        return 1.0 if value in (None, "auto") else float(value)

    def codes_for(self, attributes: Any, batch: int) -> torch.Tensor:
        """Attribute codes (batch, n) from None (masses without descriptors), one dict for all, a list
        of dicts, or codes already encoded."""
        vocab = vocabulary_of(self.config)
        if attributes is None:
            return default_codes(self.config, batch)
        if isinstance(attributes, torch.Tensor) or (isinstance(attributes, np.ndarray) and attributes.ndim == 2):
            codes = torch.as_tensor(attributes, dtype=torch.long)
        elif isinstance(attributes, Mapping):
            codes = torch.tensor([attrs.encode({"class": "mass", **attributes}, vocab)] * batch, dtype=torch.long)
        else:
            rows = list(attributes)
            if rows and isinstance(rows[0], Mapping):
                codes = torch.tensor([attrs.encode({"class": "mass", **a}, vocab) for a in rows], dtype=torch.long)
            else:
                codes = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        if codes.ndim == 1:
            codes = codes[None].expand(batch, -1)
        if tuple(codes.shape) != (batch, len(vocab)):
            raise ValueError(
                f"expected attributes for {batch} samples ({len(vocab)} codes each), got {tuple(codes.shape)}")
        return codes

    def class_of(self, codes: torch.Tensor | Sequence[int]) -> str:
        """The class name of one code row."""
        return attrs.decode(list(codes), vocabulary_of(self.config))["class"] or "mass"

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
        """The scheduler used to sample: DDIM ("trailing" timesteps) or DPM-Solver++ (2nd order multistep)."""
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        sampler = sampler or self.config["sampler"]
        base = scheduler_config(self.config)
        if sampler == "ddim":
            return DDIMScheduler(**base, timestep_spacing="trailing", clip_sample=True)
        if sampler in ("dpmsolver++", "dpm++"):
            # Thresholding with sample_max_value 1 clips each x0 prediction to [-1, 1] (the pixel range),
            # as DDIM's clip_sample does; with that bound it never rescales.
            return DPMSolverMultistepScheduler(**base, algorithm_type="dpmsolver++", timestep_spacing="trailing",
                                               thresholding=True, sample_max_value=1.0)
        raise InvalidModelError(f"unknown sampler {sampler!r}; use 'ddim' or 'dpmsolver++'")

    def unet_evaluations(self, num_inference_steps: int | None = None, guidance_scale: float | None = None) -> int:
        """UNet evaluations per lesion of one sampling call: steps, times two under guidance."""
        steps = int(num_inference_steps or self.config["num_inference_steps"])
        return steps * (2 if self.resolve_guidance(guidance_scale) != 1.0 else 1)

    def resolve_guidance(self, guidance_scale: float | None) -> float:
        """The guidance weight to use: ``guidance_scale``, else the config's (1 for a model without attributes)."""
        if not self.attributed:
            return 1.0
        w = float(self.config.get("guidance_scale") or 1.0) if guidance_scale is None else float(guidance_scale)
        if not math.isfinite(w) or w < 0:
            raise ConfigError(f"guidance_scale must be a number >= 0, got {guidance_scale!r}")
        return w

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def __call__(
        self,
        images: np.ndarray | torch.Tensor,
        masks: np.ndarray | torch.Tensor,
        seeds: Sequence[int] | None = None,
        generator: torch.Generator | None = None,
        num_inference_steps: int | None = None,
        *,
        attributes: Any = None,
        regions: np.ndarray | torch.Tensor | None = None,
        guidance_scale: float | None = None,
        sampler: str | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Paint a lesion inside each mask.

        Args:
            images: (H, W) or (B, H, W) patches, float in [0, 1], at the model's spacing for the class.
            masks: same shape, bool (or > 0): the lesions.
            seeds: one int per sample; sample k's result then depends only on (its inputs, seeds[k]),
                not on the rest of the batch. Their noise is drawn on the CPU and moved to the
                model's device, so a seed gives the same noise on every device.
            generator: a single torch.Generator for the whole batch (alternative to ``seeds``), on
                the CPU or on the model's device (a CUDA generator then draws on the GPU).
            num_inference_steps: sampling steps (default ``config["num_inference_steps"]``).
            attributes: what to paint (attribute-conditioned model): None (a mass, no descriptors),
                one dict for every sample (e.g. ``{"class": "mass", "margin": "spiculated"}``), a
                list of dicts, or encoded codes (B, n).
            regions: what the model may change, same shape as ``masks`` (default: each mask grown by
                ``band_mm`` for masses, the mask itself for calcifications).
            guidance_scale: classifier-free guidance weight (default ``config["guidance_scale"]``;
                1 = none, one UNet evaluation per step; otherwise two).
            sampler: ``ddim`` or ``dpmsolver++`` (default ``config["sampler"]``; conditional models).

        Returns:
            The patches with lesions painted in: same shape and kind (numpy or torch) as
            ``images``, float32 in [0, 1]. Pixels farther than ``feather_px`` from the editable
            region equal the input exactly.

        Raises:
            InvalidImageError, InvalidMaskError: bad shapes, NaN, values outside [0, 1], empty mask.
            ValueError: ``generator`` lives on another device than the model (and not on the CPU).
        """
        # 1. Check inputs.
        known01, mask, was_2d, was_numpy = self._check_patches(images, masks)
        gens = self._generators(known01.shape[0], seeds, generator)
        region = mask
        codes = None
        if self.attributed:
            codes = self.codes_for(attributes, known01.shape[0])
            region = self._regions(mask, codes, regions)
        elif regions is not None or attributes is not None:
            raise ConfigError("this model was trained without attributes or regions (config 'attributes': false)")
        # 2. Put the known patches on the model's device, in [-1, 1] as the UNet was trained.
        device = self.device
        check_generator_device(generator, device)
        known01, mask, region = known01.to(device), mask.to(device), region.to(device)
        x0 = known01 * 2.0 - 1.0
        # 3. Denoise: a conditional model with its sampler, an unconditional one with RePaint.
        if self.config["conditional"]:
            x = self._denoise(x0, mask, region if self.attributed else None, codes, gens, num_inference_steps,
                              self.resolve_guidance(guidance_scale), sampler)
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
        region_np = region[:, 0].cpu().numpy() > 0.5
        weight = torch.from_numpy(np.stack([feather_weights(m, self.config["feather_px"]) for m in region_np]))
        weight = weight[:, None].to(device)
        gen_01 = ((x.float() + 1.0) / 2.0).clamp(0, 1)
        out = torch.where(weight > 0, known01 + weight * (gen_01 - known01), known01).clamp(0, 1)[:, 0].cpu()
        # 5. Hand back what was given: numpy or torch, (H, W) or (B, H, W).
        if was_2d:
            out = out[0]
        return out.cpu().numpy().astype(np.float32) if was_numpy else out.to(torch.float32)

    def _regions(self, mask: torch.Tensor, codes: torch.Tensor, regions: Any) -> torch.Tensor:
        """The editable regions (B,1,H,W): given ones (each must hold its mask), else the masks grown
        by the band of their class (in patch pixels of that class's spacing)."""
        if regions is not None:
            reg = torch.as_tensor(np.asarray(regions) if not isinstance(regions, torch.Tensor) else regions.cpu())
            reg = (reg.reshape(mask.shape) > 0).to(torch.float32)
            if bool(((mask > 0) & (reg == 0)).any()):
                raise InvalidMaskError("an editable region must contain its mask")
            return reg
        px = torch.tensor([self.band_mm_for(self.class_of(c)) / self.spacing_for(self.class_of(c)) for c in codes])
        return disk_dilate(mask, px)

    def _denoise(
        self, x0: torch.Tensor, mask: torch.Tensor, region: torch.Tensor | None, codes: torch.Tensor | None,
        gens: Any, num_inference_steps: int | None, guidance: float = 1.0, sampler: str | None = None,
    ) -> torch.Tensor:
        """The conditional sampling loop; after every step but the last the known region is put back,
        noised to the level of the next step. Noise comes from ``gens`` (one generator per sample
        when seeds were given: diffusers' ``randn_tensor`` then draws each sample from its own).
        With ``guidance`` != 1 each step evaluates the UNet with and without the descriptors, in one
        batch of twice the size."""
        from diffusers.utils.torch_utils import randn_tensor

        # a. Timesteps.
        scheduler = self.make_sampling_scheduler(sampler)
        scheduler.set_timesteps(int(num_inference_steps or self.config["num_inference_steps"]), device=x0.device)
        timesteps = scheduler.timesteps
        B = x0.shape[0]
        labels = class_labels(self.config, B, x0.device, codes=codes)
        guided = codes is not None and guidance != 1.0
        if guided:
            labels = torch.cat([labels, attrs.null_descriptors(codes, vocabulary_of(self.config)).to(x0.device)])
        keep = region if region is not None else mask
        # b. Initial noise.
        shape = tuple(x0.shape)
        x = randn_tensor(shape, generator=gens, device=x0.device) * scheduler.init_noise_sigma
        # c. Denoising loop.
        for i, t in enumerate(timesteps):
            inp = unet_input(scheduler.scale_model_input(x, t), mask, x0, True, region)
            if guided:
                eps_c, eps_u = self.unet(torch.cat([inp, inp]), t, class_labels=labels).sample.chunk(2)
                eps = eps_u + guidance * (eps_c - eps_u)
            else:
                eps = self.unet(inp, t, class_labels=labels).sample
            x = scheduler.step(eps, t, x).prev_sample
            if i + 1 < len(timesteps):
                noise = randn_tensor(shape, generator=gens, device=x0.device)
                known = self.noise_scheduler.add_noise(x0, noise, timesteps[i + 1 : i + 2].to("cpu").long())
                x = keep * x + (1.0 - keep) * known.to(x.dtype)
        return x

    # ------------------------------------------------------------------ full-size images
    def roi_px_for(self, extent_mm: float, klass: str = "mass") -> int:
        """Side in patch pixels of the ROI that holds a lesion of ``extent_mm`` with its margin: the
        model's ``image_size`` or, for a larger lesion, the next multiple of half of it (the UNet is
        convolutional), up to ``max_roi_factor`` x ``image_size``.

        Raises:
            InvalidMaskError: the lesion does not fit in the largest ROI.
        """
        size, sp = int(self.config["image_size"]), self.spacing_for(klass)
        need = (float(extent_mm) + 2.0 * self.margin_mm_for(klass)) / sp
        if need <= size or not self.attributed:
            return size
        step = max(size // 2, 2 ** (len(self.config["block_out_channels"]) - 1))
        px = int(math.ceil(need / step) * step)
        largest = int(float(self.config.get("max_roi_factor") or 1.0) * size)
        if px > largest:
            raise InvalidMaskError(
                f"a {klass} spanning {extent_mm:.1f} mm does not fit in the model's largest ROI "
                f"({largest * sp:.1f} mm with a {self.margin_mm_for(klass):.1f} mm margin)"
            )
        return px

    def margin_mm_for(self, klass: str = "mass") -> float:
        """Context kept around a lesion in its ROI: ``roi_margin_mm``, and at least the band plus 1 mm."""
        margin = float(self.config["roi_margin_mm"])
        band = self.band_mm_for(klass)
        return max(margin, band + 1.0) if band > 0 else margin

    def max_extent_mm(self, klass: str = "mass") -> float:
        """The largest lesion (bounding-box side, mm) of class ``klass`` the model can paint."""
        size, sp = int(self.config["image_size"]), self.spacing_for(klass)
        factor = float(self.config.get("max_roi_factor") or 1.0) if self.attributed else 1.0
        return int(factor * size) * sp - 2.0 * self.margin_mm_for(klass)

    def prepare_roi(self, image: np.ndarray, mask: np.ndarray, spacing: tuple[float, float],
                    attributes: Mapping[str, Any] | None = None) -> RoiJob:
        """Cut the ROI of one lesion out of a full-size image, at the spacing of its class.

        Raises:
            InvalidImageError, InvalidMaskError: see :meth:`inpaint_scan`.
        """
        image, mask = check_image_and_mask(image, mask)
        sr, sc = float(spacing[0]), float(spacing[1])
        attributes = dict(attributes or {})
        if self.attributed:
            attributes.setdefault("class", "mass")
            rows, cols = np.nonzero(mask)
            attributes.setdefault("size", float(max((rows.max() - rows.min() + 1) * sr,
                                                    (cols.max() - cols.min() + 1) * sc)))
            codes = self.codes_for(attributes, 1)[0].tolist()
            klass = self.class_of(codes)
        else:
            codes, klass = [], "mass"
        sp = self.spacing_for(klass)
        rows, cols = np.nonzero(mask)
        extent = max((rows.max() - rows.min() + 1) * sr, (cols.max() - cols.min() + 1) * sc)
        px = self.roi_px_for(extent, klass)
        margin = self.margin_mm_for(klass)
        patch, patch_mask, box = crop_roi(image, mask, (sr, sc), px * sp, px, margin_mm=margin)
        band = self.band_mm_for(klass)
        full_region = mask
        region = patch_mask
        if band > 0:
            from scipy import ndimage

            full_region = ndimage.distance_transform_edt(~mask, sampling=(sr, sc)) <= band
            _, region, _ = crop_at(image, (sr, sc), ((box.r0 + box.r1 - 1) / 2, (box.c0 + box.c1 - 1) / 2),
                                   px * sp, px, mask=full_region)
            region = region | patch_mask
        return RoiJob(np.clip(patch, 0, 1), patch_mask, region, codes, box, full_region, klass)

    def finish_roi(self, image: np.ndarray, job: RoiJob, painted: np.ndarray, lesion: np.ndarray) -> np.ndarray:
        """Put a painted ROI back into (a copy of) the full-size image: the change the model made,
        at the image's resolution (see the module docstring); the earlier model pastes the patch."""
        feather_mm = float(self.config["feather_px"]) * float(max(job.box.patch_spacing))
        if not self.attributed:
            return paste_roi(image, painted, job.box, lesion, feather_mm=feather_mm)
        return paste_change(image, painted, job.patch, job.box, job.full_region, lesion, feather_mm=feather_mm,
                            transmission=self.transmission_for(job.klass))

    def inpaint_scan(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        spacing: tuple[float, float],
        seed: int = 0,
        num_inference_steps: int | None = None,
        *,
        attributes: Mapping[str, Any] | None = None,
        guidance_scale: float | None = None,
    ) -> np.ndarray:
        """Paint a lesion into a full-size image: crop the ROI at the model's mm spacing for the
        lesion's class, inpaint, put the change back at the image's resolution. Memory is bounded by the ROI.

        Args:
            image: (rows, cols) float image in [0, 1] (e.g. ``Scan.unit_pixels()``).
            mask: (rows, cols) binary mask where the lesion goes.
            spacing: (row, col) pixel spacing of ``image`` in mm.
            seed: sampling seed (the result depends only on inputs and seed).
            num_inference_steps: sampling steps (default from the config).
            attributes: what to paint, e.g. ``{"class": "calcification"}`` or ``{"margin":
                "spiculated", "density": "c"}`` (default: a mass; the size comes from the mask).
            guidance_scale: classifier-free guidance weight (default from the config).

        Returns:
            A float32 copy of ``image`` with the lesion painted in; pixels farther than the band
            plus ``feather_px`` patch pixels from the mask are unchanged.

        Raises:
            InvalidImageError, InvalidMaskError: wrong shape, NaN, empty mask, a mask that lies
                outside the imaged tissue or does not fit in the model's largest ROI.
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
        job = self.prepare_roi(image, mask, spacing, attributes)
        kwargs: dict[str, Any] = {}
        if self.attributed:
            kwargs = {"attributes": torch.tensor([job.codes]), "regions": job.region[None],
                      "guidance_scale": guidance_scale}
        result = self(job.patch[None], job.mask[None], seeds=[seed], num_inference_steps=num_inference_steps,
                      **kwargs)
        return self.finish_roi(image, job, result[0], mask)

    # ------------------------------------------------------------------ loss (membership inference)
    @torch.no_grad()
    def scoring_conditioning(self, mask: torch.Tensor, codes: Any = None
                             ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """What the model is asked when a patch is scored rather than painted (membership inference):
        for the attribute-conditioned model the lesions' attribute codes (B, n) as training saw them
        (None: a mass with no descriptors) and the editable region, the mask (B,1,H,W) grown by the
        band of each lesion's class, both on the model's device; (None, None) for the earlier model."""
        if not self.attributed:
            return None, None
        codes = default_codes(self.config, mask.shape[0]) if codes is None else torch.as_tensor(codes).long().cpu()
        return self._regions(mask.cpu(), codes, None).to(self.device), codes.to(self.device)

    def per_sample_loss(
        self,
        images: np.ndarray | torch.Tensor,
        masks: np.ndarray | torch.Tensor,
        timesteps: int | Sequence[int] | torch.Tensor | None = None,
        seed: int = 0,
        codes: Any = None,
    ) -> torch.Tensor:
        """The diffusion training loss of each sample, shape (B,), for membership inference.

        Sample i's noise (and timestep, when ``timesteps`` is None) comes from its own generator
        seeded by (seed, i), so the losses of a batch equal those computed one at a time. The
        attribute-conditioned model is asked for the lesions' ``codes`` (None: a mass with no
        descriptors), its region the mask grown by the band (:meth:`scoring_conditioning`).

        Args:
            images, masks: (B, H, W) or (H, W) patches in [0, 1] and masks, as for ``__call__``.
            timesteps: one timestep for all, one per sample, or None for a random one per sample.
            seed: base seed of the noise.
            codes: (B, n_attributes) attribute codes of the attribute-conditioned model, or None.
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
        region, codes = self.scoring_conditioning(mask, codes)
        extra: dict[str, Any] = {} if region is None else {"region": region, "codes": codes}
        was_training = self.unet.training
        self.unet.eval()
        try:
            loss = diffusion_loss(self.unet, self.noise_scheduler, x0.to(device), mask.to(device), noise,
                                  t.to(device), self.config, **extra)
        finally:
            self.unet.train(was_training)
        return loss.float().cpu()
