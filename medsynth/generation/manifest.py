"""manifest.json and the dataset card (README.md) of a generated dataset.

The manifest lists every complete case with its output files and their SHA-256, the lesions
(class, outline description, where the outline came from), the case's seeds, and for the whole
dataset the model and adapter hashes, sampler and steps, the facts of the base model's card and,
with ``--adapter``, of the adapter's (``model.cards``), the DP record (``model.dp``: epsilon, delta,
what recomputing epsilon needs, and ``noise`` = "csprng" or "seeded"; with an adapter the
composition of both parts, null unless both were trained with DP), and library versions.

What it must not allow is re-identification. It never holds a source path, file name, case ID or
patient ID. A background image is named only by ``HMAC-SHA256(salt, sha256(pixels))``; the salt is
32 random bytes drawn per run (unless the caller gives one), kept only in the run's private state
folder while the run is unfinished (so a resume uses the same one) and deleted when the run
completes. The manifest keeps only ``sha256(salt)``: whoever kept the salt can prove which salt was
used and recompute the identities of their own images; anyone else -- even holding the source
images -- cannot test whether a given image was a background. Within one dataset equal identities
still show which cases share a background, so train/validation splits can keep them together.
Real lesion outlines (``real:DATA``) are named the same way.

The manifest is deterministic: sorted keys, no timestamps, so equal runs give equal bytes.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

from medsynth.io.writers.atomic import atomic_write_json, atomic_write_text
from medsynth.models.privacy import dp_noise_of, dp_record, dp_statement

MANIFEST_NAME = "manifest.json"
CARD_NAME = "README.md"
MANIFEST_VERSION = 1


def salted_id(salt: bytes, digest: str) -> str:
    """HMAC-SHA256 of a content digest under the run's salt (hex), the only identity written."""
    return hmac.new(salt, digest.encode("ascii"), hashlib.sha256).hexdigest()


def salt_fingerprint(salt: bytes) -> str:
    """sha256 of the salt: lets its keeper match a manifest to a salt without revealing it."""
    return hashlib.sha256(salt).hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of medsynth and the libraries that shape the output bytes."""
    import importlib.metadata as md

    import medsynth

    out = {"medsynth": str(medsynth.__version__)}
    for dist in ("numpy", "scipy", "scikit-image", "torch", "diffusers", "nibabel", "pydicom", "highdicom",
                 "pillow", "monai"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:  # optional library not installed: not recorded
            continue
    return out


def card_facts(card: dict[str, Any]) -> dict[str, Any]:
    """What the manifest keeps of the model's card and, when an adapter is loaded, of the adapter's:
    data counts, steps, DP record. Nothing that points at the training data: no path (the cards'
    ``data.source``, ``base_model.path``, ``adapter.path``), no layout name, no data fingerprint (with
    it, whoever holds a dataset could test whether it trained the model); the model card keeps those."""

    def data(d: Any) -> dict[str, Any]:
        d = d if isinstance(d, dict) else {}
        return {k: d[k] for k in ("n_cases", "n_lesion_crops", "n_healthy_crops") if k in d}

    def steps(t: Any) -> dict[str, Any]:
        t = t if isinstance(t, dict) else {}
        return {k: t[k] for k in ("steps", "planned_steps", "batch_size") if k in t}

    parts = card.get("dp_parts") if isinstance(card.get("dp_parts"), dict) else {"base": card.get("dp")}
    out = {"base": {"name": card.get("name"), "data": data(card.get("data")), "training": steps(card.get("training")),
                    "dp": dp_record(parts.get("base"))}}
    adapter = card.get("adapter")
    if isinstance(adapter, dict):
        out["adapter"] = {"lora": adapter.get("lora"), "data": data(adapter.get("data")),
                          "training": steps(adapter.get("training")), "dp": dp_record(adapter.get("dp"))}
    return out


def build_manifest(header: dict[str, Any], records: list[dict[str, Any]], n_requested: int) -> dict[str, Any]:
    """The manifest dict: the run's header, the complete case records (sorted by index) and counts."""
    cases = sorted(records, key=lambda r: r["index"])
    return {
        "manifest_version": MANIFEST_VERSION,
        **header,
        "n_requested": int(n_requested),
        "n_complete": len(cases),
        "complete": len(cases) == n_requested,
        "cases": cases,
    }


