"""The run state of generate(): what makes a run resumable and safe to interrupt.

``OUT/.medsynth-run/`` holds ``run.json`` (the run's settings and its salt, created once, atomically)
and ``cases/NNNNNNNN.json``, one record (files and their hashes) per complete case: a case is
complete exactly when its record exists. :func:`prepare_output` applies the output-folder rules
(empty, resume, overwrite, finished run) before anything is written. The pipeline deletes the
folder, and with it the salt, when the run completes.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from medsynth.errors import OutputExistsError
from medsynth.generation.manifest import MANIFEST_NAME
from medsynth.io.writers.atomic import atomic_write_json

STATE_DIR = ".medsynth-run"


def _is_empty(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


def _looks_like_medsynth_output(folder: Path) -> bool:
    return (folder / MANIFEST_NAME).is_file() or (folder / STATE_DIR).is_dir()


def init_state(state: Path, settings: dict[str, Any], salt: bytes) -> None:
    """Create the run state (settings + salt) once; a concurrent or earlier creator wins."""
    state.mkdir(parents=True, exist_ok=True)
    (state / "cases").mkdir(exist_ok=True)
    target = state / "run.json"
    if target.exists():
        return
    tmp = state / f".run-{secrets.token_hex(6)}.json"
    tmp.write_text(json.dumps({"settings": settings, "salt": salt.hex()}, sort_keys=True, indent=2))
    try:
        os.link(tmp, target)  # atomic create-if-absent
    except FileExistsError:
        pass  # another process created it first; the settings check below compares them
    finally:
        tmp.unlink()


def read_state(state: Path, out: Path) -> tuple[dict[str, Any], bytes]:
    target = state / "run.json"
    if not target.is_file():
        raise OutputExistsError("has no run state to resume (was it made by medsynth generate?)", out)
    data = json.loads(target.read_text())
    return data["settings"], bytes.fromhex(data["salt"])


def diff_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def prepare_output(out: Path, settings: dict[str, Any], public: dict[str, Any], salt: bytes | None,
                    n: int, resume: bool, overwrite: bool) -> str:
    """Apply the output-folder rules on the main process; returns "fresh", "resume" or "done"."""
    state = out / STATE_DIR
    if not _is_empty(out):
        if overwrite:
            if not _looks_like_medsynth_output(out):
                raise OutputExistsError("is not empty and holds no medsynth output; refusing to delete it "
                                        "(choose an empty or new folder)", out)
            shutil.rmtree(out)
        elif resume:
            if state.is_dir():
                old, _ = read_state(state, out)
                changed = diff_settings(old, settings)
                if changed:
                    raise OutputExistsError(
                        f"cannot resume: settings differ from the interrupted run ({', '.join(changed)})", out
                    )
                return "resume"
            manifest = out / MANIFEST_NAME
            if manifest.is_file():
                done = json.loads(manifest.read_text())
                header = {k: done.get(k) for k in public}
                changed = diff_settings(header, public)
                if changed or not done.get("complete") or done.get("n_requested") != n:
                    raise OutputExistsError(
                        "holds a finished run with other settings or size "
                        f"({', '.join(changed) or 'n'}); its salt is gone, so it cannot be extended", out)
                return "done"
            raise OutputExistsError("is not empty and holds no medsynth run to resume", out)
        else:
            raise OutputExistsError("is not empty; pass resume=True (--resume) to continue a run or "
                                    "overwrite=True (--overwrite) to replace it", out)
    out.mkdir(parents=True, exist_ok=True)
    init_state(state, settings, salt if salt is not None else secrets.token_bytes(32))
    return "fresh"


def write_record(state: Path, record: dict[str, Any]) -> None:
    """Mark a case complete: its record (files + hashes) lands atomically in the run state."""
    atomic_write_json(state / "cases" / f"{record['index']:08d}.json", record)


def read_records(state: Path) -> dict[int, dict[str, Any]]:
    out = {}
    folder = state / "cases"
    if folder.is_dir():
        for p in folder.glob("*.json"):
            rec = json.loads(p.read_text())
            out[int(rec["index"])] = rec
    return out
