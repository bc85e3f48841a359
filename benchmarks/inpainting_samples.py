"""Sample sheets of the lesion inpainter, per class and margin, at the images' own resolution.

For each category (mass: circumscribed, ill-defined, spiculated; calcification) the sheet shows
lesions the model painted beside real ones of the same category, cut at the same physical size and
shown pixel for pixel (no smoothing), so blur, a resolution seam, missing specks or a wrong density
are visible. Every painted lesion uses the outline *and the attributes* (class, shape, margin, calc
type, density, ...) of a held-out real lesion, placed into a lesion-free background of other
patients; the real row shows held-out lesions of that category (the test set).

    python benchmarks/inpainting_samples.py --model RUN/model --real data/test --backgrounds data/backgrounds \\
        --out docs/images/inpainting_samples.png [--per-row 5] [--window-mm 24] [--steps 8] [--guidance 1]

(Training is ``medsynth train`` or ``benchmarks/bench_model.py``; this script only draws.)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

CATEGORIES = (("mass", "circumscribed"), ("mass", "ill_defined"), ("mass", "spiculated"), ("calcification", None))


def real_lesions(root: Any, limit_per_category: int = 50) -> list[dict[str, Any]]:
    """The lesions of a dataset with their attributes (the training data's lesion rule and matching)."""
    from medsynth.io.datasets import load_dataset
    from medsynth.models import data as mdata
    from medsynth.models.attributes import case_density
    from medsynth.models.patches import default_lesion_rule, lesion_components

    rule = default_lesion_rule()
    out: list[dict[str, Any]] = []
    counts: dict[tuple, int] = {}
    for case in load_dataset(root):
        if case.mask is None:
            continue
        labels = np.asarray(case.mask.pixels)
        records = mdata._case_records(case)
        spacing = tuple(float(s) for s in case.image.spacing)
        image = None
        for lesion in lesion_components(labels, spacing, rule["merge_mm"], rule["min_lesion_mm2"]):
            a = mdata.lesion_attributes(lesion, spacing, records, case_density(case.metadata), case.metadata)
            key = (a["class"], a.get("margin") if a["class"] == "mass" else None)
            if counts.get(key, 0) >= limit_per_category:
                continue
            counts[key] = counts.get(key, 0) + 1
            if image is None:
                image = case.image.unit_pixels()
            out.append({"image": image, "mask": lesion.full_mask(), "lesion": lesion, "spacing": spacing,
                        "attributes": a, "key": key, "case": case.case_id, "patient": case.patient_id})
        case.mask.release()
        case.image.release()
    return out


def window(image: np.ndarray, mask: np.ndarray, spacing: tuple[float, float], window_mm: float) -> np.ndarray:
    """A ``window_mm`` square of ``image`` centred on ``mask``, at the image's own pixels (edge-padded)."""
    rows, cols = np.nonzero(mask)
    cy, cx = (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2
    hy, hx = int(round(window_mm / spacing[0] / 2)), int(round(window_mm / spacing[1] / 2))
    padded = np.pad(image, ((hy, hy), (hx, hx)), mode="edge")
    return padded[cy : cy + 2 * hy, cx : cx + 2 * hx]


def paint_like(model: Any, real: dict[str, Any], backgrounds: list[Any], rng: np.random.Generator,
               steps: int | None, guidance: float | None) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Paint ``real``'s outline, with its attributes, into a random lesion-free background."""
    from medsynth.generation.masks import crop_to_content
    from medsynth.generation.placement import PlacementSettings, allowed_region, place_lesion, tissue_mask
    from medsynth.io.writers import LABELS

    outline = crop_to_content(real["mask"])
    for _ in range(50):
        bg = backgrounds[int(rng.integers(len(backgrounds)))]
        image = bg.image.unit_pixels()
        spacing = tuple(float(s) for s in bg.image.spacing)
        allowed = allowed_region(tissue_mask(image), spacing, np.zeros(image.shape, bool),
                                 PlacementSettings.from_config({"skin_margin_mm": 3.0, "chest_wall_margin_mm": 5.0,
                                                                "gap_mm": 2.0}))
        pos = place_lesion(allowed, outline, rng)
        if pos is not None:
            break
    else:
        raise RuntimeError("no background had room for the outline")
    mask = np.zeros(image.shape, bool)
    mask[pos[0] : pos[0] + outline.shape[0], pos[1] : pos[1] + outline.shape[1]] = outline
    attributes = dict(real["attributes"])
    assert LABELS["calcification"] == 2
    painted = model.inpaint_scan(image, mask, spacing, seed=int(rng.integers(2**31)), num_inference_steps=steps,
                                 attributes=attributes, guidance_scale=guidance)
    return painted, mask, spacing


def draw_sheet(model_dir: Path, real_root: Path, backgrounds_root: Path, out: Path, per_row: int = 5,
               window_mm: float = 24.0, steps: int | None = None, guidance: float | None = None,
               seed: int = 0) -> dict[str, Any]:
    """Draw the sheet; returns what it drew (counts, seconds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medsynth.io.datasets import load_dataset
    from medsynth.models.inpainter import LesionInpainter

    model = LesionInpainter.from_pretrained(model_dir)
    rng = np.random.default_rng(seed)
    lesions = real_lesions(real_root)
    backgrounds = [c for c in load_dataset(backgrounds_root) if c.mask is None]
    rows: list[tuple[str, list[np.ndarray]]] = []
    t0 = time.perf_counter()
    painted_n = 0
    for klass, margin in CATEGORIES:
        pool = [r for r in lesions if r["key"] == (klass, margin)]
        if not pool:
            continue
        pick = [pool[i] for i in rng.permutation(len(pool))[:per_row]]
        synth = []
        for r in pick:
            img, mask, sp = paint_like(model, r, backgrounds, rng, steps, guidance)
            synth.append(window(img, mask, sp, window_mm))
            painted_n += 1
        real = [window(r["image"], r["mask"], r["spacing"], window_mm) for r in pick]
        name = klass if margin is None else f"{klass}\n{margin.replace('_', '-')}"
        rows.append((f"{name}\npainted", synth))
        rows.append((f"{name}\nreal (held out)", real))
    seconds = time.perf_counter() - t0
    n_cols = max(len(r[1]) for r in rows)
    px = max(a.shape[0] for _, imgs in rows for a in imgs)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(n_cols * px / 50, len(rows) * px / 50), squeeze=False)
    for i, (label, imgs) in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([])
            if j < len(imgs):
                ax.imshow(imgs[j], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.axis("off")
        axes[i, 0].set_ylabel(label, fontsize=7)
    card = model.model_card.get("training", {})
    fig.suptitle(f"medsynth inpainter, {card.get('steps', '?')} training steps; "
                 f"{model.config['sampler']} {steps or model.config['num_inference_steps']} steps, guidance "
                 f"{model.resolve_guidance(guidance):g}; {window_mm:g} mm windows at the images' own pixels",
                 fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return {"sheet": str(out), "painted": painted_n, "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--real", type=Path, required=True, help="held-out real set with masks (the sheet's real rows)")
    ap.add_argument("--backgrounds", type=Path, required=True, help="lesion-free images of other patients")
    ap.add_argument("--out", type=Path, default=Path("docs/images/inpainting_samples.png"))
    ap.add_argument("--per-row", type=int, default=5)
    ap.add_argument("--window-mm", type=float, default=24.0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    info = draw_sheet(args.model, args.real, args.backgrounds, args.out, args.per_row, args.window_mm, args.steps,
                      args.guidance, args.seed)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
