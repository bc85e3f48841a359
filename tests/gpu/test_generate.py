"""generate() on CUDA: n=3 with the environment in the manifest; batch size 1 and 3 give the same
bytes; 2 shards give the bytes of 1 process."""

from __future__ import annotations

import json

import pytest
import torch

from medsynth.generation.pipeline import generate
from medsynth.utils import sha256_file

pytestmark = pytest.mark.gpu

SALT = b"0123456789abcdef0123456789abcdef"
OPTS = {"mask_options": {"size_mm": "4:8"}, "progress": False, "device": "cuda", "salt": SALT}


def tree_digest(root):
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_three_cases_on_cuda(model_dir, phantom_root, tmp_path):
    result = generate(model_dir, phantom_root, "shapes", 3, tmp_path / "out", "nnunet", seed=1, **OPTS)
    assert result.generated == 3 and result.compute["device"] == "cuda"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["compute"]["gpu"] == torch.cuda.get_device_name(0)
    assert manifest["compute"]["cuda"] == torch.version.cuda and manifest["compute"]["cudnn"]
    for case in manifest["cases"]:
        for f in case["files"].values():
            assert sha256_file(tmp_path / "out" / f["path"]) == f["sha256"]


def test_batch_size_does_not_change_a_byte(model_dir, phantom_root, tmp_path):
    for bs in (1, 3):
        generate(model_dir, phantom_root, "shapes", 3, tmp_path / f"bs{bs}", "png", seed=2, batch_size=bs,
                 model_batch=2, **OPTS)
    assert tree_digest(tmp_path / "bs1") == tree_digest(tmp_path / "bs3")


def test_two_shards_equal_one_process(model_dir, phantom_root, tmp_path):
    generate(model_dir, phantom_root, "shapes", 3, tmp_path / "single", "monai", seed=8, **OPTS)
    calls = []

    def barrier():  # stands in for accelerate's wait_for_everyone: rank 1 runs its share at rank 0's first barrier
        calls.append(1)
        if len(calls) == 1:
            generate(model_dir, phantom_root, "shapes", 3, tmp_path / "sharded", "monai", seed=8, rank=1,
                     world_size=2, **OPTS)

    generate(model_dir, phantom_root, "shapes", 3, tmp_path / "sharded", "monai", seed=8, rank=0, world_size=2,
             barrier=barrier, **OPTS)
    assert tree_digest(tmp_path / "sharded") == tree_digest(tmp_path / "single")
