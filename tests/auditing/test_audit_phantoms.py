"""Acceptance of `audit` on phantoms: novel images pass; planted copies fail and exactly they are flagged."""

from __future__ import annotations

import json

import pytest

from medsynth.auditing.run import audit
from medsynth.errors import AuditInputError

from .conftest import FAST, PLANTED


@pytest.fixture(scope="module")
def clean_result(phantom_sets):
    return audit(phantom_sets["train"], phantom_sets["synthetic"], phantom_sets["holdout"], config=FAST,
                 progress=False)


@pytest.fixture(scope="module")
def planted_result(phantom_sets):
    return audit(phantom_sets["train"], phantom_sets["planted"], phantom_sets["holdout"], config=FAST,
                 progress=False)


def test_novel_phantoms_pass(clean_result):
    failed = [c for c in clean_result.checks if not c["passed"]]
    unsure = [c["name"] for c in clean_result.checks if c["status"] == "inconclusive"]
    # 12 holdout images are too few to calibrate the leak checks on: those say so, nothing fails
    assert failed == [] and clean_result.verdict == ("inconclusive" if unsure else "pass"), (failed, unsure)
    assert clean_result.memorization["flagged"] == []
    names = {c["name"] for c in clean_result.checks}
    assert {"patient_overlap", "memorization", "baseline_dcr_image", "baseline_mannwhitney_image", "dp",
            "phi"} <= names


def test_planted_copies_fail_and_exactly_they_are_flagged(planted_result, phantom_sets):
    assert planted_result.verdict == "fail"
    memo = next(c for c in planted_result.checks if c["name"] == "memorization")
    assert not memo["passed"]
    flagged = {f["synthetic"]: f for f in planted_result.memorization["flagged"]}
    expected = phantom_sets["planted_names"]
    # Precision and recall 1 on the planted copies.
    assert set(flagged) == set(expected), (sorted(flagged), sorted(expected))
    for syn, (train_rel, how) in expected.items():
        assert flagged[syn]["nearest_train"] == train_rel, how
    # The copies are found on the whole image, each transform with a near-perfect score.
    for syn, f in flagged.items():
        image_match = [m for m in f["matches"] if m["scope"] == "image"]
        assert image_match and image_match[0]["ncc"] > 0.9, (expected[syn][1], f)
    assert flagged["images/S_00902_copy.png"]["transform"].startswith("hflip")


def test_planted_copies_flagged_in_every_space(planted_result):
    # Each space on its own separates these copies from novel images (scores on the image scope).
    for f in planted_result.memorization["flagged"]:
        m = next(m for m in f["matches"] if m["scope"] == "image")
        assert m["carlini_ratio"] < 0.6 and m["ncc"] >= 0.85, m


def test_json_and_html_reports(planted_result, tmp_path):
    path = planted_result.to_json(tmp_path / "audit.json")
    doc = json.loads(path.read_text())
    assert doc["verdict"] == "fail"
    assert all({"name", "value", "threshold", "passed"} <= set(c) for c in doc["checks"])
    assert len(doc["memorization"]["flagged"]) == len(PLANTED)
    assert {"synthetic", "nearest_train", "ncc", "carlini_ratio"} <= set(doc["memorization"]["flagged"][0])
    html = planted_result.save_html(tmp_path / "audit.html").read_text()
    assert html.index("FAIL") < html.index("1. Memorization")  # verdict first
    assert html.count("data:image/png;base64,") >= 3  # pairs grid + two histograms
    assert "OCR" in html and "http" not in html.replace("http-equiv", "")  # self-contained
    assert "<div" in planted_result._repr_html_()


def test_shared_patients_refused(phantom_sets):
    with pytest.raises(AuditInputError, match="P_0000"):
        audit(phantom_sets["train"], phantom_sets["synthetic"], phantom_sets["holdout_shared"], config=FAST,
              progress=False)


def test_domain_embedding_space(phantom_sets, tmp_path):
    """The default space: the self-supervised domain encoder (a few steps here), cached per train set."""
    cfg = {"memorization": {"embedding": "domain", "embedding_cache_dir": str(tmp_path),
                            "embedding_options": {"steps": 3, "batch_size": 8, "width": 8, "input_px": 32}}}
    res = audit(phantom_sets["train"], phantom_sets["planted"], phantom_sets["holdout"], config=cfg, progress=False)
    scopes = res.memorization["scopes"]
    assert scopes["image"]["embedding"].startswith("domain")
    flagged = {f["synthetic"]: f for f in res.memorization["flagged"]}
    assert set(flagged) == set(phantom_sets["planted_names"])
    exact = next(m for m in flagged["images/S_00900_copy.png"]["matches"] if m["scope"] == "image")
    assert exact["embedding_cosine"] == pytest.approx(1.0, abs=1e-4)
    assert any(p.name.startswith("domain-") for p in tmp_path.iterdir())  # cached where asked


def test_shared_dicom_patient_id_refused(phantom_sets, tmp_path):
    """Different CSV patient IDs, but one holdout DICOM carries a training PatientID: refused."""
    import shutil

    import pydicom

    holdout = tmp_path / "holdout"
    shutil.copytree(phantom_sets["holdout"], holdout)
    train_id = pydicom.dcmread(sorted(phantom_sets["train"].rglob("000000.dcm"))[0]).PatientID
    victim = sorted(holdout.rglob("000000.dcm"))[0]
    ds = pydicom.dcmread(victim)
    ds.PatientID = train_id
    ds.save_as(victim)
    with pytest.raises(AuditInputError, match="DICOM PatientID"):
        audit(phantom_sets["train"], phantom_sets["synthetic"], holdout, config=FAST, progress=False)
