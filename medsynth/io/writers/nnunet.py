"""nnU-Net v2 raw dataset writer.

Layout (nnU-Net's documented raw format)::

    OUT/Dataset500_MedsynthSynthetic/
        dataset.json        channel_names, labels (background 0, consecutive), numTraining, file_ending
        imagesTr/case_0000_0000.nii.gz     image, channel 0
        labelsTr/case_0000.nii.gz          label map, same geometry

Images are uint16 (nnU-Net normalises intensities itself); label maps are uint8.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.errors import ConfigError
from medsynth.io.writers.atomic import atomic_write_json
from medsynth.io.writers.base import LABELS, check_case
from medsynth.io.writers.nifti import write_nifti

FILE_ENDING = ".nii.gz"
CHANNEL_NAME = "mammography"  # anything but "CT" gets nnU-Net's per-image z-score normalisation


def dataset_folder_name(dataset_id: int, dataset_name: str) -> str:
    """``DatasetXXX_Name`` as nnU-Net names raw datasets (3-digit id, name without spaces)."""
    if not 1 <= int(dataset_id) <= 999:
        raise ConfigError(f"nnU-Net dataset id must be 1..999, got {dataset_id}")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", dataset_name or ""):
        raise ConfigError(f"nnU-Net dataset name must be letters, digits, '_' or '-', got {dataset_name!r}")
    return f"Dataset{int(dataset_id):03d}_{dataset_name}"


class NnunetWriter:
    """Write cases as an nnU-Net v2 raw dataset under ``out``.

    Args:
        out: output root; the dataset folder ``DatasetXXX_Name`` is made inside it.
        dataset_id: nnU-Net dataset id (1..999; 500+ is customary for user datasets); None: the
            ``nnunet`` section of ``configs/generate.yaml``.
        dataset_name: the name part of the folder; None: as ``dataset_id``.
        description: free text for ``dataset.json``.
    """

    format = "nnunet"

    def __init__(self, out: Path, dataset_id: int | None = None, dataset_name: str | None = None,
                 description: str = "Synthetic mammography lesion segmentation data made by medsynth.") -> None:
        if dataset_id is None or dataset_name is None:
            from medsynth.config import load_config

            section = load_config(kind="generate")["nnunet"]
            dataset_id = section["dataset_id"] if dataset_id is None else dataset_id
            dataset_name = section["dataset_name"] if dataset_name is None else dataset_name
        self.out = Path(out)
        self.folder = dataset_folder_name(dataset_id, dataset_name)
        self.root = self.out / self.folder
        self.description = description

    def write_case(self, case_id: str, image: np.ndarray, label: np.ndarray,
                   spacing: tuple[float, float], laterality: str | None = None) -> dict[str, Path]:
        image, label = check_case(image, label)
        img_rel = Path(self.folder) / "imagesTr" / f"{case_id}_0000{FILE_ENDING}"
        lab_rel = Path(self.folder) / "labelsTr" / f"{case_id}{FILE_ENDING}"
        write_nifti(self.out / img_rel, image, spacing)
        write_nifti(self.out / lab_rel, label, spacing)
        return {"image": img_rel, "label": lab_rel}

    def dataset_json(self, num_training: int) -> dict[str, Any]:
        return {
            "channel_names": {"0": CHANNEL_NAME},
            "labels": dict(LABELS),
            "numTraining": int(num_training),
            "file_ending": FILE_ENDING,
            "name": self.folder,
            "description": self.description,
            "reference": "synthetic (medsynth); see ../manifest.json and ../README.md",
            "licence": "see ../README.md",
        }

    def finalize(self, case_ids: list[str]) -> list[Path]:
        rel = Path(self.folder) / "dataset.json"
        atomic_write_json(self.out / rel, self.dataset_json(len(case_ids)))
        return [rel]
