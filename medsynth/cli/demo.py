"""``medsynth demo``: the whole mission on embedded phantoms, with a summary at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medsynth.cli._app import app
from medsynth.cli._device import Device


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), "--out", help="Folder for data, model, synthetic set and reports."),
    quick: bool = typer.Option(False, "--quick", help="Tiny settings (about two minutes on 2 cores)."),
    config: Optional[Path] = typer.Option(None, "--config", help="A YAML file laid over configs/demo.yaml."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the demo's outputs in a non-empty OUT."),
    device: Device = None,
) -> None:
    """Run phantoms → train → LoRA (+DP) → generate → evaluate → audit, end to end on a CPU."""
    from rich.console import Console
    from rich.table import Table

    from medsynth.demo import run_demo

    console = Console()
    res = run_demo(
        out, config=config, quick=quick, overwrite=overwrite, log=lambda s: console.print(f"[bold cyan]{s}"),
        device=device,
    )
    table = Table(title="medsynth demo", show_header=True)
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for name, secs in res.timings.items():
        table.add_row(name, f"{secs:.1f}")
    table.add_row("[bold]total", f"[bold]{sum(res.timings.values()):.1f}")
    console.print(table)
    for key, value in res.figures.items():
        console.print(f"  {key}: {value}")
    if res.summary:
        console.print("\n[bold]What the evaluation says[/]")
        for line in res.summary:
            console.print(line, highlight=False, markup=False, soft_wrap=True)
    console.print("\nReports (open in a browser):")
    for key in ("evaluation_report", "audit_report"):
        console.print(f"  {key.replace('_', ' ')}: {res.paths[key].resolve()}")
    console.print(f"Synthetic nnU-Net dataset: {res.paths['synthetic'].resolve()}")
