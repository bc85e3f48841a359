"""`audit` on in-memory cases (no files): the pixel checks run, the file checks say they were skipped."""

from __future__ import annotations

from pathlib import Path

from medsynth.auditing.run import audit
from medsynth.io.scan import Case, Scan

from .conftest import FAST


def _cases(seed: int, first: int, n: int) -> list[Case]:
    from medsynth.phantoms.render import render_phantom

    out = []
    for i in range(first, first + n):
        ph = render_phantom(seed, size=(96, 80), index=i, lesion_fraction=1.0)
        img = Scan(Path(f"mem/{seed}_{i}.png"), ph.image.shape, ph.spacing, pixel_loader=lambda a=ph.image: a)
        lab = ph.label.astype("float32")
        mask = Scan(Path(f"mem/{seed}_{i}_mask.png"), lab.shape, ph.spacing, pixel_loader=lambda a=lab: a)
        out.append(Case(f"{seed}_{i}", img, mask, patient_id=f"{seed}-{i // 2}", image_relpath=f"{seed}_{i}.png"))
    return out


def test_in_memory_sets():
    train, holdout, syn = _cases(5, 0, 6), _cases(5, 20, 6), _cases(6, 40, 5)
    syn.append(train[1])  # an exact copy
    res = audit(train, syn, holdout, config=FAST, progress=False)
    assert [f["synthetic"] for f in res.memorization["flagged"]] == ["5_1.png"]
    assert res.memorization["flagged"][0]["nearest_train"] == "5_1.png"
    assert any("PHI check of files skipped" in n for n in res.notes)
    assert res.phi["n_files"] == 0
