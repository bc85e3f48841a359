"""The repository itself: nothing tracked that only makes sense on one machine."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_no_tracked_symlinks_or_local_dependency_folders():
    tracked = subprocess.run(
        ["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    # mode 120000 is a symbolic link: one to a folder on the author's machine breaks every fresh clone
    # (configs -> medsynth/configs is relative and stays inside)
    links = [line.split("\t", 1)[1] for line in tracked if line.startswith("120000")]
    outside = []
    for name in links:
        target = os.readlink(ROOT / name)
        if os.path.isabs(target) or not (ROOT / name).resolve().is_relative_to(ROOT) or name == target:
            outside.append(f"{name} -> {target}")
    assert outside == [], f"tracked symbolic links leave the repository: {outside}"
    local = [line.split("\t", 1)[1] for line in tracked if line.split("\t", 1)[1].split("/")[0] in {
        ".venv", ".nnunet-deps", "demo-output", "runs"}]
    assert local == [], f"local build folders are tracked: {local}"


def test_gitignore_covers_links_as_well_as_folders():
    # "name/" in .gitignore matches a folder only; a symlink of that name slipped through it once
    ignored = {line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()}
    for name in (".nnunet-deps", ".venv"):
        assert name in ignored or os.sep + name in ignored, f"{name} must be ignored without a trailing slash"
