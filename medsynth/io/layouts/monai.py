"""A MONAI / Decathlon datalist JSON: ``{"training": [{"image": ..., "label": ...}], "test": [...]}``.

The path is the JSON, or a folder holding exactly one JSON with a "training" list. Paths are joined
to ``base_dir`` (default: the JSON's folder) exactly as ``monai.data.load_decathlon_datalist`` does
(``normpath(join(base_dir, p))``, an absolute path stays absolute), and must stay inside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medsynth.errors import InvalidDatasetError
from medsynth.io.layouts.base import (
    Dataset,
    Found,
    Layout,
    check_shapes,
    read_json,
    relpath,
    require_file,
    resolve_inside,
    stem,
    unique_ids,
)
from medsynth.io.readers import load_scan
from medsynth.io.scan import Case


def recognise(path: Path) -> Found | str:
    """A .json mapping with a list of cases, or a folder holding exactly one datalist JSON.

    Raises:
        InvalidDatasetError: the folder holds several datalist JSONs (which one is meant is unclear).
    """
    if path.is_file():
        if path.suffix.lower() == ".json":
            data = read_json(path)
            if isinstance(data, dict) and any(isinstance(v, list) for v in data.values()):
                return Found(path.parent, path)
        return "not a datalist .json (a mapping with a list of cases)"
    datalists = []
    for candidate in sorted(path.glob("*.json")):
        data = read_json(candidate)
        if isinstance(data, dict) and isinstance(data.get("training"), list):
            datalists.append(candidate)
    if len(datalists) > 1:
        raise InvalidDatasetError(
            f"holds several datalist JSONs ({', '.join(p.name for p in datalists)}); pass the one to use",
            path,
        )
    if datalists:
        return Found(path, datalists[0])
    return "no datalist .json with a 'training' list"


def load(found: Found, *, key: str = "training", base_dir: str | Path | None = None, **_: Any) -> Dataset:
    """The cases of one list of the datalist.

    Args:
        found: where the datalist is.
        key: which list ("training", "validation", "test").
        base_dir: what relative paths are joined to (default: the JSON's folder); it is also the
            root paths must stay inside.
    """
    datalist = found.index_file
    assert datalist is not None
    spec = read_json(datalist)
    if not isinstance(spec, dict) or key not in spec:
        keys = ", ".join(map(str, spec)) if isinstance(spec, dict) else "none"
        raise InvalidDatasetError(f"has no {key!r} list (keys: {keys})", datalist)
    items = spec[key]
    if not isinstance(items, list):
        raise InvalidDatasetError(f"{key!r} is not a list", datalist)
    base = (Path(base_dir) if base_dir is not None else datalist.parent).resolve()
    root = base
    resolved: list[tuple[Path, Path | None, dict[str, Any]]] = []
    for i, item in enumerate(items):
        if isinstance(item, str):  # Decathlon "test" lists hold bare paths
            item = {"image": item}
        if not isinstance(item, dict) or "image" not in item:
            raise InvalidDatasetError(f"{key}[{i}] has no 'image'", datalist)
        image_rel = _single(item["image"], f"{key}[{i}].image", datalist)
        image_path = require_file(resolve_inside(root, image_rel, datalist, base), image_rel, datalist)
        label_path = None
        if item.get("label"):
            label_rel = _single(item["label"], f"{key}[{i}].label", datalist)
            label_path = require_file(resolve_inside(root, label_rel, datalist, base), label_rel, datalist)
        extra = {k: v for k, v in item.items() if k not in ("image", "label")}
        resolved.append((image_path, label_path, extra))
    relpaths = [relpath(p, root) for p, _, _ in resolved]
    stems = [stem(p) for p, _, _ in resolved]
    ids = stems if len(set(stems)) == len(stems) else unique_ids(relpaths)
    cases = []
    for case_id, rel, (image_path, label_path, extra) in zip(ids, relpaths, resolved):
        image = load_scan(image_path)
        mask = load_scan(label_path) if label_path is not None else None
        if mask is not None:
            check_shapes(image, mask)
        patient = extra.pop("patient_id", None)
        cases.append(Case(case_id=str(extra.get("case_id", case_id)), image=image, mask=mask,
                          patient_id=str(patient) if patient is not None else None,
                          image_relpath=rel, metadata=extra))
    return Dataset(root, LAYOUT.name, cases, index_file=datalist, metadata={"key": key})


def _single(value: Any, where: str, datalist: Path) -> str:
    """One path from an entry that may be a list of channels (the first channel is the image)."""
    if isinstance(value, list):
        if not value or not all(isinstance(v, str) for v in value):
            raise InvalidDatasetError(f"{where} must be a path or a list of paths", datalist)
        return value[0]
    if not isinstance(value, str):
        raise InvalidDatasetError(f"{where} must be a path, got {type(value).__name__}", datalist)
    return value


LAYOUT = Layout("monai", recognise, load)
