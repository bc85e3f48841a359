"""Refuse an audit whose holdout is not held out: train and holdout must share no patient and no image.

The holdout baseline and membership inference compare the training set with fresh real data; a
patient in both (same PatientID / ``Case.patient_id``) or the same pixels in both makes every
comparison meaningless, so the audit stops with :class:`~medsynth.errors.AuditInputError`
(the CLI's exit code 2) instead of reporting a number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from medsynth.auditing.prepare import PreparedSet
from medsynth.errors import AuditInputError


def dicom_patient_id(path: Path) -> str | None:
    """The PatientID in a DICOM file's header (None for other formats or an empty value).

    Raises:
        InvalidDatasetError: a DICOM file whose header cannot be read.
    """
    from medsynth.auditing.phi import _read, is_dicom

    path = Path(path)
    if not path.is_file() or not is_dicom(path):
        return None
    value = str(getattr(_read(path), "PatientID", "") or "").strip()
    return value or None


def check_patient_ids(train: Sequence[Any], holdout: Sequence[Any], holdout_root: Any, max_listed: int = 5) -> None:
    """Raise when a patient is in both sets, by ``Case.patient_id`` or by the DICOM PatientID of
    the images (headers only: no pixels are read).

    Raises:
        AuditInputError: naming the shared patients and where they are.
    """
    def ids(case: Any) -> list[str]:
        out = []
        if case.patient_id not in (None, ""):
            out.append(f"patient {str(case.patient_id)!r}")
        pid = dicom_patient_id(case.image.path)
        if pid is not None:
            out.append(f"DICOM PatientID {pid!r}")
        return out

    tr_pat: dict[str, str] = {}
    for case in train:
        for key in ids(case):
            tr_pat.setdefault(key, case.image_relpath)
    shared = [
        f"{key} (train {tr_pat[key]}, holdout {case.image_relpath})"
        for case in holdout
        for key in ids(case)
        if key in tr_pat
    ]
    _refuse(shared, holdout_root, max_listed)


def _refuse(shared: list[str], holdout_root: Any, max_listed: int) -> None:
    if shared:
        more = f" and {len(shared) - max_listed} more" if len(shared) > max_listed else ""
        raise AuditInputError(
            f"train and holdout share data: {'; '.join(shared[:max_listed])}{more}; "
            "the holdout must hold other patients, or the baseline and membership tests mean nothing",
            holdout_root,
        )


def check_disjoint(train: PreparedSet, holdout: PreparedSet, max_listed: int = 5) -> None:
    """Raise when train and holdout share a patient ID or an image's pixel content.

    Raises:
        AuditInputError: naming the holdout root, the shared patients or images and where they are.
    """
    tr_pat: dict[str, str] = {}
    for pid, rel in zip(train.patient_ids, train.relpaths):
        if pid is not None:
            tr_pat.setdefault(pid, rel)
    shared = [
        f"patient {pid!r} (train {tr_pat[pid]}, holdout {rel})"
        for pid, rel in zip(holdout.patient_ids, holdout.relpaths)
        if pid is not None and pid in tr_pat
    ]
    tr_hash = dict(zip(train.pixel_hashes, train.relpaths))
    shared += [
        f"identical pixels (train {tr_hash[h]}, holdout {rel})"
        for h, rel in zip(holdout.pixel_hashes, holdout.relpaths)
        if h in tr_hash
    ]
    _refuse(shared, holdout.root, max_listed)
