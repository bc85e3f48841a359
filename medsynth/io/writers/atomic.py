"""Atomic file writes shared by every dataset writer and the generation manifest.

A file is first written to a temporary name in the same folder and then moved into place with
``os.replace`` (atomic on POSIX and Windows within one file system), so a reader or a resumed run
never sees half a file: a path either does not exist or holds complete content.
The temporary name ends with the final name, so libraries that pick a format by suffix
(``nibabel`` with ``.nii.gz``, Pillow with ``.png``) write the right format to it.
"""

from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

TMP_PREFIX = ".tmp-"


def tmp_path_for(path: Path) -> Path:
    """A unique temporary path in the folder of ``path`` that ends with ``path``'s name."""
    return path.parent / f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{path.name}"


def _fsync_file(path: Path) -> None:
    # Flush file contents before the rename so a crash cannot leave a renamed but empty file.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Give a temporary path to write ``path`` through; it is moved into place on success.

    Example::

        with atomic_path(out / "case_0000.nii.gz") as tmp:
            nibabel.save(img, tmp)

    On any exception the temporary file is removed and the exception propagates; ``path`` is left
    as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(path)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"{tmp}: the writer did not create the temporary file")
        _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON (stable bytes for equal content) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete temporary files a killed writer left under ``folder`` (recursively); returns how many."""
    count = 0
    for p in Path(folder).rglob(f"{TMP_PREFIX}*"):
        if p.is_file():
            p.unlink()
            count += 1
    return count
