"""An nnU-Net v2 raw dataset: ``dataset.json`` (``file_ending``, ``channel_names``, ``labels``,
``numTraining``), ``imagesTr/{case}_0000{ending}`` and ``labelsTr/{case}{ending}``.

Channel 0000 is the image; further channels are noted in ``Dataset.metadata``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medsynth.errors import InvalidDatasetError
from medsynth.io.layouts.base import Dataset, Found, Layout, check_shapes, read_json, relpath, require_file
from medsynth.io.readers import load_scan
from medsynth.io.scan import Case


def recognise(path: Path) -> Found | str:
    """A ``dataset.json`` with ``file_ending`` and ``channel_names``, or a folder holding one beside ``imagesTr/``."""
    if path.is_file():
        if path.suffix.lower() != ".json":
            return "not a dataset.json"
        data = read_json(path)
        if isinstance(data, dict) and "file_ending" in data and "channel_names" in data:
            return Found(path.parent, path)
        return "a .json without 'file_ending' and 'channel_names'"
    dataset_json = path / "dataset.json"
    if dataset_json.is_file() and (path / "imagesTr").is_dir():
        data = read_json(dataset_json)
        if isinstance(data, dict) and "file_ending" in data:
            return Found(path, dataset_json)
    return "no dataset.json (file_ending, channel_names) beside imagesTr/"


def load(found: Found, **_: Any) -> Dataset:
    """The training cases ``imagesTr/`` and ``labelsTr/`` hold, as ``dataset.json`` describes them."""
    root, dataset_json = found.root, found.index_file
    assert dataset_json is not None
    spec = read_json(dataset_json)
    for field in ("file_ending", "channel_names", "labels"):
        if field not in spec:
            raise InvalidDatasetError(f"has no {field!r} (an nnU-Net v2 dataset.json needs it)", dataset_json)
    ending = str(spec["file_ending"])
    labels = spec["labels"]
    if not isinstance(labels, dict) or labels.get("background", 0) != 0:
        raise InvalidDatasetError("'labels' must map names to values with background = 0", dataset_json)
    channels = spec["channel_names"]
    suffix = f"_0000{ending}"
    image_files = sorted(p for p in (root / "imagesTr").iterdir() if p.name.endswith(suffix))
    if "numTraining" in spec and int(spec["numTraining"]) != len(image_files):
        raise InvalidDatasetError(
            f"numTraining is {spec['numTraining']} but imagesTr holds {len(image_files)} *{suffix} files", dataset_json
        )
    cases = []
    for image_path in image_files:
        case_id = image_path.name[: -len(suffix)]
        label_path = root / "labelsTr" / f"{case_id}{ending}"
        require_file(label_path, f"labelsTr/{case_id}{ending}", dataset_json)
        image = load_scan(image_path)
        mask = load_scan(label_path)
        check_shapes(image, mask)
        cases.append(Case(case_id=case_id, image=image, mask=mask, image_relpath=relpath(image_path, root),
                          metadata={"channels": len(channels)}))
    return Dataset(root, LAYOUT.name, cases, index_file=dataset_json,
                   metadata={"labels": labels, "channel_names": channels, "file_ending": ending,
                             "name": spec.get("name")})


LAYOUT = Layout("nnunet", recognise, load)
