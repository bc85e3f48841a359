"""What every dataset layout shares: the :class:`Dataset` it returns, the :class:`Layout` record the
registry holds, and the helpers that keep listed paths inside the dataset root.

Safety: every path taken from a CSV or JSON must resolve (symlinks followed) inside the dataset
root, else :class:`~medsynth.errors.InvalidDatasetError` -- the same class of bug as
CVE-2026-32711 (DICOMDIR ReferencedFileID path traversal). DICOMDIR files are never followed.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, overload

from medsynth.errors import InvalidDatasetError, InvalidMaskError
from medsynth.io.scan import Case, Scan

__all__ = [
    "FOLDER_SUFFIXES",
    "Dataset",
    "Found",
    "Layout",
    "check_shapes",
    "read_csv",
    "read_json",
    "relpath",
    "require_file",
    "resolve_inside",
    "stem",
    "unique_ids",
]

FOLDER_SUFFIXES = (".dcm", ".nii.gz", ".nii", ".png", ".tif", ".tiff")


class Dataset(Sequence[Case]):
    """The cases of one dataset, in a stable order.

    Attributes:
        root: the folder all paths are relative to (and confined to).
        layout: the name of the layout it was read as (``medsynth.io.datasets.LAYOUTS``).
        index_file: the CSV/JSON the cases were listed from (None for ``folder`` without cases.csv).
        metadata: layout facts (e.g. nnU-Net labels, the CBIS-DDSM CSVs read).
    """

    def __init__(
        self,
        root: Path,
        layout: str,
        cases: list[Case],
        index_file: Path | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.layout = layout
        self.index_file = index_file
        self.metadata = metadata or {}
        self._cases = cases

    def __len__(self) -> int:
        return len(self._cases)

    @overload
    def __getitem__(self, index: int) -> Case: ...

    @overload
    def __getitem__(self, index: slice) -> list[Case]: ...

    def __getitem__(self, index: int | slice) -> Case | list[Case]:
        return self._cases[index]

    def __iter__(self) -> Iterator[Case]:
        return iter(self._cases)

    def patients(self) -> list[str]:
        """Distinct patient IDs in order of first appearance (cases without one are left out)."""
        return list(dict.fromkeys(c.patient_id for c in self._cases if c.patient_id is not None))

    def cases_with_masks(self) -> int:
        """How many cases carry a lesion label map."""
        return sum(c.mask is not None for c in self._cases)

    def __repr__(self) -> str:
        return f"Dataset(root={str(self.root)!r}, layout={self.layout!r}, cases={len(self)})"


@dataclass(frozen=True)
class Found:
    """Where a recognised dataset is.

    Attributes:
        root: the dataset root.
        index_file: the CSV/JSON that lists the cases, when the layout has one.
        inner: the layout of the dataset inside a ``medsynth generate`` output folder.
    """

    root: Path
    index_file: Path | None = None
    inner: str | None = None


@dataclass(frozen=True)
class Layout:
    """One dataset layout, as the registry (``medsynth.io.datasets.LAYOUTS``) holds it.

    Attributes:
        name: what ``Dataset.layout`` says, e.g. "cbis-ddsm".
        recognise: ``recognise(path)`` returns a :class:`Found` when ``path`` (a folder or an index
            file) is this layout, else the reason it is not (one short phrase). It raises only when
            the path is this layout but ambiguous or malformed.
        load: ``load(found, key=..., base_dir=...)`` lists the cases (``key`` and ``base_dir`` are
            the MONAI datalist options; other layouts ignore them).
    """

    name: str
    recognise: Callable[[Path], Found | str]
    load: Callable[..., Dataset]


def resolve_inside(root: Path, relpath: str | Path, index_file: Path, base: Path | None = None) -> Path:
    """Resolve a path read from an index file and require it to lie inside ``root``.

    Args:
        root: the dataset root.
        relpath: the path as written in the CSV/JSON (relative to ``base``; may be absolute).
        index_file: the CSV/JSON it came from (named in the error).
        base: what a relative path is relative to (default: ``root``).

    Returns:
        The resolved absolute path.

    Raises:
        InvalidDatasetError: the path escapes the root (``..``, an absolute path elsewhere, a
            symlink out), or is empty.
    """
    text = str(relpath).strip()
    if not text:
        raise InvalidDatasetError("an empty path is listed", index_file)
    joined = Path(text) if Path(text).is_absolute() else (base or root) / text
    resolved = joined.resolve()
    root_resolved = root.resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise InvalidDatasetError(f"path {text!r} resolves outside the dataset root {root} (refused)", index_file)
    return resolved


def require_file(path: Path, listed_as: str, index_file: Path) -> Path:
    """``path`` when it is a file, else an InvalidDatasetError naming the index file that listed it."""
    if not path.is_file():
        raise InvalidDatasetError(f"lists {listed_as!r}, which does not exist ({path})", index_file)
    return path


def relpath(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (both resolved), with forward slashes."""
    return path.resolve().relative_to(root.resolve()).as_posix()


def stem(path: Path) -> str:
    """The file name without its image suffix (``.nii.gz`` counts as one)."""
    name = path.name
    for suffix in FOLDER_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def unique_ids(relpaths: list[str]) -> list[str]:
    """Case IDs from image paths: the first folder (CBIS-DDSM's "Mass-Training_P_00001_LEFT_CC")
    when every path has one and they are unique, else the path without its suffix."""
    firsts = [p.split("/")[0] if "/" in p else stem(Path(p)) for p in relpaths]
    if len(set(firsts)) == len(firsts):
        return firsts
    return [str(Path(p).with_suffix("")).replace("/", "__") for p in relpaths]


def check_shapes(image: Scan, mask: Scan) -> None:
    """Raise InvalidMaskError, naming both files, when a mask's shape differs from its image's."""
    if tuple(mask.shape) != tuple(image.shape):
        raise InvalidMaskError(
            f"mask shape {tuple(mask.shape)} differs from image shape {tuple(image.shape)} "
            f"(image: {image.path})",
            mask.path,
        )


def read_json(path: Path) -> Any:
    """A JSON file's content, or an InvalidDatasetError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidDatasetError(f"is not valid JSON ({e})", path) from e


def read_csv(path: Path) -> list[dict[str, str]]:
    """A CSV file's rows (keys and values stripped), or an InvalidDatasetError naming it."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fp:
            reader = csv.DictReader(fp)
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
            fields = [f.strip() for f in (reader.fieldnames or [])]
    except (csv.Error, UnicodeDecodeError) as e:
        raise InvalidDatasetError(f"is not a readable CSV ({e})", path) from e
    if not fields:
        raise InvalidDatasetError("is empty (no header row)", path)
    return rows
