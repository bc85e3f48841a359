"""LoRA fine-tuning of a trained inpainter (peft), optionally with differential privacy.

The base model is loaded, its UNet wrapped with fresh LoRA adapters
(:func:`medsynth.models.adapters.wrap_lora`), the adapter trained by the same loop as the base
model (:func:`medsynth.models.training.run_loop`), and only the adapter saved
(:func:`medsynth.models.adapters.save_adapter`). Under DP only the LoRA parameters get per-sample
gradients (fewer parameters, less noise per parameter, better utility at the same ε). The settings
and their defaults are ``configs/finetune.yaml``'s.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from medsynth.config import load_config
from medsynth.models.adapters import ADAPTER_CONFIG, save_adapter, wrap_lora
from medsynth.models.data import PatchBank, build_patch_bank
from medsynth.models.inpainter import LesionInpainter
from medsynth.models.pretrained import versions
from medsynth.models.privacy import DPSettings, check_dp_precision
from medsynth.models.training import bank_options, check_output_dir, run_loop
from medsynth.runtime import resolve_device


def finetune_lora(
    base_dir: str | Path,
    data: Any,
    out: str | Path,
    rank: int | None = None,
    steps: int | None = None,
    dp: Any = None,
    config: str | Path | dict[str, Any] | None = None,
    alpha: float | None = None,
    target_modules: list[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
    device: str | None = None,
    force_resume: bool = False,
    **overrides: Any,
) -> Path:
    """Fine-tune a LoRA adapter on ``data`` and save only the adapter in ``out``.

    Args:
        base_dir: a model directory written by :func:`medsynth.models.training.train`.
        data: as for ``train`` (dataset path, Dataset, (image, mask, spacing) tuples or PatchBank).
        out: the adapter directory.
        rank: LoRA rank r (overrides the config's ``lora.rank``).
        steps: fine-tuning steps (overrides the config's ``training.steps``).
        dp: None, True or a dict of DP settings (see ``train``); only the adapter is trained privately.
        config: a YAML path or dict over ``configs/finetune.yaml``.
        alpha: LoRA alpha (overrides ``lora.alpha``; null there means alpha = rank, i.e. scale 1).
        target_modules: module names to adapt (overrides ``lora.target_modules``: the attention
            projections and ResNet convolutions).
        resume: continue from ``out/checkpoints/checkpoint.pt``.
        progress: show progress.
        max_steps: stop early with a checkpoint (an interrupt).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``; None: ``training.device`` of the config.
        force_resume: resume a checkpoint made in another compute environment.
        **overrides: training/data settings (``batch_size``, ``learning_rate``, ...).

    Arguments left None keep the config's value: only what the caller gives overrides the file.

    Returns:
        ``out``.
    """
    base_dir, out = Path(base_dir), Path(out)
    cfg = load_config(config, kind="finetune", overrides={
        "lora.rank": rank, "lora.alpha": alpha, "lora.target_modules": target_modules, "steps": steps,
        "device": device, **overrides,
    })
    resolve_device(cfg["training"]["device"])  # a device this machine lacks fails before anything is read
    resume = resume or force_resume
    base = LesionInpainter.from_pretrained(base_dir)
    lora_cfg = cfg["lora"]
    rank, alpha, targets = int(lora_cfg["rank"]), lora_cfg["alpha"], list(lora_cfg["target_modules"])
    ckpt = check_output_dir(out, resume, ADAPTER_CONFIG)
    settings = DPSettings.from_any(dp, cfg.get("dp"))
    if settings is not None:
        check_dp_precision(cfg["training"]["mixed_precision"])  # before the patches are cut
    model_config = base.config
    bank = data if isinstance(data, PatchBank) else build_patch_bank(
        data, int(model_config["image_size"]), float(model_config["spacing_mm"]), cfg["data"],
        seed=int(cfg["training"]["seed"]), progress=progress, **bank_options(model_config),
    )
    # The adapter's initial weights come from torch's global generator: seed it, as train() does before
    # building the UNet, so the same settings give the same adapter whatever ran before in the process.
    torch.manual_seed(int(cfg["training"]["seed"]))
    peft_unet = wrap_lora(base.unet, rank, alpha, targets, float(lora_cfg["dropout"]))
    result = run_loop(peft_unet, bank, model_config, cfg["training"], cfg["data"], ckpt, resume, settings,
                      max_steps=max_steps, progress=progress, description="fine-tuning LoRA",
                      force_resume=force_resume)
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
        "compute": result.environment,
        "versions": versions(),
    }
    if result.main_process:
        save_adapter(result.module, out, card)
    return out
