"""The options every computing command shares: where it computes (``--device``) and, for the
commands that train or generate, how reproducibly (``--deterministic``) and whether a run started
in another compute environment may be resumed (``--force-resume``). See ``docs/gpus.md``. Also the
``--spacing-mm`` of the commands that read real scans (``evaluate``, ``audit``; ``medsynth.io.spacing``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

Device = Annotated[
    Optional[str],
    typer.Option("--device", help="auto (CUDA when present, else CPU) | cpu | cuda | cuda:N. (default auto)"),
]
Deterministic = Annotated[
    Optional[bool],
    typer.Option("--deterministic/--no-deterministic",
                 help="PyTorch's deterministic algorithms, TF32 off: bitwise repeatable on a GPU, slower. "
                      "(default off)"),
]
ForceResume = Annotated[
    bool,
    typer.Option("--force-resume", help="Resume even a run started in another compute environment (device, GPU, "
                                        "library versions); the record lists both. Implies --resume."),
]
SpacingMm = Annotated[
    Optional[str],
    typer.Option("--spacing-mm", help="Pixel spacing (mm; one number or ROW,COL) of images whose files state none "
                                      "(never assumed: without it such images are refused)."),
]
