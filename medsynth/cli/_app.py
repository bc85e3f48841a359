"""The typer app every command module registers on. Heavy imports (torch, diffusers) belong
inside the command functions so that ``medsynth --help`` stays fast."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="medsynth",
    help="Privacy-preserving synthetic medical imaging: phantoms, lesion inpainting, "
    "segmentation training sets, evaluation and privacy audit.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

state = {"debug": False}

# Exit codes shared by every command.
EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INCONCLUSIVE = 3  # audit only: no check failed, but one could not tell (too few samples)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback on errors."),
) -> None:
    state["debug"] = debug
