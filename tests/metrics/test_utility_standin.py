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
def test_extra_real_cases_are_seen_as_a_gain_by_the_whole_image_task(tmp_path):
    """The whole-image task at the benchmark setting (benchmarks/bench_utility.py: 320x256 phantoms at
    0.32 mm, 80 real-train patients, 60 extra real images of other patients as the "synthetic" arm, 60 test
    images, the default 1500 steps, 3 seeds), on phantom draws of its own (not the benchmark's), 10 %
    regime. No seed's network may miss a class its arm's other seeds learnt, and the gain must be seen.
    About 11 min on 2 cores with bf16 (AVX512-BF16), ~16 min in fp32."""
    from medsynth.metrics.utility.result import failed_seeds
    from medsynth.phantoms import make_phantoms

    sets = {name: make_phantoms(tmp_path / name, n=n, seed=seed, size=(320, 256), patient_offset=off)
            for name, n, seed, off in (("train", 160, 11, 0), ("standin", 60, 16, 500_000),
                                       ("test", 60, 13, 200_000))}
    res = evaluate_utility(sets["train"], sets["standin"], sets["test"], tasks="full", regimes=[0.1], seeds=3,
                           progress=False)
    reg = res.regime("full", "0.1")
    # No seed's network missed a class that the other seeds of its arm learnt. (A class can be missed by
    # every seed of an arm: 8 real patients may show too few calcifications to learn them from.)
    assert failed_seeds("full", reg["arms"]) == []
    delta = reg["delta"]
    assert delta["value"] > 0 and delta["ci95"][0] > 0, delta
