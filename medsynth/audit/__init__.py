"""medsynth.audit: the privacy audit of a synthetic set (copies, holdout baseline, membership
inference, DP budget, PHI in files), with a JSON verdict and a one-file HTML report.

    from medsynth.audit import audit
    result = audit("train/", "synthetic/", "holdout/", model="model/")
    result.verdict, result.memorization["flagged"]
    result.save_html("audit.html")
"""

from __future__ import annotations

from medsynth._callable import make_package_callable
from medsynth.audit.run import AuditResult, audit

__all__ = ["AuditResult", "audit"]


# The package is callable: medsynth.audit(train, synthetic, holdout) runs audit() (see medsynth._callable).
make_package_callable(__name__, "medsynth.audit.run", "audit")
