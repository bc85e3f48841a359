"""MONAI writer: NIfTI images and label maps plus a decathlon-style datalist JSON.

Layout::

    OUT/images/case_0000.nii.gz
    OUT/labels/case_0000.nii.gz
    OUT/datalist.json   {"training": [{"image": "images/case_0000.nii.gz", "label": "labels/..."}], ...}

Paths in the datalist are relative to its folder, which is how
``monai.data.load_decathlon_datalist(path, data_list_key="training")`` resolves them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsynth.io.writers.atomic import atomic_write_json
from medsynth.io.writers.base import LABELS, check_case
from medsynth.io.writers.nifti import write_nifti

DATALIST_NAME = "datalist.json"


class MonaiWriter:
    """Write cases as NIfTI files with a MONAI datalist.

    Args:
        out: output root.
        description: free text for the datalist.
    """

    format = "monai"

    def __init__(self, out: Path,
                 description: str = "Synthetic mammography lesion segmentation data made by medsynth.") -> None:
        self.out = Path(out)
        self.description = description

    def write_case(self, case_id: str, image: np.ndarray, label: np.ndarray,
                   spacing: tuple[float, float], laterality: str | None = None) -> dict[str, Path]:
        image, label = check_case(image, label)
        img_rel = Path("images") / f"{case_id}.nii.gz"
        lab_rel = Path("labels") / f"{case_id}.nii.gz"
        write_nifti(self.out / img_rel, image, spacing)
        write_nifti(self.out / lab_rel, label, spacing)
        return {"image": img_rel, "label": lab_rel}

    def finalize(self, case_ids: list[str]) -> list[Path]:
        datalist = {
            "name": "medsynth synthetic",
            "description": self.description,
            "labels": {str(v): k for k, v in LABELS.items()},
            "numTraining": len(case_ids),
            "training": [
                {"image": f"images/{c}.nii.gz", "label": f"labels/{c}.nii.gz"} for c in case_ids
            ],
        }
        atomic_write_json(self.out / DATALIST_NAME, datalist)
        return [Path(DATALIST_NAME)]
