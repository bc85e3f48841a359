"""What the benchmark scripts share: printing result rows and the ``--quick`` command line."""

from __future__ import annotations

import argparse
from typing import Any, Callable


def print_rows(rows: list[dict[str, Any]]) -> None:
    """One line per row: metric, value, unit, note (floats to 4 significant digits)."""
    for r in rows:
        v = r["value"]
        value = f"{v:>12.4g}" if isinstance(v, float) else f"{v!s:>12}"
        print(f"{r['metric']:<44} {value} {r['unit']:<8} {r.get('note', '')}")


def quick_main(run: Callable[..., list[dict[str, Any]]], doc: str | None, argv: list[str] | None = None) -> int:
    """``python benchmarks/bench_X.py [--quick]``: run the benchmark and print its rows."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    args = parser.parse_args(argv)
    print_rows(run(quick=args.quick))
    return 0
