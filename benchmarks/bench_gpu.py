"""GPU throughput (issue 16): training images/s in fp32, fp32 with TF32, bf16 and bf16 + channels_last
(goal: bf16 + channels_last at least 2x fp32), and at CBIS-DDSM size the generation cases/s, the
inpainter's patches/s and the peak GPU memory of each.

"CBIS-DDSM size": the model of ``configs/cbis-ddsm.yaml`` (256 px ROIs at 0.25 mm, UNet channels
(64, 128, 256, 256), 2 layers per block, 25 DDIM steps) and backgrounds of 4096 x 3328 px at
0.05 mm, the size and spacing of CBIS-DDSM's scanned films (lesion-free phantoms, written once before
the clock starts). Weights are freshly initialised: speed and memory do not depend on them.

Timing. Training: medsynth's own ``train()`` loop (accelerate, EMA, augmentation, progress), timed
between its per-step progress updates exactly as ``bench_training`` does (the loss is read back each
step, which synchronises the GPU), images/s after ``warmup`` steps, median over ``repeats`` runs with
the variants alternated. "fp32" is true fp32 (TF32 off); "fp32+tf32" allows TF32 in matmuls and
convolutions (PyTorch's default already uses it in cuDNN convolutions); the bf16 variants keep
PyTorch's defaults. Generation: ``generate()``'s own clock (preparation, painting, writing nnU-Net
files, not the model load); the inpainter alone: ``model(patches, masks, seeds=...)`` on
``model_batch`` patches per call, after one warm-up call. Peak memory: ``torch.cuda.max_memory_allocated``
after ``reset_peak_memory_stats``, per measurement ("n/a" off CUDA).

    python -m benchmarks.bench_gpu            # on a GPU: the figures for BENCHMARKS.md (a few minutes)
    python -m benchmarks.bench_gpu --quick    # anywhere: a tiny model on the device "auto" picks
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:  # run as a module (python -m benchmarks.X) or as a script
    from benchmarks._common import quick_main
    from benchmarks.bench_training import _StepClock, images_per_second
except ImportError:  # pragma: no cover
    from _common import quick_main
    from bench_training import _StepClock, images_per_second

BENCH = "gpu"
VARIANTS = ("fp32", "fp32+tf32", "bf16", "bf16+channels_last")

SETTINGS: dict[str, dict[str, Any]] = {
    # Runs on a CPU in a minute or two: the code path, not the figures (one thread, as the tests: 2 shared cores).
    "quick": {
        "device": "auto", "torch_threads": 1,
        "model": {"image_size": 32, "spacing_mm": 0.8, "block_out_channels": [16, 32], "norm_num_groups": 8,
                  "layers_per_block": 1},
        "train_batch": 8, "warmup": 1, "measure": 3, "repeats": 1, "n_phantoms": 4, "phantom_size": [128, 104],
        "variants": list(VARIANTS), "gen_n": 4, "gen_backgrounds": 2, "background_size": [256, 208],
        "background_spacing": 0.4, "model_batch": 4, "sampling_steps": 4, "patch_calls": 2,
    },
    "full": {
        "device": "cuda", "torch_threads": None, "model": "cbis-ddsm",
        "train_batch": 32, "warmup": 3, "measure": 20, "repeats": 2, "n_phantoms": 24, "phantom_size": [512, 416],
        "variants": list(VARIANTS), "gen_n": 32, "gen_backgrounds": 4, "background_size": [4096, 3328],
        "background_spacing": 0.05, "model_batch": 8, "sampling_steps": 25, "patch_calls": 5,
    },
}


def model_settings(model: str | dict[str, Any]) -> dict[str, Any]:
    """The model section to benchmark: a packaged config's (``"cbis-ddsm"``) or the given settings."""
    from medsynth.config import load_config

    if isinstance(model, str):
        cfg = load_config(model, kind="train")["model"]
        keys = ("image_size", "spacing_mm", "block_out_channels", "layers_per_block", "norm_num_groups")
        return {k: cfg[k] for k in keys}
    return dict(model)


class _Peak:
    """Peak CUDA memory of a block, in GiB (None off CUDA)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.gib = device, None

    def __enter__(self) -> "_Peak":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.gib = torch.cuda.max_memory_allocated(self.device) / 2**30


def train_throughput(bank: Any, model: dict[str, Any], variant: str, batch: int, warmup: int, measure: int,
                     device: torch.device) -> tuple[float, float | None]:
    """(images/s, peak GiB) of medsynth's ``train()`` in one variant of :data:`VARIANTS`."""
    from medsynth.models import training
    from medsynth.runtime import tf32_mode

    clock = _StepClock()
    original = training.progress_bar
    training.progress_bar = lambda enabled, *fields, **kwargs: clock
    mp = "bf16" if variant.startswith("bf16") else "no"
    try:
        with tempfile.TemporaryDirectory(prefix="medsynth-bench-gpu-") as tmp, _Peak(device) as peak:
            tf32 = {"fp32": tf32_mode(False), "fp32+tf32": tf32_mode(True)}.get(variant)
            with tf32 if tf32 is not None else _nothing():
                training.train(bank, Path(tmp) / "model", steps=warmup + measure + 1, progress=True,
                               mixed_precision=mp, channels_last=variant.endswith("channels_last"), batch_size=batch,
                               warmup_steps=1, checkpoint_every=10**9, device=str(device), **model)
    finally:
        training.progress_bar = original
    return images_per_second(clock.times, batch, warmup), peak.gib


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def inpainter_throughput(model: Any, calls: int, batch: int, device: torch.device) -> tuple[float, float | None]:
    """(patches/s, peak GiB) of ``model(patches, masks, seeds=...)`` on ``batch`` patches per call."""
    size = int(model.config["image_size"])
    rng = np.random.default_rng(0)
    patches = rng.uniform(0.2, 0.6, (batch, size, size)).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    masks = np.broadcast_to((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 6) ** 2, patches.shape).copy()
    model(patches, masks, seeds=list(range(batch)))  # warm-up: cuDNN algorithm choice, allocations
    with _Peak(device) as peak:
        t0 = time.perf_counter()
        for c in range(calls):
            model(patches, masks, seeds=[c * batch + i for i in range(batch)])  # returns on the CPU: synchronised
        seconds = time.perf_counter() - t0
    return calls * batch / seconds, peak.gib


