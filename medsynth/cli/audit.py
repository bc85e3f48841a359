"""``medsynth audit``: the privacy audit that decides whether a synthetic set may be released.

Exit codes: 0 every check passed, 1 a check failed (a copy, a leak or a threshold crossed),
2 bad input (unreadable data, or train and holdout sharing a patient), 3 inconclusive (no check failed,
but one could not tell: too few samples; ``inconclusive: fail`` in the config makes that a 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medsynth.cli._app import EXIT_CHECK_FAILED, EXIT_INCONCLUSIVE, app
from medsynth.cli._device import Device, SpacingMm


@app.command()
def audit(
    train: Path = typer.Option(..., "--train", help="Real images the model was trained on (any dataset layout)."),
    synthetic: Path = typer.Option(..., "--synthetic", help="The synthetic set to be released."),
    holdout: Path = typer.Option(..., "--holdout", help="Real images of other patients the model never saw."),
    model: Optional[Path] = typer.Option(
        None, "--model", help="Model directory: runs membership inference and reads ε/δ."
    ),
    adapter: Optional[Path] = typer.Option(
        None, "--adapter", help="LoRA adapter the set was generated with (needs --model): membership inference "
        "attacks base + adapter, so --train must then be the adapter's training data; DP is composed."
    ),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML laid over configs/audit.yaml (thresholds)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the one-file HTML report here."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the machine-readable verdict here."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    device: Device = None,
    spacing_mm: SpacingMm = None,
) -> None:
    """Audit SYNTHETIC against TRAIN and HOLDOUT: copies, holdout baseline, membership inference, DP, PHI."""
    from rich.console import Console
    from rich.table import Table

    from medsynth.auditing.run import audit as run_audit
    from medsynth.io.spacing import parse_spacing

    console = Console()
    result = run_audit(train, synthetic, holdout, model=model, adapter=adapter, config=config,
                       progress=not quiet, device=device, spacing_mm=parse_spacing(spacing_mm, "--spacing-mm"))
    if json_out is not None:
        result.to_json(json_out)
    if report is not None:
        result.save_html(report)

    unchecked = [c["name"] for c in result.checks if c.get("status") == "not checked"]
    unsure = [c["name"] for c in result.checks if c.get("status") == "inconclusive"]
    title = f"medsynth audit: {result.verdict.upper()}" + "".join(
        f" ({len(names)} {word})" for names, word in ((unsure, "inconclusive"), (unchecked, "not checked")) if names)
    style = {"pass": "bold yellow" if unchecked else "bold green", "fail": "bold red"}.get(
        result.verdict, "bold yellow")
    table = Table(title=title, title_style=style)
    for col in ("check", "result", "value", "threshold"):
        table.add_column(col)
    for c in result.checks:
        value = c["value"]
        shown = c.get("status") or ("pass" if c["passed"] else "fail")
        table.add_row(
            c["name"],
            "[green]pass[/]" if shown == "pass" else "[bold red]FAIL[/]" if shown == "fail" else f"[yellow]{shown}[/]",
            f"{value:.4g}" if isinstance(value, float) else str(value),
            "" if c["threshold"] is None else str(c["threshold"]),
        )
    console.print(table)
    for f in result.memorization["flagged"][:10]:
        console.print(f"[red]copy?[/] {f['synthetic']} ~ {f['nearest_train']} "
                      f"({f['scope']}, NCC {f['ncc']:.3f}, ratio {f['carlini_ratio']:.2f}, {f['transform']})")
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]")
    for path in (json_out, report):
        if path is not None:
            console.print(f"wrote {path}")
    if result.verdict == "fail":
        raise typer.Exit(code=EXIT_CHECK_FAILED)
    if result.verdict == "inconclusive":
        raise typer.Exit(code=EXIT_INCONCLUSIVE)
