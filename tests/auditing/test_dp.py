"""The DP budget check: ε/δ from the model card (preferred) or the synthetic set's manifest, against
the configured maxima."""

from __future__ import annotations

import json

import pytest

from medsynth.auditing.dp import dp_budget, dp_check
from medsynth.errors import InvalidDatasetError


def test_dp_budget_from_manifest_and_model_card(tmp_path):
    class Syn:
        root = tmp_path

    (tmp_path / "manifest.json").write_text(json.dumps({"model": {"dp": {"epsilon": 7.5, "delta": 1e-5}}}))
    dp = dp_budget(None, None, Syn())
    assert dp["epsilon"] == 7.5 and dp["delta"] == 1e-5 and dp["dp_trained"]
    assert dp_check(dp, {"epsilon_max": 8.0, "delta_max": 1e-4})["passed"]
    assert not dp_check(dp, {"epsilon_max": 4.0, "delta_max": None})["passed"]
    assert not dp_check(dp, {"epsilon_max": None, "delta_max": 1e-6})["passed"]
    card_dir = tmp_path / "model"
    card_dir.mkdir()
    (card_dir / "model_card.json").write_text(json.dumps({"dp": {"epsilon": 3.0, "delta": 1e-6}}))
    assert dp_budget(None, card_dir, Syn())["epsilon"] == 3.0  # the model card wins over the manifest


def test_no_budget_recorded_fails_only_when_a_maximum_is_set(tmp_path):
    class Syn:
        root = tmp_path

    dp = dp_budget(None, None, Syn())
    assert dp == {"recorded": False, "source": None, "epsilon": None, "delta": None}
    assert dp_check(dp, {"epsilon_max": None, "delta_max": None})["passed"]
    failed = dp_check(dp, {"epsilon_max": 8.0, "delta_max": None})
    assert not failed["passed"] and "no differential-privacy guarantee" in failed["details"]["note"]
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(InvalidDatasetError, match="manifest.json"):
        dp_budget(None, None, Syn())
