"""Benchmark of ``medsynth generate``: cases/s at the default settings and peak memory vs N.

Each measurement runs in a fresh subprocess that reports its own peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``), so runs with different N do not share a heap.
Backgrounds are full-size phantoms (default 512x416 px); the model has the default architecture
and sampler settings of ``configs/train.yaml`` (64 px patches, 25 DDIM steps) -- freshly initialised
unless ``--model`` names a trained one (speed does not depend on the weights).
Memory is bounded by the ``batch_size`` cases of one step, so compare values of N that are both at
least ``batch_size`` (default 8). On a shared machine compare CPU-s per case, not wall time.

    .venv/bin/python benchmarks/bench_generate.py --n 8 32 --size 512x416 --format nnunet
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import torch
from medsynth.generation.pipeline import generate
args = json.loads(sys.argv[1])
if args["threads"]:
    torch.set_num_threads(args["threads"])
t0 = time.perf_counter()
c0 = time.process_time()
r = generate(args["model"], args["backgrounds"], "shapes", args["n"], args["out"], args["format"], seed=0,
             batch_size=args["batch_size"], progress=False)
wall = time.perf_counter() - t0
cpu = time.process_time() - c0
print(json.dumps({"n": args["n"], "wall_s": wall, "cpu_s": cpu, "loop_s": r.seconds, "cases_per_s": r.cases_per_s,
                  "cpu_s_per_case": cpu / args["n"], "threads": torch.get_num_threads(),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(n_values: list[int], size: str = "512x416", n_backgrounds: int = 8, format: str = "nnunet",
            batch_size: int = 8, threads: int = 0, model: Path | None = None, verbose: bool = True) -> list[dict]:
    """Generate N cases for each N in ``n_values`` in a fresh subprocess; one result dict per N."""
    from medsynth.models.inpainter import LesionInpainter
    from medsynth.phantoms import make_phantoms

    rows, cols = (int(v) for v in size.lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="bench_generate_"))
    t0 = time.perf_counter()
    backgrounds = make_phantoms(work / "backgrounds", n=n_backgrounds, seed=0, size=(rows, cols),
                                lesion_fraction=0.0, layout="folder")
    if verbose:
        print(f"backgrounds: {n_backgrounds} phantoms {rows}x{cols} in {time.perf_counter() - t0:.1f} s")
    if model is None:
        model = work / "model"
        LesionInpainter().save_pretrained(model)  # default config: 64 px, 25 DDIM steps
    results = []
    for n in n_values:
        spec = {"model": str(model), "backgrounds": str(backgrounds), "n": n, "out": str(work / f"out_{n}"),
                "format": format, "batch_size": batch_size, "threads": threads}
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res.update(size=size, format=format, batch_size=batch_size, load_avg=os.getloadavg()[0])
        results.append(res)
        if verbose:
            print(f"N={n:4d}: {res['cases_per_s']:.3f} cases/s wall (loop {res['loop_s']:.1f} s), "
                  f"{res['cpu_s_per_case']:.2f} CPU-s/case ({res['threads']} threads), "
                  f"peak RSS {res['peak_rss_mib']:.0f} MiB, load avg {res['load_avg']:.1f}")
    return results


def run(quick: bool = False) -> list[dict]:
    """Rows for ``python -m benchmarks.run``: cases/s and peak memory at two N."""
    # Both N at least batch_size: a step holds min(N, batch_size) cases, so smaller N use less memory.
    n_values = [8, 16] if quick else [8, 32]
    rows = []
    for res in measure(n_values, verbose=False):
        note = f"{res['size']} backgrounds, {res['format']}, batch {res['batch_size']}, load avg {res['load_avg']:.1f}"
        rows.append(
            {
                "benchmark": "generate",
                "metric": f"cases/s (N={res['n']})",
                "value": round(res["cases_per_s"], 3),
                "unit": "cases/s",
                "note": note,
            }
        )
        rows.append({"benchmark": "generate", "metric": f"CPU time per case (N={res['n']})",
                     "value": round(res["cpu_s_per_case"], 2), "unit": "CPU-s", "note": note})
        rows.append(
            {
                "benchmark": "generate",
                "metric": f"peak RSS (N={res['n']})",
                "value": round(res["peak_rss_mib"]),
                "unit": "MiB",
                "note": note,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[8, 32], help="case counts to compare")
    parser.add_argument("--size", default="512x416", help="background size ROWSxCOLS")
    parser.add_argument("--backgrounds", type=int, default=8, help="number of background phantoms")
    parser.add_argument("--format", default="nnunet")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--model", type=Path, default=None, help="a trained model dir (default: fresh default model)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    results = measure(args.n, args.size, args.backgrounds, args.format, args.batch_size, args.threads, args.model)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
