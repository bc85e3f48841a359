"""Audit nearest-neighbour search: time and peak memory against the number of training ROIs.

For N training vectors (1k, 10k, 100k ROIs) and M = 10k synthetic queries, the exact top-k inner
product search of ``medsynth.auditing.search.exact_topk`` (FAISS, batched queries) is timed beside
a brute-force NumPy baseline (the full M x N similarity matrix, then argpartition) and the
machine's float32 matmul throughput measured in the same run (the roofline: search does 2·M·N·D
flops). Each measurement runs in its own child process so its peak RSS is its own.

Vectors are random unit vectors of dimension D (128 = an embedding; 4096 = raw 64x64 ROI pixels),
which costs the same as real ones: exact search does not look at the values.

    python -m benchmarks.bench_audit                       # 1k, 10k (and 100k) x 10k, D=128
    python -m benchmarks.bench_audit --sizes 1000 10000 --dim 4096 --queries 2000
    python -m benchmarks.bench_audit --pipeline            # + the full NCC/shift/flip pipeline on 64 px ROIs
    python -m benchmarks.bench_audit --demo demo-output --sizes  # the audit on a demo's output: fixed vs
                                                           # calibrated thresholds, and each MIA attack's cost
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from typing import Any

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _PeakRss:
    """Samples this process's RSS every few ms in a thread; ``peak`` is the largest seen.

    (``ru_maxrss`` cannot be reset, so it would also count the transient peak of making the inputs.)
    """

    def __init__(self, interval: float = 0.002) -> None:
        import threading

        self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            self._stop.wait(interval)

    def __enter__(self) -> "_PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def _data(n: int, m: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from medsynth.auditing.search import l2_normalize

    rng = np.random.default_rng(seed)
    db = l2_normalize(rng.standard_normal((n, d), dtype=np.float32))
    q = l2_normalize(rng.standard_normal((m, d), dtype=np.float32))
    return q, db


def _child(kind: str, n: int, m: int, d: int, k: int, batch: int, conn: Any) -> None:
    """Run one measurement; send back seconds and the peak RSS above the inputs."""
    try:
        q, db = _data(n, m, d, seed=n)
        import gc

        gc.collect()
        base = _rss_mb()
        watch = _PeakRss().__enter__()
        t0 = time.perf_counter()
        if kind == "faiss":
            from medsynth.auditing.search import exact_topk

            exact_topk(q, db, k, batch_size=batch, backend="faiss")
        elif kind == "torch":
            from medsynth.auditing.search import exact_topk

            exact_topk(q, db, k, batch_size=batch, backend="torch")
        elif kind == "numpy_full":
            from medsynth.auditing.search import numpy_bruteforce_topk

            numpy_bruteforce_topk(q, db, k)
        elif kind == "numpy_batched":
            from medsynth.auditing.search import numpy_bruteforce_topk

            for s in range(0, m, batch):
                numpy_bruteforce_topk(q[s : s + batch], db, k)
        else:
            raise ValueError(kind)
        secs = time.perf_counter() - t0
        watch.__exit__(None, None, None)
        conn.send({"seconds": secs, "peak_extra_mb": max(0.0, watch.peak - base), "inputs_mb": base})
    except MemoryError as e:  # reported, not hidden: the row says why it has no number
        conn.send({"error": f"MemoryError: {e}"})
    finally:
        conn.close()


def measure(kind: str, n: int, m: int, d: int, k: int, batch: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(kind, n, m, d, k, batch, child))
    p.start()
    child.close()
    out = parent.recv() if parent.poll(3600) else {"error": "timeout"}
    p.join()
    flops = 2.0 * n * m * d
    if "seconds" in out:
        out["gflops"] = flops / out["seconds"] / 1e9
    return {"kind": kind, "n_train": n, "n_queries": m, "dim": d, **out}


def matmul_gflops(size: int = 2048, repeats: int = 3) -> float:
    """Best-of-``repeats`` float32 GEMM throughput (the roofline of exact search)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b  # warm-up (thread pool, page faults)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best / 1e9


