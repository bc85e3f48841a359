"""medsynth.audit: the privacy audit of a synthetic set (copies, holdout baseline, membership
inference, DP budget, PHI in files), with a JSON verdict and a one-file HTML report.

    from medsynth.audit import audit
    result = audit("train/", "synthetic/", "holdout/", model="model/")
    result.verdict, result.memorization["flagged"]
    result.save_html("audit.html")
"""

from __future__ import annotations

from medsynth.audit.run import AuditResult, audit

__all__ = ["AuditResult", "audit"]


# ``medsynth.audit`` is both this package and, in medsynth's lazy top-level API, the function:
# once the package is imported it shadows the function on ``medsynth``, so the package itself is
# made callable and ``medsynth.audit(train, synthetic, holdout)`` works either way.
import sys as _sys
import types as _types


class _CallableModule(_types.ModuleType):
    def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return audit(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
