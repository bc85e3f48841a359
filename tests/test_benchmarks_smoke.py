"""Smoke tests of the model benchmarks (inpainting, training, DP): they import, their counting and
timing helpers are right, and (slow) each ``run(quick=True)`` completes with well-formed rows.

Running a benchmark trains UNets, which takes minutes on a shared 2-core CPU even at the smallest
sizes, so the full runs are marked slow; the fast tests check the parts whose errors would make
the recorded figures wrong (the UNet-evaluation counter, the throughput arithmetic).
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# ``benchmarks`` is a folder at the repo root, not an installed package.
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

MODULES = ("benchmarks.bench_inpainting", "benchmarks.bench_training", "benchmarks.bench_dp",
           "benchmarks.bench_calc_specks")
ROW_KEYS = {"benchmark", "metric", "value", "unit", "note"}


@pytest.mark.parametrize("name", MODULES)
def test_module_exposes_run(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    import inspect

    mod = importlib.import_module(name)
    assert "quick" in inspect.signature(mod.run).parameters
    assert set(mod.SETTINGS) == {"quick", "full"}
    # main() is the benchmark's command line: it parses arguments and offers --quick.
    with pytest.raises(SystemExit) as exited:
        mod.main(["--help"])
    assert exited.value.code == 0 and "--quick" in capsys.readouterr().out


def test_every_benchmark_is_run_by_benchmarks_run() -> None:
    """benchmarks/run.py discovers bench_*.py; each must expose run(quick=...) and main()."""
    import inspect
    import pkgutil

    names = [m.name for m in pkgutil.iter_modules([str(Path(ROOT) / "benchmarks")]) if m.name.startswith("bench_")]
    assert {"bench_demo", "bench_inpainting", "bench_training", "bench_dp", "bench_audit", "bench_generate",
            "bench_evaluate"} <= set(names)
    for name in names:
        mod = importlib.import_module(f"benchmarks.{name}")
        assert "quick" in inspect.signature(mod.run).parameters, name
        assert inspect.isfunction(getattr(mod, "main", None)), name


def _tiny_inpainter(conditional: bool):
    from medsynth.models.inpainter import LesionInpainter, make_config

    torch.manual_seed(0)
    return LesionInpainter(make_config(image_size=16, block_out_channels=[8, 8], norm_num_groups=4,
                                       conditional=conditional))


def _patches(n: int = 2, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.uniform(0.2, 0.8, size=(n, size, size)).astype(np.float32)
    masks = np.zeros((n, size, size), dtype=bool)
    masks[:, 5:11, 5:11] = True
    return images, masks


def _repaint_reference_count(steps: int, jump: int, resamplings: int) -> int:
    """UNet calls of RePaint's loop, from the scheduler's timesteps: one per step down in time."""
    from diffusers import RePaintScheduler

    sched = RePaintScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    sched.set_timesteps(steps, jump, resamplings)
    ts = [int(t) for t in sched.timesteps]
    return sum(1 for prev, t in zip([ts[0] + 1] + ts[:-1], ts) if t < prev)


# The published setting (250/10/10) runs 4570 scheduler steps: slow on a shared CPU.
@pytest.mark.parametrize("setting", [pytest.param((250, 10, 10), marks=pytest.mark.slow), (50, 10, 3), (20, 5, 2)])
def test_repaint_evaluations_counted_exactly(setting: tuple[int, int, int]) -> None:
    from benchmarks.bench_inpainting import count_evals

    images, masks = _patches()
    model = _tiny_inpainter(conditional=False)
    rp = dict(zip(("num_inference_steps", "jump_length", "jump_n_sample"), setting))
    assert count_evals(model, images, masks, repaint=rp) == _repaint_reference_count(*setting)


def test_conditional_evaluations_equal_steps_and_counter_passes_through() -> None:
    from benchmarks.bench_inpainting import CountingUNet, _with_unet, count_evals

    images, masks = _patches()
    model = _tiny_inpainter(conditional=True)
    assert count_evals(model, images, masks, steps=7) == 7
    # The non-dry counter returns what the UNet returns: same samples as the plain model.
    counter = CountingUNet(model.unet)
    wrapped = _with_unet(model, counter)
    a = model(images, masks, seeds=[1, 2], num_inference_steps=3)
    b = wrapped(images, masks, seeds=[1, 2], num_inference_steps=3)
    np.testing.assert_array_equal(a, b)
    assert counter.calls == 3 and counter.samples == 6


def test_images_per_second_arithmetic() -> None:
    from benchmarks.bench_training import images_per_second

    times = [0.0, 5.0, 6.0, 7.0, 8.0]  # first step slow (warm-up), then 1 s per step
    assert images_per_second(times, batch=32, warmup=1) == pytest.approx(32.0)
    with pytest.raises(ValueError):
        images_per_second(times[:2], batch=32, warmup=1)


def _check_rows(rows: list[dict], bench: str) -> None:
    assert rows, "no rows"
    for r in rows:
        assert ROW_KEYS <= set(r), r
        assert r["benchmark"] == bench


@pytest.mark.slow
def test_inpainting_quick_run() -> None:
    from benchmarks.bench_inpainting import run

    rows = run(quick=True, n_lesions=2, sample_batch=2, n_train_phantoms=2, train_steps=1, batch_size=2,
               repaint_fid={"num_inference_steps": 2, "jump_length": 1, "jump_n_sample": 1},
               num_inference_steps=2)
    _check_rows(rows, "inpainting")
    by = {r["metric"]: r["value"] for r in rows}
    assert by["unet_evals_per_lesion_medsynth"] == 2
    assert by["unet_evals_per_lesion_repaint"] == _repaint_reference_count(250, 10, 10)
    assert math.isfinite(by["roi_fid_medsynth"]) and by["seconds_per_lesion_repaint"] > 0


@pytest.mark.slow
def test_training_quick_run() -> None:
    from benchmarks.bench_training import run

    rows = run(quick=True, batch_size=2, n_phantoms=2, warmup=1, measure=1, precisions=("no",))
    _check_rows(rows, "training")
    by = {r["metric"]: r["value"] for r in rows}
    assert by["images_per_s_medsynth_fp32"] > 0 and by["images_per_s_plain_fp32"] > 0


@pytest.mark.slow
def test_dp_quick_run() -> None:
    from benchmarks.bench_dp import run

    rows = run(quick=True, batch_size=2, n_phantoms=2, warmup=0, measure=1, check_batch=2,
               modes=("functorch",), models=("full",))
    _check_rows(rows, "dp")
    by = {r["metric"]: r for r in rows}
    assert by["grad_sample_error_full_functorch"]["value"] < 1e-3  # the reference check itself works
    assert by["seconds_per_sample_full_functorch"]["value"] > 0
    assert by["fastest_correct_mode_full"]["value"] == "functorch"


def test_calc_specks_counts_specks_and_scores_a_painted_polygon_as_a_shift() -> None:
    """bench_calc_specks' figures: a cluster's specks are counted; the original scores shift 0, the
    same crop with its mask region brightened by twice the tissue's spread scores about 2, and a
    smooth fill without specks counts none."""
    from scipy import ndimage

    from benchmarks.bench_calc_specks import speck_figures

    rng = np.random.default_rng(0)
    tissue = ndimage.gaussian_filter(rng.normal(0.5, 0.1, (64, 64)), 4)
    mask = np.zeros((64, 64), bool)
    mask[22:42, 22:42] = True
    image = tissue.copy()
    for r, c in [(25, 25), (25, 35), (30, 30), (35, 26), (38, 38), (33, 37)]:
        image[r, c] += 0.3
    real = speck_figures(image[None], mask[None], 0.32)
    assert real["specks_median"] == 6
    same = speck_figures(image[None], mask[None], 0.32, image[None])
    assert same["shift_median"] == pytest.approx(0.0, abs=1e-9)
    ring = ndimage.binary_dilation(mask, iterations=9) & ~ndimage.binary_dilation(mask, iterations=3)
    spread = ndimage.gaussian_filter(image, 1 / 0.32)[ring].std()
    brighter = image + 2 * spread * mask
    shifted = speck_figures(brighter[None], mask[None], 0.32, image[None])
    assert 1.5 < shifted["shift_median"] < 2.5
    smooth = np.where(mask, tissue.mean(), tissue)
    assert speck_figures(smooth[None], mask[None], 0.32)["specks_median"] == 0
