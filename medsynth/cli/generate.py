"""``medsynth generate``: write a synthetic segmentation training set with a trained inpainter.

A thin layer over :func:`medsynth.generation.pipeline.generate`: the options the user gave lay over
the packaged defaults (``configs/generate.yaml``) or a ``--config`` file (options left out are None
and leave the file alone); the mask options are merged and checked by
:func:`medsynth.generation.masks.mask_settings`. A rich progress bar with cases/s runs while cases
are written and a summary table follows.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import typer

from medsynth.cli._app import app
from medsynth.cli._device import Deterministic, Device, ForceResume


def _split(values: Optional[list[str]]) -> Optional[list[str]]:
    """Repeated and comma-separated values -> one list (None when not given)."""
    if not values:
        return None
    return [v for item in values for v in item.replace(",", " ").split() if v]


@app.command()
def generate(
    model: Path = typer.Option(..., "--model", help="Model directory (medsynth train)."),
    backgrounds: Path = typer.Option(
        ..., "--backgrounds", help="Dataset of background images (any layout load_dataset reads)."
    ),
    out: Path = typer.Option(..., "--out", help="Output folder (must be empty unless --resume/--overwrite)."),
    masks: Optional[str] = typer.Option(
        None, "--masks", help="Lesion outlines: 'shapes' or 'real:DATA'. (default shapes)"
    ),
    n: Optional[int] = typer.Option(None, "--n", help="Number of cases. (default 100)"),
    format: Optional[str] = typer.Option(None, "--format", help="nnunet | monai | dicom | png. (default nnunet)"),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="LoRA adapter directory."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Run seed; case i depends only on (seed, i). (default 0)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Cases per step (memory only). (default 8)"),
    model_batch: Optional[int] = typer.Option(
        None, "--model-batch", help="Patches per model call; part of the output's definition. (default 8)"
    ),
    steps: Optional[int] = typer.Option(
        None, "--steps", help="Sampling steps of masses (default: the model's); calcifications: "
        "calcification_sampling in the config."
    ),
    shape: Optional[list[str]] = typer.Option(
        None, "--shape", help="round|oval|lobulated|irregular (repeat or comma-separate)."
    ),
    margin: Optional[list[str]] = typer.Option(
        None, "--margin", help="circumscribed|ill-defined|spiculated (repeat or comma-separate)."
    ),
    lesion_class: Optional[list[str]] = typer.Option(
        None, "--class", help="mass|calcification (repeat or comma-separate)."
    ),
    size_mm: Optional[str] = typer.Option(None, "--size-mm", help="Lesion size range MIN:MAX in mm. (default 5:15)"),
    lesions_per_case: Optional[int] = typer.Option(None, "--lesions-per-case", help="Lesions per image. (default 1)"),
    density: Optional[list[str]] = typer.Option(
        None, "--density", help="Breast density asked of the painter: a|b|c|d|background (repeat or comma-separate)."
    ),
    pathology: Optional[list[str]] = typer.Option(
        None, "--pathology", help="benign|malignant asked of the painter (repeat or comma-separate)."
    ),
    birads: Optional[list[str]] = typer.Option(
        None, "--birads", help="BI-RADS assessment 0-5 asked of the painter (repeat or comma-separate)."
    ),
    subtlety: Optional[list[str]] = typer.Option(
        None, "--subtlety", help="Subtlety 1 (subtle) - 5 (obvious) asked of the painter (repeat or comma-separate)."
    ),
    guidance_scale: Optional[float] = typer.Option(
        None, "--guidance-scale", help="Classifier-free guidance (1 = none; >1 costs two UNet calls a step)."
    ),
    spacing_mm: Optional[str] = typer.Option(
        None, "--spacing-mm", help="Pixel spacing (mm; one number or ROW,COL) of backgrounds whose files state none."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in OUT."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous medsynth output in OUT."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file laid over configs/generate.yaml."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    device: Device = None,
    deterministic: Deterministic = None,
    force_resume: ForceResume = False,
) -> None:
    """Paint lesions into background mammograms and write a segmentation training set with a manifest.

    --shape, --margin, --class and --size-mm choose the outlines and, for an attribute-conditioned
    model, also what it paints; --density, --pathology, --birads and --subtlety steer the painter only.
    Calcifications are not painted unless asked for (--class calcification), with a warning while the
    benchmark has not shown that they help.
    """
    from medsynth.config import load_config
    from medsynth.generation.masks import mask_settings
    from medsynth.generation.pipeline import generate as run_generate
    from medsynth.io.spacing import parse_spacing

    cfg = load_config(config, kind="generate", overrides={
        "n": n, "seed": seed, "format": format, "batch_size": batch_size, "model_batch": model_batch,
        "num_inference_steps": steps, "lesions_per_case": lesions_per_case, "device": device,
        "deterministic": deterministic,
        "spacing_mm": parse_spacing(spacing_mm, "--spacing-mm"), "conditioning.density": _split(density),
        "conditioning.pathology": _split(pathology), "conditioning.birads": _split(birads),
        "conditioning.subtlety": _split(subtlety), "conditioning.guidance_scale": guidance_scale,
    })
    source, mask_options = mask_settings(cfg["masks"], source=masks, shapes=_split(shape), margins=_split(margin),
                                         classes=_split(lesion_class), size_mm=size_mm)
    writer_options = dict(cfg["nnunet"]) if cfg["format"] == "nnunet" else {}

    conditioning = {k: v for k, v in cfg["conditioning"].items() if k != "guidance_scale"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        result = run_generate(
            model, backgrounds, source, int(cfg["n"]), out, str(cfg["format"]), seed=int(cfg["seed"]),
            adapter=adapter, batch_size=int(cfg["batch_size"]), resume=resume or force_resume, overwrite=overwrite,
            device=cfg["device"], deterministic=bool(cfg["deterministic"]), force_resume=force_resume,
            num_inference_steps=cfg["num_inference_steps"], progress=not quiet,
            model_batch=int(cfg["model_batch"]), lesions_per_case=int(cfg["lesions_per_case"]),
            placement=dict(cfg["placement"]), mask_options=mask_options, writer_options=writer_options,
            spacing_mm=cfg["spacing_mm"], conditioning=conditioning,
            guidance_scale=cfg["conditioning"]["guidance_scale"], config=config,
        )
    notes = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    if result.manifest is None:  # a worker process of a multi-process run: the main one reports
        return
    _summary(result, notes)


def _summary(result, notes: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    from medsynth.runtime import describe_environment

    table = Table(title="medsynth generate", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("output", str(result.out))
    table.add_row("format", result.format)
    table.add_row("cases", f"{result.n} ({result.generated} generated now, {result.skipped} resumed)")
    table.add_row(
        "lesions painted", ", ".join(f"{v} {k}" for k, v in sorted(result.lesions.items())) or "none (resumed)"
    )
    table.add_row("time", f"{result.seconds:.1f} s ({result.cases_per_s:.2f} cases/s)")
    table.add_row("compute", describe_environment(result.compute))
    table.add_row("index", ", ".join(p.as_posix() for p in result.index_files) or "-")
    table.add_row("manifest", str(result.manifest))
    for note in notes:
        table.add_row("note", note)
    Console(highlight=False).print(table)
