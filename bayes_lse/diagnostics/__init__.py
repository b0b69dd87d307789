"""Stage 5, diagnostics: convergence and predictive checks on identified quantities.

One module per kind of check, each ``check_*`` returning its own `CheckResult`;
`diagnose` (in `run.py`) composes them into a `Diagnostics`.  The xarray helpers
the plots and the report share are in `arrays.py`.
"""

from bayes_lse.diagnostics.alignment import align_chains
from bayes_lse.diagnostics.arrays import student_labels
from bayes_lse.diagnostics.calibration import calibration_tables
from bayes_lse.diagnostics.convergence import convergence_table
from bayes_lse.diagnostics.run import diagnose
from bayes_lse.diagnostics.estimators import convergence_stats
from bayes_lse.diagnostics.predictive import Predictive, predictive_checks
from bayes_lse.diagnostics.quantities import identified_quantities
from bayes_lse.diagnostics.result import TABLE_INFO, CheckResult, Diagnostics
from bayes_lse.diagnostics.settings import DEFAULT_THRESHOLDS

__all__ = [
    "DEFAULT_THRESHOLDS",
    "TABLE_INFO",
    "CheckResult",
    "Diagnostics",
    "Predictive",
    "align_chains",
    "calibration_tables",
    "convergence_stats",
    "convergence_table",
    "diagnose",
    "identified_quantities",
    "predictive_checks",
    "student_labels",
]
