"""Calcification specks against the sampler: does the painter draw a cluster's specks, and at what cost?

Issue 13 needs calcification clusters of individual specks, painted in at most 8 UNet evaluations.
This benchmark repaints the calcification clusters of held-out real test images (each cluster's own
mask, at the painter's calcification spacing) with each sampling setting of a grid (sampler, steps,
classifier-free guidance), and compares what comes out with the original clusters:

- specks per cluster, their size and brightness: :func:`medsynth.metrics.lesion_stats.detect_specks`
  (the detector of issue 9's lesion statistics), on the original crop and on each repainted one;
- ``shift``: the mean change inside the mask, smoothed over 1 mm, in units of the tissue's own spread
  (the std of the smoothed original in a 1-3 mm ring): a painted region brighter or darker than the
  tissue it replaced (a visible polygon) scores high. Its real-vs-real scale: the same figure for
  other real tissue in the region (each original crop shifted by a quarter of its width), since no
  painter can know the tissue that was under the cluster;
- a sheet of the originals and of every setting, at the painter's spacing (``--sheet``).

The painter: ``--model DIR`` (any attribute-conditioned model), else a dedicated calcification painter
(``classes: [calcification]``) trained here on the phantom benchmark's training set
(``benchmarks/bench_model.py``'s sets), resumable in time boxes under ``--work``.

    python benchmarks/bench_calc_specks.py --work W [--model DIR] [--sheet S.png] [--json J] [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

try:  # run as a module (python -m benchmarks.X) or as a script
    from benchmarks._common import print_rows
    from benchmarks.bench_model import make_sets
except ImportError:  # pragma: no cover
    from _common import print_rows
    from bench_model import make_sets

BENCH = "calc_specks"
# (sampler, steps, guidance scale): UNet evaluations per lesion = steps, x2 with guidance.
GRID = [("dpmsolver++", 8, 1.0), ("ddim", 8, 1.0), ("dpmsolver++", 4, 2.0), ("dpmsolver++", 25, 1.0),
        ("ddim", 25, 1.0), ("ddim", 50, 1.0), ("ddim", 25, 2.0), ("ddim", 25, 4.0), ("dpmsolver++", 8, 4.0)]
SETTINGS: dict[str, dict[str, Any]] = {
    "quick": {"size": (160, 128), "train": 12, "test": 12, "holdout": 2, "backgrounds": 2, "train_steps": 4,
              "train_minutes": None, "batch_size": 4, "grid": [("dpmsolver++", 2, 1.0), ("ddim", 2, 2.0)],
              "max_clusters": 4, "image_size": 32, "tiny": True},
    "full": {"size": (320, 256), "train": 160, "test": 60, "holdout": 40, "backgrounds": 120, "train_steps": 2000,
             "train_minutes": 120, "batch_size": 16, "grid": GRID, "max_clusters": 60, "image_size": None,
             "tiny": False},
}


def _row(metric: str, value: Any, unit: str, note: str = "") -> dict[str, Any]:
    return {"benchmark": BENCH, "metric": metric, "value": value, "unit": unit, "note": note}


def train_painter(train_set: Path, out: Path, s: dict[str, Any]) -> Any:
    """A dedicated calcification painter trained on ``train_set`` (or loaded, or resumed)."""
    from medsynth.models.inpainter import LesionInpainter
    from medsynth.models.training import train

    if (out / "config.json").is_file():
        return LesionInpainter.from_pretrained(out)
    extra: dict[str, Any] = {}
    if s["tiny"]:
        extra = {"image_size": s["image_size"], "block_out_channels": [8, 16, 16], "norm_num_groups": 4,
                 "torch_threads": 1}
    resume = (out / "checkpoints" / "checkpoint.pt").is_file()
    model = train(train_set, out, steps=int(s["train_steps"]), batch_size=int(s["batch_size"]), resume=resume,
                  progress=False, time_limit_minutes=s["train_minutes"], classes=["calcification"], **extra)
    if not (out / "config.json").is_file():
        raise SystemExit(f"training stopped at its time limit: rerun to resume ({out})")
    return model


def cluster_crops(model: Any, test_set: Path, max_clusters: int) -> dict[str, Any]:
    """One crop per calcification cluster of ``test_set``, centred, at the painter's calcification
    spacing and patch size, with its mask and attribute codes."""
    from medsynth.models import attributes as attrs
    from medsynth.models.data import build_patch_bank

    size = int(model.config["image_size"])
    bank = build_patch_bank(test_set, size, float(model.config["spacing_mm"]),
                            {"lesion_crops_per_lesion": 1, "healthy_crops_per_case": 0, "jitter_mm": 0.0},
                            calcification_spacing_mm=model.spacing_for("calcification"), classes=["calcification"])
    keep = np.flatnonzero(~bank.healthy.numpy())[:max_clusters]
    names = [attrs.decode(r)["class"] for r in bank.codes[keep].tolist()]
    assert set(names) <= {"calcification"}, names
    return {"images": bank.images[keep].numpy(), "masks": bank.masks[keep].numpy(), "codes": bank.codes[keep],
            "spacing": float(model.spacing_for("calcification"))}


def speck_figures(images: np.ndarray, masks: np.ndarray, spacing: float,
                  originals: np.ndarray | None = None) -> dict[str, Any]:
    """Specks per cluster (and their size and brightness) and, against ``originals``, the shift."""
    from scipy import ndimage

    from medsynth.metrics.lesion_stats import detect_specks

    counts, sizes, bright, shifts = [], [], [], []
    ring_in, ring_out = max(1, round(1.0 / spacing)), max(2, round(3.0 / spacing))
    sigma = 1.0 / spacing
    for k, (im, mk) in enumerate(zip(images, masks)):
        ring = ndimage.binary_dilation(mk, iterations=ring_out) & ~ndimage.binary_dilation(mk, iterations=ring_in)
        specks = detect_specks(im, mk, ring, (spacing, spacing))
        counts.append(len(specks))
        sizes += [x["size_mm"] for x in specks]
        bright += [x["brightness"] for x in specks]
        if originals is not None:
            a = ndimage.gaussian_filter(np.asarray(im, np.float64), sigma)
            b = ndimage.gaussian_filter(np.asarray(originals[k], np.float64), sigma)
            spread = float(b[ring].std()) if ring.any() else float(b.std())
            shifts.append(abs(float(a[mk].mean() - b[mk].mean())) / max(spread, 1e-6))
    c = np.asarray(counts, float)
    out = {"specks_median": float(np.median(c)),
           "specks_iqr": [float(np.percentile(c, 25)), float(np.percentile(c, 75))],
           "no_speck_share": float((c == 0).mean()),
           "size_mm": float(np.median(sizes)) if sizes else None,
           "brightness": float(np.median(bright)) if bright else None}
    if originals is not None:
        out["shift_median"] = float(np.median(shifts))
        out["shift_over_1_share"] = float((np.asarray(shifts) > 1.0).mean())
    return out


def save_sheet(path: Path, rows: list[tuple[str, np.ndarray]], masks: np.ndarray, n: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n, len(masks))
    fig, ax = plt.subplots(len(rows), n, figsize=(1.6 * n, 1.7 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for j in range(n):
            ax[r, j].imshow(images[j], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax[r, j].set_xticks([])
            ax[r, j].set_yticks([])
            if r == 0:
                ax[r, j].contour(masks[j], [0.5], colors="y", linewidths=0.4)
        ax[r, 0].set_ylabel(label, fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(quick: bool = False, work: str | Path | None = None, model: str | Path | None = None,
        sheet: str | Path | None = None, json_out: str | Path | None = None, **overrides: Any) -> list[dict[str, Any]]:
    import tempfile

    from medsynth.models.inpainter import LesionInpainter

    s = {**SETTINGS["quick" if quick else "full"], **overrides}
    work = Path(work) if work else Path(tempfile.mkdtemp(prefix="bench-calc-"))
    sets = make_sets(work, s)
    t = time.perf_counter()
    if model:
        painter = LesionInpainter.from_pretrained(model)
    else:
        painter = train_painter(sets["train"], work / "calc-painter", s)
    train_s = time.perf_counter() - t
    crops = cluster_crops(painter, sets["test"], int(s["max_clusters"]))
    n = len(crops["masks"])
    real = speck_figures(crops["images"], crops["masks"], crops["spacing"])
    # Real-vs-real scale of the shift: other real tissue under each mask (the crop shifted sideways).
    other = np.roll(crops["images"], crops["images"].shape[-1] // 4, axis=-1)
    real_shift = speck_figures(other, crops["masks"], crops["spacing"], crops["images"])
    real.update(shift_median=real_shift["shift_median"], shift_over_1_share=real_shift["shift_over_1_share"])
    rows = [_row("clusters", n, "count", f"test set, {crops['spacing']} mm/px, {crops['images'].shape[-1]} px"),
            _row("real: specks per cluster", real["specks_median"], "specks",
                 f"IQR {real['specks_iqr']}; size {real['size_mm']} mm; brightness {real['brightness']}; shift of "
                 f"other real tissue {real['shift_median']:.2f} (>1 in {real['shift_over_1_share']:.0%})")]
    results: dict[str, Any] = {"real": real, "settings": {}, "painter": str(model or work / "calc-painter"),
                               "train_seconds": round(train_s, 1)}
    sheet_rows = [("original", crops["images"])]
    for sampler, steps, guidance in s["grid"]:
        t = time.perf_counter()
        painted = painter(crops["images"], crops["masks"], seeds=list(range(n)), num_inference_steps=int(steps),
                          attributes=crops["codes"], guidance_scale=float(guidance), sampler=sampler)
        seconds = time.perf_counter() - t
        evals = painter.unet_evaluations(int(steps), float(guidance))
        fig = speck_figures(painted, crops["masks"], crops["spacing"], crops["images"])
        name = f"{sampler} {steps} steps, guidance {guidance:g}"
        results["settings"][name] = {**fig, "unet_evaluations": evals, "seconds": round(seconds, 2)}
        rows.append(_row(f"{name}: specks per cluster", fig["specks_median"], "specks",
                         f"IQR {fig['specks_iqr']}; none in {fig['no_speck_share']:.0%}; size {fig['size_mm']} mm; "
                         f"brightness {fig['brightness']}; shift {fig['shift_median']:.2f} (>1 in "
                         f"{fig['shift_over_1_share']:.0%}); {evals} UNet evaluations; {seconds:.1f} s"))
        sheet_rows.append((f"{sampler[:4]} {steps}/g{guidance:g}", painted))
    if sheet:
        save_sheet(Path(sheet), sheet_rows, crops["masks"])
    if json_out:
        Path(json_out).write_text(json.dumps(results, indent=1))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (the test suite's smoke run)")
    ap.add_argument("--work", type=Path, default=None, help="cache folder (rerun to resume training)")
    ap.add_argument("--model", type=Path, default=None, help="an attribute-conditioned model (else one is trained)")
    ap.add_argument("--sheet", type=Path, default=None, help="write a PNG sheet of originals and settings")
    ap.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    args = ap.parse_args(argv)
    print_rows(run(quick=args.quick, work=args.work, model=args.model, sheet=args.sheet, json_out=args.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
