"""The test of the test: when the "synthetic" arm is made of extra *real* cases (other patients), the
protocol must see the gain they bring in the low-data regime -- a positive difference whose 95 %
interval excludes 0. A protocol that cannot see this gain cannot be trusted to report its absence."""

from __future__ import annotations

import pytest

from medsynth.metrics.utility import evaluate_utility


@pytest.fixture(scope="module")
def standin_sets(tmp_path_factory):
    """10 real-train patients, 12 stand-in patients (extra real phantoms), 8 test patients; 0.8 mm."""
    from medsynth.phantoms import make_phantoms

    root = tmp_path_factory.mktemp("standin")
    return {name: make_phantoms(root / name, n=n, seed=seed, size=(128, 104), lesion_fraction=1.0, patient_offset=off)
            for name, n, seed, off in (("train", 20, 41, 0), ("standin", 24, 42, 1000), ("test", 16, 43, 2000))}


def test_extra_real_cases_are_seen_as_a_gain_in_the_10_percent_regime(standin_sets):
    # 10 % of 10 patients is one patient (about two lesions); the stand-in adds 12 patients.
    res = evaluate_utility(standin_sets["train"], standin_sets["standin"], standin_sets["test"], tasks="crops",
                           regimes=[0.1], seeds=3, steps=60, progress=False, config={"utility": {"n_boot": 1000}})
    reg = res.regime("crops", "0.1")
    assert reg["arms"]["real"]["n_train"]["real_patients"] == [1, 1, 1]
    delta = reg["delta"]
    assert delta["value"] > 0 and delta["ci95"][0] > 0 and delta["p"] < 0.05, delta
    assert "a clear gain" in res.summary_lines()[0]


@pytest.mark.slow
def test_extra_real_cases_are_seen_as_a_gain_by_both_tasks(tmp_path):
    """Both tasks at bench-like settings (0.4 mm phantoms, 20 real-train patients, 20 stand-in, 10 test)."""
    from medsynth.phantoms import make_phantoms

    sets = {name: make_phantoms(tmp_path / name, n=n, seed=seed, size=(256, 208), patient_offset=off)
            for name, n, seed, off in (("train", 40, 51, 0), ("standin", 40, 52, 1000), ("test", 20, 53, 2000))}
    config = {"utility": {"full": {"spacing_mm": 0.4, "patch_px": 64, "steps": 200}, "crops": {"steps": 150}}}
    res = evaluate_utility(sets["train"], sets["standin"], sets["test"], tasks="both", regimes=[0.1], seeds=3,
                           progress=False, config=config)
    for task in ("crops", "full"):
        delta = res.regime(task, "0.1")["delta"]
        assert delta["value"] > 0 and delta["ci95"][0] > 0, (task, delta)
