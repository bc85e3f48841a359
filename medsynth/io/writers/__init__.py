"""Dataset writers: one module per output format, all writing atomically (see :mod:`.atomic`).

``get_writer(format, out, ...)`` returns the writer of a format: ``nnunet`` (nnU-Net v2 raw
dataset), ``monai`` (NIfTI + datalist JSON), ``dicom`` (synthetic DICOM image + DICOM SEG) or
``png`` (16-bit PNG image, 8-bit PNG mask).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medsynth.errors import ConfigError
from medsynth.io.writers.base import LABELS, DatasetWriter, to_uint16

FORMATS = ("nnunet", "monai", "dicom", "png")

__all__ = ["FORMATS", "LABELS", "DatasetWriter", "get_writer", "to_uint16"]


def get_writer(format: str, out: str | Path, **options: Any) -> DatasetWriter:
    """The writer of ``format`` writing under ``out``.

    Args:
        format: one of :data:`FORMATS`.
        out: the output root folder.
        **options: passed to the writer (e.g. ``dataset_id``/``dataset_name`` for nnunet,
            ``uid_entropy`` for dicom).

    Raises:
        ConfigError: unknown format.
    """
    out = Path(out)
    if format == "nnunet":
        from medsynth.io.writers.nnunet import NnunetWriter

        return NnunetWriter(out, **options)
    if format == "monai":
        from medsynth.io.writers.monai import MonaiWriter

        return MonaiWriter(out, **options)
    if format == "dicom":
        from medsynth.io.writers.dicom import DicomWriter

        return DicomWriter(out, **options)
    if format == "png":
        from medsynth.io.writers.png import PngWriter

        return PngWriter(out, **options)
    raise ConfigError(f"unknown output format {format!r}; choose one of {', '.join(FORMATS)}")
