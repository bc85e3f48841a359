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
from medsynth.cli._device import Device, SpacingMm

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
    realism: Optional[bool] = typer.Option(
        None, "--realism/--no-realism", help="Run the C2ST and the lesion statistics (default: the config's, on)."
    ),
    utility: bool = typer.Option(False, "--utility", help="Run the downstream segmentation utility test instead."),
    real_train: Optional[Path] = typer.Option(None, "--real-train", help="--utility: real training set (with masks)."),
    real_test: Optional[Path] = typer.Option(
        None, "--real-test", help="--utility: held-out real test set (with masks)."
    ),
    steps: Optional[int] = typer.Option(None, "--steps", help="--utility: training steps per network (both tasks)."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="--utility: seeds per training arm."),
    task: Optional[str] = typer.Option(None, "--task", help="--utility: crops | full | both. (default both)"),
    regimes: Optional[str] = typer.Option(
        None, "--regimes", help="--utility: fractions of the real-train patients, e.g. 0.1,0.3,1."
    ),
    background_salt: Optional[Path] = typer.Option(
        None, "--background-salt", help="--utility: file with the generate run's salt (hex), to check its manifest."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    device: Device = None,
    spacing_mm: SpacingMm = None,
) -> None:
    """Evaluate a synthetic set: C2ST realism, lesion statistics, FID/KID/PRDC/MS-SSIM with real-vs-real floors;
    or downstream Dice with --utility."""
    from rich.console import Console

    from medsynth.errors import ConfigError
    from medsynth.io.spacing import parse_spacing

    given_spacing = parse_spacing(spacing_mm, "--spacing-mm")

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
                               progress=progress, tasks=task, regimes=_fractions(regimes),
                               background_salt=background_salt, device=device,
                               spacing_mm=given_spacing)
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
        realism=realism,
        progress=progress,
        device=device,
        spacing_mm=given_spacing,
    )
    _print_metrics(console, result)
    _print_realism(console, result)
    if json_out is not None:
        console.print(f"JSON: {result.to_json(json_out)}")
    if report is not None:
        console.print(f"report: {result.save_html(report)}")


def _print_metrics(console: Console, result: EvaluationResult) -> None:
    from rich.table import Table

    scope = result.meta.get("fidelity_scope", "")
    table = Table(title=f"synthetic vs real  (features: {result.meta['feature_extractor']['name']}, on {scope})")
    for col in ("metric", "value", "±/CI", "real-vs-real floor", "n real", "n synthetic"):
        table.add_column(col)
    for name, m in result.metrics.items():
        v = m.get("value")
        if "std" in m:
            unc = "n/a" if m["std"] is None else f"{m['std']:.3g}"
        else:
            unc = f"[{m['ci95'][0]:.3g}, {m['ci95'][1]:.3g}]" if "ci95" in m else ""
        if name == "ms_ssim":
            unc += f" (real {m['real_value']:.3g})"
        floor = m.get("floor")
        shown_floor = "" if not floor else (
            f"{floor['value']:.4g} (synthetic at n={floor['n_real_b']}: {floor['synthetic_at_floor_n']:.4g})"
            if floor.get("value") is not None and floor.get("synthetic_at_floor_n") is not None else "")
        shown = "not computed" if v is None else f"{v:.4g}"
        table.add_row(name, shown, unc, shown_floor, str(m.get("n_real", "")), str(m.get("n_synthetic", "")))
    console.print(table)
    note = result.metrics.get("fid_inception", {}).get("note")
    if note:
        console.print(f"[dim]{note}[/]")


