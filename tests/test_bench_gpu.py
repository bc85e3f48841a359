"""benchmarks/bench_gpu.py is prepared for the first GPU a session is lent: it measures the CBIS-DDSM
model, says plainly when it cannot run, and (slow) its quick mode runs end to end on the CPU."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def test_full_mode_measures_the_cbis_ddsm_model_and_needs_cuda():
    from benchmarks import bench_gpu

    model = bench_gpu.model_settings("cbis-ddsm")
    assert model["image_size"] == 256 and model["spacing_mm"] == 0.25
    assert list(model["block_out_channels"]) == [64, 128, 256, 256]
    assert bench_gpu.SETTINGS["full"]["background_size"] == [4096, 3328]  # CBIS-DDSM films at 0.05 mm
    rows = bench_gpu.run(quick=False)  # no GPU in the normal suite: one row that says so, no fake figures
    assert [r["metric"] for r in rows] == ["not_run"] and rows[0]["value"] == "n/a"


@pytest.mark.slow
def test_quick_mode_runs_on_the_cpu():
    from benchmarks import bench_gpu

    rows = {r["metric"]: r for r in bench_gpu.run(quick=True, measure=2, gen_n=2, patch_calls=1)}
    for variant in bench_gpu.VARIANTS:
        assert rows[f"train_images_per_s_{variant}"]["value"] > 0
    assert rows["generate_cases_per_s"]["value"] > 0 and rows["inpainter_patches_per_s"]["value"] > 0
    assert rows["generate_peak_memory"]["value"] == "n/a"  # measured on CUDA only
