"""What the benchmark scripts share: printing result rows and the ``--quick`` command line."""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable


def print_rows(rows: list[dict[str, Any]]) -> None:
    """One line per row: metric, value, unit, note (floats to 4 significant digits)."""
    for r in rows:
        v = r["value"]
        value = f"{v:>12.4g}" if isinstance(v, float) else f"{v!s:>12}"
        print(f"{r['metric']:<44} {value} {r['unit']:<8} {r.get('note', '')}")


def quick_main(run: Callable[..., list[dict[str, Any]]], doc: str | None, argv: list[str] | None = None) -> int:
    """``python benchmarks/bench_X.py [--quick] [--set KEY=JSON ...]``: run the benchmark, print its rows.

    ``--set`` passes keyword overrides to ``run`` (e.g. entries of a benchmark's SETTINGS: a smaller
    ROI to afford RePaint's published setting on a CPU).
    """
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="override passed to run()")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set takes KEY=JSON, got {item!r}")
        overrides[key] = json.loads(value)
    print_rows(run(quick=args.quick, **overrides))
    return 0
