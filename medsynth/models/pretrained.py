"""Saving and loading models, and their model cards: the model directory's file format.

A model directory holds ``config.json`` (the config *is* the constructor: ``LesionInpainter(config)``
rebuilds the model), ``model.safetensors``, ``model_card.json`` and a human-readable ``README.md``
model card. :class:`PretrainedMixin` gives a model class ``from_pretrained`` / ``save_pretrained``,
as diffusers' ``ModelMixin`` does; it imports no model, so the model module imports it and nothing
here imports back (LoRA adapter files are :mod:`medsynth.models.adapters`', whose card is rendered
here too).

Named ``pretrained`` rather than ``io`` so that it is not mistaken for :mod:`medsynth.io`, the scan
and dataset readers, nor for the standard library's ``io``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from medsynth.errors import ConfigError, InvalidModelError
from medsynth.io.writers.atomic import atomic_write_bytes, atomic_write_text
from medsynth.models.privacy import dp_noise_of, dp_statement
from medsynth.utils import sha256_file

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "model_card.json"
README_NAME = "README.md"


def versions() -> dict[str, str]:
    """Versions of the libraries a saved model depends on."""
    import diffusers

    import medsynth

    out = {"medsynth": medsynth.__version__, "torch": torch.__version__, "diffusers": diffusers.__version__}
    for name in ("peft", "opacus"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:  # optional at load time; recorded when present
            continue
    return out


class PretrainedMixin:
    """``from_pretrained`` / ``save_pretrained`` for a model with ``config`` (a dict that rebuilds it),
    ``unet``, ``model_card``, ``base_unet(merged)`` and ``load_adapter(path)``."""

    config: dict[str, Any]
    unet: torch.nn.Module
    model_card: dict[str, Any]

    @classmethod
    def from_pretrained(cls, path: str | Path, adapter: str | Path | None = None,
                        device: str | torch.device | None = None) -> Any:
        """Load a model saved by :meth:`save_pretrained`, optionally with a LoRA adapter.

        Args:
            path: the model directory.
            adapter: a LoRA adapter directory written by :func:`medsynth.models.lora.finetune_lora`.
            device: where to put the weights (default CPU).

        Raises:
            InvalidModelError: a file is missing or does not match the config, or the adapter was
                trained on other base weights.
        """
        from safetensors.torch import load_file

        path = Path(path)
        config_path, weights_path = path / CONFIG_NAME, path / WEIGHTS_NAME
        for p in (config_path, weights_path):
            if not p.is_file():
                raise InvalidModelError(f"not a medsynth model directory (missing {p.name})", path)
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as e:
            raise InvalidModelError(f"config is not valid JSON ({e})", config_path) from e
        if hasattr(cls, "upgrade_config"):  # a config saved by an earlier version keeps its meaning
            config = cls.upgrade_config(config)
        card_path = path / CARD_NAME
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        try:
            model = cls(config, None, card)  # the config is the constructor; it builds a fresh UNet
        except (ConfigError, RuntimeError, KeyError, TypeError, ValueError) as e:
            raise InvalidModelError(f"config does not describe a model ({e})", config_path) from e
        try:
            model.unet.load_state_dict(load_file(str(weights_path)), strict=True)
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            raise InvalidModelError(f"weights do not match the config ({e})", weights_path) from e
        model.model_card["base_sha256"] = sha256_file(weights_path)
        if adapter is not None:
            model.load_adapter(adapter)
        if device is not None:
            model.to(device)
        return model

    def save_pretrained(self, path: str | Path) -> Path:
        """Write config.json, model.safetensors, model_card.json and README.md into ``path``.

        A loaded LoRA adapter is merged into the saved weights (the card keeps the adapter's facts).
        Every file is written atomically.
        """
        from safetensors.torch import save

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        unet = self.base_unet(merged=True)  # type: ignore[attr-defined]
        state = {k: v.detach().to("cpu").contiguous() for k, v in unet.state_dict().items()}
        card = dict(self.model_card)
        card.pop("base_sha256", None)
        card["parameters"] = int(sum(p.numel() for p in unet.parameters()))
        card.setdefault("versions", versions())
        card["image_size"] = self.config["image_size"]
        card["spacing_mm"] = self.config["spacing_mm"]
        atomic_write_bytes(path / WEIGHTS_NAME, save(state))
        atomic_write_text(path / CONFIG_NAME, json.dumps(self.config, indent=2) + "\n")
        atomic_write_text(path / CARD_NAME, json.dumps(card, indent=2, default=str) + "\n")
        atomic_write_text(path / README_NAME, render_model_card(card, self.config))
        return path


def render_model_card(card: dict[str, Any], config: dict[str, Any]) -> str:
    """A short Markdown model card (README.md) from the model-card dict."""
    dp = card.get("dp")
    data = card.get("data") or {}
    training = card.get("training") or {}
    lines = [
        f"# {card.get('name', 'medsynth lesion inpainter')}",
        "",
        "Mask-conditioned pixel-space diffusion model that paints a lesion inside a mask on a patch of "
        "breast tissue (medsynth). Synthetic images it makes are not for diagnosis.",
        "",
        "## Model",
        f"- patch: {config['image_size']} px at {config['spacing_mm']} mm/px "
        f"({config['image_size'] * config['spacing_mm']:.1f} mm square)",
        f"- conditional: {config['conditional']}; UNet blocks {config['block_out_channels']}, "
        f"{card.get('parameters', '?')} parameters",
        f"- schedule: {config['beta_schedule']}, {config['prediction_type']}-prediction; sampling "
        f"{config['sampler']} with {config['num_inference_steps']} steps",
        "",
        "## Training",
        f"- data: {data.get('source', '?')} (layout {data.get('layout', '?')}, {data.get('n_cases', '?')} cases, "
        f"{data.get('n_lesion_crops', '?')} lesion crops, {data.get('n_healthy_crops', '?')} healthy crops)",
        f"- data fingerprint (sha256): `{data.get('fingerprint', '?')}`",
        f"- steps: {training.get('steps', '?')}, batch size {training.get('batch_size', '?')}, "
        f"learning rate {training.get('learning_rate', '?')}, mixed precision {training.get('mixed_precision', '?')}",
        "",
        "## Differential privacy",
    ]
    parts = card.get("dp_parts") or (dp or {}).get("parts")
    lines.append(f"- {dp_statement(dp, parts)}.")
    for name, part in (parts.items() if isinstance(parts, dict) else [("", dp)]):
        if part:
            lines.append(_dp_details(part, name))
    if not dp and not parts:
        lines.append("- it may memorize its training data: audit what it generates (`medsynth audit`).")
    if card.get("adapter"):
        lines += ["", "## Adapter", f"- {json.dumps(card['adapter'])}"]
    lines += ["", "## Compute", *compute_lines(card.get("compute"))]
    lines += ["", "## Versions", "- " + ", ".join(f"{k} {v}" for k, v in (card.get("versions") or {}).items()), ""]
    return "\n".join(lines)


def _dp_details(dp: dict[str, Any], name: str) -> str:
    """The numbers behind a ``dp`` entry, for a Markdown card (never a seed or generator state)."""
    label = f"{name}: " if name else ""
    facts = ", ".join(f"{k.replace('_', ' ')} {dp[k]:.4g}" if isinstance(dp.get(k), float) else
                      f"{k.replace('_', ' ')} {dp.get(k)}"
                      for k in ("epsilon", "delta", "noise_multiplier", "max_grad_norm", "sample_rate", "steps",
                                "accountant"))
    return f"- {label}{facts}, noise {dp_noise_of(dp)}, opacus secure mode {dp.get('secure_mode')}"


def compute_lines(compute: dict[str, Any] | None) -> list[str]:
    """The card's lines about where the weights were computed (device, GPU, versions, TF32,
    deterministic) and, after a forced resume, where they were computed before."""
    from medsynth.runtime import describe_environment

    if not compute:
        return ["- compute: not recorded"]
    lines = [f"- compute: {describe_environment(compute)}"]
    lines += [f"- resumed from: {describe_environment(prev)}" for prev in compute.get("previous") or []]
    return lines


def render_adapter_card(card: dict[str, Any]) -> str:
    """A short Markdown model card (README.md) of a LoRA adapter from its model-card dict."""
    dp = card.get("dp")
    lines = [
        f"# {card['name']}",
        "",
        f"LoRA adapter (rank {card['lora']['rank']}) for the medsynth lesion inpainter "
        f"at `{card['base_model']['path']}` "
        f"(base weights sha256 `{card['base_model']['sha256']}`).",
        "",
        f"- trainable parameters: {card['trainable_parameters']}",
        f"- data: {card['data'].get('source')} ({card['data'].get('n_cases')} cases), "
        f"fingerprint `{card['data'].get('fingerprint')}`",
        f"- steps: {card['training']['steps']}",
        f"- DP: {dp_statement(dp)} (the adapter's own fine-tuning data; the base model's DP is its card's)",
        *([_dp_details(dp, "")] if dp else []),
        *compute_lines(card.get("compute")),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in card["versions"].items()),
        "",
    ]
    return "\n".join(lines)
