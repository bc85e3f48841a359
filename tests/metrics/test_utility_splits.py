"""The utility test refuses splits that share a patient, an image or a background -- before training."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from medsynth.errors import ConfigError, InvalidDatasetError
from medsynth.io.datasets import load_dataset
from medsynth.metrics.utility import evaluate_utility
from medsynth.metrics.utility.data import read_set
from medsynth.metrics.utility.splits import check_splits

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SALT = bytes(range(32))
READ = dict(crops=False, full=False, roi_mm=32.0, roi_px=64, spacing_mm=0.8)


@pytest.fixture(scope="module")
def painted(utility_sets, tmp_path_factory):
    """Synthetic sets from ``medsynth generate`` (a two-step tiny model): one painted on fresh lesion-free
    backgrounds, one painted on the real-test images themselves (the leak to catch)."""
    from medsynth.generation.pipeline import generate
    from medsynth.models.training import train
    from medsynth.phantoms import make_phantoms

    root = tmp_path_factory.mktemp("painted")
    model = root / "model"
    train(utility_sets["train"], model, steps=2, progress=False, batch_size=4, checkpoint_every=1000, image_size=32,
          block_out_channels=[16, 32], norm_num_groups=8, num_inference_steps=2)
    fresh = make_phantoms(root / "backgrounds", n=3, seed=34, size=(128, 104), lesion_fraction=0.0,
                          patient_offset=3000)
    out = {}
    for name, backgrounds in (("fresh", fresh), ("on_test", utility_sets["test"])):
        out[name] = generate(model, backgrounds, "shapes", 3, root / name, "nnunet", seed=0, salt=SALT,
                             progress=False).out
    return out


def test_shared_patients_are_refused(utility_sets, tmp_path):
    from medsynth.phantoms import make_phantoms

    # Other pixels (another seed), but patients P_00005 and P_00006 are also in real-train.
    overlapping = make_phantoms(tmp_path / "test", n=4, seed=99, size=(128, 104), patient_offset=4)
    with pytest.raises(InvalidDatasetError, match=r"shares 2 patient\(s\) with real-train \(P_00005, P_00006") as e:
        evaluate_utility(utility_sets["train"], utility_sets["synthetic"], overlapping, progress=False)
    assert e.value.path == overlapping  # the message names the set


def test_identical_images_are_refused_without_patient_ids(utility_sets):
    # No patient IDs anywhere, and one real-train image slipped into the test set.
    train = [dataclasses.replace(c, patient_id=None) for c in load_dataset(utility_sets["train"])]
    test = [dataclasses.replace(c, patient_id=None) for c in load_dataset(utility_sets["test"])] + train[3:4]
    syn = [dataclasses.replace(c, patient_id=None) for c in load_dataset(utility_sets["synthetic"])]
    sets = [read_set(x, w, **READ) for x, w in ((train, "real-train"), (test, "real-test"), (syn, "synthetic"))]
    with pytest.raises(InvalidDatasetError, match="1 image.* of real-test are pixel-identical to real-train"):
        check_splits(*sets[:1], sets[1], sets[2])
    # Without the duplicate it passes, and says that patients could not be checked (never a silent pass).
    report = check_splits(sets[0], read_set(test[:-1], "real-test", **READ), sets[2])
    assert report["patient_ids"]["real-train / real-test"].startswith("not checked: no patient IDs")
    assert report["identical_images"]["real-train / real-test"].startswith("checked")


def test_a_background_that_is_a_test_image_is_refused(utility_sets, painted):
    train, test = (read_set(utility_sets[k], w, **READ) for k, w in (("train", "real-train"), ("test", "real-test")))
    leak = read_set(painted["on_test"], "synthetic", **READ)
    # By pixels, without the salt: outside the painted lesions a synthetic image is its background.
    with pytest.raises(InvalidDatasetError, match="painted on real-test images, by their pixels") as e:
        check_splits(train, test, leak)
    assert e.value.path == utility_sets["test"]
    # By the manifest's salted identities, with the salt the generate run used.
    with pytest.raises(InvalidDatasetError, match="real-test image.* were backgrounds .* salted identities"):
        check_splits(train, test, leak, salt=SALT)
    with pytest.raises(ConfigError, match="not the one this manifest was made with"):
        check_splits(train, test, leak, salt=bytes(32))


def test_fresh_backgrounds_pass_and_the_report_says_what_was_checked(utility_sets, painted, tmp_path):
    train, test = (read_set(utility_sets[k], w, **READ) for k, w in (("train", "real-train"), ("test", "real-test")))
    fresh = read_set(painted["fresh"], "synthetic", **READ)
    report = check_splits(train, test, fresh, salt=SALT)
    assert report["backgrounds_salted"].startswith("checked by salted identity")
    assert report["backgrounds_pixels"]["synthetic / real-test"].startswith("checked: 3 of 3")
    assert check_splits(train, test, fresh)["backgrounds_salted"].startswith("not checked: no salt")
    salt_file = tmp_path / "salt.hex"
    salt_file.write_text(SALT.hex())
    assert check_splits(train, test, fresh, salt=salt_file) == report


def test_cli_refuses_shared_patients_with_exit_2(utility_sets, tmp_path):
    out = tmp_path / "u.json"
    proc = subprocess.run(
        [sys.executable, "-m", "medsynth", "evaluate", "--utility", "--real-train", str(utility_sets["train"]),
         "--synthetic", str(utility_sets["synthetic"]), "--real-test", str(utility_sets["train"]),
         "--json", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=300, env=ENV,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(utility_sets["train"]) in proc.stderr and "shares 6 patient(s)" in proc.stderr
    assert not out.exists()


def test_manifest_background_ids_are_what_fingerprints_compute(utility_sets, painted):
    """generate salts io.fingerprints.image_digest: recompute one background's identity from the test set."""
    import hashlib
    import hmac

    from medsynth.io.fingerprints import dataset_identities

    manifest = json.loads((painted["on_test"] / "manifest.json").read_text())
    ids = {c["background"]["id"] for c in manifest["cases"]}
    mine = {hmac.new(SALT, x.digest.encode(), hashlib.sha256).hexdigest()
            for x in dataset_identities(load_dataset(utility_sets["test"]))}
    assert ids and ids <= mine
