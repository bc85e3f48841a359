"""``medsynth train``: train the lesion inpainting model on a dataset (a thin layer over
:func:`medsynth.models.training.train`). Run it under ``accelerate launch`` for multi-GPU.

Exit codes: 0 trained (or checkpointed), 2 bad input (unreadable data, bad config, output exists).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medsynth.cli._app import EXIT_OK, app


def dp_options(dp: bool, target_epsilon: Optional[float], target_delta: Optional[float],
               max_grad_norm: Optional[float], secure_mode: bool) -> Optional[dict]:
    """The ``dp`` argument of train/finetune from the CLI flags (None when --dp is off)."""
    from medsynth.errors import ConfigError

    if not dp:
        if any(v is not None for v in (target_epsilon, target_delta, max_grad_norm)) or secure_mode:
            raise ConfigError("--target-epsilon/--target-delta/--max-grad-norm/--secure-mode need --dp")
        return None
    given = {"target_epsilon": target_epsilon, "target_delta": target_delta, "max_grad_norm": max_grad_norm}
    out = {k: v for k, v in given.items() if v is not None}
    if secure_mode:
        out["secure_mode"] = True
    return out


def print_summary(title: str, rows: list[tuple[str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)


def dp_rows(dp: Optional[dict]) -> list[tuple[str, str]]:
    if not dp:
        return [("differential privacy", "none")]
    return [
        ("ε spent", f"{dp['epsilon']:.4g} (δ = {dp['delta']:.3g}, {dp['accountant']})"),
        ("noise multiplier", f"{dp['noise_multiplier']:.4g}, max grad norm {dp['max_grad_norm']}, sample rate {dp['sample_rate']:.4g}"),
    ]


@app.command()
def train(
    data: Path = typer.Argument(..., help="Training data: anything load_dataset reads (CBIS-DDSM, folder, nnU-Net, MONAI)."),
    out: Path = typer.Option(..., "--out", help="Model directory to write (checkpoints in OUT/checkpoints)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML laid over configs/train.yaml."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Patch size in pixels (64 on CPU)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size (expected batch size under DP)."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from OUT/checkpoints/checkpoint.pt."),
    mixed_precision: Optional[str] = typer.Option(None, "--mixed-precision", help="no | bf16 | fp16."),
    dp: bool = typer.Option(False, "--dp", help="Train with differential privacy (opacus DP-SGD, Poisson sampling)."),
    target_epsilon: Optional[float] = typer.Option(None, "--target-epsilon", help="ε to reach at the last step (with --dp)."),
    target_delta: Optional[float] = typer.Option(None, "--target-delta", help="δ (with --dp)."),
    max_grad_norm: Optional[float] = typer.Option(None, "--max-grad-norm", help="Per-sample clipping bound (with --dp)."),
    secure_mode: bool = typer.Option(False, "--secure-mode", help="Secure RNG for the DP noise (needs torchcsprng)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train the mask-conditioned lesion inpainter on DATA and save it in OUT."""
    from medsynth.models.training import train as run_train

    dp_settings = dp_options(dp, target_epsilon, target_delta, max_grad_norm, secure_mode)
    model = run_train(data, out, config=config, steps=steps, image_size=image_size, resume=resume,
                      dp=dp_settings, progress=not quiet, batch_size=batch_size, mixed_precision=mixed_precision)
    card = model.model_card
    print_summary("medsynth train", [
        ("model", str(out)),
        ("patches", f"{card['data']['n_lesion_crops']} lesion + {card['data']['n_healthy_crops']} healthy, "
                    f"{model.config['image_size']} px at {model.config['spacing_mm']} mm/px"),
        ("steps", f"{card['training']['steps']} ({card['training']['seconds_this_run']} s this run)"),
        ("final loss", f"{card['training']['final_loss']:.4f}"),
        *dp_rows(card.get("dp")),
    ])
    raise typer.Exit(code=EXIT_OK)
