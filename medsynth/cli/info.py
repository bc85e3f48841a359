"""``medsynth info PATH [--json]``: what medsynth's readers see in a file or a dataset.

A thin layer over :func:`medsynth.io.inspect.describe` (``medsynth.describe`` in the API): it
prints the facts as a table or as JSON. A file that cannot be read or decoded, or a folder of no
known layout, ends with a one-line error and exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medsynth.cli._app import app


@app.command()
def info(
    path: Path = typer.Argument(..., help="An image file (DICOM, NIfTI, PNG, TIFF) or a dataset folder / index file."),
    as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON."),
    frame: int = typer.Option(0, "--frame", help="Frame of a multi-frame DICOM / slice of a NIfTI volume."),
) -> None:
    """Show what medsynth's readers see in an image file or a dataset."""
    from medsynth.io.inspect import describe

    facts = describe(path, frame=frame)
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
