"""Write phantoms to disk as a dataset: CBIS-DDSM-like DICOM tree, NIfTI folder, or PNG folder.

``make_phantoms`` is the entry point (``make_phantoms_from_config`` takes the settings of a
``configs/phantoms.yaml``-like config, as ``medsynth phantoms`` does); it checks every setting once,
raising :class:`~medsynth.errors.ConfigError` with the value it got. Layouts:

- ``cbis-ddsm``: ``<Mass|Calc|Normal>-<split>_P_00001_LEFT_CC/000000.dcm`` images (DICOM MG, For
  Presentation, with decoy PHI), one ROI folder per lesion ``<Mass|Calc>-<split>_P_00001_LEFT_CC_<k>/``
  holding the binary ROI mask (``000000.dcm``, 0/255, same size as the image) and the cropped
  lesion (``000001.dcm``); ``mass_case_description.csv``, ``calc_case_description.csv`` (one row per
  lesion, CBIS-DDSM's columns, including its quirk of naming the density column ``breast density``
  in the calcification file) and ``normal_case_description.csv`` (images without lesion, empty ROI
  paths). All paths in the CSVs are relative to the root. Written by ``medsynth.phantoms.cbis``.
- ``nifti``: ``images/<case>.nii.gz`` (uint16 over the full 0..65535 range, affine
  diag(row mm, col mm, 1, 1), array stored as (rows, cols, 1)), ``masks/<case>.nii.gz`` (uint8
  label map: 1 mass, 2 calcification) for images with lesions, and ``cases.csv``.
- ``folder``: ``images/<case>.png`` (16-bit, full range, pixel spacing as the PNG's DPI),
  ``masks/<case>.png`` (8-bit label map), ``cases.csv``.

``bits_stored`` applies to DICOM only; NIfTI and PNG have no such field, so their images use all
16 bits.

Every layout also gets ``phantoms.json`` (generation settings, per-case files and lesion metadata, no PHI),
written last, so its presence marks a complete dataset. Each file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.errors import ConfigError, OutputExistsError
from medsynth.io.writers.atomic import atomic_path, atomic_write_bytes
from medsynth.phantoms.cbis import CALC_COLUMNS, MASS_COLUMNS, SIDE, write_cbis_case
from medsynth.phantoms.lesions import CALC_LABEL, MASS_LABEL
from medsynth.phantoms.render import Phantom, check_render_args, render_phantom

LAYOUTS = ("cbis-ddsm", "nifti", "folder")
CASES_COLUMNS = [
    "case_id", "patient_id", "laterality", "view", "density", "dense_fraction", "spacing_mm",
    "n_lesions", "lesion_types", "mass_shapes", "mass_margins", "calc_types", "calc_distributions",
    "pathologies",
]
_MARKER = ".medsynth-phantoms"  # marks a folder make_phantoms wrote (complete or not)


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


# ----------------------------------------------------------------------------- pixels
def to_stored(image: np.ndarray, bits_stored: int, monochrome: int) -> np.ndarray:
    """Display-polarity [0, 1] image → uint16 stored values (inverted for MONOCHROME1)."""
    top = 2**bits_stored - 1
    stored = np.rint(np.clip(image, 0.0, 1.0) * top).astype(np.uint16)
    return (top - stored).astype(np.uint16) if monochrome == 1 else stored


# ----------------------------------------------------------------------------- NIfTI / PNG
def _cases_row(case_id: str, patient_id: str, phantom: Phantom) -> dict[str, Any]:
    masses = [les for les in phantom.lesions if les["type"] == "mass"]
    calcs = [les for les in phantom.lesions if les["type"] == "calcification"]
    return {
        "case_id": case_id,
        "patient_id": patient_id,
        "laterality": phantom.laterality,
        "view": phantom.view,
        "density": phantom.density,
        "dense_fraction": round(phantom.dense_fraction, 4),
        "spacing_mm": f"{phantom.spacing[0]:.6g}",
        "n_lesions": len(phantom.lesions),
        "lesion_types": ";".join(les["type"] for les in phantom.lesions),
        "mass_shapes": ";".join(les["shape"] for les in masses),
        "mass_margins": ";".join(les["margin"] for les in masses),
        "calc_types": ";".join(les["calc_type"] for les in calcs),
        "calc_distributions": ";".join(les["distribution"] for les in calcs),
        "pathologies": ";".join(les["pathology"] for les in phantom.lesions),
    }


def _write_nifti_case(root: Path, case_id: str, phantom: Phantom) -> None:
    import nibabel as nib

    affine = np.diag([phantom.spacing[0], phantom.spacing[1], 1.0, 1.0])

    def save(path: Path, arr: np.ndarray) -> None:
        img = nib.Nifti1Image(arr[:, :, None], affine)
        img.header.set_xyzt_units("mm")
        with atomic_path(path) as tmp:
            nib.save(img, tmp)

    save(root / "images" / f"{case_id}.nii.gz", to_stored(phantom.image, 16, 2))
    if phantom.lesions:
        save(root / "masks" / f"{case_id}.nii.gz", phantom.label.astype(np.uint8))


def _png_bytes(arr: np.ndarray, spacing: tuple[float, float]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    # PNG keeps the pixel size only as DPI (x first): 25.4 mm per inch.
    Image.fromarray(arr).save(buf, format="PNG", dpi=(25.4 / spacing[1], 25.4 / spacing[0]))
    return buf.getvalue()


def _write_folder_case(root: Path, case_id: str, phantom: Phantom) -> None:
    image = to_stored(phantom.image, 16, 2)
    atomic_write_bytes(root / "images" / f"{case_id}.png", _png_bytes(image, phantom.spacing))
    if phantom.lesions:
        atomic_write_bytes(
            root / "masks" / f"{case_id}.png", _png_bytes(phantom.label.astype(np.uint8), phantom.spacing)
        )


# ----------------------------------------------------------------------------- one case
@dataclass(frozen=True)
class _CaseJob:
    """Everything needed to render and write one image (picklable, for worker processes)."""

    out: Path
    index: int
    seed: int
    size: tuple[int, int]
    view: str
    density: str | None
    layout: str
    monochrome: int
    burned_in_text: bool
    lesion_fraction: float
    spacing: float | None
    fov_mm: float
    bits_stored: int
    split: str


def _make_case(job: _CaseJob) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any], dict[str, Any]]:
    """Render and write one image; returns (CBIS CSV rows by file, cases.csv row, manifest entry)."""
    phantom = render_phantom(
        job.seed, job.size, job.view, job.density, index=job.index, spacing=job.spacing, fov_mm=job.fov_mm,
        lesion_fraction=job.lesion_fraction, burned_in_text=job.burned_in_text,
    )
    patient_id = f"P_{job.index // 2 + 1:05d}"
    case_id = f"{patient_id}_{SIDE[phantom.laterality]}_{phantom.view}"
    rows: dict[str, list[dict[str, Any]]] = {}
    if job.layout == "cbis-ddsm":
        stored = to_stored(phantom.image, job.bits_stored, job.monochrome)
        rows, files = write_cbis_case(
            job.out, phantom, stored, patient_id, job.split, job.bits_stored, job.monochrome
        )
    else:
        ext = "nii.gz" if job.layout == "nifti" else "png"
        files = {"image": f"images/{case_id}.{ext}", "mask": f"masks/{case_id}.{ext}" if phantom.lesions else None}
        if job.layout == "nifti":
            _write_nifti_case(job.out, case_id, phantom)
        else:
            _write_folder_case(job.out, case_id, phantom)
    entry = {
        "case_id": case_id, "patient_id": patient_id, "index": job.index, "laterality": phantom.laterality,
        "view": phantom.view, "density": phantom.density, "dense_fraction": round(phantom.dense_fraction, 4),
        "files": files, "lesions": phantom.lesions,
    }
    return rows, _cases_row(case_id, patient_id, phantom), entry


def _run_jobs(jobs: list[_CaseJob], workers: int) -> Iterator[tuple[Any, Any, Any]]:
    """Yield the results of ``jobs`` in order, in this process or in ``workers`` forked processes.

    Each image depends only on (seed, index), so the output is the same for any number of workers.
    Fork (not spawn) because ``python -m medsynth`` would re-run the CLI in spawned children; the
    children only use numpy, scipy, pydicom and nibabel.
    """
    if workers <= 1 or len(jobs) < 8:
        for job in jobs:
            yield _make_case(job)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from pool.map(_make_case, jobs, chunksize=max(1, min(8, len(jobs) // (4 * workers))))


# ----------------------------------------------------------------------------- entry point
def _prepare_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputExistsError("exists and is not a folder", out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError("output folder is not empty (pass overwrite=True / --overwrite)", out)
        if not ((out / "phantoms.json").exists() or (out / _MARKER).exists()):
            # Never delete a folder we did not write.
            raise OutputExistsError("not empty and not a phantoms dataset; refusing to overwrite it", out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    # Written first, so that a run that dies half-way leaves a folder --overwrite may replace.
    atomic_write_bytes(out / _MARKER, b"medsynth phantoms\n")


def make_phantoms(
    out: str | Path,
    n: int,
    seed: int,
    size: tuple[int, int] | None = None,
    view: str | None = None,
    density: str | None = None,
    layout: str | None = None,
    monochrome: int | None = None,
    burned_in_text: bool | None = None,
    lesion_fraction: float | None = None,
    patient_offset: int | None = None,
    *,
    spacing: float | None = None,
    fov_mm: float | None = None,
    bits_stored: int | None = None,
    split: str | None = None,
    overwrite: bool = False,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Render ``n`` phantoms and write them as a dataset that ``medsynth.io.load_dataset`` reads.

    Images alternate left and right breast of consecutive patients ``P_00001``, ``P_00002``, ...
    (numbering starts after ``patient_offset``). Image ``i`` is phantom ``2 * patient_offset + i``
    of ``seed``: the pixels of a patient are the same in every set that includes her, and two sets
    with disjoint patient ranges hold different images even with the same seed.

    Args:
        out: output folder (created; must be empty unless ``overwrite``).
        n: number of images.
        seed: non-negative seed; the same seed gives byte-identical pixels.
        size: (rows, cols).
        view: "cc" or "mlo".
        density: BI-RADS density "a".."d" for all images, or None to draw per patient.
        layout: "cbis-ddsm", "nifti" or "folder".
        monochrome: 1 (stored inverted, PresentationLUTShape INVERSE) or 2 (cbis-ddsm layout only).
        burned_in_text: write the decoy name, ID and date into the pixels (BurnedInAnnotation YES).
        lesion_fraction: probability that an image has at least one lesion.
        patient_offset: number of patients to skip (keeps train and holdout patients apart).
        spacing: pixel spacing in mm; None gives ``fov_mm / rows``.
        fov_mm: image height in mm when ``spacing`` is None.
        bits_stored: bit depth of the stored DICOM pixels, 12 to 16 (NIfTI and PNG use 16).
        split: the CBIS-DDSM split word in folder names ("Training" or "Test").
        overwrite: replace an existing phantoms dataset in ``out``.
        workers: processes rendering in parallel (1: in this process; 0: one per core, at most 4);
            the files are the same for any number. A run-time choice, not a setting of the data: the
            API renders in this process unless asked, the CLI uses the ``workers`` setting.
        progress: called as ``progress(done, n)`` after each image.

    Every setting left as None (all but ``density`` and ``spacing``, whose None has a meaning that
    ``configs/phantoms.yaml`` also gives them) takes its value from ``configs/phantoms.yaml``.

    Returns:
        the output folder.

    Raises:
        ConfigError: a setting is out of range or of the wrong type (the message shows it).
        OutputExistsError: ``out`` is not empty (and not a phantoms dataset to overwrite).
    """
    # 1. Check inputs (the one place they are checked; the CLI passes its options through)
    from medsynth.config import load_config

    cfg = load_config(kind="phantoms", overrides=dict(
        size=size, view=view, layout=layout, monochrome=monochrome, burned_in_text=burned_in_text,
        lesion_fraction=lesion_fraction, patient_offset=patient_offset, fov_mm=fov_mm, bits_stored=bits_stored,
        split=split))
    size = size if size is not None else parse_size(cfg["size"], out)
    view, layout, monochrome, burned_in_text = cfg["view"], cfg["layout"], cfg["monochrome"], cfg["burned_in_text"]
    lesion_fraction, patient_offset, fov_mm = cfg["lesion_fraction"], cfg["patient_offset"], cfg["fov_mm"]
    bits_stored, split = cfg["bits_stored"], cfg["split"]
    out = Path(out)
    try:
        check_render_args(seed, size, view, density)
    except ValueError as e:
        raise ConfigError(str(e), out) from e
    view, density = view.lower(), density.lower() if density is not None else None

    def need(ok: bool, name: str, what: str, value: Any) -> None:
        if not ok:
            raise ConfigError(f"{name} must be {what}, got {value!r}", out)

    need(_is_int(n) and n >= 1, "n", "a positive integer", n)
    need(layout in LAYOUTS, "layout", f"one of {', '.join(LAYOUTS)}", layout)
    need(monochrome in (1, 2), "monochrome", "1 or 2", monochrome)
    need(_is_int(bits_stored) and 12 <= bits_stored <= 16, "bits_stored", "an integer in 12..16", bits_stored)
    need(_is_number(lesion_fraction) and 0.0 <= lesion_fraction <= 1.0, "lesion_fraction", "in [0, 1]",
         lesion_fraction)
    need(_is_int(patient_offset) and patient_offset >= 0, "patient_offset", "an integer >= 0", patient_offset)
    need(spacing is None or (_is_number(spacing) and spacing > 0), "spacing", "a positive number of mm or None",
         spacing)
    need(_is_number(fov_mm) and fov_mm > 0, "fov_mm", "a positive number of mm", fov_mm)
    need(isinstance(split, str) and split.strip() != "", "split", "a word such as Training or Test", split)
    need(_is_int(workers) and workers >= 0, "workers", "an integer >= 0 (0: one per core, at most 4)", workers)
    workers = int(workers) or min(4, os.cpu_count() or 1)
    _prepare_output(out, overwrite)

    # 2. Render and write each image
    rows: dict[str, list[dict[str, Any]]] = {"mass": [], "calc": [], "normal": []}
    cases_rows: list[dict[str, Any]] = []
    manifest_cases: list[dict[str, Any]] = []
    jobs = [
        _CaseJob(out, 2 * patient_offset + i, seed, tuple(size), view, density, layout, monochrome,
                 burned_in_text, lesion_fraction, spacing, fov_mm, bits_stored, split)
        for i in range(n)
    ]
    for i, (new_rows, cases_row, entry) in enumerate(_run_jobs(jobs, workers)):
        for key, new in new_rows.items():
            rows[key] += new
        cases_rows.append(cases_row)
        manifest_cases.append(entry)
        if progress is not None:
            progress(i + 1, n)

    # 3. Index files, then the manifest that marks the dataset complete
    if layout == "cbis-ddsm":
        _write_csv(out / "mass_case_description.csv", MASS_COLUMNS, rows["mass"])
        _write_csv(out / "calc_case_description.csv", CALC_COLUMNS, rows["calc"])
        _write_csv(out / "normal_case_description.csv", MASS_COLUMNS, rows["normal"])
    else:
        _write_csv(out / "cases.csv", CASES_COLUMNS, cases_rows)
    manifest = {
        "generator": "medsynth.phantoms",
        "seed": int(seed), "n": int(n), "size": [int(size[0]), int(size[1])], "view": view.lower(),
        "density": density, "layout": layout, "monochrome": monochrome if layout == "cbis-ddsm" else 2,
        "bits_stored": bits_stored if layout == "cbis-ddsm" else 16, "burned_in_text": burned_in_text,
        "lesion_fraction": lesion_fraction,
        "patient_offset": patient_offset, "spacing_mm": list(render_spacing(size, spacing, fov_mm)),
        "labels": {"background": 0, "mass": MASS_LABEL, "calcification": CALC_LABEL},
        "cases": manifest_cases,
    }
    atomic_write_bytes(out / "phantoms.json", json.dumps(manifest, indent=1).encode())
    return out


