"""Suite-wide fixtures. Everything runs on the CPU on tiny phantoms; nothing is downloaded.

The normal suite must not depend on a GPU, so GPUs are hidden from it (``CUDA_VISIBLE_DEVICES=""``,
for subprocesses too). The ``gpu`` set (``pytest -m gpu``, ``tests/gpu/``) needs them: when the
mark expression selects it, GPUs stay visible, and the tests of a mixed run (``-m ""``) that are
not marked ``gpu`` still see no GPU.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MEDSYNTH_CACHE_DIR", os.path.join(os.environ.get("TMPDIR", "/tmp"), "medsynth-test-cache"))


def selects_gpu_tests(markexpr: str) -> bool:
    """Whether ``-m markexpr`` selects tests marked ``gpu`` (an empty expression selects every test)."""
    if not markexpr.strip():
        return True
    try:
        from _pytest.mark.expression import Expression

        return bool(Expression.compile(markexpr).evaluate(lambda name, **kwargs: name == "gpu"))
    except Exception:  # pytest's expression module is internal: fall back to reading the text
        return "gpu" in markexpr.replace("not gpu", "")


def pytest_configure(config):
    # Before any test module asks torch about CUDA (torch reads the variable when CUDA initialises).
    if not selects_gpu_tests(config.getoption("markexpr") or ""):
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


@pytest.fixture(autouse=True)
def _no_gpu_outside_the_gpu_set(request, monkeypatch):
    """In a run that left GPUs visible (``-m gpu`` or ``-m ""``), a test not marked ``gpu`` still sees none."""
    if request.node.get_closest_marker("gpu") is None and os.environ.get("CUDA_VISIBLE_DEVICES") != "":
        import torch

        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # subprocesses it starts
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this process, already initialised


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