def pipeline(n_train: int, n_syn: int, px: int = 64) -> dict[str, Any]:
    """The whole memorization step on random 64 px ROIs: 4 flips x 5 zooms searched, shifts re-scored."""
    from medsynth.auditing.memorization import nearest_training
    from medsynth.config import load_config

    cfg = load_config(None, kind="audit")["memorization"]
    rng = np.random.default_rng(0)
    train = rng.random((n_train, px, px), dtype=np.float32)
    syn = rng.random((n_syn, px, px), dtype=np.float32)
    base = _rss_mb()
    with _PeakRss() as watch:
        t0 = time.perf_counter()
        nearest_training(syn, train, cfg, "roi", embedder=None)
        secs = time.perf_counter() - t0
    return {"kind": "pipeline", "n_train": n_train, "n_queries": n_syn, "dim": px * px, "seconds": secs,
            "peak_extra_mb": max(0.0, watch.peak - base), "variants": len(cfg["flips"]) * len(cfg["zooms"])}


def demo_stages(demo: str) -> list[dict[str, Any]]:
    """The audit on a ``medsynth demo`` output folder: without and with calibration (the holdout is
    searched too), and the time per lesion ROI of each membership-inference attack on the demo's model."""
    from pathlib import Path

    from medsynth.auditing.mia import (
        lesion_patches,
        model_losses,
        pia_distances,
        training_lesion_rule,
    )
    from medsynth.auditing.run import audit
    from medsynth.config import load_config
    from medsynth.io.datasets import load_dataset
    from medsynth.models.inpainter import LesionInpainter

    d = Path(demo)
    sets = (d / "data" / "train", d / "synthetic", d / "data" / "holdout")
    rows = []
    for label, cfg in (("fixed thresholds", {"memorization": {"calibration": {"enabled": False}}}),
                       ("calibrated thresholds + leak checks", None)):
        t0 = time.perf_counter()
        res = audit(*sets, config=cfg, progress=False)
        rows.append({"kind": "audit", "label": label, "seconds": time.perf_counter() - t0, "verdict": res.verdict,
                     "flagged": len(res.memorization["flagged"])})
    model = LesionInpainter.from_pretrained(d / "model")
    icfg = load_config(None, kind="audit")["mia"]
    px = int(model.config["image_size"])
    roi_mm = float(model.config.get("roi_mm") or px * float(model.config["spacing_mm"]))
    patches, masks, _ = lesion_patches(load_dataset(sets[0]), roi_mm, px, 64, 0, training_lesion_rule(model))
    num_t = int(model.config["num_train_timesteps"])
    t_multi = [int(f * (num_t - 1)) for f in icfg["multi_timesteps"]]
    t_pia = [int(f * (num_t - 1)) for f in icfg["pia_timesteps"]]
    attacks = {
        "loss (1 t x 4 noise draws)": lambda: model_losses(model, patches, masks, [int(0.1 * (num_t - 1))],
                                                           [0, 1, 2, 3], 32),
        "multi_t (5 t x 1 draw)": lambda: model_losses(model, patches, masks, t_multi, [0], 32),
        "pia (eps0 + 2 t)": lambda: pia_distances(model, patches, masks, t_pia, 32),
    }
    for label, fn in attacks.items():
        t0 = time.perf_counter()
        fn()
        rows.append({"kind": "mia", "label": label, "ms_per_roi": 1000 * (time.perf_counter() - t0) / len(patches),
                     "rois": len(patches), "px": px})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000, 100000],
                    help="training-set sizes of the search benchmark (none: skip it)")
    ap.add_argument("--queries", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--k", type=int, default=50, help="neighbours per query (Carlini's n = 50)")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--numpy-max-gb", type=float, default=4.0,
                    help="skip the full-matrix NumPy baseline when M x N floats exceed this")
    ap.add_argument("--kinds", nargs="+", default=["faiss", "numpy_full", "numpy_batched"])
    ap.add_argument("--pipeline", action="store_true", help="also time the full NCC pipeline on 64 px ROIs")
    ap.add_argument("--demo", default=None, help="a `medsynth demo` output folder: time the audit's stages on it")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    import faiss  # noqa: F401  (fail early if missing)
    import torch

    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
               "numpy": np.__version__, "faiss": faiss.__version__, "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    roof = matmul_gflops()
    print(f"machine: {machine['platform']}, {machine['cpus']} cpus; float32 matmul {roof:.1f} GFLOP/s")
    rows = []
    header = (f"{'kind':14s} {'N train':>8s} {'M':>6s} {'D':>5s} "
              f"{'seconds':>9s} {'GFLOP/s':>8s} {'of roof':>7s} {'peak MB':>8s}")
    print(header)
    for n in args.sizes:
        for kind in args.kinds:
            if kind == "numpy_full" and n * args.queries * 4 / 2**30 > args.numpy_max_gb:
                row = {"kind": kind, "n_train": n, "n_queries": args.queries, "dim": args.dim,
                       "error": f"skipped: the {args.queries}x{n} matrix exceeds {args.numpy_max_gb} GB"}
            else:
                row = measure(kind, n, args.queries, args.dim, args.k, args.batch)
            rows.append(row)
            if "seconds" in row:
                print(f"{kind:14s} {n:8d} {args.queries:6d} {args.dim:5d} {row['seconds']:9.3f} "
                      f"{row['gflops']:8.1f} {row['gflops'] / roof:7.2f} {row['peak_extra_mb']:8.0f}", flush=True)
            else:
                print(f"{kind:14s} {n:8d} {args.queries:6d} {args.dim:5d}  {row['error']}", flush=True)
    if args.pipeline:
        for n in (1000,):
            row = pipeline(n, 1000)
            rows.append(row)
            print(f"pipeline (64 px ROIs, {row['variants']} flip/zoom variants, shifts): N={n} M=1000 "
                  f"{row['seconds']:.2f} s, peak +{row['peak_extra_mb']:.0f} MB", flush=True)
    if args.demo:
        for row in demo_stages(args.demo):
            rows.append(row)
            if row["kind"] == "audit":
                print(f"audit of {args.demo}, {row['label']}: {row['seconds']:.1f} s, verdict {row['verdict']}, "
                      f"{row['flagged']} flagged", flush=True)
            else:
                print(f"MIA {row['label']}: {row['ms_per_roi']:.1f} ms per {row['px']} px ROI "
                      f"({row['rois']} ROIs)", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"machine": machine, "matmul_gflops": roof, "results": rows}, fh, indent=2)
    return 0


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Rows for ``python -m benchmarks.run``: exact-search time and memory per training-set size,
    FAISS vs the NumPy baselines, beside the float32 matmul roofline measured in the same run."""
    sizes, queries = ([1000, 5000], 2000) if quick else ([1000, 10000, 100000], 10000)
    roof = matmul_gflops()
    rows: list[dict[str, Any]] = [{"benchmark": "audit", "metric": "float32 matmul roofline", "value": roof,
                                   "unit": "GFLOP/s", "note": "2048x2048 GEMM, best of 3"}]
    for n in sizes:
        for kind in ("faiss", "numpy_batched"):
            r = measure(kind, n, queries, 128, 50, 1024)
            label = f"{kind} N={n} x M={queries}, D=128, k=50"
            if "seconds" not in r:
                rows.append(
                    {"benchmark": "audit", "metric": label, "value": float("nan"), "unit": "s", "note": r["error"]}
                )
                continue
            rows.append({"benchmark": "audit", "metric": label, "value": r["seconds"], "unit": "s",
                         "note": f"peak +{r['peak_extra_mb']:.0f} MB, {r['gflops'] / roof:.2f} of roofline"})
    if not quick:
        r = pipeline(1000, 1000)
        rows.append({"benchmark": "audit", "metric": "copy detection 1k x 1k ROIs (64 px, flips/zooms/shifts)",
                     "value": r["seconds"], "unit": "s", "note": f"peak +{r['peak_extra_mb']:.0f} MB"})
    return rows


if __name__ == "__main__":
    sys.exit(main())
