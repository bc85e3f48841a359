"""Builds the notebooks from the cell sources below (run: python notebooks/_build.py).

Keeping the sources here makes notebook diffs readable; the .ipynb files are committed without outputs.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

SETUP = '''import os, tempfile
from pathlib import Path

import numpy as np
import matplotlib.pyplot as plt

import medsynth

# QUICK=1 (set by the test suite) shrinks every step so the notebook runs in about a minute.
QUICK = os.environ.get("MEDSYNTH_QUICK", "0") == "1"
WORK = Path(tempfile.mkdtemp(prefix="medsynth-nb-"))
print("working in", WORK, "| quick" if QUICK else "")'''


def quickstart() -> list:
    return [
        new_markdown_cell("# medsynth quickstart\n\nRead a DICOM mammogram, look at it, paint a lesion into a mask "
                          "with a diffusion inpainting model, and write a small segmentation training set. "
                          "Everything runs on medsynth's embedded mammography phantoms, on a CPU."),
        new_code_cell(SETUP),
        new_markdown_cell("## 1. Data: phantom mammograms in a CBIS-DDSM-like layout\n\n"
                          "`make_phantoms` writes DICOM MG files (with decoy PHI in the header), ROI-mask DICOMs "
                          "and case-description CSVs, as the real CBIS-DDSM does. With real data you would point "
                          "`load_dataset` at your CBIS-DDSM root, a folder, an nnU-Net raw dataset or a MONAI datalist."),
        new_code_cell('''n_train = 24 if QUICK else 150
train_root = medsynth.make_phantoms(WORK / "train", n=n_train, seed=1, size=(256, 208))
ds = medsynth.load_dataset(train_root)
print(ds, "| patients:", len(ds.patients()), "| with lesions:", ds.cases_with_masks())'''),
        new_markdown_cell("## 2. Read one scan\n\nA `Scan` reads the header at once and decodes pixels on first use. "
                          "Pixels come in display polarity (MONOCHROME1 and presentation LUTs handled)."),
        new_code_cell('''case = next(c for c in ds if c.mask is not None)
scan = case.image
print(scan.path.name, scan.shape, "spacing (mm):", scan.spacing, scan.photometric, scan.view, scan.laterality)
print("case metadata:", {k: case.metadata[k] for k in list(case.metadata)[:6]})
fig, ax = plt.subplots(1, 2, figsize=(8, 5))
ax[0].imshow(scan.unit_pixels(), cmap="gray"); ax[0].set_title("image")
ax[1].imshow(scan.unit_pixels(), cmap="gray"); ax[1].contour(case.mask.pixels > 0, colors="r", linewidths=0.8)
ax[1].set_title("ground-truth lesion mask")
for a in ax: a.axis("off")
plt.show()'''),
        new_markdown_cell("## 3. Train a small inpainting model\n\nThe model sees 64 px patches at 0.5 mm/px: "
                          "[noisy patch, mask, patch with the mask blanked]. A few minutes on a CPU already paints "
                          "plausible masses; on the command line this is `medsynth train DATA --out MODEL`."),
        new_code_cell('''steps = 20 if QUICK else 600
model = medsynth.train(ds, WORK / "model", steps=steps, batch_size=8 if QUICK else 32, progress=not QUICK)
print(model.model_card["training"]["steps"], "steps, final loss", round(model.model_card["training"]["final_loss"], 4), "| saved in", WORK / "model")'''),
        new_markdown_cell("## 4. Paint a lesion into a mask on a lesion-free image"),
        new_code_cell('''from skimage.draw import ellipse

healthy = medsynth.make_phantoms(WORK / "healthy", n=2, seed=7, size=(256, 208), lesion_fraction=0.0, patient_offset=9000)
bg = medsynth.load_dataset(healthy)[0].image
image = bg.unit_pixels()
mask = np.zeros(image.shape, bool)
# an oval mass of about 12 x 8 mm at the centre of the breast tissue
r, c = np.argwhere(image > 0.2).mean(axis=0).astype(int)
rr, cc = ellipse(r, c, 6 / bg.spacing[0], 4 / bg.spacing[1], shape=image.shape)
mask[rr, cc] = True
painted = model.inpaint_scan(image, mask, bg.spacing, seed=0, num_inference_steps=5 if QUICK else 25)
fig, ax = plt.subplots(1, 3, figsize=(12, 5))
for a, im, t in zip(ax, [image, mask, painted], ["background", "mask", "painted lesion"]):
    a.imshow(im, cmap="gray"); a.set_title(t); a.axis("off")
plt.show()
print("largest change outside the mask (feathered edge):", float(np.abs(painted - image)[~mask].max()))'''),
        new_markdown_cell("## 5. Write a small segmentation training set\n\n`generate` places lesions inside the "
                          "breast tissue, paints them, and writes image + label pairs with a manifest (file hashes, "
                          "seeds, model hash; never a source path or patient ID). Formats: `nnunet`, `monai`, "
                          "`dicom` (+ DICOM SEG), `png`."),
        new_code_cell('''result = medsynth.generate(model, healthy, "shapes", n=4 if QUICK else 16, out=WORK / "synthetic",
                           format="nnunet", seed=0, num_inference_steps=5 if QUICK else 25, progress=not QUICK)
print(result.generated, "cases in", round(result.seconds, 1), "s;", [str(p) for p in result.index_files])
import json
manifest = json.loads(result.manifest.read_text())
print(json.dumps({k: manifest[k] for k in list(manifest)[:6]}, indent=1, default=str)[:1500])'''),
        new_code_cell('''syn = medsynth.load_dataset(result.out / result.index_files[0])
fig, ax = plt.subplots(1, len(syn), figsize=(3 * len(syn), 4))
for a, c in zip(np.atleast_1d(ax), syn):
    a.imshow(c.image.unit_pixels(), cmap="gray"); a.contour(c.mask.pixels > 0, colors="r", linewidths=0.6); a.axis("off")
plt.show()'''),
    ]


def privacy_audit() -> list:
    return [
        new_markdown_cell("# The privacy audit\n\nBefore a synthetic set leaves the hospital, `medsynth audit` compares it "
                          "with the images the model was trained on and with a **holdout** of other patients the model "
                          "never saw. Here we audit a clean set, then the same set with copies of training images "
                          "planted in it, and look at what each check says."),
        new_code_cell(SETUP),
        new_code_cell('''size = (160, 128) if QUICK else (256, 208)
n = 16 if QUICK else 60
train = medsynth.make_phantoms(WORK / "train", n=n, seed=1, size=size, layout="folder")
holdout = medsynth.make_phantoms(WORK / "holdout", n=n, seed=2, size=size, layout="folder", patient_offset=10_000)
# A stand-in for a synthetic set: novel phantoms (new seeds, new "patients").
clean = medsynth.make_phantoms(WORK / "clean", n=n, seed=3, size=size, layout="folder", patient_offset=20_000)'''),
        new_markdown_cell("## 1. A clean set\n\nThe result renders itself in Jupyter: the verdict first, then each check "
                          "with its value, threshold and figure."),
        new_code_cell('''clean_result = medsynth.audit(train, clean, holdout, progress=not QUICK)
print("verdict:", clean_result.verdict)
clean_result'''),
        new_markdown_cell("## 2. The same set with leaked training images\n\nWe plant two training images in it: one "
                          "mirrored, one shifted and rescaled in intensity. A copy must be caught whatever was done to it."),
        new_code_cell('''import shutil
from PIL import Image

leaky = WORK / "leaky"
shutil.copytree(clean, leaky)
train_ds = medsynth.load_dataset(train)
for k, (case, transform) in enumerate([(train_ds[0], np.fliplr),
                                        (train_ds[1], lambda a: np.roll(a, 3, axis=1) * 0.9)]):
    px = transform(case.image.unit_pixels())
    dpi = tuple(25.4 / s for s in case.image.spacing[::-1])  # a PNG states its spacing as DPI, or it is refused
    Image.fromarray((np.clip(px, 0, 1) * 65535).astype(np.uint16)).save(leaky / "images" / f"planted_{k}.png", dpi=dpi)
leaky_result = medsynth.audit(train, leaky, holdout, progress=not QUICK)
print("verdict:", leaky_result.verdict)
for f in leaky_result.memorization["flagged"]:
    print(f["synthetic"], "<->", f["nearest_train"])'''),
        new_markdown_cell("Each flagged synthetic image beside the training image it copies:"),
        new_code_cell('''flagged = leaky_result.memorization["flagged"]
fig, axes = plt.subplots(len(flagged), 2, figsize=(6, 3 * len(flagged)), squeeze=False)
for (a_syn, a_train), f in zip(axes, flagged):
    a_syn.imshow(medsynth.load_scan(leaky / f["synthetic"]).unit_pixels(), cmap="gray")
    a_syn.set_title("synthetic: " + f["synthetic"], fontsize=8)
    a_train.imshow(medsynth.load_scan(Path(train) / f["nearest_train"]).unit_pixels(), cmap="gray")
    a_train.set_title("training: " + f["nearest_train"], fontsize=8)
    a_syn.axis("off"); a_train.axis("off")
plt.tight_layout(); plt.show()'''),
        new_markdown_cell("## 3. Each check and its threshold\n\n"
                          "- **memorization**: nearest training image of every synthetic image (whole image and lesion "
                          "ROIs) by normalized cross-correlation, SSIM and self-supervised embeddings invariant to flips, "
                          "shifts and intensity changes; Carlini et al.'s ratio (distance to the nearest over half the "
                          "mean distance to the 50 nearest).\n"
                          "- **holdout baseline**: are synthetic images closer to training patients than fresh patients "
                          "are? (share closer to train than holdout, ~50 % for fresh data; one-sided Mann–Whitney test)\n"
                          "- **membership inference** (with `model=`): can the model's loss tell training images from "
                          "holdout ones? ROC AUC and TPR at 1 % FPR.\n"
                          "- **DP budget**: ε, δ from the model card or manifest.\n"
                          "- **metadata**: synthetic DICOMs carry no identifying value of any training file.\n\n"
                          "Thresholds live in `configs/audit.yaml`; pass your own with `config=`."),
        new_code_cell('''for check in leaky_result.checks:
    print(f"{check['name']:<32} value={check['value']!s:<12} threshold={check['threshold']!s:<10} passed={check['passed']}")'''),
        new_code_cell('''leaky_result.save_html(WORK / "audit.html")
leaky_result.to_json(WORK / "audit.json")
print("report:", WORK / "audit.html")'''),
    ]


def lora_and_dp() -> list:
    return [
        new_markdown_cell("# Adapting a model to a new site: LoRA, with and without differential privacy\n\n"
                          "A base model trained at site A is adapted to site B (denser breasts, MLO views) with a LoRA "
                          "adapter of a few hundred kB, once plainly and once under differential privacy (opacus), and "
                          "the two are compared."),
        new_code_cell(SETUP),
        new_code_cell('''size = (160, 128) if QUICK else (256, 208)
site_a = medsynth.make_phantoms(WORK / "site_a", n=24 if QUICK else 150, seed=1, size=size)
site_b = medsynth.make_phantoms(WORK / "site_b", n=16 if QUICK else 80, seed=2, size=size, density="d", view="mlo",
                                patient_offset=50_000)
site_b_test = medsynth.make_phantoms(WORK / "site_b_test", n=8 if QUICK else 30, seed=3, size=size, density="d",
                                     view="mlo", patient_offset=60_000)
base = medsynth.train(site_a, WORK / "base", steps=20 if QUICK else 500, batch_size=8 if QUICK else 32, progress=not QUICK)'''),
        new_code_cell('''steps = 6 if QUICK else 150
plain = medsynth.finetune_lora(WORK / "base", site_b, WORK / "lora", rank=4, steps=steps, progress=not QUICK)
private = medsynth.finetune_lora(WORK / "base", site_b, WORK / "lora-dp", rank=4, steps=steps, progress=not QUICK,
                                 dp={"target_epsilon": 50.0 if QUICK else 8.0, "target_delta": 1e-5, "max_grad_norm": 1.0})
size_kb = {p.name: sum(f.stat().st_size for f in p.iterdir()) / 1024 for p in [Path(plain), Path(private)]}
print("adapter sizes (kB):", {k: round(v) for k, v in size_kb.items()})'''),
        new_markdown_cell("The DP adapter's model card records the privacy budget spent, as opacus' accountant computed it, "
                          "and that its noise came from the OS's CSPRNG (`noise: csprng`). It covers site B's data "
                          "only: the base model was trained without DP, so base + adapter as a whole is **not** DP "
                          "(its card's `dp` is None; `dp_parts` keeps both records)."),
        new_code_cell('''from medsynth import LesionInpainter

m_plain = LesionInpainter.from_pretrained(WORK / "base", adapter=plain)
m_dp = LesionInpainter.from_pretrained(WORK / "base", adapter=private)
print("plain adapter:", m_plain.model_card["adapter"]["dp"])
print("DP adapter:   ", m_dp.model_card["adapter"]["dp"])
print("base + DP adapter, as a whole:", m_dp.model_card["dp"])'''),
        new_markdown_cell("## Compare on held-out site-B lesions\n\nLower diffusion loss on unseen site-B lesions means a "
                          "better fit to the new site; DP costs some of it."),
        new_code_cell('''from medsynth.models.patches import crop_roi

cases = [c for c in medsynth.load_dataset(site_b_test) if c.mask is not None]
size_px, sp = m_plain.config["image_size"], m_plain.config["spacing_mm"]
patches, masks = [], []
for c in cases:
    p, pm, _ = crop_roi(c.image.unit_pixels(), c.mask.pixels > 0, c.image.spacing, size_px * sp, size_px)
    patches.append(p); masks.append(pm)
patches, masks = np.clip(np.stack(patches), 0, 1), np.stack(masks)
m_base = LesionInpainter.from_pretrained(WORK / "base")
models = {"base": m_base, "LoRA": m_plain, "LoRA + DP": m_dp}
# the same noise and timesteps for every model (seed=0), so the comparison is paired
losses = {name: float(m.per_sample_loss(patches, masks, seed=0).mean()) for name, m in models.items()}
print({k: round(v, 4) for k, v in losses.items()})
plt.bar(list(losses), list(losses.values())); plt.ylabel("diffusion loss on held-out site-B lesions"); plt.show()'''),
        new_code_cell('''fig, ax = plt.subplots(3, min(4, len(patches)), figsize=(10, 8), squeeze=False)
for j in range(ax.shape[1]):
    for i, (name, m) in enumerate(models.items()):
        out = m(patches[j:j + 1], masks[j:j + 1], seeds=[j], num_inference_steps=5 if QUICK else 25)[0]
        ax[i, j].imshow(out, cmap="gray", vmin=0, vmax=1); ax[i, j].axis("off")
        ax[i, j].set_title(name, fontsize=8)
plt.show()'''),
    ]


def notebooks() -> dict:
    """The notebooks by name, as nbformat objects (without outputs)."""
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    return {name: new_notebook(cells=cells, metadata=kernel)
            for name, cells in [("01_quickstart", quickstart()), ("02_privacy_audit", privacy_audit()),
                                ("03_lora_and_dp", lora_and_dp())]}


def main() -> None:
    for name, nb in notebooks().items():
        nbformat.write(nb, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
