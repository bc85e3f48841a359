"""What ``medsynth train`` and ``medsynth finetune`` share: the differential-privacy flags (as
typer ``Annotated`` types, declared once), turning them into the ``dp`` argument of the Python API,
and the closing summary table."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

DpFlag = Annotated[bool, typer.Option("--dp", help="Differential privacy: opacus DP-SGD with Poisson sampling.")]
TargetEpsilon = Annotated[
    Optional[float], typer.Option("--target-epsilon", help="ε to reach at the last step (with --dp).")
]
TargetDelta = Annotated[Optional[float], typer.Option("--target-delta", help="δ (with --dp).")]
MaxGradNorm = Annotated[
    Optional[float], typer.Option("--max-grad-norm", help="Per-sample clipping bound (with --dp).")
]
SecureMode = Annotated[
    bool,
    typer.Option("--secure-mode", help="Require opacus' secure mode (needs torchcsprng); by default it is used "
                 "where torchcsprng imports, else the noise is seeded from os.urandom."),
]
SeededNoise = Annotated[
    bool,
    typer.Option("--dp-seeded-noise", help="DP noise seeded from the training seed: replayable, an experiment "
                 "with no formal guarantee (recorded as dp.noise = seeded)."),
]


def dp_options(dp: bool, target_epsilon: Optional[float], target_delta: Optional[float],
               max_grad_norm: Optional[float], secure_mode: bool, seeded_noise: bool = False) -> Optional[dict]:
    """The ``dp`` argument of train/finetune from the CLI flags (None when --dp is off)."""
    from medsynth.errors import ConfigError

    if not dp:
        if any(v is not None for v in (target_epsilon, target_delta, max_grad_norm)) or secure_mode or seeded_noise:
            raise ConfigError(
                "--target-epsilon/--target-delta/--max-grad-norm/--secure-mode/--dp-seeded-noise need --dp")
        return None
    if secure_mode and seeded_noise:
        raise ConfigError("--secure-mode and --dp-seeded-noise exclude each other")
    given = {"target_epsilon": target_epsilon, "target_delta": target_delta, "max_grad_norm": max_grad_norm}
    out = {k: v for k, v in given.items() if v is not None}
    if secure_mode:
        out["secure_mode"] = True
    if seeded_noise:
        out["noise"] = "seeded"
    return out


def dp_rows(dp: Optional[dict]) -> list[tuple[str, str]]:
    """Summary rows for a model card's ``dp`` entry."""
    from medsynth.models.privacy import dp_noise_of, dp_statement

    if not dp:
        return [("differential privacy", "none")]
    return [
        ("differential privacy", dp_statement(dp)),
        ("ε spent", f"{dp['epsilon']:.4g} (δ = {dp['delta']:.3g}, {dp['accountant']})"),
        (
            "noise",
            f"{dp_noise_of(dp)}, multiplier {dp['noise_multiplier']:.4g}, max grad norm {dp['max_grad_norm']}, "
            f"sample rate {dp['sample_rate']:.4g}, opacus secure mode {dp.get('secure_mode')}",
        ),
    ]


def print_summary(title: str, rows: list[tuple[str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)
