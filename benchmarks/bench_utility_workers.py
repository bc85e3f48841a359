"""Why the utility protocol trains its networks in one-thread worker processes: time per training step
of the whole-image DynUNet as configured (8 patches of 96 px by default, ``mixed_precision`` as this
machine resolves it) in one process with all threads, in one process with one thread, and in two
one-thread processes at once; and the one-thread step in the other precision, for comparison.

    .venv/bin/python benchmarks/bench_utility_workers.py [--steps 60]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time

try:  # run as a module (python -m benchmarks.X) or as a script
    from benchmarks._common import print_rows
except ImportError:  # pragma: no cover
    from _common import print_rows


def configured_precision() -> str:
    """``utility.full.mixed_precision`` of ``configs/evaluate.yaml`` as this machine resolves it."""
    from medsynth.config import load_config
    from medsynth.runtime import resolve_mixed_precision

    return resolve_mixed_precision(load_config(None, kind="evaluate")["utility"]["full"]["mixed_precision"], "cpu")


def step_ms(threads: int, steps: int, precision: str) -> float:
    """Mean milliseconds per training step at ``threads`` torch threads (after 5 warm-up steps): the
    network, loss, memory format, batch and patch of ``configs/evaluate.yaml``'s ``utility.full``, and the
    protocol's own training step, in ``precision`` (``no`` | ``bf16``)."""
    import torch

    from medsynth.config import load_config
    from medsynth.metrics.utility.full import full_loss, make_full_net, training_step

    f = load_config(None, kind="evaluate")["utility"]["full"]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = make_full_net(list(f["filters"]), int(f["deep_supervision"])).to(memory_format=torch.channels_last)
    loss_fn = full_loss(int(f["deep_supervision"]))
    opt = torch.optim.Adam(model.parameters(), lr=float(f["lr"]))
    b, p = int(f["batch_size"]), int(f["patch_px"])
    x = torch.randn(b, 1, p, p).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(b, 1, p, p) > 0.9).long()
    for i in range(steps + 5):
        if i == 5:
            t0 = time.perf_counter()
        training_step(model, opt, loss_fn, x, y, precision)
    return (time.perf_counter() - t0) / steps * 1000


def _child(args: tuple) -> float:
    return step_ms(*args)


def run(quick: bool = False, steps: int | None = None) -> list[dict]:
    """Benchmark rows: ms per step in each arrangement (``quick``: 10 steps instead of 60)."""
    import torch

    from medsynth.runtime import cpu_has_native_bf16

    steps = steps or (10 if quick else 60)
    cores = torch.get_num_threads()
    precision = configured_precision()
    other = "no" if precision == "bf16" else "bf16"
    ctx = multiprocessing.get_context("spawn")  # fresh processes: none has run OpenMP threads before
    with ctx.Pool(1) as pool:
        all_threads = pool.apply(_child, ((cores, steps, precision),))
        one = pool.apply(_child, ((1, steps, precision),))
        # bf16 without native support is emulated (~30x slower): only timed where the chip has it.
        one_other = pool.apply(_child, ((1, steps, other),)) if other == "no" or cpu_has_native_bf16() else None
    with ctx.Pool(cores) as pool:
        side_by_side = pool.map(_child, [(1, steps, precision)] * cores)
    per_network = max(side_by_side) / cores
    rows = [
        {"benchmark": "utility workers", "metric": f"1 process x {cores} threads", "value": round(all_threads, 1),
         "unit": "ms/step", "note": f"{steps} steps"},
        {"benchmark": "utility workers", "metric": "1 process x 1 thread", "value": round(one, 1), "unit": "ms/step",
         "note": ""},
        {"benchmark": "utility workers", "metric": f"{cores} processes x 1 thread, at once",
         "value": round(max(side_by_side), 1), "unit": "ms/step",
         "note": f"{per_network:.1f} ms per network-step: {all_threads / per_network:.2f}x the networks per minute"},
    ]
    for row in rows:
        row["note"] = f"{precision}; {row['note']}".rstrip("; ")
    if one_other is not None:
        rows.append({"benchmark": "utility workers", "metric": f"1 process x 1 thread, {other}",
                     "value": round(one_other, 1), "unit": "ms/step",
                     "note": f"{one_other / one:.2f}x the configured precision's ({precision}) step time"})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="10 steps")
    p.add_argument("--steps", type=int, default=None)
    a = p.parse_args(argv)
    print_rows(run(quick=a.quick, steps=a.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
