"""``medsynth train``: train the lesion inpainting model on a dataset (a thin layer over
:func:`medsynth.models.training.train`). Run it under ``accelerate launch`` for multi-GPU.

Exit codes: 0 trained (or checkpointed), 2 bad input (unreadable data, bad config, output exists).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medsynth.cli._app import app
from medsynth.cli._device import Deterministic, Device, ForceResume
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
def train(
    data: Path = typer.Argument(
        ..., help="Training data: anything load_dataset reads (CBIS-DDSM, folder, nnU-Net, MONAI)."
    ),
    out: Path = typer.Option(..., "--out", help="Model directory to write (checkpoints in OUT/checkpoints)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML laid over configs/train.yaml."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Patch size in pixels (64 on CPU)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size (expected batch size under DP)."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from OUT/checkpoints/checkpoint.pt."),
    mixed_precision: Optional[str] = typer.Option(None, "--mixed-precision", help="no | bf16 | fp16."),
    spacing_mm: Optional[str] = typer.Option(
        None, "--spacing-mm", help="Pixel spacing (mm; one number or ROW,COL) of images whose files state none."
    ),
    lesion_class: Optional[list[str]] = typer.Option(
        None, "--class", help="Train a painter of these classes only: mass|calcification (repeat or comma-separate). "
        "(default both)"
    ),
    dp: DpFlag = False,
    target_epsilon: TargetEpsilon = None,
    target_delta: TargetDelta = None,
    max_grad_norm: MaxGradNorm = None,
    secure_mode: SecureMode = False,
    dp_seeded_noise: SeededNoise = False,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    device: Device = None,
    deterministic: Deterministic = None,
    force_resume: ForceResume = False,
) -> None:
    """Train the mask-conditioned lesion inpainter on DATA and save it in OUT."""
    from medsynth.io.spacing import parse_spacing
    from medsynth.models.training import train as run_train
    from medsynth.runtime import describe_environment

    dp_settings = dp_options(dp, target_epsilon, target_delta, max_grad_norm, secure_mode, dp_seeded_noise)
    classes = [v for item in lesion_class or () for v in item.replace(",", " ").split()] or None
    model = run_train(data, out, config=config, steps=steps, image_size=image_size, resume=resume or force_resume,
                      dp=dp_settings, progress=not quiet, batch_size=batch_size, mixed_precision=mixed_precision,
                      device=device, deterministic=deterministic, force_resume=force_resume,
                      classes=classes, **{"data.spacing_mm": parse_spacing(spacing_mm, "--spacing-mm")})
    card = model.model_card
    print_summary("medsynth train", [
        ("model", str(out)),
        ("patches", f"{card['data']['n_lesion_crops']} lesion + {card['data']['n_healthy_crops']} healthy, "
                    f"{model.config['image_size']} px at {model.config['spacing_mm']} mm/px"),
        ("steps", f"{card['training']['steps']} ({card['training']['seconds_this_run']} s this run)"),
        ("final loss", f"{card['training']['final_loss']:.4f}"),
        ("compute", describe_environment(card.get("compute"))),
        *dp_rows(card.get("dp")),
    ])