def write_manifest(out: Path, manifest: dict[str, Any]) -> Path:
    """Write ``OUT/manifest.json`` atomically."""
    return atomic_write_json(Path(out) / MANIFEST_NAME, manifest)


def render_dataset_card(manifest: dict[str, Any], index_files: list[str]) -> str:
    """A Markdown dataset card: what the data is, how it was made, its intended use and limits."""
    model = manifest.get("model", {})
    dp = model.get("dp")
    cards = model.get("cards") or {}
    parts = {name: c.get("dp") for name, c in cards.items()} if "adapter" in cards else None
    what = "base model + LoRA adapter" if parts else "model"
    if dp and dp_noise_of(dp) == "csprng":
        privacy = (f"The {what} was trained with {dp_statement(dp)}; see medsynth's docs/privacy.md for what "
                   "one training patch means. DP protects what the weights reveal, not the backgrounds.")
    else:
        privacy = (f"The {what} was {dp_statement(dp, parts)}. Run `medsynth audit` (memorisation, membership "
                   "inference) before sharing this data outside the institution.")
    masks = manifest.get("masks", {})
    classes = ", ".join(f"{v} = {k}" for k, v in manifest.get("labels", {}).items())
    lines = [
        "# Synthetic mammography lesion segmentation dataset",
        "",
        "**Every image here is synthetic.** Each case is a background mammogram with one or more lesions",
        "painted in by a diffusion inpainting model (medsynth); the label map marks the painted lesions",
        "(and any lesion the background already carried).",
        "",
        "## Contents",
        "",
        f"- Cases: {manifest.get('n_complete')} of {manifest.get('n_requested')} requested "
        f"({'complete' if manifest.get('complete') else 'INCOMPLETE'}).",
        f"- Format: `{manifest.get('format')}`; index file(s): "
        + (", ".join(f"`{p}`" for p in index_files) if index_files else "none (see manifest.json)")
        + ".",
        f"- Label values: {classes}.",
        "- `manifest.json`: every file with its SHA-256, the lesions of each case and their seeds.",
        "",
        "## How it was made",
        "",
        f"- medsynth {manifest.get('versions', {}).get('medsynth')}, model weights sha256 "
        f"`{model.get('sha256')}`"
        + (f", LoRA adapter sha256 `{model.get('adapter_sha256')}`" if model.get("adapter_sha256") else "")
        + ".",
        f"- Sampler `{model.get('sampler')}`, {model.get('num_inference_steps')} steps; seed {manifest.get('seed')}; "
        "case i depends only on (seed, i).",
        f"- Lesion outlines: `{masks.get('source')}` "
        f"({', '.join(f'{k}={v}' for k, v in masks.items() if k != 'source')}).",
        "- Placement: inside the breast-tissue mask computed from each background, away from the skin",
        "  line and chest wall, never overlapping another lesion "
        f"({', '.join(f'{k}={v}' for k, v in manifest.get('placement', {}).items())}).",
        "- Backgrounds are identified only by salted hashes (the salt was random and is not stored);",
        "  no source path, file name or patient ID is recorded anywhere in this folder.",
        "",
        "## Privacy",
        "",
        privacy,
        "DICOM files carry fresh UIDs, `PatientIdentityRemoved = YES`, a synthetic patient name and",
        "`ConversionType = SYN`; nothing is copied from a source patient.",
        "",
        "## Intended use",
        "",
        "Training and testing lesion segmentation models (nnU-Net, MONAI), alone or added to real data;",
        "method development and teaching. **Not** for diagnosis, clinical decisions, or as evidence that a",
        "lesion of this look exists in any patient. Painted lesions follow the model's training data and",
        "may lack fine detail (e.g. spicules); check their realism (`medsynth evaluate`) before relying on them.",
        "",
    ]
    return "\n".join(lines)


def write_dataset_card(out: Path, manifest: dict[str, Any], index_files: list[str]) -> Path:
    """Write ``OUT/README.md`` atomically."""
    return atomic_write_text(Path(out) / CARD_NAME, render_dataset_card(manifest, index_files))