def _print_realism(console: Console, result: EvaluationResult) -> None:
    """The C2ST (overall, per class and margin) and the lesion statistics that differ."""
    from rich.table import Table

    realism = result.realism
    if realism is not None:
        if realism.get("c2st_auc") is None:
            console.print(f"[dim]{realism.get('note', 'C2ST not run')}[/]")
        else:
            table = Table(title="realism: can a classifier tell real lesions from synthetic? (AUC 0.5 = no)")
            for col in ("lesions", "C2ST AUC", "95% CI", "n real", "n synthetic"):
                table.add_column(col)
            rows = [("all", realism["c2st_auc"], realism["c2st_ci95"], realism.get("n_real_rois"),
                     realism.get("n_synthetic_rois"))]
            for kind in ("by_class", "by_margin"):
                for name, r in (realism.get(kind) or {}).items():
                    rows.append((name, r.get("auc"), r.get("ci95"), r.get("n_real"), r.get("n_synthetic")))
            for name, auc, ci, nr, ns in rows:
                table.add_row(str(name), "n/a" if auc is None else f"{auc:.3f}",
                              f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "", str(nr), str(ns))
            console.print(table)
    stats = result.lesion_stats
    if stats is not None and "settings" in stats:
        table = Table(title="lesion statistics at full resolution (synthetic - real, 95% CI over patients)")
        for col in ("statistic", "class", "real median", "synthetic median", "difference", "95% CI", "differs"):
            table.add_column(col)
        for stat, per_class in stats.items():
            if stat in ("radial_spectra", "settings") or not isinstance(per_class, dict):
                continue
            for klass, c in per_class.items():
                med_r, med_s = c["real"]["median"], c["synthetic"]["median"]
                table.add_row(stat, klass, "—" if med_r is None else f"{med_r:.3g}",
                              "—" if med_s is None else f"{med_s:.3g}",
                              "—" if c["difference"] is None else f"{c['difference']:+.3g}",
                              f"[{c['ci95'][0]:+.3g}, {c['ci95'][1]:+.3g}]" if c["ci95"] else (c.get("note") or ""),
                              {True: "yes", False: "no", None: "—"}[c["differs"]])
        console.print(table)
    elif stats is not None:
        console.print(f"[dim]{stats.get('note')}[/]")
def _fractions(text: Optional[str]) -> Optional[list[float]]:
    from medsynth.errors import ConfigError

    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise ConfigError(f"--regimes takes fractions separated by commas (e.g. 0.1,0.3,1), got {text!r}") from e


def _print_utility(console: Console, res: UtilityResult) -> None:
    from rich.table import Table

    from medsynth.metrics.utility.headlines import METRIC_WORDS

    for task, data in res.tasks.items():
        units = (f"{data.get('n_test_crops')} real test crops" if task == "crops"
                 else f"{data.get('n_test_images')} real test images ({data.get('n_test_lesions')} lesions)")
        key = res.headline(task)
        table = Table(title=f"{task}: {METRIC_WORDS.get(key, key)} on {units} of {data['n_test_patients']} patients")
        for col in ("regime", "trained on", "Dice", "95% CI", "per seed", "vs real (95% CI, p)"):
            table.add_column(col)
        for r, reg in data["regimes"].items():
            for arm, a in reg["arms"].items():
                d = a[key]
                ci = "" if d["ci95"][0] is None else f"[{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}]"
                delta_key = {"real+synthetic": "delta", "synthetic": "delta_synthetic_only"}.get(arm)
                diff = ""
                if delta_key and reg[delta_key]["value"] is not None and reg[delta_key]["ci95"][0] is not None:
                    x = reg[delta_key]
                    diff = f"{x['value']:+.3f} [{x['ci95'][0]:+.3f}, {x['ci95'][1]:+.3f}], p={x['p']:.3g}"
                seeds = " ".join("—" if v is None else f"{v:.3f}" for v in d["seed_values"])
                value = "—" if d["value"] is None else f"{d['value']:.3f}"
                table.add_row(f"{float(r):.0%}", arm, value, ci, seeds, diff)
        console.print(table)
    for line in res.summary_lines():
        console.print(line, highlight=False, markup=False, soft_wrap=True)
