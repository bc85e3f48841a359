"""The utility test's splits must not share patients: checks that refuse them.

A test image that is also in training (as itself, as another view of its patient, or as the
background of a synthetic case, whose own lesions stay labelled) makes the test measure memory. Before
anything is trained, :func:`check_splits` refuses (``InvalidDatasetError``, exit 2 from the CLI) when

1. two of real-train, real-test and synthetic share a **patient ID** (where the layouts record them);
2. two of them share an **identical image** (:func:`medsynth.io.fingerprints.image_digest`);
3. a synthetic case was painted on a **real-train or real-test image**. Two ways to tell:

   - *salted identities* -- ``medsynth generate`` writes ``HMAC-SHA256(salt, image_digest)`` of each
     background into ``manifest.json`` and only ``sha256(salt)``, never the salt. Whoever kept the
     salt (``generate(..., salt=...)``) passes it here; it is checked against ``salt_sha256`` and the
     HMAC of every real image is compared with the manifest's. This reveals nothing the salt's keeper
     could not compute anyway; without the salt the manifest says nothing about any image.
   - *pixels* -- always, when shapes match: outside its lesion mask (grown by ``dilate_mm``) a
     synthetic image still *is* its background (inpainting changes only the mask and a feathered band
     around it). A synthetic and a real image whose thumbnails agree there up to an affine intensity
     change (relative residual below ``max_residual``) are the same background. This is also why the
     manifest's salted identities alone do not hide which images were backgrounds from someone who
     holds the source images: the released pixels show them.

What was checked is recorded in the result's ``splits`` entry; a check that could not run (no patient
IDs, no salt) says so there and is never reported as passed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from medsynth.errors import ConfigError, InvalidDatasetError
from medsynth.metrics.utility.data import THUMB_PX, UtilitySet


def _examples(items: list[str], k: int = 3) -> str:
    shown = ", ".join(items[:k])
    return shown + (f" and {len(items) - k} more" if len(items) > k else "")


def _where(s: UtilitySet) -> str | Path:
    return s.root if s.root is not None else s.source


def _check_patients(sets: list[UtilitySet]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, a in enumerate(sets):
        for b in sets[i + 1:]:
            key = f"{a.what} / {b.what}"
            ids_a = {x.patient_id for x in a.identities if x.patient_id is not None}
            ids_b = {x.patient_id for x in b.identities if x.patient_id is not None}
            if not ids_a or not ids_b:
                missing = [s.what for s, ids in ((a, ids_a), (b, ids_b)) if not ids]
                out[key] = f"not checked: no patient IDs in {' and '.join(missing)}"
                continue
            shared = sorted(ids_a & ids_b)
            if shared:
                files = [x.relpath for x in b.identities if x.patient_id in set(shared)]
                raise InvalidDatasetError(
                    f"{b.what} shares {len(shared)} patient(s) with {a.what} ({_examples(shared)}; e.g. "
                    f"{_examples(files, 2)}); the utility test needs patient-disjoint sets", _where(b))
            out[key] = f"checked: {len(ids_a)} and {len(ids_b)} patients, none shared"
    return out


def _check_images(sets: list[UtilitySet]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, a in enumerate(sets):
        digests = {x.digest: x.relpath for x in a.identities}
        for b in sets[i + 1:]:
            same = [(digests[x.digest], x.relpath) for x in b.identities if x.digest in digests]
            if same:
                raise InvalidDatasetError(
                    f"{len(same)} image(s) of {b.what} are pixel-identical to {a.what} images "
                    f"({_examples([f'{q} = {p}' for p, q in same], 2)}); the utility test needs disjoint sets",
                    _where(b))
            out[f"{a.what} / {b.what}"] = f"checked: {len(a)} and {len(b)} images, none identical"
    return out


def find_manifest(s: UtilitySet) -> Path | None:
    """The ``medsynth generate`` manifest of a synthetic set: in its root or the folder above (nnU-Net)."""
    if s.root is None:
        return None
    for folder in (s.root, s.root.parent):
        path = folder / "manifest.json"
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and "manifest_version" in data and "cases" in data:
                return path
    return None


def read_salt(salt: bytes | str | Path) -> bytes:
    """The background salt: bytes, a hex string, or a file holding either."""
    if isinstance(salt, bytes):
        return salt
    text = str(salt)
    path = Path(text)
    if path.is_file():
        raw = path.read_bytes()
        try:
            return bytes.fromhex(raw.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return raw
    try:
        return bytes.fromhex(text.strip())
    except ValueError as e:
        raise ConfigError("the background salt must be a file or a hex string", text) from e


def _check_hmac(manifest_path: Path, salt: bytes, reals: list[UtilitySet]) -> str:
    from medsynth.generation.manifest import salt_fingerprint

    manifest = json.loads(manifest_path.read_text())
    if manifest.get("salt_sha256") != salt_fingerprint(salt):
        raise ConfigError("the background salt given is not the one this manifest was made with "
                          "(its sha256 differs from salt_sha256)", manifest_path)
    ids = {(c.get("background") or {}).get("id") for c in manifest.get("cases", [])} - {None}
    for s in reals:
        hits = [x.relpath for x in s.identities
                if hmac.new(salt, x.digest.encode("ascii"), hashlib.sha256).hexdigest() in ids]
        if hits:
            raise InvalidDatasetError(
                f"{len(hits)} {s.what} image(s) were backgrounds of synthetic cases ({_examples(hits, 2)}), "
                f"by the salted identities of {manifest_path.name}; the utility test needs disjoint sets",
                _where(s))
    return f"checked by salted identity: {len(ids)} backgrounds, none a real-train or real-test image"


def background_matches(synthetic: UtilitySet, real: UtilitySet, dilate_mm: float,
                       max_residual: float) -> list[tuple[int, int, float]]:
    """(synthetic index, real index, relative residual) of pairs whose pixels agree outside the lesions.

    Only images of the same source shape are compared. The residual is that of the least-squares
    affine map from the real thumbnail to the synthetic one over the synthetic image's lesion-free
    thumbnail pixels, divided by the real thumbnail's standard deviation there.
    """
    assert synthetic.thumbs is not None and real.thumbs is not None and synthetic.thumb_masks is not None
    out = []
    by_shape: dict[tuple[int, int], list[int]] = {}
    for j, shape in enumerate(real.shapes):
        by_shape.setdefault(shape, []).append(j)
    for i, shape in enumerate(synthetic.shapes):
        cands = by_shape.get(shape)
        if not cands:
            continue
        # One thumbnail pixel spans (side x spacing / THUMB_PX) mm; grow the lesions by dilate_mm.
        thumb_mm = min(n * sp / THUMB_PX for n, sp in zip(shape, synthetic.spacings[i]))
        grow = int(np.ceil(dilate_mm / thumb_mm)) if dilate_mm > 0 else 0
        lesion = synthetic.thumb_masks[i]
        keep = ~(ndimage.binary_dilation(lesion, iterations=grow) if grow > 0 and lesion.any() else lesion)
        if keep.sum() < 0.25 * keep.size:
            continue
        y = synthetic.thumbs[i][keep].astype(np.float64)
        xs = real.thumbs[cands][:, keep].astype(np.float64)  # (C, K)
        xm, ym = xs.mean(1, keepdims=True), y.mean()
        xc, yc = xs - xm, y - ym
        var = (xc**2).sum(1)
        slope = (xc @ yc) / np.maximum(var, 1e-12)
        resid = yc[None] - slope[:, None] * xc
        rel = np.sqrt((resid**2).mean(1)) / np.maximum(np.sqrt(var / keep.sum()), 1e-12)
        for j, r in zip(cands, rel):
            if r < max_residual and slope[cands.index(j)] > 0:
                out.append((i, j, float(r)))
    return out


def check_splits(real_train: UtilitySet, real_test: UtilitySet, synthetic: UtilitySet,
                 salt: bytes | str | Path | None = None, dilate_mm: float = 3.0,
                 max_residual: float = 0.02) -> dict[str, Any]:
    """Refuse overlapping sets (see the module docstring); returns what was checked, for the JSON.

    Raises:
        InvalidDatasetError: two sets share a patient, an image or a background (names the set).
        ConfigError: a salt was given but does not match the manifest, or there is no manifest.
    """
    sets = [real_train, real_test, synthetic]
    report: dict[str, Any] = {"patient_ids": _check_patients(sets), "identical_images": _check_images(sets)}

    manifest = find_manifest(synthetic)
    if salt is not None:
        if manifest is None:
            raise ConfigError("a background salt was given but the synthetic set has no medsynth manifest.json",
                              _where(synthetic))
        report["backgrounds_salted"] = _check_hmac(manifest, read_salt(salt), [real_train, real_test])
    else:
        report["backgrounds_salted"] = ("not checked: no salt given (the manifest's background identities "
                                        "can only be recomputed with the salt of the generate run)"
                                        if manifest is not None else "not checked: no medsynth manifest")
    pixels: dict[str, str] = {}
    for real in (real_train, real_test):
        found = []
        for i, j, r in background_matches(synthetic, real, dilate_mm, max_residual):
            found.append((synthetic.identities[i].relpath, real.identities[j].relpath, r))
        if found:
            shown = _examples([f"{s} on {r} (residual {x:.3f})" for s, r, x in found], 2)
            raise InvalidDatasetError(
                f"{len(found)} synthetic image(s) were painted on {real.what} images, by their pixels outside "
                f"the lesions ({shown}); the utility test needs disjoint sets", _where(real))
        compared = sum(1 for s in synthetic.shapes if s in set(real.shapes))
        pixels[f"synthetic / {real.what}"] = (
            f"checked: {compared} of {len(synthetic)} synthetic images share a shape with {real.what} images; "
            "none shows a real image outside its lesions" if compared else
            f"not checked: no synthetic image has the shape of a {real.what} image")
    report["backgrounds_pixels"] = pixels
    return report


__all__ = ["background_matches", "check_splits", "find_manifest", "read_salt"]
