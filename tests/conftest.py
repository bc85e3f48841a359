"""Suite-wide fixtures. Everything runs on the CPU on tiny phantoms; nothing is downloaded."""

from __future__ import annotations

import os

import pytest

# Keep runs reproducible and quiet; tests must not depend on a GPU.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("MEDSYNTH_CACHE_DIR", os.path.join(os.environ.get("TMPDIR", "/tmp"), "medsynth-test-cache"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Give each test session its own feature cache so no test depends on an earlier run."""
    cache = tmp_path_factory.getbasetemp() / "medsynth-cache"
    monkeypatch.setenv("MEDSYNTH_CACHE_DIR", str(cache))
