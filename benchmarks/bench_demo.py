"""End-to-end wall time of ``medsynth demo`` on this machine: ``--quick`` always, the default demo
too unless ``--quick`` is given (issue 8, item 6; budgets: default <= 10 min, quick <= 2 min on 2 cores).

    python -m benchmarks.bench_demo [--quick]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

try:  # run as a module (python -m benchmarks.X) or as a script
    from benchmarks._common import quick_main
except ImportError:  # pragma: no cover
    from _common import quick_main

BENCH = "demo"
BUDGET_S = {"quick": 120.0, "default": 600.0}


def run(quick: bool = False, config: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Time the quick demo (and the default one unless ``quick``); ``config`` is laid over demo.yaml."""
    from medsynth.demo import run_demo

    rows: list[dict[str, Any]] = []
    for mode in ("quick",) if quick else ("quick", "default"):
        with tempfile.TemporaryDirectory(prefix=f"bench_demo_{mode}_") as tmp:
            t0 = time.perf_counter()
            res = run_demo(Path(tmp) / "out", config=config, quick=mode == "quick", progress=False, log=lambda _: None)
            total = time.perf_counter() - t0
        for step, sec in res.timings.items():
            rows.append(
                {"benchmark": BENCH, "metric": f"{mode}_{step}_seconds", "value": float(sec), "unit": "s", "note": ""}
            )
        rows.append(
            {
                "benchmark": BENCH,
                "metric": f"{mode}_total_seconds",
                "value": total,
                "unit": "s",
                "note": f"budget {BUDGET_S[mode]:.0f} s on 2 cores; audit verdict {res.figures.get('audit_verdict')}",
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    return quick_main(run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
