"""Inpainting cost per lesion: medsynth's mask-conditioned sampler vs RePaint, and lesion-ROI FID.

Both samplers run through ``LesionInpainter.__call__`` on the same UNet size (``build_unet`` of the
default config) and the same 64 px ROIs cut from phantom mammograms:

- medsynth: a conditional model, DDIM at its default steps (25);
- RePaint (Lugmayr et al. 2022): an unconditional model with diffusers' ``RePaintScheduler`` at the
  published setting (250 steps, jump length 10, 10 resamplings).

UNet evaluations are counted exactly by wrapping the UNet's forward with a counter. For the
RePaint count the wrapped UNet returns zeros (the scheduler's loop does not depend on the values),
so the full published loop is run without its cost. Seconds per lesion are measured batch by
batch on the same lesions, alternating the two samplers, medians over batches; RePaint at the
published setting is not run (hours here): its seconds per lesion are the measured seconds per
lesion-evaluation of the cheaper RePaint setting times its counted evaluations (the row says
"EXTRAPOLATED").

Quality: both models are trained with the same step budget on the same phantom patches (fp32:
this CPU has no native bf16), then each paints the lesions of held-out lesion ROIs (the real
lesion is replaced inside its mask). ROI-FID and KID against a third set of real lesion ROIs use
``medsynth.metrics.features`` ("random" extractor) and ``medsynth.metrics.fidelity``. Two
reference rows give the scale: the held-out real ROIs themselves (the floor) and the mask filled
with the mean of the surrounding tissue (a lesion-free fill). RePaint's FID uses a cheaper setting
than the published one (``repaint_fid``), which the rows name: at the published setting it costs
~100x the conditional sampler per lesion, hours on a 2-core CPU.

    python -m benchmarks.bench_inpainting [--quick]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:  # run as a module (python -m benchmarks.X) or as a script
    from benchmarks._common import quick_main
except ImportError:  # pragma: no cover
    from _common import quick_main

BENCH = "inpainting"

SETTINGS: dict[str, dict[str, Any]] = {
    "quick": {
        "n_lesions": 8,  # held-out lesion ROIs painted by both samplers
        "n_train_phantoms": 8,
        "train_seconds": None,
        "train_steps": 3,  # quick: a fixed few steps (quality is meaningless)
        "batch_size": 8,
        "sample_batch": 8,
        "repaint": {"num_inference_steps": 250, "jump_length": 10, "jump_n_sample": 10},
        "repaint_fid": {"num_inference_steps": 10, "jump_length": 5, "jump_n_sample": 2},
        "num_inference_steps": None,  # None: the model's default (25)
        "phantom_size": (256, 208),
    },
    "full": {
        "n_lesions": 64,
        "n_train_phantoms": 160,
        # Per model; the step count is set from a probe of the step time. (~6 min was the aim; 4 min
        # keeps the whole run inside the time a shared 2-core machine could give it.)
        "train_seconds": 240.0,
        "train_steps": None,
        "batch_size": 32,
        "sample_batch": 16,
        "repaint": {"num_inference_steps": 250, "jump_length": 10, "jump_n_sample": 10},
        # 45 UNet evaluations per lesion (1.8x medsynth's 25): what a 2-core CPU affords on 64 lesions.
        "repaint_fid": {"num_inference_steps": 25, "jump_length": 5, "jump_n_sample": 2},
        "num_inference_steps": None,
        "phantom_size": (512, 416),
    },
}

# Phantom seeds of the three disjoint sets.
TRAIN_SEED, TEST_SEED, REF_SEED = 101, 202, 303


def phantom_cases(
    seed: int, n: int, size: tuple[int, int]
) -> list[tuple[np.ndarray, np.ndarray, tuple[float, float]]]:
    """``n`` phantom mammograms as (image in [0, 1], lesion mask, spacing) tuples (in memory)."""
    from medsynth.phantoms import render_phantom

    out = []
    for i in range(n):
        p = render_phantom(seed, size=size, index=i)
        out.append((p.image, p.label > 0, tuple(p.spacing)))
    return out


def phantom_bank(seed: int, n_phantoms: int, size: tuple[int, int] = (512, 416), image_size: int = 64,
                 spacing_mm: float = 0.5, data_config: dict[str, Any] | None = None):
    """A training :class:`~medsynth.models.data.PatchBank` cut from ``n_phantoms`` phantoms."""
    from medsynth.models.data import build_patch_bank

    return build_patch_bank(phantom_cases(seed, n_phantoms, size), image_size, spacing_mm, data_config, seed=seed)


def lesion_rois(seed: int, n: int, size: tuple[int, int], image_size: int = 64,
                spacing_mm: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``n`` real lesion ROIs (one centred crop per lesion) and their masks, from phantoms of ``seed``."""
    from medsynth.models.data import build_patch_bank

    cfg = {"healthy_crops_per_case": 0, "lesion_crops_per_lesion": 1, "jitter_mm": 0.0}
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    start = 0
    while sum(len(x) for x in images) < n:
        chunk = max(8, n - sum(len(x) for x in images))
        cases = []
        from medsynth.phantoms import render_phantom

        for i in range(start, start + chunk):
            p = render_phantom(seed, size=size, index=i, lesion_fraction=1.0)
            cases.append((p.image, p.label > 0, tuple(p.spacing)))
        start += chunk
        bank = build_patch_bank(cases, image_size, spacing_mm, cfg, seed=seed)
        images.append(bank.images.numpy())
        masks.append(bank.masks.numpy())
    return np.concatenate(images)[:n], np.concatenate(masks)[:n]


