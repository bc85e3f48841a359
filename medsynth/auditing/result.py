"""``AuditResult``: what the audit found, as JSON, a one-file HTML report and a Jupyter display;
and :func:`check_record`, the one shape of a check's entry in it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsynth.io.writers.atomic import atomic_write_text
from medsynth.utils import jsonable


def check_record(name: str, value: Any, threshold: Any, passed: bool, status: str | None = None,
                 **details: Any) -> dict[str, Any]:
    """One check of the audit: its name, measured value, threshold, whether it passed, what the report
    shows (``status``: "pass"/"fail" by default; a check that does not apply keeps the verdict but says
    so in its own words, e.g. "not DP", never as a green pass), and evidence."""
    return {"name": name, "value": value, "threshold": threshold, "passed": bool(passed),
            "status": status or ("pass" if passed else "fail"), "details": details}


@dataclass
class AuditResult:
    """What the audit found.

    Attributes:
        verdict: "pass" when every check passed, else "fail".
        checks: one dict per check: name, value, threshold, passed, details.
        memorization: per-scope summaries and ``flagged``: one object per flagged synthetic sample
            (``synthetic`` and ``nearest_train`` as paths relative to their dataset roots, scores).
        baseline, mia, dp, phi: the evidence of each check (JSON-ready).
        inputs: dataset roots and sizes; config: the settings used; notes: what was skipped and why.
    """

    verdict: str
    checks: list[dict[str, Any]]
    memorization: dict[str, Any]
    baseline: dict[str, Any]
    mia: dict[str, Any] | None
    dp: dict[str, Any]
    phi: dict[str, Any]
    inputs: dict[str, Any]
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    plots: dict[str, Any] = field(default_factory=dict, repr=False)  # arrays for the figures, not JSON

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: verdict and checks first."""
        return jsonable(
            {
                "verdict": self.verdict,
                "checks": self.checks,
                "memorization": self.memorization,
                "baseline": self.baseline,
                "mia": self.mia,
                "dp": self.dp,
                "phi": self.phi,
                "inputs": self.inputs,
                "notes": self.notes,
                "seconds": round(self.seconds, 2),
                "config": self.config,
            }
        )

    def to_json(self, path: str | Path) -> Path:
        """Write the JSON report atomically; returns the path."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        return atomic_write_text(Path(path), text)

    def to_html(self) -> str:
        """The one-file HTML report (figures inlined as base64 PNG)."""
        from medsynth.auditing.report import render_html

        return render_html(self)

    def save_html(self, path: str | Path) -> Path:
        """Write the HTML report atomically; returns the path."""
        return atomic_write_text(Path(path), self.to_html())

    def _repr_html_(self) -> str:
        from medsynth.auditing.report import render_html

        return render_html(self, standalone=False)

    def __repr__(self) -> str:
        failed = [c["name"] for c in self.checks if not c["passed"]]
        return f"AuditResult(verdict={self.verdict!r}, checks={len(self.checks)}, failed={failed})"


def _check(name: str, value: Any, threshold: Any, passed: bool, **details: Any) -> dict[str, Any]:
    return {"name": name, "value": value, "threshold": threshold, "passed": bool(passed), "details": details}
