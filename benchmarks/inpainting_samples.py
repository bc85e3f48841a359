"""Benchmark of the lesion inpainter on phantoms: time-boxed CPU training, sampling time, and a
sample sheet (rows: lesion-free background patch, mask, result, and the real held-out lesion the
mask came from, for comparison) for docs/images.

    python benchmarks/inpainting_samples.py --n 160 --minutes 8 --out /tmp/inpaint-bench

Training data: ``n`` phantoms (512 x 416 px at 0.2 mm, masses only). The sheet uses held-out
phantoms: healthy-tissue patches with the masks of held-out masses, so every lesion in the
result row was painted by the model.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def render(n: int, first: int) -> list[tuple[np.ndarray, np.ndarray, tuple[float, float]]]:
    from medsynth.phantoms import render_phantom

    out = []
    for i in range(first, first + n):
        p = render_phantom(0, index=i)
        out.append((p.image, p.label == 1, tuple(p.spacing)))  # label 1 = mass
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=160)
    ap.add_argument("--npz", type=Path, default=None, help="pre-rendered phantoms (images, masks, spacing)")
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument(
        "--steps", type=int, default=3000, help="planned steps (the LR schedule); the time limit may stop earlier"
    )
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--mixed-precision", default="no")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--resume", action="store_true", help="continue the run in --out (another time box)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/inpaint-bench"))
    ap.add_argument("--sheet", type=Path, default=Path("docs/images/inpainting_samples.png"))
    ap.add_argument("--sheet-only", action="store_true", help="no training: draw the sheet with the model in --out")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from medsynth.models.data import build_patch_bank
    from medsynth.models.inpainter import LesionInpainter
    from medsynth.models.training import train

    model_dir = args.out / "model"
    t_bank = None
    if args.sheet_only:
        card = LesionInpainter.from_pretrained(model_dir).model_card
        steps, secs = card["training"]["steps"], card["training"]["seconds_this_run"]
        bank = None
    else:
        t0 = time.perf_counter()
        if args.npz:
            z = np.load(args.npz)
            sp = tuple(float(v) for v in z["spacing"])
            cases = [(im, m, sp) for im, m in zip(z["images"], z["masks"])]
        else:
            cases = render(args.n, 0)
        bank = build_patch_bank(cases, 64, 0.5, {"lesion_crops_per_lesion": 8, "healthy_crops_per_case": 1}, seed=0)
        t_bank = time.perf_counter() - t0
        print("patch bank", bank.info, f"{t_bank:.1f} s", flush=True)

        model = train(
            bank,
            model_dir,
            steps=args.steps,
            progress=False,
            resume=args.resume,
            batch_size=args.batch_size,
            mixed_precision=args.mixed_precision,
            time_limit_minutes=args.minutes,
            warmup_steps=min(100, args.steps // 10),
            lr_scheduler="constant_with_warmup",
            checkpoint_every=50,
            torch_threads=args.threads,
        )
        model.save_pretrained(model_dir)  # also when the time limit stopped it (EMA weights)
        card = model.model_card
        steps, secs = card["training"]["steps"], card["training"]["seconds_this_run"]
        print(f"reached step {steps}; this run {secs} s; final loss {card['training']['final_loss']:.4f}", flush=True)

    # Held-out sheet: healthy backgrounds + masks of held-out masses.
    held = build_patch_bank(
        render(24, 10_000), 64, 0.5, {"lesion_crops_per_lesion": 1, "healthy_crops_per_case": 1}, seed=1
    )
    healthy = held.images[held.healthy][:8].numpy()
    masks = held.masks[~held.healthy][:8].numpy()
    real = held.images[~held.healthy][:8].numpy()  # the held-out lesions whose masks are used
    k = min(len(healthy), len(masks))
    healthy, masks, real = healthy[:k], masks[:k], real[:k]
    model = LesionInpainter.from_pretrained(model_dir)
    t1 = time.perf_counter()
    result = model(healthy, masks, seeds=list(range(k)))
    t_sample = time.perf_counter() - t1
    print(f"sampled {k} patches, {model.config['num_inference_steps']} DDIM steps, in {t_sample:.1f} s", flush=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, k, figsize=(1.6 * k, 6.9))
    for j in range(k):
        for row, (img, cmap) in enumerate(
            ((healthy[j], "gray"), (masks[j], "gray"), (result[j], "gray"), (real[j], "gray"))
        ):
            ax = axes[row, j]
            ax.imshow(img, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
        if j == 0:
            for row, name in enumerate(("background", "mask", "result", "real lesion\n(held out)")):
                axes[row, 0].set_ylabel(name)
    fig.suptitle(
        f"medsynth inpainter after {steps} CPU training steps (batch {card['training']['batch_size']}), "
        "64 px at 0.5 mm, "
        f"DDIM {model.config['num_inference_steps']} steps",
        fontsize=9,
    )
    fig.tight_layout()
    args.sheet.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.sheet, dpi=110)
    (args.out / "bench.json").write_text(
        json.dumps(
            {
                "patch_bank_seconds": t_bank,
                "bank": bank.info if bank is not None else card["data"],
                "steps": steps,
                "train_seconds": secs,
                "sample_seconds": t_sample,
                "n_sampled": k,
                "batch_size": args.batch_size,
                "mixed_precision": args.mixed_precision,
                "threads": torch.get_num_threads(),
            },
            indent=2,
        )
    )
    print("wrote", args.sheet)


if __name__ == "__main__":
    main()
