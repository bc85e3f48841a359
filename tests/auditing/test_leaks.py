"""A single leaked patient fails the audit: near-copies of 1, 2 or 4 training patients that stay under
the copy thresholds are caught by the leak checks (the DCR permutation test cannot: its p-value floor is
about 2^-k), clean sets pass, and the per-patient rule's false-alarm bound holds by simulation."""

from __future__ import annotations

import csv
import shutil
from math import comb
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from medsynth.auditing.leaks import per_patient_leaks, repeat_levels
from medsynth.auditing.run import audit

from .conftest import FAST, write_png16

SIZE = (128, 104)


def test_repeat_levels_solve_the_union_bound():
    levels = repeat_levels(60, 0.01, 4)
    assert sorted(levels) == [2, 3, 4]
    for k, x in levels.items():
        assert comb(60, k) * x**k == pytest.approx(0.01 / 3)
    assert levels[2] < levels[3] < levels[4] < 1 / 81  # every level beyond the conformal floor of a holdout of 80


@pytest.mark.parametrize("hub_share", [0.0, 0.9])
def test_per_patient_rule_false_alarm_rate_by_simulation(hub_share):
    """Uniform p-values (a clean set), samples spread over 20 patients or 90 % on one "hub": the rule
    fails at most alpha of the sets, whatever the patients look like."""
    rng = np.random.default_rng(int(hub_share * 10))
    alpha, n, sims = 0.1, 40, 4000
    fails = 0
    for _ in range(sims):
        p = rng.random(n)
        pats = np.where(rng.random(n) < hub_share, 0, rng.integers(1, 21, n))
        fails += bool(per_patient_leaks(p, pats, alpha).flagged)
    rate = fails / sims
    assert rate <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / sims), rate
    # ... and it is not vacuous: two samples of one patient at a tenth of the level fail.
    p = np.ones(n)
    p[[3, 7]] = repeat_levels(n, alpha, 4)[2] / 10
    pats = np.arange(n)
    pats[7] = pats[3]
    assert list(per_patient_leaks(p, pats, alpha).flagged) == [str(pats[3])]


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Whole-image NCC as the audit measures it (64 px thumbnails, band-passed), without shifts."""
    from medsynth.auditing.memorization import ncc_vectors
    from medsynth.auditing.prepare import _normalise, thumbnail

    v = ncc_vectors(np.stack([thumbnail(_normalise(x), 64) for x in (a, b)]), 1.0, 4.0)
    return float(v[0] @ v[1])


def _near_copy(img: np.ndarray, donor: np.ndarray, rng: np.random.Generator, target: float = 0.89) -> np.ndarray:
    """A training image reproduced with distortions: warped by a smooth 1.5 px field, another woman's
    tissue blended in (as much as brings the NCC to the original down to ``target``), light noise.
    Fresh phantoms come no closer than ~0.8 to a training image, the calibrated copy threshold is ~0.92."""
    h, w = img.shape
    field = [ndimage.gaussian_filter(rng.standard_normal((h, w)), 8) for _ in range(2)]
    dy, dx = (1.5 * f / f.std() for f in field)
    yy, xx = np.mgrid[0:h, 0:w]
    warped = ndimage.map_coordinates(img, [yy + dy, xx + dx], order=1, mode="nearest")
    noise = rng.normal(0, 0.01, img.shape)
    lo, hi = 0.3, 1.0  # bisection on the share of the original
    for _ in range(12):
        mid = (lo + hi) / 2
        blend = np.clip(mid * warped + (1 - mid) * donor + noise, 0, 1)
        lo, hi = (mid, hi) if _ncc(blend, img) < target else (lo, mid)
    return np.clip(lo * warped + (1 - lo) * donor + noise, 0, 1)


def _with_leaks(clean: Path, out: Path, train_cases: list, donors: list, copies_per_image: int = 1) -> list[str]:
    """``clean`` plus near-copies of every image of the given training cases; returns the new names."""
    shutil.copytree(clean, out)
    with open(out / "cases.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    fields = list(rows[0])
    rng = np.random.default_rng(len(train_cases) * 7 + copies_per_image)
    names = []
    for i, case in enumerate(train_cases):
        for c in range(copies_per_image):
            name = f"S_{7000 + 100 * i + c:05d}"
            donor = donors[(i + c) % len(donors)].image.unit_pixels()
            write_png16(out / "images" / f"{name}.png", _near_copy(case.image.unit_pixels(), donor, rng),
                        case.image.spacing)
            rows.append({**{f: "" for f in fields}, "case_id": name, "patient_id": name})
            names.append(f"images/{name}.png")
    with open(out / "cases.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return names


@pytest.fixture(scope="module")
def leak_sets(tmp_path_factory):
    from medsynth.io.datasets import load_dataset
    from medsynth.phantoms import make_phantoms

    root = tmp_path_factory.mktemp("leaks")
    sets = {
        "train": make_phantoms(root / "train", 40, seed=61, size=SIZE),
        "holdout": make_phantoms(root / "holdout", 40, seed=62, size=SIZE, patient_offset=500),
        "clean": make_phantoms(root / "clean", 30, seed=63, size=SIZE, patient_offset=900, layout="folder"),
    }
    donors = list(load_dataset(make_phantoms(root / "donor", 8, seed=64, size=SIZE, patient_offset=1500,
                                             layout="folder")))
    by_patient: dict[str, list] = {}
    for case in load_dataset(sets["train"]):
        by_patient.setdefault(case.patient_id, []).append(case)
    patients = sorted(by_patient)
    for k in (1, 2, 4):
        leaked = [c for p in patients[:k] for c in by_patient[p]]
        sets[f"leak{k}"] = root / f"leak{k}"
        sets[f"names{k}"] = _with_leaks(sets["clean"], root / f"leak{k}", leaked, donors)
    # The case: one patient reproduced many times (its 2 images, 10 near-copies each).
    sets["one_many"] = root / "one_many"
    _with_leaks(sets["clean"], root / "one_many", by_patient[patients[5]], donors, copies_per_image=10)
    return sets


def _run(sets, name):
    return audit(sets["train"], sets[name], sets["holdout"], config=FAST, progress=False)


def _status(res) -> dict[str, str]:
    return {c["name"]: c["status"] for c in res.checks}


def test_cli_clean_set_exits_0_and_writes_reports(leak_sets, tmp_path):
    """The release gate's green path: every check conclusive and passed -> verdict pass, exit 0."""
    import json

    from medsynth.cli import main

    cfg = tmp_path / "audit.yaml"
    cfg.write_text("memorization:\n  embedding: invariant\n")
    code = main(["audit", "--train", str(leak_sets["train"]), "--synthetic", str(leak_sets["clean"]),
                 "--holdout", str(leak_sets["holdout"]), "--config", str(cfg), "--quiet",
                 "--report", str(tmp_path / "r.html"), "--json", str(tmp_path / "r.json")])
    doc = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and doc["verdict"] == "pass", [c for c in doc["checks"] if c["status"] != "pass"]
    assert doc["memorization"]["flagged"] == []
    html = (tmp_path / "r.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert '<div class="verdict pass">PASS</div>' in html or '<div class="verdict partial">PASS (' in html


def test_clean_set_passes_with_calibrated_thresholds(leak_sets):
    res = _run(leak_sets, "clean")
    assert res.verdict == "pass", [c for c in res.checks if not c["passed"]]
    st = _status(res)
    for name in ("leak_sample_image", "leak_patient_image", "leak_sample_roi", "leak_patient_roi"):
        assert st[name] == "pass", name  # a holdout of 40 images: calibrated, checked, passed
    assert {t["rule"] for t in res.memorization["thresholds"]["image"].values()} <= {"calibrated", "floor",
                                                                                      "ceiling"}


@pytest.mark.parametrize("k", [1, 2, 4])
def test_leaked_patients_fail_under_the_copy_thresholds(leak_sets, k):
    res = _run(leak_sets, f"leak{k}")
    st = _status(res)
    # The near-copies stay under every copy threshold: not one is flagged as a copy ...
    assert st["memorization"] == "pass", [(f["synthetic"], f["ncc"], f["ssim"], f["carlini_ratio"], f["flagged_by"])
                                          for f in res.memorization["flagged"]]
    # ... and the permutation test over patients cannot see 1-4 leaked patients ...
    assert st["baseline_dcr_image"] == "pass"
    # ... but the audit fails on them, by the leak checks.
    assert res.verdict == "fail"
    failed = {n for n, s in st.items() if s == "fail"}
    assert failed and failed <= {"leak_sample_image", "leak_patient_image", "baseline_mannwhitney_image"}, failed
    assert failed & {"leak_sample_image", "leak_patient_image"}
    leaks = res.memorization["leaks"]["image"]
    named = {f["synthetic"] for f in leaks["per_sample"]["flagged"]}
    named |= {s for f in leaks["per_patient"]["flagged"] for s in f["synthetic"]}
    assert named and named <= set(leak_sets[f"names{k}"])  # only leaked images are named


def test_one_patient_reproduced_many_times_fails(leak_sets):
    res = _run(leak_sets, "one_many")
    st = _status(res)
    assert st["memorization"] == "pass" and res.verdict == "fail"
    assert st["leak_patient_image"] == "fail" or st["leak_sample_image"] == "fail"
    dcr = next(c for c in res.checks if c["name"] == "baseline_dcr_image")
    assert dcr["details"]["pvalue"] > 0.05  # the permutation test cannot fail on one patient (p floor ~ 1/2)


def _as_nnunet(src: Path, out: Path, offset: int) -> Path:
    """A phantom folder set rewritten as an nnU-Net raw dataset with conventional names (case_0000...)."""
    import json

    from medsynth.io.datasets import load_dataset

    (out / "imagesTr").mkdir(parents=True)
    (out / "labelsTr").mkdir()
    cases = [c for c in load_dataset(src) if c.mask is not None]
    for i, case in enumerate(cases):
        write_png16(out / "imagesTr" / f"case_{offset + i:04d}_0000.png", case.image.unit_pixels(), case.image.spacing)
        Image.fromarray((case.mask.pixels > 0).astype(np.uint8)).save(out / "labelsTr" / f"case_{offset + i:04d}.png")
    (out / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MG"}, "labels": {"background": 0,
                                      "lesion": 1}, "numTraining": len(cases), "file_ending": ".png"}))
    return out


def test_clean_set_named_like_medsynth_output_passes_against_a_set_named_the_same_way(tmp_path):
    """case_0000... on both sides (issue 14.3): the copy, baseline and leak checks pass; the file-name
    rule of the PHI check does not take generic sequential names for identifiers."""
    from medsynth.phantoms import make_phantoms

    sets = {}
    for name, n, seed, off in (("train", 30, 71, 0), ("holdout", 30, 72, 600), ("synthetic", 24, 73, 1200)):
        folder = make_phantoms(tmp_path / f"{name}-src", n, seed=seed, size=SIZE, patient_offset=off,
                               layout="folder", lesion_fraction=1.0)
        sets[name] = _as_nnunet(folder, tmp_path / name, 0)  # the same names in every set
    res = audit(sets["train"], sets["synthetic"], sets["holdout"], config=FAST, progress=False)
    assert res.verdict == "pass", [c for c in res.checks if not c["passed"]]
