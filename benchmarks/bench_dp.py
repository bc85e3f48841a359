"""DP overhead: seconds per training sample under opacus vs non-DP, full model vs LoRA-only, and
opacus' per-sample-gradient modes ("hooks", "functorch", "ew").

Every DP variant goes through medsynth's own ``medsynth.models.privacy.make_private`` (Poisson
sampling, ``make_private_with_epsilon``, clipping and noise in the optimizer step), on the same
UNet (``build_unet`` of the default config) or the same UNet wrapped with LoRA adapters
(``medsynth.models.adapters.wrap_lora``, rank 4, default targets), with the same loss
(``diffusion_loss``). A step is forward + backward + optimizer step; seconds per sample = time of
the timed steps / samples they drew (Poisson batches vary in size). The variants alternate within
each repeat; medians over repeats.

Correctness of a mode: on a fixed batch, the per-sample gradients opacus stores (``p.grad_sample``)
are compared with each sample's gradient computed alone by plain autograd (the UNet has
GroupNorm, no BatchNorm, so samples do not interact); the row gives the largest relative error.
A mode that raises is reported as failing with the error, not hidden. (Found with opacus 1.6:
"hooks" gives all-zero per-sample weight gradients for a Conv2d whose input is channels_last-
strided, which is what diffusers' attention blocks output; the rows name the parameters hit.)

    python -m benchmarks.bench_dp [--quick]
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from typing import Any

import torch

try:  # run as a module (python -m benchmarks.X) or as a script
    from benchmarks._common import quick_main
except ImportError:  # pragma: no cover
    from _common import quick_main

BENCH = "dp"
MODES = ("hooks", "functorch", "ew")

SETTINGS: dict[str, dict[str, Any]] = {
    "quick": {"batch_size": 4, "warmup": 1, "measure": 2, "repeats": 1, "n_phantoms": 6,
              "phantom_size": (256, 208), "check_batch": 2, "modes": MODES, "models": ("full", "lora")},
    "full": {"batch_size": 16, "warmup": 1, "measure": 2, "repeats": 2, "n_phantoms": 40,
             "phantom_size": (512, 416), "check_batch": 2, "modes": MODES, "models": ("full", "lora")},
}
CORRECT_RTOL = 1e-3  # fp32 per-sample gradients vs autograd


def _unet(kind: str, seed: int = 0) -> torch.nn.Module:
    from medsynth.models.inpainter import build_unet, make_config

    torch.manual_seed(seed)
    unet = build_unet(make_config())
    if kind == "lora":
        from medsynth.config import load_config
        from medsynth.models.adapters import wrap_lora

        lora = load_config(None, kind="finetune")["lora"]
        unet = wrap_lora(unet, rank=4, alpha=None, target_modules=lora["target_modules"], dropout=lora["dropout"])
    return unet.train()


def _loss(model: torch.nn.Module, batch: tuple[torch.Tensor, ...], gen: torch.Generator) -> torch.Tensor:
    from medsynth.models.inpainter import diffusion_loss, make_config, make_noise_scheduler

    config = make_config()
    images, masks, healthy = batch
    x0 = images * 2.0 - 1.0
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(0, int(config["num_train_timesteps"]), (x0.shape[0],), generator=gen)
    return diffusion_loss(model, make_noise_scheduler(config), x0, masks, noise, t, config,
                          labels=(1 - healthy).long())


def _private(unet: torch.nn.Module, bank: Any, batch_size: int, mode: str, steps: int = 1000):
    from medsynth.models.privacy import DPSettings, make_private

    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    loader = torch.utils.data.DataLoader(bank, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the not-secure-mode warning, once per variant
        return make_private(unet, optimizer, loader, DPSettings.from_any({"grad_sample_mode": mode}), steps,
                            noise_generator=torch.Generator().manual_seed(1))


def step_seconds_per_sample(bank: Any, kind: str, mode: str | None, batch_size: int, warmup: int,
                            measure: int) -> tuple[float, int]:
    """Seconds per sample of ``measure`` steps after ``warmup`` ones; (value, samples timed)."""
    from medsynth.models.training import _poisson_batches

    unet = _unet(kind)
    gen = torch.Generator().manual_seed(2)
    if mode is None:
        model = unet
        optimizer = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=1e-4)

        def batches():
            while True:
                idx = torch.randint(0, len(bank), (batch_size,), generator=gen)
                yield bank.images[idx][:, None], bank.masks[idx][:, None].float(), bank.healthy[idx].float()

        source = batches()
    else:
        private = _private(unet, bank, batch_size, mode)
        model, optimizer = private.module, private.optimizer
        source = _poisson_batches(private.loader)
    seconds, samples = 0.0, 0
    for i in range(warmup + measure):
        batch = next(source)
        while batch[0].shape[0] == 0:
            # Poisson sampling can draw an empty batch; the UNet's attention cannot take one
            # (medsynth's run_loop has the same limit), and it has no cost to time.
            batch = next(source)
        t0 = time.perf_counter()
        loss = _loss(model, batch, gen).mean()
        loss.backward()
        if mode is None:
            torch.nn.utils.clip_grad_norm_([p for p in unet.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup:
            seconds += time.perf_counter() - t0
            samples += int(batch[0].shape[0])
    return seconds / max(samples, 1), samples


def per_sample_grad_error(bank: Any, kind: str, mode: str, n: int) -> tuple[float, list[str]]:
    """Largest relative error of opacus' per-sample gradients vs autograd on each sample alone,
    and the names of the parameters whose error exceeds ``CORRECT_RTOL``.

    Parameters whose true gradient is ~0 (e.g. attention key biases: softmax ignores them) are
    skipped: their relative error is round-off over round-off.
    """
    unet = _unet(kind, seed=3)
    reference = copy.deepcopy(unet)
    idx = torch.arange(n)
    batch = (bank.images[idx][:, None], bank.masks[idx][:, None].float(), bank.healthy[idx].float())
    private = _private(unet, bank, max(n, 2), mode)
    loss = _loss(private.module, batch, torch.Generator().manual_seed(4)).mean()
    loss.backward()
    named = [(name, p) for name, p in unet.named_parameters() if p.requires_grad]
    got = {name: p.grad_sample.detach().clone() for name, p in named}
    ref_params = dict(reference.named_parameters())
    worst = 0.0
    wrong: list[str] = []
    # Same noise and timesteps as the batched call: draw them once, then slice per sample.
    g = torch.Generator().manual_seed(4)
    from medsynth.models.inpainter import diffusion_loss, make_config, make_noise_scheduler

    config = make_config()
    x0 = batch[0] * 2.0 - 1.0
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, int(config["num_train_timesteps"]), (n,), generator=g)
    sched = make_noise_scheduler(config)
    for i in range(n):
        reference.zero_grad(set_to_none=True)
        li = diffusion_loss(reference, sched, x0[i:i + 1], batch[1][i:i + 1], noise[i:i + 1], t[i:i + 1], config,
                            labels=(1 - batch[2][i:i + 1]).long())
        li.sum().backward()
        for name, _ in named:
            ref = ref_params[name].grad
            ref = torch.zeros_like(ref_params[name]) if ref is None else ref
            if float(ref.abs().max()) <= 1e-8:
                continue
            err = float((got[name][i] - ref).abs().max()) / float(ref.abs().max())
            worst = max(worst, err)
            if err >= CORRECT_RTOL and name not in wrong:
                wrong.append(name)
    return worst, wrong


def run(quick: bool = False, **overrides: Any) -> list[dict[str, Any]]:
    """Measure; ``overrides`` replace entries of ``SETTINGS["quick" | "full"]``."""
    from benchmarks.bench_inpainting import phantom_bank

    s = {**SETTINGS["quick" if quick else "full"], **overrides}
    rows: list[dict[str, Any]] = []

    def row(metric: str, value: Any, unit: str, note: str = "") -> None:
        rows.append({"benchmark": BENCH, "metric": metric, "value": value, "unit": unit, "note": note})

    bank = phantom_bank(12, int(s["n_phantoms"]), tuple(s["phantom_size"]))
    B = int(s["batch_size"])

    # 1. Which modes run on the UNet and give the right per-sample gradients.
    correct: dict[tuple[str, str], bool] = {}  # modes that run: are their gradients right?
    for kind in s["models"]:
        for mode in s["modes"]:
            try:
                err, wrong = per_sample_grad_error(bank, kind, mode, int(s["check_batch"]))
            except Exception as e:  # a mode opacus cannot run on this model is a finding, reported
                row(f"grad_sample_error_{kind}_{mode}", float("nan"), "rel",
                    f"FAILS: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
                continue
            correct[(kind, mode)] = err < CORRECT_RTOL
            detail = "correct" if not wrong else (
                f"WRONG for {len(wrong)} parameter(s), e.g. {', '.join(wrong[:3])}")
            row(f"grad_sample_error_{kind}_{mode}", err, "rel", f"max relative error vs per-sample autograd: {detail}")

    # 2. Seconds per sample, variants alternating within each repeat (wrong modes timed too, labelled).
    variants = [(kind, None) for kind in s["models"]] + list(correct)
    times: dict[tuple[str, str | None], list[float]] = {}
    for _ in range(int(s["repeats"])):
        for kind, mode in variants:
            sec, _ = step_seconds_per_sample(bank, kind, mode, B, int(s["warmup"]), int(s["measure"]))
            times.setdefault((kind, mode), []).append(sec)
    med = {k: statistics.median(v) for k, v in times.items()}
    note = (f"batch {B} (Poisson, expected {B}) 64 px, fwd+bwd+step, {s['measure']} steps after {s['warmup']} "
            f"warm-up, median of {s['repeats']}")
    for (kind, mode), sec in med.items():
        name = f"seconds_per_sample_{kind}_{mode or 'nondp'}"
        base = med[(kind, None)]
        row(name, sec, "s", note if mode is None else
            f"{sec / base:.2f}x non-DP {kind}" + ("" if correct[(kind, mode)] else " (WRONG gradients)"))
    for kind in s["models"]:
        dp_modes = {m: med[(kind, m)] for (k, m) in med if k == kind and m is not None and correct[(k, m)]}
        if dp_modes:
            best = min(dp_modes, key=dp_modes.get)
            row(f"fastest_correct_mode_{kind}", best, "",
                f"{dp_modes[best] / med[(kind, None)]:.2f}x non-DP; " +
                ", ".join(f"{m} {v:.3g} s" for m, v in sorted(dp_modes.items(), key=lambda x: x[1])))
    if ("lora", None) in med and ("full", None) in med:
        row("ratio_lora_over_full_nondp", med[("lora", None)] / med[("full", None)], "x", "seconds per sample")
    return rows


def main(argv: list[str] | None = None) -> int:
    return quick_main(run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
