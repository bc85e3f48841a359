"""Suite-wide fixtures. Everything runs on the CPU on tiny phantoms; nothing is downloaded."""

from __future__ import annotations

import os

import pytest

# Keep runs reproducible and quiet; tests must not depend on a GPU.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("MEDSYNTH_CACHE_DIR", os.path.join(os.environ.get("TMPDIR", "/tmp"), "medsynth-test-cache"))


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One torch thread per test process: the test machines' cores are shared, and oversubscribing
    them is much slower than one thread."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Give each test session its own feature cache so no test depends on an earlier run."""
    cache = tmp_path_factory.getbasetemp() / "medsynth-cache"
    monkeypatch.setenv("MEDSYNTH_CACHE_DIR", str(cache))
