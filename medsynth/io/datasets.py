"""``load_dataset(path)``: recognise a dataset's layout and list its cases (image + label map).

Like ``load_scan`` with its readers (and nnU-Net's ``reader_writer_registry.py``), the layouts form
one registry, :data:`LAYOUTS`, one module each under ``medsynth.io.layouts``:

* ``generate-output`` -- a ``medsynth generate`` output folder holding an nnU-Net or MONAI set;
* ``nnunet`` -- an nnU-Net v2 raw dataset (``dataset.json``, ``imagesTr/``, ``labelsTr/``);
* ``cbis-ddsm`` -- ``*case_description*.csv`` files and the DICOM tree they name;
* ``folder`` -- ``images/`` with optional ``masks/`` and ``cases.csv``;
* ``monai`` -- a MONAI / Decathlon datalist JSON.

Each layout says whether it recognises the path (a folder or an index file); ``load_dataset`` takes
the first that does, in this order, and when none does raises one
:class:`~medsynth.errors.UnknownLayoutError` listing each layout's reason.

Pixel spacing is known, or given, never assumed: an image whose file states none gets a spacing
the user gives, one the dataset lists, or its layout's documented default, else the dataset is
refused (:mod:`medsynth.io.spacing`).

Everything stays on disk: images and masks are header-read Scans whose pixels load on access.
Mask and image shapes are compared from the headers (and again when a CBIS-DDSM union is built); a
mismatch is an :class:`~medsynth.errors.InvalidMaskError` naming both files. Every path taken from a
CSV or JSON must stay inside the dataset root (:func:`~medsynth.io.layouts.base.resolve_inside`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medsynth.errors import UnknownLayoutError
from medsynth.io.layouts import cbis_ddsm, folder, generate_output, monai, nnunet
from medsynth.io.layouts.base import Dataset, Found, Layout, resolve_inside
from medsynth.io.spacing import resolve_spacing

__all__ = ["Dataset", "LAYOUTS", "detect_layout", "load_dataset", "resolve_inside"]

#: The layouts, in the order they are tried.
LAYOUTS: tuple[Layout, ...] = (
    generate_output.LAYOUT,
    nnunet.LAYOUT,
    cbis_ddsm.LAYOUT,
    folder.LAYOUT,
    monai.LAYOUT,
)


def detect_layout(path: str | Path) -> tuple[Layout, Found]:
    """The first layout of :data:`LAYOUTS` that recognises ``path``, and where its dataset is.

    Raises:
        FileNotFoundError: the path does not exist.
        UnknownLayoutError: no layout recognises it; the message gives each layout's reason.
        InvalidDatasetError: a layout recognises it but it is ambiguous (e.g. several datalists).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    reasons = []
    for layout in LAYOUTS:
        found = layout.recognise(path)
        if isinstance(found, Found):
            return layout, found
        reasons.append(f"{layout.name}: {found}")
    hint = "; for a single image use `load_scan` / `medsynth info`" if path.is_file() else ""
    raise UnknownLayoutError("matches no known dataset layout (" + "; ".join(reasons) + ")" + hint, path)


def load_dataset(path: str | Path, *, key: str = "training", base_dir: str | Path | None = None,
                 spacing_mm: Any = None, require_spacing: bool = True) -> Dataset:
    """Recognise the layout at ``path`` and list its cases (nothing but headers is read).

    Args:
        path: a dataset folder, or an index file (datalist JSON, nnU-Net dataset.json, CBIS-DDSM CSV).
        key: ``monai`` only: which list of the datalist to read ("training", "validation", "test").
        base_dir: ``monai`` only: what relative paths are joined to (default: the JSON's folder);
            it is also the root paths must stay inside.
        spacing_mm: the pixel spacing (mm; one number or a (row, col) pair) of images whose files
            state none; a spacing a file states is kept (:mod:`medsynth.io.spacing`).
        require_spacing: refuse a dataset with an image whose spacing stays unknown (default);
            False leaves it unknown ((nan, nan)), for listing only.

    Returns:
        The Dataset.

    Raises:
        FileNotFoundError: the path does not exist.
        UnknownLayoutError: the layout is not recognised.
        InvalidDatasetError: a listed file is missing, a path leaves the root, an index is malformed.
        InvalidMaskError: a mask's shape differs from its image's.
        InvalidImageError: an image or mask header is unreadable, or states no pixel spacing and
            none is given (``require_spacing``).
        ConfigError: ``spacing_mm`` is not one or two positive numbers.
    """
    layout, found = detect_layout(path)
    ds = layout.load(found, key=key, base_dir=base_dir)
    ds.metadata["spacing_sources"] = resolve_spacing(ds, spacing_mm, require=require_spacing)
    return ds