def render_spacing(size: tuple[int, int], spacing: float | None, fov_mm: float) -> tuple[float, float]:
    """The pixel spacing (row, col) in mm that ``render_phantom`` uses for these settings."""
    pixel = float(spacing) if spacing is not None else fov_mm / int(size[0])
    return (pixel, pixel)


def make_phantoms_from_config(
    out: str | Path,
    cfg: dict[str, Any],
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """:func:`make_phantoms` with the settings of a phantoms config (the keys of ``configs/phantoms.yaml``,
    e.g. from ``medsynth.config.load_config(path, kind="phantoms", overrides=...)``).

    ``size`` may be ``[rows, cols]`` or a ``"ROWSxCOLS"`` string; ``spacing_mm`` is ``spacing``.

    Raises:
        ConfigError: a setting is invalid (checked by :func:`make_phantoms`).
    """
    return make_phantoms(
        out, cfg["n"], cfg["seed"], size=parse_size(cfg["size"], out), view=cfg["view"], density=cfg["density"],
        layout=cfg["layout"], monochrome=cfg["monochrome"], burned_in_text=bool(cfg["burned_in_text"]),
        lesion_fraction=cfg["lesion_fraction"], patient_offset=cfg["patient_offset"], spacing=cfg["spacing_mm"],
        fov_mm=cfg["fov_mm"], bits_stored=cfg["bits_stored"], split=cfg["split"], overwrite=overwrite,
        workers=cfg["workers"], progress=progress,
    )


def parse_size(size: Any, out: str | Path | None = None) -> tuple[int, int]:
    """``"512x416"`` or ``[512, 416]`` → (512, 416) rows x cols; the bounds are checked by ``make_phantoms``.

    Raises:
        ConfigError: neither form (naming ``out`` when given).
    """
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_int(v) for v in size):
        return int(size[0]), int(size[1])
    match = re.fullmatch(r"\s*(\d+)\s*[xX×,]\s*(\d+)\s*", size) if isinstance(size, str) else None
    if match is None:
        raise ConfigError(
            f"size must look like ROWSxCOLS (e.g. --size 512x416, or size: [512, 416] in a config file), got {size!r}",
            out,
        )
    return int(match.group(1)), int(match.group(2))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
