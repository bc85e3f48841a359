"""A ``medsynth generate`` output folder: ``manifest.json`` beside the data, for the formats whose
folder is not itself a layout: nnU-Net (``DatasetXXX_Name/dataset.json``) and MONAI
(``datalist.json`` beside ``images/`` and ``labels/``, which would otherwise be read as a ``folder``
without masks).

The inner dataset is read by its own layout; case paths are then made relative to the output folder,
so reports name files as they sit in the folder that is released, manifest included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medsynth.errors import InvalidDatasetError
from medsynth.io.layouts import monai, nnunet
from medsynth.io.layouts.base import Dataset, Found, Layout, read_json
from medsynth.io.scan import Case


def recognise(path: Path) -> Found | str:
    """A folder whose ``manifest.json`` is a medsynth generate manifest of format nnunet or monai.

    Raises:
        InvalidDatasetError: such a folder holds no or several index files.
    """
    manifest = path / "manifest.json"
    if not (path.is_dir() and manifest.is_file()):
        return "no medsynth manifest.json"
    data = read_json(manifest)
    if not (isinstance(data, dict) and "manifest_version" in data and "format" in data):
        return "manifest.json is not a medsynth generate manifest"
    if data["format"] == "nnunet":
        candidates = sorted(path.glob("Dataset*/dataset.json"))
    elif data["format"] == "monai":
        candidates = [c for c in [path / "datalist.json"] if c.is_file()]
    else:  # dicom (images/ + seg/) and png (images/ + masks/) outputs are folder layouts
        return f"a {data['format']} output, read by the folder layout"
    if len(candidates) != 1:
        raise InvalidDatasetError(
            f"is a medsynth {data['format']} output but holds {len(candidates)} index files "
            f"({', '.join(str(c.relative_to(path)) for c in candidates) or 'none'}); pass the one to use",
            path,
        )
    return Found(path, candidates[0], inner=str(data["format"]))


def load(found: Found, *, key: str = "training", **_: Any) -> Dataset:
    """The inner nnU-Net or MONAI dataset, with case paths relative to the output folder."""
    index = found.index_file
    assert index is not None
    if found.inner == "nnunet":
        ds = nnunet.load(Found(index.parent, index))
    else:
        ds = monai.load(Found(index.parent, index), key=key)
    cases = []
    for case in ds:
        rel = (ds.root / case.image_relpath).relative_to(found.root).as_posix() if case.image_relpath else ""
        cases.append(Case(case.case_id, case.image, case.mask, case.patient_id, rel, case.metadata))
    return Dataset(found.root, ds.layout, cases, index_file=ds.index_file,
                   metadata={**ds.metadata, "generate_output": True})


LAYOUT = Layout("generate-output", recognise, load)
