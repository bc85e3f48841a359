"""``medsynth finetune``: fine-tune a LoRA adapter on a trained inpainter (a thin layer over
:func:`medsynth.models.lora.finetune_lora`); only the adapter is saved.

Exit codes: 0 adapter written, 2 bad input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from medsynth.cli._app import app
from medsynth.cli._dp import (
    DpFlag,
    MaxGradNorm,
    SecureMode,
    SeededNoise,
    TargetDelta,
    TargetEpsilon,
    dp_options,
    dp_rows,
    print_summary,
)


@app.command()
def finetune(
    model_dir: Path = typer.Argument(..., help="Base model directory (from medsynth train)."),
    data: Path = typer.Argument(..., help="Fine-tuning data: anything load_dataset reads."),
    out: Path = typer.Option(..., "--out", help="Adapter directory to write."),
    lora: bool = typer.Option(True, "--lora/--no-lora", help="Fine-tune a LoRA adapter (the only mode)."),
    rank: Optional[int] = typer.Option(None, "--rank", help="LoRA rank (default: lora.rank of the config)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Fine-tuning steps."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML laid over configs/finetune.yaml."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoints/checkpoint.pt."),
    dp: DpFlag = False,
    target_epsilon: TargetEpsilon = None,
    target_delta: TargetDelta = None,
    max_grad_norm: MaxGradNorm = None,
    secure_mode: SecureMode = False,
    dp_seeded_noise: SeededNoise = False,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Fine-tune a LoRA adapter of MODEL_DIR on DATA.

    Load it with LesionInpainter.from_pretrained(MODEL_DIR, adapter=OUT).
    """
    from medsynth.errors import ConfigError
    from medsynth.models.lora import finetune_lora

    if not lora:
        raise ConfigError("only LoRA fine-tuning is supported; pass --lora")
    dp_settings = dp_options(dp, target_epsilon, target_delta, max_grad_norm, secure_mode, dp_seeded_noise)
    adapter = finetune_lora(model_dir, data, out, rank=rank, steps=steps, dp=dp_settings, config=config,
                            resume=resume, progress=not quiet, batch_size=batch_size)
    card = json.loads((adapter / "model_card.json").read_text())
    size = (adapter / "adapter_model.safetensors").stat().st_size
    print_summary("medsynth finetune", [
        ("adapter", f"{adapter} ({size / 1024:.0f} KiB, rank {card['lora']['rank']}, "
                    f"{card['trainable_parameters']} trainable parameters)"),
        ("steps", str(card["training"]["steps"])),
        *dp_rows(card.get("dp")),
    ])
