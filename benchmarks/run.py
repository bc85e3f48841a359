"""Run every benchmark and print one table.

    python -m benchmarks.run [--quick] [--only NAME ...] [--json results.json]

Each ``benchmarks/bench_<name>.py`` exposes ``run(quick: bool) -> list[dict]``; a row holds
``benchmark``, ``metric``, ``value``, ``unit`` and optionally ``note``. Figures are measured side by
side in one run (shared machines are noisy: compare ratios), and recorded by hand in BENCHMARKS.md
with the machine and the command. Benchmarks are not timed tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import pkgutil
import platform
import time
import traceback
from pathlib import Path

from rich.console import Console
from rich.table import Table


def machine() -> dict[str, str]:
    import torch

    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": platform.processor() or platform.machine(),
        "cores": str(os.cpu_count()),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes in all)")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names, e.g. audit generate")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)

    names = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                   if m.name.startswith("bench_"))
    if args.only:
        names = [n for n in names if n in args.only]
    console = Console()
    rows: list[dict] = []
    failed = []
    for name in names:
        console.print(f"[bold cyan]benchmark {name}[/] ({'quick' if args.quick else 'full'})")
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f"benchmarks.bench_{name}")
            rows += mod.run(quick=args.quick)
        except Exception:  # one broken benchmark must not hide the others' figures
            failed.append(name)
            console.print(traceback.format_exc())
        console.print(f"  done in {time.perf_counter() - t0:.1f} s")

    table = Table(title=f"medsynth benchmarks — {machine()}")
    for col in ("benchmark", "metric", "value", "unit", "note"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for r in rows:
        v = r["value"]
        table.add_row(r["benchmark"], r["metric"], f"{v:.4g}" if isinstance(v, float) else str(v),
                      r.get("unit", ""), r.get("note", ""))
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "quick": args.quick, "rows": rows}, indent=2))
    if failed:
        console.print(f"[red]failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
