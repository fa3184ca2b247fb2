"""Metric definitions, one home for all of them (DESIGN.md's vocabulary).

* :mod:`hplan.metrics.scores` — predictions against outcomes: AUROC, ROC, false-negative rate,
  reliability / ECE, Spearman;
* :mod:`hplan.metrics.episodes` — episode tables: violation rates, success by separation and H50,
  recovery after a perturbation, surprise AUROC.

``from hplan import metrics as m`` gives both.
"""

from hplan.metrics.episodes import (h50, recovery_summary, recovery_time, success_by_separation,  # noqa: F401
                                    surprise_auroc, surprise_labels, violation_rate, violations_per_1000_steps)
from hplan.metrics.scores import (NAN, Reliability, auroc, expected_calibration_error,  # noqa: F401
                                  false_negative_rate, guardrail_quality, reliability, roc_curve, spearman)
