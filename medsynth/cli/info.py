"""``medsynth info PATH [--json]``: what medsynth's readers see in a file or a dataset.

For an image file: shape, spacing, photometric interpretation, transfer syntax, laterality/view,
bit depth, the pixel range after decoding (so a broken file fails here, exit 2), and for DICOM
whether identifying attributes (names, IDs, birth date, institution, staff; searched through
nested sequences), dates, private tags, overlays or BurnedInAnnotation = YES are present.
For a dataset (a folder or an index file): its layout, case count, patients and cases with masks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from medsynth.cli._app import app


def describe_scan(path: Path, frame: int = 0) -> dict[str, Any]:
    """Facts about one image file, with its pixels decoded once to prove they are readable."""
    from medsynth.io.readers import load_scan

    scan = load_scan(path, frame=frame)
    pixels = scan.pixels
    info: dict[str, Any] = {
        "kind": "image",
        "path": str(path),
        "format": scan.metadata.get("format"),
        "shape": list(scan.shape),
        "spacing_mm": [round(float(s), 6) for s in scan.spacing],
        "spacing_source": scan.metadata.get("spacing_source"),
        "photometric": scan.photometric,
        "transfer_syntax": scan.transfer_syntax,
        "modality": scan.modality,
        "laterality": scan.laterality,
        "view": scan.view,
        "bits_stored": scan.bits_stored if scan.bits_stored else scan.metadata.get("bits_stored_file"),
        "n_frames": scan.metadata.get("n_frames", 1),
        "pixel_min": float(pixels.min()),
        "pixel_max": float(pixels.max()),
    }
    if scan.metadata.get("format") == "dicom":
        from medsynth.io.dicom import find_phi, read_header

        header, _ = read_header(path)
        found = find_phi(header)
        burned = (scan.metadata.get("burned_in_annotation") or "").upper()
        info.update(
            {
                "inverted_for_display": scan.metadata.get("inverted"),
                "presentation_lut_shape": scan.metadata.get("presentation_lut_shape"),
                "phi_tags": found["phi"],
                "date_tags": found["dates"],
                "private_tags": found["private"],
                "overlays": found["overlays"],
                "burned_in_annotation": burned or None,
                "phi_present": bool(found["phi"] or found["private"] or burned == "YES"),
            }
        )
    if scan.affine is not None:
        info["affine"] = [[round(float(v), 6) for v in row] for row in scan.affine]
    return info


def describe_dataset(path: Path) -> dict[str, Any]:
    """Facts about a dataset: layout, counts, patients (headers only; pixels stay on disk)."""
    from medsynth.io.datasets import load_dataset

    ds = load_dataset(path)
    patients = ds.patients()
    return {
        "kind": "dataset",
        "path": str(path),
        "root": str(ds.root),
        "layout": ds.layout,
        "index_file": str(ds.index_file) if ds.index_file else None,
        "cases": len(ds),
        "cases_with_masks": ds.cases_with_masks(),
        "patients": len(patients),
        "patient_ids_recorded": bool(patients),
        "first_cases": [c.case_id for c in ds[:5]],
    }


def _is_dataset(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() in (".json", ".csv")


@app.command()
def info(
    path: Path = typer.Argument(..., help="An image file (DICOM, NIfTI, PNG, TIFF) or a dataset folder / index file."),
    as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON."),
    frame: int = typer.Option(0, "--frame", help="Frame of a multi-frame DICOM / slice of a NIfTI volume."),
) -> None:
    """Show what medsynth's readers see in an image file or a dataset."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    facts = describe_dataset(path) if _is_dataset(path) else describe_scan(path, frame=frame)
    if as_json:
        typer.echo(json.dumps(facts, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=str(path), show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in facts.items():
        if key in ("path", "affine"):
            continue
        if isinstance(value, list) and key.endswith("_tags") or key in ("overlays",):
            shown = ", ".join(value[:8]) + (f" ... (+{len(value) - 8})" if len(value) > 8 else "") if value else "none"
        else:
            shown = "-" if value is None else str(value)
        table.add_row(key.replace("_", " "), shown)
    Console(highlight=False).print(table)