class CountingUNet(torch.nn.Module):
    """Wraps a UNet and counts its evaluations (forward calls and samples).

    Args:
        unet: the UNet.
        dry: return zeros instead of evaluating (counting a loop whose control flow does not
            depend on the values, at no cost).
    """

    def __init__(self, unet: torch.nn.Module, dry: bool = False) -> None:
        super().__init__()
        self.unet = unet
        self.dry = dry
        self.calls = 0
        self.samples = 0

    def forward(self, sample: torch.Tensor, timestep: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        self.samples += int(sample.shape[0])
        if self.dry:
            from diffusers.models.unets.unet_2d import UNet2DOutput

            return UNet2DOutput(sample=torch.zeros_like(sample[:, :1]))
        return self.unet(sample, timestep, *args, **kwargs)


def _with_unet(model: Any, unet: torch.nn.Module) -> Any:
    """A shallow copy of ``model`` (a LesionInpainter) that samples with ``unet``."""
    import copy

    other = copy.copy(model)
    other.config = copy.deepcopy(model.config)
    other.unet = unet
    return other


def count_evals(model: Any, images: np.ndarray, masks: np.ndarray, steps: int | None = None,
                repaint: dict[str, Any] | None = None) -> float:
    """UNet evaluations per lesion of one sampling call (exact; a dry UNet, nothing computed)."""
    counter = CountingUNet(model.unet, dry=True)
    m = _with_unet(model, counter)
    if repaint is not None:
        m.config["repaint"] = dict(repaint)
    m(images, masks, seeds=list(range(len(images))), num_inference_steps=steps)
    return counter.samples / len(images)


def sample(model: Any, images: np.ndarray, masks: np.ndarray, batch: int, steps: int | None = None,
           repaint: dict[str, Any] | None = None, seed: int = 0) -> tuple[np.ndarray, float]:
    """Paint every lesion (in batches); returns (results, seconds)."""
    m = _with_unet(model, model.unet)
    if repaint is not None:
        m.config["repaint"] = dict(repaint)
    out = []
    t0 = time.perf_counter()
    for s in range(0, len(images), batch):
        out.append(
            m(
                images[s : s + batch],
                masks[s : s + batch],
                seeds=[seed + s + k for k in range(len(images[s : s + batch]))],
                num_inference_steps=steps,
            )
        )
    return np.concatenate(out), time.perf_counter() - t0


def mean_fill(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The mask filled with the mean of the surrounding pixels (a lesion-free reference fill)."""
    out = images.copy()
    for i in range(len(out)):
        out[i][masks[i]] = float(images[i][~masks[i]].mean())
    return out


def probe_step_seconds(bank: Any, model_config: dict[str, Any], batch_size: int) -> float:
    """Seconds of one forward+backward training step (min of 2), to size a time-budgeted run."""
    from medsynth.models.inpainter import build_unet, diffusion_loss, make_noise_scheduler

    unet = build_unet(model_config).train()
    sched = make_noise_scheduler(model_config)
    x0 = bank.images[:batch_size][:, None] * 2 - 1
    m = bank.masks[:batch_size][:, None].float()
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        loss = diffusion_loss(unet, sched, x0, m, torch.randn_like(x0), torch.randint(0, 1000, (x0.shape[0],)),
                              model_config).mean()
        loss.backward()
        times.append(time.perf_counter() - t0)
    return min(times)


def run(quick: bool = False, **overrides: Any) -> list[dict[str, Any]]:
    """Measure; ``overrides`` replace entries of ``SETTINGS["quick" | "full"]`` (tests use tiny ones)."""
    from medsynth.metrics.features import get_extractor
    from medsynth.metrics.fidelity import fid, kid
    from medsynth.models.inpainter import make_config
    from medsynth.models.training import train
    from medsynth.runtime import cpu_has_native_bf16

    s = {**SETTINGS["quick" if quick else "full"], **overrides}
    rows: list[dict[str, Any]] = []

    def row(metric: str, value: Any, unit: str, note: str = "") -> None:
        rows.append({"benchmark": BENCH, "metric": metric, "value": value, "unit": unit, "note": note})

    size = tuple(s["phantom_size"])
    # 1. Data: training patches, held-out lesion ROIs to paint, and real lesion ROIs as reference.
    px, mm = int(s.get("image_size", 64)), float(s.get("spacing_mm", 0.5))  # the ROI both samplers paint
    bank = phantom_bank(TRAIN_SEED, int(s["n_train_phantoms"]), size, image_size=px, spacing_mm=mm)
    test_img, test_mask = lesion_rois(TEST_SEED, int(s["n_lesions"]), size, image_size=px, spacing_mm=mm)
    ref_img, _ = lesion_rois(REF_SEED, int(s["n_lesions"]), size, image_size=px, spacing_mm=mm)
    n = len(test_img)

    # 2. Train both models with the same step budget.
    mp = "bf16" if cpu_has_native_bf16() else "no"
    cfg = make_config(image_size=px, spacing_mm=mm)
    if s["train_steps"]:
        steps = int(s["train_steps"])
        budget_note = f"{steps} steps (fixed)"
    else:
        t_step = probe_step_seconds(bank, cfg, int(s["batch_size"]))
        # The probe is forward+backward only; optimizer, EMA and augmentation add ~10 %.
        steps = max(20, int(float(s["train_seconds"]) / (1.1 * t_step)))
        budget_note = f"{steps} steps = {s['train_seconds']:.0f} s budget / {t_step:.2f} s probed step"
    models: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="medsynth-bench-inpaint-") as tmp:
        for name, conditional in (("medsynth", True), ("repaint", False)):
            t0 = time.perf_counter()
            models[name] = train(bank, Path(tmp) / name, steps=steps, progress=False, conditional=conditional,
                                 image_size=px, spacing_mm=mm, **s.get("train_overrides", {}),
                                 mixed_precision=mp, batch_size=int(s["batch_size"]),
                                 warmup_steps=max(1, steps // 10), checkpoint_every=10**9)
            row(f"train_seconds_{name}", time.perf_counter() - t0, "s",
                f"{'conditional' if conditional else 'unconditional'} UNet, {budget_note}, batch {s['batch_size']}, "
                f"mixed precision {mp}, {len(bank)} patches")
    cond, uncond = models["medsynth"], models["repaint"]
    steps_cond = s["num_inference_steps"] or int(cond.config["num_inference_steps"])
    rp_pub = dict(s["repaint"])
    rp_fid = dict(s["repaint_fid"])

    # 3. Exact UNet evaluations per lesion.
    b = min(int(s["sample_batch"]), n)
    ev_cond = count_evals(cond, test_img[:b], test_mask[:b], steps=steps_cond)
    ev_rp = count_evals(uncond, test_img[:b], test_mask[:b], repaint=rp_pub)
    ev_rp_fid = count_evals(uncond, test_img[:b], test_mask[:b], repaint=rp_fid)
    rp_name = "RePaint {num_inference_steps}/{jump_length}/{jump_n_sample}".format(**rp_pub)
    rp_fid_name = "RePaint {num_inference_steps}/{jump_length}/{jump_n_sample}".format(**rp_fid)
    row("unet_evals_per_lesion_medsynth", ev_cond, "evals", f"conditional DDIM, {steps_cond} steps (counted)")
    row("unet_evals_per_lesion_repaint", ev_rp, "evals", f"{rp_name} (steps/jump/resamplings, counted)")
    row("unet_evals_ratio_repaint_over_medsynth", ev_rp / ev_cond, "x", "goal >= 100")

    # 4. Paint every held-out lesion with both samplers, batch by batch, alternating the two and
    #    timing each batch (side by side on the same lesions); medians over batches.
    sample(cond, test_img[:1], test_mask[:1], 1, steps=2)  # warm-up (allocator, kernels)
    outs: dict[str, list[np.ndarray]] = {"medsynth": [], "repaint": []}
    secs: dict[str, list[float]] = {"medsynth": [], "repaint": []}
    for s0 in range(0, n, b):
        sl = slice(s0, s0 + b)
        for name, model, kw in (("medsynth", cond, {"steps": steps_cond}), ("repaint", uncond, {"repaint": rp_fid})):
            res, sec = sample(model, test_img[sl], test_mask[sl], b, seed=1000 + s0, **kw)
            outs[name].append(res)
            secs[name].append(sec / len(res))
    out_cond, out_rp = np.concatenate(outs["medsynth"]), np.concatenate(outs["repaint"])
    sec_cond = statistics.median(secs["medsynth"])
    sec_rp_fid = statistics.median(secs["repaint"])
    # RePaint at the published setting: the same loop and UNet, so its cost per UNet evaluation is
    # the measured one of the cheaper setting; times the counted evaluations.
    sec_rp = sec_rp_fid / ev_rp_fid * ev_rp
    nb = len(secs["medsynth"])
    row("seconds_per_lesion_medsynth", sec_cond, "s", f"measured: median over {nb} batches of {b}")
    row("seconds_per_lesion_repaint", sec_rp, "s",
        f"{rp_name}: EXTRAPOLATED = {rp_fid_name}'s measured s per lesion-evaluation x {ev_rp:.0f} evaluations")
    row("seconds_ratio_repaint_over_medsynth", sec_rp / sec_cond, "x",
        f"s per lesion-evaluation: medsynth {sec_cond / ev_cond:.3g}, RePaint {sec_rp_fid / ev_rp_fid:.3g}")
    row("seconds_per_lesion_repaint_fid_setting", sec_rp_fid, "s",
        f"{rp_fid_name}, {ev_rp_fid:.0f} evals/lesion, measured: median over {nb} batches of {b}")

    # 5. Quality: ROI-FID/KID of the painted lesions against the reference lesion ROIs.
    extractor = get_extractor("random")
    f_ref = extractor.embed(ref_img)
    sets = {
        "real_heldout_floor": test_img,
        "mean_fill_baseline": mean_fill(test_img, test_mask),
        "medsynth": out_cond,
        "repaint": out_rp,
    }
    quality_note = "QUICK: models barely trained, values meaningless" if quick else (
        f"{n} lesions vs {len(ref_img)} real lesion ROIs, {extractor.name}")
    for name, imgs in sets.items():
        f = extractor.embed(np.clip(imgs, 0, 1).astype(np.float32))
        label = f"{name} ({rp_fid_name})" if name == "repaint" else name
        row(f"roi_fid_{name}", fid(f_ref, f), "", f"{label}; {quality_note}")
        # Subsets of half the set, so the spread over subsets means something.
        kid_mean, kid_std, size = kid(f_ref, f, subsets=50, subset_size=max(2, n // 2))
        row(f"roi_kid_{name}", kid_mean, "", f"± {kid_std:.2g} over 50 subsets of {size}; {label}")
    return rows


def main(argv: list[str] | None = None) -> int:
    return quick_main(run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
