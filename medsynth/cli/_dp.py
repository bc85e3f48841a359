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
SecureMode = Annotated[bool, typer.Option("--secure-mode", help="Secure RNG for the DP noise (needs torchcsprng).")]


def dp_options(dp: bool, target_epsilon: Optional[float], target_delta: Optional[float],
               max_grad_norm: Optional[float], secure_mode: bool) -> Optional[dict]:
    """The ``dp`` argument of train/finetune from the CLI flags (None when --dp is off)."""
    from medsynth.errors import ConfigError

    if not dp:
        if any(v is not None for v in (target_epsilon, target_delta, max_grad_norm)) or secure_mode:
            raise ConfigError("--target-epsilon/--target-delta/--max-grad-norm/--secure-mode need --dp")
        return None
    given = {"target_epsilon": target_epsilon, "target_delta": target_delta, "max_grad_norm": max_grad_norm}
    out = {k: v for k, v in given.items() if v is not None}
    if secure_mode:
        out["secure_mode"] = True
    return out


def dp_rows(dp: Optional[dict]) -> list[tuple[str, str]]:
    """Summary rows for a model card's ``dp`` entry."""
    if not dp:
        return [("differential privacy", "none")]
    return [
        ("ε spent", f"{dp['epsilon']:.4g} (δ = {dp['delta']:.3g}, {dp['accountant']})"),
        (
            "noise multiplier",
            f"{dp['noise_multiplier']:.4g}, max grad norm {dp['max_grad_norm']}, sample rate {dp['sample_rate']:.4g}",
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
