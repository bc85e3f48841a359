"""medsynth.auditing: the privacy audit of a synthetic set (copies, holdout baseline, membership
inference, DP budget, PHI in files), with a JSON verdict and a one-file HTML report.

    import medsynth
    result = medsynth.audit("train/", "synthetic/", "holdout/", model="model/")
    result.verdict, result.memorization["flagged"]
    result.save_html("audit.html")

The package is named ``auditing``, not ``audit``, so that it never shadows the function
``medsynth.audit`` once imported.
"""

from __future__ import annotations

from medsynth.auditing.result import AuditResult
from medsynth.auditing.run import audit

__all__ = ["AuditResult", "audit"]
