"""Training throughput: medsynth's ``train()`` loop vs a minimal plain training loop, fp32 and bf16.

Both loops train the same UNet (``build_unet`` of the default config) on the same 64 px phantom
patches, batch 32, AdamW, the same loss (``diffusion_loss``), gradient clipping at 1.0. The plain
loop is what diffusers' example scripts reduce to: draw a batch, add noise, forward, backward,
step -- no augmentation, no EMA, no LR schedule, no accelerate, no checkpoints.

Timing method (fair to medsynth: no start-up or data preparation counted): medsynth's loop calls
its progress bar once per step, right after the optimizer and EMA steps; the benchmark swaps
``medsynth.models.training.progress_bar`` for a clock that records a timestamp at each call. The
plain loop records a timestamp at the same point. Throughput = batch x steps / time between the
timestamps of step ``warmup`` and the last step (the first steps pay one-off allocations). The
training data are handed over as a ready ``PatchBank``, so patch cutting is not timed either.
The four variants (medsynth/plain x fp32/bf16) alternate within each repeat; medians over repeats.

When medsynth is slower, the per-step cost of what it does beyond the plain loop -- augmentation
(random lesion masks, flips, intensity), the EMA update, the LR scheduler, the progress/loss sync
and periodic checkpoints (amortised over ``checkpoint_every``) -- is measured in isolation and
reported beside the gap.

    python -m benchmarks.bench_training [--quick]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

try:  # run as a module (python -m benchmarks.X) or as a script
    from benchmarks._common import quick_main
except ImportError:  # pragma: no cover
    from _common import quick_main

BENCH = "training"

SETTINGS: dict[str, dict[str, Any]] = {
    "quick": {"batch_size": 8, "warmup": 1, "measure": 3, "repeats": 1, "n_phantoms": 6,
              "phantom_size": (256, 208), "precisions": ("no", "bf16"), "bf16_repeats": 1},
    # bf16 without native CPU support runs ~3x slower than fp32: fewer repeats keep the run short.
    "full": {"batch_size": 32, "warmup": 1, "measure": 2, "repeats": 2, "n_phantoms": 40,
             "phantom_size": (512, 416), "precisions": ("no", "bf16"), "bf16_repeats": 1},
}


class _StepClock:
    """Stands in for medsynth's rich progress bar; records the time of each per-step update."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def update(self, task: Any, **fields: Any) -> None:
        self.times.append(time.perf_counter())

    def add_task(self, *args: Any, **fields: Any) -> int:
        return 0

    def __enter__(self) -> "_StepClock":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def images_per_second(times: list[float], batch: int, warmup: int) -> float:
    """Throughput between the timestamp of step ``warmup`` and the last one."""
    if len(times) < warmup + 2:
        raise ValueError(f"need at least {warmup + 2} step timestamps, got {len(times)}")
    return batch * (len(times) - 1 - warmup) / (times[-1] - times[warmup])


def medsynth_step_times(bank: Any, steps: int, mixed_precision: str, batch_size: int) -> list[float]:
    """Timestamps of each step of ``medsynth.models.training.train`` (progress bar swapped for a clock)."""
    from medsynth.models import training

    clock = _StepClock()
    original = training.progress_bar
    training.progress_bar = lambda enabled, *fields, **kwargs: clock
    try:
        with tempfile.TemporaryDirectory(prefix="medsynth-bench-train-") as tmp:
            training.train(bank, Path(tmp) / "model", steps=steps, progress=True, mixed_precision=mixed_precision,
                           batch_size=batch_size, warmup_steps=1)
    finally:
        training.progress_bar = original
    return clock.times


def plain_step_times(bank: Any, steps: int, mixed_precision: str, batch_size: int, seed: int = 0) -> list[float]:
    """Timestamps of each step of a minimal plain loop (same UNet, loss, optimizer, batch)."""
    from medsynth.models.inpainter import build_unet, diffusion_loss, make_config, make_noise_scheduler

    config = make_config()
    torch.manual_seed(seed)
    unet = build_unet(config).train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=3e-4)
    scheduler = make_noise_scheduler(config)
    gen = torch.Generator().manual_seed(seed)
    n, T = len(bank), int(config["num_train_timesteps"])
    times = []
    for _ in range(steps):
        idx = torch.randint(0, n, (batch_size,), generator=gen)
        x0 = bank.images[idx][:, None] * 2.0 - 1.0
        masks = bank.masks[idx][:, None].float()
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, T, (batch_size,), generator=gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed_precision == "bf16"):
            loss = diffusion_loss(unet, scheduler, x0, masks, noise, t, config).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter())
    return times


