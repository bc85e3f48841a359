"""``describe(path)``: what medsynth's readers see in an image file or a dataset, as a dict.

``medsynth info`` prints it; the API offers it as ``medsynth.describe``. For an image file: shape,
spacing, photometric interpretation, transfer syntax, laterality/view, bit depth, the pixel range
after decoding (so a broken file fails here), and for DICOM where the header carries patient data
(:func:`medsynth.io.phi.find_phi`: the same attributes the privacy audit checks). For a dataset (a
folder or an index file): its layout, case count, patients and cases with masks, the pixel spacings,
how many images take their layout's documented default spacing (CBIS-DDSM) and how many state none
(training, generation, evaluation and the audit refuse those unless given a spacing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["describe", "describe_dataset", "describe_scan"]


def describe(path: str | Path, *, frame: int = 0) -> dict[str, Any]:
    """Facts about an image file or a dataset: a folder, ``.json`` or ``.csv`` is a dataset.

    Args:
        path: an image file (DICOM, NIfTI, PNG, TIFF), or a dataset folder / index file.
        frame: frame of a multi-frame DICOM / slice of a NIfTI volume (image files only).

    Returns:
        The facts (``"kind"`` is "image" or "dataset"); JSON-serialisable.

    Raises:
        FileNotFoundError: the path does not exist.
        MedsynthError: the file cannot be read or decoded, or the dataset layout is not recognised.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir() or path.suffix.lower() in (".json", ".csv"):
        return describe_dataset(path)
    return describe_scan(path, frame=frame)


def describe_scan(path: str | Path, frame: int = 0) -> dict[str, Any]:
    """Facts about one image file, with its pixels decoded once to prove they are readable."""
    from medsynth.io.readers import load_scan

    path = Path(path)
    scan = load_scan(path, frame=frame)
    pixels = scan.pixels
    info: dict[str, Any] = {
        "kind": "image",
        "path": str(path),
        "format": scan.metadata.get("format"),
        "shape": list(scan.shape),
        "spacing_mm": [round(float(s), 6) for s in scan.spacing] if scan.spacing_known else None,
        "spacing_source": scan.metadata.get("spacing_source"),
        "photometric": scan.photometric,
        "transfer_syntax": scan.transfer_syntax,
        "modality": scan.modality,
        "laterality": scan.laterality,
        "view": scan.view,
        "bits_stored": scan.bits_stored if scan.bits_stored else scan.metadata.get("bits_stored_file"),
        "n_frames": scan.metadata.get("n_frames", 1),
        "pixel_min": float(pixels.min()),
        "pixel_max": float(pixels.max()),
    }
    if scan.metadata.get("format") == "dicom":
        from medsynth.io.dicom_header import read_header
        from medsynth.io.phi import find_phi

        header, _ = read_header(path)
        found = find_phi(header)
        burned = (scan.metadata.get("burned_in_annotation") or "").upper()
        info.update(
            {
                "inverted_for_display": scan.metadata.get("inverted"),
                "presentation_lut_shape": scan.metadata.get("presentation_lut_shape"),
                "phi_tags": found["phi"],
                "date_tags": found["dates"],
                "uid_tags": found["uids"],
                "private_tags": found["private"],
                "overlays": found["overlays"],
                "burned_in_annotation": burned or None,
                "phi_present": bool(found["phi"] or found["private"] or burned == "YES"),
            }
        )
    if scan.affine is not None:
        info["affine"] = [[round(float(v), 6) for v in row] for row in scan.affine]
    return info


def describe_dataset(path: str | Path) -> dict[str, Any]:
    """Facts about a dataset: layout, counts, patients (headers only; pixels stay on disk)."""
    from medsynth.io.datasets import load_dataset

    ds = load_dataset(path, require_spacing=False)
    patients = ds.patients()
    sources = ds.metadata.get("spacing_sources") or {}
    defaults = sorted({str(c.image.metadata.get("spacing_source")) for c in ds
                       if str(c.image.metadata.get("spacing_source", "")).startswith("layout default")})
    spacings = sorted({tuple(round(float(v), 6) for v in c.image.spacing) for c in ds if c.image.spacing_known})
    return {
        "kind": "dataset",
        "path": str(path),
        "root": str(ds.root),
        "layout": ds.layout,
        "index_file": str(ds.index_file) if ds.index_file else None,
        "cases": len(ds),
        "cases_with_masks": ds.cases_with_masks(),
        "patients": len(patients),
        "patient_ids_recorded": bool(patients),
        "first_cases": [c.case_id for c in ds[:5]],
        "spacings_mm": [list(sp) for sp in spacings[:5]] + (["..."] if len(spacings) > 5 else []),
        "spacing_layout_default": "; ".join(d[len("layout default ("):-1] for d in defaults) or None,
        "images_spacing_from_layout_default": sources.get("layout default", 0),
        "images_without_spacing": sources.get("unknown", 0),
    }
