"""``medsynth evaluate``: fidelity/diversity of a synthetic set, or (``--utility``) its downstream value.

A thin layer over :func:`medsynth.metrics.evaluate.evaluate` and
:func:`medsynth.metrics.utility.evaluate_utility`: parse options, call, print a rich table, write
the JSON and HTML report when asked. Options left out are None, so ``--config`` (laid over
``configs/evaluate.yaml``) decides them; the API reads the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from medsynth.cli._app import app
from medsynth.cli._device import Device

if TYPE_CHECKING:
    from rich.console import Console

    from medsynth.metrics.evaluate import EvaluationResult
    from medsynth.metrics.utility import UtilityResult


@app.command()
def evaluate(
    real: Optional[Path] = typer.Option(None, "--real", help="Real dataset (any layout load_dataset reads)."),
    synthetic: Optional[Path] = typer.Option(None, "--synthetic", help="Synthetic dataset to evaluate."),
    features: Optional[str] = typer.Option(
        None, "--features", help="Feature extractor: domain | random | inception:PATH. (default domain)"
    ),
    inception_weights: Optional[Path] = typer.Option(
        None, "--inception-weights", help="Also report FID with the standard Inception (pt_inception-2015-12-05 file)."
    ),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON here."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write a self-contained HTML report here."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML laid over configs/evaluate.yaml."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache of domain encoders and real features."),
    utility: bool = typer.Option(False, "--utility", help="Run the downstream segmentation utility test instead."),
    real_train: Optional[Path] = typer.Option(None, "--real-train", help="--utility: real training set (with masks)."),
    real_test: Optional[Path] = typer.Option(
        None, "--real-test", help="--utility: held-out real test set (with masks)."
    ),
    steps: Optional[int] = typer.Option(None, "--steps", help="--utility: training steps per model."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="--utility: seeds per training arm."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    device: Device = None,
) -> None:
    """Evaluate a synthetic set: FID/KID/PRDC/MS-SSIM (+ROI FID), or downstream Dice with --utility."""
    from rich.console import Console

    from medsynth.errors import ConfigError

    console = Console()
    if utility:
        missing = [
            n
            for n, v in (("--real-train", real_train), ("--synthetic", synthetic), ("--real-test", real_test))
            if v is None
        ]
        if missing:
            raise ConfigError(f"--utility needs {', '.join(missing)}")
        from medsynth.metrics.utility import evaluate_utility

        res = evaluate_utility(real_train, synthetic, real_test, steps=steps, seeds=seeds, config=config,
                               progress=progress, device=device)
        _print_utility(console, res)
        if json_out is not None:
            console.print(f"JSON: {res.to_json(json_out)}")
        if report is not None:
            console.print(f"report: {res.save_html(report)}")
        return

    missing = [n for n, v in (("--real", real), ("--synthetic", synthetic)) if v is None]
    if missing:
        raise ConfigError(
            f"evaluate needs {', '.join(missing)} (or --utility with --real-train/--synthetic/--real-test)"
        )
    from medsynth.metrics.evaluate import evaluate as run_evaluate

    result = run_evaluate(
        real,
        synthetic,
        features=features,
        inception_weights=inception_weights,
        cache_dir=cache_dir,
        config=config,
        progress=progress,
        device=device,
    )
    _print_metrics(console, result)
    if json_out is not None:
        console.print(f"JSON: {result.to_json(json_out)}")
    if report is not None:
        console.print(f"report: {result.save_html(report)}")


def _print_metrics(console: Console, result: EvaluationResult) -> None:
    from rich.table import Table

    table = Table(title=f"synthetic vs real  (features: {result.meta['feature_extractor']['name']})")
    for col in ("metric", "value", "±/CI", "n real", "n synthetic"):
        table.add_column(col)
    for name, m in result.metrics.items():
        v = m.get("value")
        unc = f"{m['std']:.3g}" if "std" in m else (f"[{m['ci95'][0]:.3g}, {m['ci95'][1]:.3g}]" if "ci95" in m else "")
        if name == "ms_ssim":
            unc += f" (real {m['real_value']:.3g})"
        shown = "not computed" if v is None else f"{v:.4g}"
        table.add_row(name, shown, unc, str(m.get("n_real", "")), str(m.get("n_synthetic", "")))
    console.print(table)
    note = result.metrics.get("fid_inception", {}).get("note")
    if note:
        console.print(f"[dim]{note}[/]")


def _print_utility(console: Console, res: UtilityResult) -> None:
    from rich.table import Table

    table = Table(title=f"downstream Dice on {res.n_test} real test crops")
    for col in ("trained on", "Dice", "95% CI", "per seed", "n train"):
        table.add_column(col)
    for arm, r in res.arms.items():
        table.add_row(
            arm, f"{r['dice_mean']:.3f}", f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]",
            " ".join(f"{v:.3f}" for v in r["seed_means"]), str(r["n_train"]),
        )
    console.print(table)
