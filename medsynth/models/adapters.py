"""LoRA adapters on the inpainter's UNet (peft): wrapping, and the adapter's files.

``UNet2DModel`` has no ``add_adapter``, so the UNet is wrapped with ``peft.get_peft_model`` and a
``LoraConfig`` whose ``target_modules`` name the attention projections and the ResNet
convolutions. An adapter directory holds only the adapter (``adapter_config.json`` +
``adapter_model.safetensors``, with ``model_card.json`` and ``README.md``); the card records the
SHA-256 of the base weights so the adapter is never loaded onto other weights.

Loading an adapter composes the DP records: the model's card then holds ``dp_parts`` (the base's
and the adapter's ``dp`` entries) and a ``dp`` that is None unless both parts were trained with DP
(:func:`medsynth.models.privacy.compose_dp`), so base + adapter is never called DP on the base's
word alone.

This module acts on the model it is given (its ``unet`` and ``model_card``) and imports no other
model module but the file names of :mod:`medsynth.models.pretrained` and the DP composition rule of
:mod:`medsynth.models.privacy`: the model's ``load_adapter`` calls it, and fine-tuning
(:mod:`medsynth.models.lora`) sits above both.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from medsynth.errors import InvalidModelError
from medsynth.io.writers.atomic import atomic_write_text
from medsynth.models.pretrained import CARD_NAME, README_NAME, render_adapter_card
from medsynth.models.privacy import compose_dp

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def wrap_lora(unet: torch.nn.Module, rank: int, alpha: float | None, target_modules: list[str],
              dropout: float) -> Any:
    """Wrap ``unet`` with fresh LoRA adapters (base weights frozen); the settings are ``configs/finetune.yaml``'s
    ``lora`` section (``alpha`` None means alpha = rank, scale 1)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=int(rank), lora_alpha=float(alpha if alpha is not None else rank),
                        target_modules=list(target_modules), lora_dropout=float(dropout), bias="none")
    try:
        return get_peft_model(unet, config)
    except ValueError as e:
        raise InvalidModelError(f"cannot add LoRA adapters to the UNet ({e})") from e


def base_unet(unet: torch.nn.Module, merged: bool = False) -> torch.nn.Module:
    """The plain ``UNet2DModel`` inside ``unet`` (a merged copy when it carries a LoRA adapter and ``merged``)."""
    try:
        from peft import PeftModel
    except ImportError:  # peft missing: there can be no adapter either
        return unet
    if isinstance(unet, PeftModel):
        if not merged:
            return unet.get_base_model()
        return copy.deepcopy(unet).merge_and_unload()
    return unet


def save_adapter(peft_unet: Any, out: Path, card: dict[str, Any]) -> None:
    """Write the adapter files into ``out``; each file lands atomically (written beside, then moved)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".adapter.", dir=out))
    try:
        peft_unet.save_pretrained(str(tmp))
        for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            if not (tmp / name).is_file():
                raise InvalidModelError(f"peft did not write {name}", tmp)
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_text(out / CARD_NAME, json.dumps(card, indent=2, default=str) + "\n")
    atomic_write_text(out / README_NAME, render_adapter_card(card))


def load_adapter(model: Any, adapter: str | Path) -> Any:
    """Attach a saved LoRA adapter to ``model`` (a ``LesionInpainter``, in place); refuses an adapter
    of other base weights."""
    from peft import PeftModel

    adapter = Path(adapter)
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, CARD_NAME):
        if not (adapter / name).is_file():
            raise InvalidModelError(f"not a medsynth LoRA adapter directory (missing {name})", adapter)
    card = json.loads((adapter / CARD_NAME).read_text())
    want = (card.get("base_model") or {}).get("sha256")
    have = model.model_card.get("base_sha256")
    if want and have and want != have:
        raise InvalidModelError(
            f"adapter was trained on other base weights (sha256 {want[:12]}…, this model {have[:12]}…)", adapter
        )
    try:
        model.unet = PeftModel.from_pretrained(model.unet, str(adapter), is_trainable=False)
    except (ValueError, RuntimeError, KeyError) as e:
        raise InvalidModelError(f"cannot load the adapter ({e})", adapter) from e
    model.unet.eval()
    model.model_card["adapter"] = {k: card.get(k) for k in ("lora", "base_model", "data", "training", "dp")}
    model.model_card["adapter"]["path"] = str(adapter)
    # base + adapter is DP only when both parts are: the card's dp becomes the composition.
    base_dp = model.model_card.get("dp")
    model.model_card["dp_parts"] = {"base": base_dp, "adapter": card.get("dp")}
    model.model_card["dp"] = compose_dp(base_dp, card.get("dp"))
    return model
