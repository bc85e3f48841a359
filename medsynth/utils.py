"""Small helpers every stage shares, each defined once: a progress bar, a JSON sanitizer, a seed
rule and a file hash. This module is the bottom layer: it imports nothing else of medsynth.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np


def progress_bar(enabled: bool, *fields: str, transient: bool = True, stderr: bool = True) -> Any:
    """One rich progress bar style: description, bar, done/total, elapsed, remaining.

    Use it as a context manager (``with progress_bar(on) as bar: task = bar.add_task(...)``). When
    ``enabled`` is false rich's own ``disable`` makes every call a no-op, so callers never branch.

    Args:
        enabled: show the bar.
        fields: extra text columns, as rich format strings (``"loss {task.fields[loss]:.4f}"``).
        transient: remove the bar when it finishes.
        stderr: draw on stderr (standard output stays clean for results and JSON).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        *(TextColumn(f) for f in fields), TimeElapsedColumn(), TimeRemainingColumn(),
        console=Console(stderr=stderr), transient=transient, disable=not enabled,
    )


def jsonable(obj: Any) -> Any:
    """``obj`` with NumPy scalars and arrays as Python values, paths as strings and NaN/inf as None
    (strict JSON has neither), recursively through dicts, lists and tuples."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def derive_seed(*keys: int) -> int:
    """A 63-bit seed for the stream named by ``keys`` (e.g. ``(seed, index)`` or ``(seed, process,
    step)``): NumPy's SeedSequence hashes the keys, so streams of different keys are independent."""
    words = [int(k) % (1 << 64) for k in keys]
    return int(np.random.SeedSequence(words).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
