"""``medsynth phantoms OUT``: write a dataset of procedural mammography phantoms.

A thin layer over :func:`medsynth.phantoms.make_phantoms_from_config`: the options a user typed lay
over the packaged defaults (``configs/phantoms.yaml``) or a ``--config`` file, the API checks them
(a bad value is a one-line error, exit code 2), a progress bar runs while images are written and
one summary line follows.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from medsynth.cli._app import app


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}" + ("" if k == 1 else "s")


@app.command()
def phantoms(
    out: Path = typer.Argument(..., help="Output folder (created; must be empty unless --overwrite)."),
    n: Optional[int] = typer.Option(None, "--n", help="Number of images (two per patient). (default 200)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed; the same seed gives identical pixels. (default 0)"),
    size: Optional[str] = typer.Option(None, "--size", help="ROWSxCOLS in pixels. (default 512x416)"),
    view: Optional[str] = typer.Option(None, "--view", help="cc or mlo. (default cc)"),
    density: Optional[str] = typer.Option(None, "--density", help="BI-RADS density a|b|c|d (default: per patient)."),
    layout: Optional[str] = typer.Option(None, "--layout", help="cbis-ddsm | nifti | folder. (default cbis-ddsm)"),
    monochrome: Optional[int] = typer.Option(None, "--monochrome", help="1 (stored inverted) or 2. (default 2)"),
    burned_in_text: bool = typer.Option(
        False, "--burned-in-text", help="Write a decoy name and date into the pixels."
    ),
    patient_offset: Optional[int] = typer.Option(
        None, "--patient-offset", help="Skip this many patients. (default 0)"
    ),
    lesion_fraction: Optional[float] = typer.Option(
        None, "--lesion-fraction", help="Share of images with a lesion. (default 0.75)"
    ),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file laid over configs/phantoms.yaml."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing phantoms dataset in OUT."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Processes; 0 = one per core, max 4. (default 0)"),
    preview: Optional[Path] = typer.Option(
        None, "--preview", help="Also save a PNG sheet of the first 8 phantoms with lesion outlines."
    ),
) -> None:
    """Write procedural mammography phantoms (CBIS-DDSM-like DICOM with decoy PHI, NIfTI or PNG)."""
    from rich.console import Console

    from medsynth.config import load_config
    from medsynth.phantoms import make_phantoms_from_config
    from medsynth.phantoms.preview import preview_dataset
    from medsynth.utils import progress_bar

    cfg = load_config(config, kind="phantoms", overrides={
        "n": n, "seed": seed, "size": size, "view": view, "density": density, "layout": layout,
        "monochrome": monochrome, "burned_in_text": True if burned_in_text else None,
        "patient_offset": patient_offset, "lesion_fraction": lesion_fraction, "workers": workers,
    })
    start = time.perf_counter()
    bar = progress_bar(True)
    task = bar.add_task("phantoms", total=None)

    def progress(done: int, total: int) -> None:
        if not bar.live.is_started:  # drawn from the first image on: a bad setting prints only its error
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        root = make_phantoms_from_config(out, cfg, overwrite=overwrite, progress=progress)
    finally:
        bar.stop()
    elapsed = time.perf_counter() - start
    if preview is not None:
        preview_dataset(root, preview)

    manifest = json.loads((root / "phantoms.json").read_text())
    cases = manifest["cases"]
    n_lesions = sum(len(c["lesions"]) for c in cases)
    with_lesion = sum(1 for c in cases if c["lesions"])
    rows, cols = manifest["size"]
    Console(highlight=False, soft_wrap=True).print(
        f"wrote {_count(len(cases), 'phantom')} ({with_lesion} with lesions, {_count(n_lesions, 'lesion')}, "
        f"{_count(len({c['patient_id'] for c in cases}), 'patient')}) as {manifest['layout']} to {root} "
        f"in {elapsed:.1f} s (seed {manifest['seed']}, {rows}x{cols}, {manifest['view'].upper()})"
        + (f"; preview {preview}" if preview is not None else "")
    )
