"""LoRA fine-tuning of a trained inpainter (peft), optionally with differential privacy.

``UNet2DModel`` has no ``add_adapter``, so the UNet is wrapped with ``peft.get_peft_model`` and a
``LoraConfig`` whose ``target_modules`` name the attention projections and the ResNet
convolutions. Only the adapter is trained and saved (``adapter_config.json`` +
``adapter_model.safetensors``, with ``model_card.json`` and ``README.md``); the card records the
SHA-256 of the base weights so the adapter is never loaded onto other weights.
Under DP only the LoRA parameters get per-sample gradients (fewer parameters, less noise per
parameter, better utility at the same ε).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medsynth.errors import InvalidModelError
from medsynth.io.writers.atomic import atomic_write_text
from medsynth.models.data import PatchBank, build_patch_bank
from medsynth.models.inpainter import CARD_NAME, README_NAME, WEIGHTS_NAME, LesionInpainter, versions
from medsynth.models.privacy import DPSettings
from medsynth.models.training import check_output_dir, resolve_config, run_loop

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Attention projections and the ResNet convolutions of diffusers' UNet2DModel.
DEFAULT_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]


def wrap_lora(unet: Any, rank: int, alpha: float | None, target_modules: list[str], dropout: float = 0.0) -> Any:
    """Wrap ``unet`` with fresh LoRA adapters (base weights frozen)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=int(rank), lora_alpha=float(alpha if alpha is not None else rank),
                        target_modules=list(target_modules), lora_dropout=float(dropout), bias="none")
    try:
        return get_peft_model(unet, config)
    except ValueError as e:
        raise InvalidModelError(f"cannot add LoRA adapters to the UNet ({e})") from e


def finetune_lora(
    base_dir: str | Path,
    data: Any,
    out: str | Path,
    rank: int = 4,
    steps: int | None = None,
    dp: Any = None,
    config: str | Path | dict[str, Any] | None = None,
    alpha: float | None = None,
    target_modules: list[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
    **overrides: Any,
) -> Path:
    """Fine-tune a LoRA adapter on ``data`` and save only the adapter in ``out``.

    Args:
        base_dir: a model directory written by :func:`medsynth.models.training.train`.
        data: as for ``train`` (dataset path, Dataset, (image, mask, spacing) tuples or PatchBank).
        out: the adapter directory.
        rank: LoRA rank r.
        steps: fine-tuning steps (default from ``configs/finetune.yaml``).
        dp: None, True or a dict of DP settings (see ``train``); only the adapter is trained privately.
        config: a YAML path or dict over ``configs/finetune.yaml``.
        alpha: LoRA alpha (default = rank, i.e. scale 1).
        target_modules: module names to adapt (default: attention projections and ResNet convs).
        resume: continue from ``out/checkpoints/checkpoint.pt``.
        progress: show progress.
        max_steps: stop early with a checkpoint (an interrupt).
        **overrides: training/data settings (``batch_size``, ``learning_rate``, ...).

    Returns:
        ``out``.
    """
    base_dir, out = Path(base_dir), Path(out)
    base = LesionInpainter.from_pretrained(base_dir)
    cfg = resolve_config(config, "finetune", {"steps": steps, **overrides})
    lora_cfg = cfg["lora"]
    rank = int(rank if rank is not None else lora_cfg["rank"])
    alpha = alpha if alpha is not None else lora_cfg.get("alpha")
    targets = list(target_modules or lora_cfg["target_modules"])
    ckpt = check_output_dir(out, resume, ADAPTER_CONFIG)
    settings = DPSettings.from_any(dp, cfg.get("dp"))
    model_config = base.config
    bank = data if isinstance(data, PatchBank) else build_patch_bank(
        data, int(model_config["image_size"]), float(model_config["spacing_mm"]), cfg["data"],
        seed=int(cfg["training"]["seed"]), progress=progress,
    )
    peft_unet = wrap_lora(base.unet, rank, alpha, targets, float(lora_cfg.get("dropout", 0.0)))
    result = run_loop(peft_unet, bank, model_config, cfg["training"], cfg["data"], ckpt, resume, settings,
                      max_steps=max_steps, progress=progress, description="fine-tuning LoRA")
    if not result.finished:
        return out
    card = {
        "name": "medsynth lesion inpainter LoRA adapter",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "base_model": {"path": str(base_dir), "sha256": base.model_card["base_sha256"]},
        "lora": {"rank": rank, "alpha": alpha if alpha is not None else rank, "target_modules": targets},
        "trainable_parameters": int(sum(p.numel() for p in result.module.parameters() if p.requires_grad)),
        "data": bank.info,
        "training": {**{k: cfg["training"][k] for k in ("batch_size", "learning_rate", "mixed_precision", "seed")},
                     "steps": result.step, "seconds_this_run": round(result.seconds, 1), "final_loss": result.loss},
        "dp": result.dp,
        "versions": versions(),
    }
    if result.main_process:
        save_adapter(result.module, out, card)
    return out


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
        (
            f"- DP: (ε, δ) = ({dp['epsilon']:.4g}, {dp['delta']:.3g}), noise multiplier {dp['noise_multiplier']:.4g}, "
            f"max grad norm {dp['max_grad_norm']}, accountant {dp['accountant']}"
        )
        if dp
        else "- DP: none",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in card["versions"].items()),
        "",
    ]
    atomic_write_text(out / README_NAME, "\n".join(lines))


def load_adapter(model: LesionInpainter, adapter: str | Path) -> LesionInpainter:
    """Attach a saved LoRA adapter to ``model`` (in place); refuses an adapter of other base weights."""
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
    return model


__all__ = ["finetune_lora", "load_adapter", "save_adapter", "wrap_lora", "DEFAULT_TARGET_MODULES", "WEIGHTS_NAME"]