def _median_seconds(fn: Any, repeats: int = 5) -> float:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def overhead_breakdown(bank: Any, batch_size: int) -> dict[str, float]:
    """Seconds per step of each thing medsynth's loop does beyond the plain loop, in isolation."""
    import io

    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    from medsynth.config import load_config
    from medsynth.models.data import augment_batch
    from medsynth.models.inpainter import build_unet, make_config

    cfg = load_config(None, kind="train")
    model_config = make_config(**cfg["model"])
    unet = build_unet(model_config)
    params = [p for p in unet.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, len(bank), (batch_size,), generator=gen)
    images, masks, healthy = bank.images[idx][:, None], bank.masks[idx][:, None].float(), bank.healthy[idx].float()
    ema = EMAModel(params, decay=float(cfg["training"]["ema_decay"]))
    optimizer = torch.optim.AdamW(params, lr=3e-4)
    lr = get_scheduler("cosine", optimizer=optimizer, num_warmup_steps=100, num_training_steps=10**6)

    def checkpoint() -> None:
        # What _save_checkpoint serialises: model, optimizer (AdamW moments), EMA shadow, RNG states.
        buf = io.BytesIO()
        torch.save({"model": unet.state_dict(), "optimizer": {"m": [torch.zeros_like(p) for p in params],
                                                              "v": [torch.zeros_like(p) for p in params]},
                    "ema": ema.state_dict()}, buf)
        with tempfile.NamedTemporaryFile(dir=tempfile.gettempdir()) as f:
            f.write(buf.getvalue())
            f.flush()

    every = int(cfg["training"]["checkpoint_every"])
    return {
        "augment_batch": _median_seconds(
            lambda: augment_batch(images, masks, healthy, gen, float(model_config["spacing_mm"]), cfg["data"])
        ),
        "ema_step": _median_seconds(lambda: ema.step(params)),
        "lr_scheduler_step": _median_seconds(lambda: lr.step()),
        f"checkpoint_amortised_every_{every}": _median_seconds(checkpoint, repeats=3) / every,
    }


def run(quick: bool = False, **overrides: Any) -> list[dict[str, Any]]:
    """Measure; ``overrides`` replace entries of ``SETTINGS["quick" | "full"]``."""
    from benchmarks.bench_inpainting import phantom_bank

    s = {**SETTINGS["quick" if quick else "full"], **overrides}
    rows: list[dict[str, Any]] = []

    def row(metric: str, value: Any, unit: str, note: str = "") -> None:
        rows.append({"benchmark": BENCH, "metric": metric, "value": value, "unit": unit, "note": note})

    bank = phantom_bank(11, int(s["n_phantoms"]), tuple(s["phantom_size"]))
    B, warm, meas = int(s["batch_size"]), int(s["warmup"]), int(s["measure"])
    steps = warm + meas + 1
    results: dict[tuple[str, str], list[float]] = {}
    for rep in range(int(s["repeats"])):
        for mp in s["precisions"]:  # alternate the variants within each repeat
            if mp == "bf16" and rep >= int(s.get("bf16_repeats", s["repeats"])):
                continue
            for name, fn in (("medsynth", medsynth_step_times), ("plain", plain_step_times)):
                times = fn(bank, steps, mp, B)
                results.setdefault((name, mp), []).append(images_per_second(times, B, warm))
    method = (f"batch {B}, 64 px, {meas} steps timed after {warm} warm-up, median of {{n}} alternated runs; "
              "medsynth timed between its per-step progress updates")
    med = {k: statistics.median(v) for k, v in results.items()}
    for mp in s["precisions"]:
        label = "fp32" if mp == "no" else mp
        row(
            f"images_per_s_medsynth_{label}",
            med[("medsynth", mp)],
            "img/s",
            method.format(n=len(results[("medsynth", mp)])),
        )
        row(
            f"images_per_s_plain_{label}", med[("plain", mp)], "img/s", "minimal torch loop, same UNet/loss/AdamW/clip"
        )
        ratios = [a / b for a, b in zip(results[("medsynth", mp)], results[("plain", mp)])]
        row(f"ratio_medsynth_over_plain_{label}", statistics.median(ratios), "x",
            f"goal >= 1.0; per-repeat ratios {', '.join(f'{r:.2f}' for r in ratios)}")
    if "bf16" in s["precisions"] and "no" in s["precisions"]:
        row("ratio_bf16_over_fp32_medsynth", med[("medsynth", "bf16")] / med[("medsynth", "no")], "x",
            "bf16 autocast vs fp32 (this CPU: native bf16 " + ("yes" if _native_bf16() else "no") + ")")
    # Where the time goes beyond the plain loop.
    parts = overhead_breakdown(bank, B)
    step_fp32 = B / med[("medsynth", "no")] if ("medsynth", "no") in med else float("nan")
    for name, sec in parts.items():
        row(f"overhead_{name}", sec * 1000, "ms/step", f"{100 * sec / step_fp32:.1f}% of a medsynth fp32 step")
    return rows


def _native_bf16() -> bool:
    from medsynth.runtime import cpu_has_native_bf16

    return cpu_has_native_bf16()


def main(argv: list[str] | None = None) -> int:
    return quick_main(run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