def run(quick: bool = False, **overrides: Any) -> list[dict[str, Any]]:
    """Measure; ``overrides`` replace entries of ``SETTINGS["quick" | "full"]``."""
    from medsynth.generation.pipeline import generate
    from medsynth.models.data import build_patch_bank
    from medsynth.models.inpainter import LesionInpainter
    from medsynth.phantoms import make_phantoms, render_phantom
    from medsynth.runtime import compute_environment, describe_environment, resolve_device

    s = {**SETTINGS["quick" if quick else "full"], **overrides}
    rows: list[dict[str, Any]] = []

    def row(metric: str, value: Any, unit: str, note: str = "") -> None:
        rows.append({"benchmark": BENCH, "metric": metric, "value": value, "unit": unit, "note": note})

    if not quick and s["device"] == "cuda" and not torch.cuda.is_available():
        row("not_run", "n/a", "", "needs a CUDA device; `--quick` runs the same code on the CPU")
        return rows
    device = resolve_device(s["device"])
    model = model_settings(s["model"])
    if s.get("torch_threads"):
        torch.set_num_threads(int(s["torch_threads"]))
    row("device", describe_environment(compute_environment(device)), "", f"{os.cpu_count()} CPU cores")
    mem_note = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "not measured off CUDA"

    # 1. Training throughput per variant (alternated within each repeat), medsynth's train() loop.
    cases = [(p.image, p.label > 0, tuple(p.spacing)) for p in
             (render_phantom(11, size=tuple(s["phantom_size"]), index=i) for i in range(int(s["n_phantoms"])))]
    bank = build_patch_bank(cases, int(model["image_size"]), float(model["spacing_mm"]),
                            {"healthy_crops_per_case": 2}, seed=11)
    speed: dict[str, list[float]] = {}
    peaks: dict[str, float | None] = {}
    for _ in range(int(s["repeats"])):
        for variant in s["variants"]:
            ips, gib = train_throughput(bank, model, variant, int(s["train_batch"]), int(s["warmup"]),
                                        int(s["measure"]), device)
            speed.setdefault(variant, []).append(ips)
            peaks[variant] = gib
    size = f"{model['image_size']} px, channels {model['block_out_channels']}"
    for variant in s["variants"]:
        row(f"train_images_per_s_{variant}", statistics.median(speed[variant]), "img/s",
            f"batch {s['train_batch']}, {size}, {s['measure']} steps after {s['warmup']}, median of "
            f"{len(speed[variant])}")
        row(f"train_peak_memory_{variant}", "n/a" if peaks[variant] is None else peaks[variant], "GiB", mem_note)
    if {"fp32", "bf16+channels_last"} <= set(speed):
        best = statistics.median(speed["bf16+channels_last"])
        row("train_speedup_bf16_channels_last_over_fp32", best / statistics.median(speed["fp32"]), "x",
            "goal >= 2 (true fp32, TF32 off)")
        if "fp32+tf32" in speed:
            row("train_speedup_bf16_channels_last_over_fp32_tf32", best / statistics.median(speed["fp32+tf32"]), "x",
                "against fp32 with TF32 matmuls and convolutions")

    # 2. Generation at CBIS-DDSM size: the whole pipeline, then the inpainter alone.
    torch.manual_seed(0)
    inpainter = LesionInpainter(dict(model, num_inference_steps=int(s["sampling_steps"]))).to(device)
    mb = int(s["model_batch"])
    with tempfile.TemporaryDirectory(prefix="medsynth-bench-gpu-gen-") as tmp:
        backgrounds = make_phantoms(Path(tmp) / "bg", n=int(s["gen_backgrounds"]), seed=5,
                                    size=tuple(s["background_size"]), layout="folder", lesion_fraction=0.0,
                                    spacing=float(s["background_spacing"]), workers=min(4, os.cpu_count() or 1))
        with _Peak(device) as peak:
            result = generate(inpainter, backgrounds, "shapes", int(s["gen_n"]), Path(tmp) / "out", "nnunet", seed=0,
                              batch_size=mb, model_batch=mb, progress=False, device=str(device))
    shape = "x".join(str(v) for v in s["background_size"])
    row("generate_cases_per_s", result.cases_per_s, "cases/s",
        f"{s['gen_n']} cases, {shape} px backgrounds at {s['background_spacing']} mm, nnunet, model batch {mb}, "
        f"{s['sampling_steps']} steps; preparation + painting + writing")
    row("generate_peak_memory", "n/a" if peak.gib is None else peak.gib, "GiB", mem_note)
    pps, gib = inpainter_throughput(inpainter, int(s["patch_calls"]), mb, device)
    row("inpainter_patches_per_s", pps, "patches/s", f"{size}, batch {mb}, {s['sampling_steps']} DDIM steps")
    row("inpainter_peak_memory", "n/a" if gib is None else gib, "GiB", mem_note)
    return rows


def main(argv: list[str] | None = None) -> int:
    return quick_main(run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
