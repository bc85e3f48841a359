"""One error hierarchy for medsynth. Every error that comes from a file names that file.

The CLI turns any :class:`MedsynthError` into a one-line message and exit code 2 (bad input);
library errors underneath are kept as ``__cause__`` (``raise ... from e``) for ``--debug``.
"""

from __future__ import annotations

from pathlib import Path


class MedsynthError(Exception):
    """Base class of every error medsynth raises on purpose.

    Args:
        message: what is wrong, in one sentence.
        path: the file or folder the problem is in; it is put in front of the message.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.message = message
        super().__init__(f"{path}: {message}" if path is not None else message)


class InvalidImageError(MedsynthError):
    """An image file cannot be read, or its pixels/geometry are unusable."""


class InvalidMaskError(MedsynthError):
    """A mask is empty, of the wrong shape, outside the image, or not binary/label-valued."""


class InvalidDatasetError(MedsynthError):
    """A dataset folder or index file is malformed (missing files, bad CSV/JSON)."""


class UnknownLayoutError(InvalidDatasetError):
    """A folder matches none of the dataset layouts medsynth knows."""


class InvalidModelError(MedsynthError):
    """A model or adapter directory is missing, incomplete or incompatible."""


class ConfigError(MedsynthError):
    """A configuration file or option is invalid."""


class OutputExistsError(MedsynthError):
    """An output folder is not empty and neither resume nor overwrite was asked for."""


class PrivacyError(MedsynthError):
    """A differential-privacy setting breaks the accountant's assumptions."""


class AuditInputError(MedsynthError):
    """The audit's inputs make its result meaningless (e.g. train and holdout share a patient)."""


class MissingWeightsError(MedsynthError):
    """Pretrained weights were asked for but no local file was given; nothing is ever downloaded."""
