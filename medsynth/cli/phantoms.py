"""``medsynth phantoms OUT``: write a dataset of procedural mammography phantoms.

A thin layer over :func:`medsynth.phantoms.make_phantoms`: options lay over the packaged defaults
(``configs/phantoms.yaml``) or a ``--config`` file; a progress bar runs while images are written and
one summary line follows.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Optional

import typer

from medsynth.cli._app import app
from medsynth.errors import ConfigError


def parse_size(text: str) -> tuple[int, int]:
    """``"512x416"`` → (512, 416) rows x cols; anything else is a ConfigError."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×,]\s*(\d+)\s*", text)
    if not match:
        raise ConfigError(f"--size must look like ROWSxCOLS (e.g. 512x416), got {text!r}")
    rows, cols = int(match.group(1)), int(match.group(2))
    if min(rows, cols) < 16:
        raise ConfigError(f"--size must be at least 16x16, got {text!r}")
    return rows, cols


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}" + ("" if k == 1 else "s")


def _size_text(value: Any) -> str:
    """The config's ``size`` (a [rows, cols] list or a "ROWSxCOLS" string) as text for parse_size."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"{value[0]}x{value[1]}"
    return str(value)


def _choice(name: str, value: Any, allowed: tuple[Any, ...]) -> Any:
    if value not in allowed:
        shown = ", ".join(str(a) for a in allowed)
        raise ConfigError(f"--{name} must be one of {shown}, got {value!r}")
    return value


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
    from medsynth.phantoms import LAYOUTS, make_phantoms
    from medsynth.utils import progress_bar

    cfg = load_config(config, kind="phantoms")
    given = {
        "n": n, "seed": seed, "view": view, "density": density, "layout": layout,
        "monochrome": monochrome, "patient_offset": patient_offset, "lesion_fraction": lesion_fraction,
        "workers": workers,
    }
    cfg.update({k: v for k, v in given.items() if v is not None})
    if burned_in_text:
        cfg["burned_in_text"] = True
    rows_cols = parse_size(size if size is not None else _size_text(cfg["size"]))
    view_ = _choice("view", str(cfg["view"]).lower(), ("cc", "mlo"))
    density_ = cfg["density"]
    if density_ is not None:
        density_ = _choice("density", str(density_).lower(), ("a", "b", "c", "d"))
    layout_ = _choice("layout", cfg["layout"], LAYOUTS)
    mono = _choice("monochrome", int(cfg["monochrome"]), (1, 2))
    if int(cfg["n"]) < 1:
        raise ConfigError(f"--n must be at least 1, got {cfg['n']}")
    if int(cfg["seed"]) < 0:
        raise ConfigError(f"--seed must be >= 0, got {cfg['seed']}")
    if int(cfg["workers"]) < 0:
        raise ConfigError(f"--workers must be >= 0, got {cfg['workers']}")
    n_workers = int(cfg["workers"]) or min(4, os.cpu_count() or 1)

    start = time.perf_counter()
    with progress_bar(True) as bar:
        task = bar.add_task("phantoms", total=int(cfg["n"]))
        root = make_phantoms(
            out, int(cfg["n"]), int(cfg["seed"]), size=rows_cols, view=view_, density=density_,
            layout=layout_, monochrome=mono, burned_in_text=bool(cfg["burned_in_text"]),
            lesion_fraction=float(cfg["lesion_fraction"]), patient_offset=int(cfg["patient_offset"]),
            spacing=cfg["spacing_mm"], fov_mm=float(cfg["fov_mm"]), bits_stored=int(cfg["bits_stored"]),
            split=str(cfg["split"]), overwrite=overwrite, workers=n_workers,
            progress=lambda done, total: bar.update(task, completed=done),
        )
    elapsed = time.perf_counter() - start
    import json

    if preview is not None:
        from medsynth.phantoms import render_phantom
        from medsynth.phantoms.preview import sample_sheet

        shown = [
            render_phantom(
                int(cfg["seed"]), rows_cols, view_, density_, index=2 * int(cfg["patient_offset"]) + k,
                spacing=cfg["spacing_mm"], fov_mm=float(cfg["fov_mm"]),
                lesion_fraction=float(cfg["lesion_fraction"]), burned_in_text=bool(cfg["burned_in_text"]),
            )
            for k in range(min(int(cfg["n"]), 8))
        ]
        sample_sheet(preview, phantoms=shown)

    manifest = json.loads((root / "phantoms.json").read_text())
    cases = manifest["cases"]
    n_lesions = sum(len(c["lesions"]) for c in cases)
    with_lesion = sum(1 for c in cases if c["lesions"])
    Console(highlight=False, soft_wrap=True).print(
        f"wrote {_count(len(cases), 'phantom')} ({with_lesion} with lesions, {_count(n_lesions, 'lesion')}, "
        f"{_count(len({c['patient_id'] for c in cases}), 'patient')}) as {layout_} to {root} "
        f"in {elapsed:.1f} s (seed {cfg['seed']}, {rows_cols[0]}x{rows_cols[1]}, {view_.upper()})"
        + (f"; preview {preview}" if preview is not None else "")
    )
