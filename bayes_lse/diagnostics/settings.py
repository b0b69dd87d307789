"""Work caps and default thresholds of the checks.

Work is capped (rows, states, draws) so that a 1,000-student NUTS fit is diagnosed in
seconds; every threshold can be passed to `diagnose` by name.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MAX_ENTITIES",
    "MAX_LOO_CELLS",
    "MAX_LOO_DRAWS",
    "MAX_OBS",
    "MAX_PAVA_ROWS",
    "MAX_PREDICTIVE_CELLS",
    "MAX_PREDICTIVE_DRAWS",
    "MAX_PREDICTIVE_ROWS",
    "MAX_STATES",
    "MAX_TRANSITIONS",
    "resolve_thresholds",
]

#: Observed rows whose pass probability / D-value enter the convergence tables.
#: A random subsample (fixed seed) beyond this: a few hundred rows already show
#: whether chains agree on the predictions; every row would cost minutes.
MAX_OBS = 500
#: Transitions whose prerequisite satisfaction D(s_t, q) enters the tables.
MAX_TRANSITIONS = 300
#: Entities per variable (students' biases, ...) in the convergence tables.
MAX_ENTITIES = 500
#: Flat states whose raw (aligned) coordinates enter the convergence tables.
MAX_STATES = 300
#: Posterior draws used for posterior predictive checks (evenly thinned).
MAX_PREDICTIVE_DRAWS = 200
#: Cap on draws × rows for posterior predictive replicates (memory).
MAX_PREDICTIVE_CELLS = 10_000_000
#: Posterior predictive checks use the answers of a random set of students holding about
#: this many answers when the log has more (20 draws and their replicates of 17M answers,
#: a 25M-row log's, would take 5 GB; these 1M take 0.3 GB).
MAX_PREDICTIVE_ROWS = 1_000_000
#: Rows used for the PAV calibration curve (random subsample beyond).
MAX_PAVA_ROWS = 20_000
#: Cap on draws × rows of the pointwise log-likelihood for PSIS-LOO; beyond it a
#: random subsample of rows is used and the ELPD is scaled to all rows.
MAX_LOO_CELLS = 4_000_000
MAX_LOO_DRAWS = 1000

#: Default thresholds; every one can be passed to `diagnose` by name.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "rhat_max": 1.01,  # ok at or below
    "rhat_fail": 1.05,  # fail above (warn in between)
    "ess_min": 400,  # bulk and tail ESS: ok at or above
    "ess_fail": 100,  # fail below (warn in between)
    "mcse_p_max": 0.01,  # MCSE of a pass probability's mean
    "max_divergences": 0,
    "treedepth_saturation_max": 0.0,  # fraction of draws at the maximum tree depth
    "ebfmi_min": 0.3,
    "ppc_outside_max": 0.2,  # fraction of students/assessments outside their 90% interval
    "calibration_outside_max": 0.3,  # fraction of calibration bins outside their 90% interval
    # in-sample bins count as off only when also this far from their prediction (absolute rate;
    # `calibration.check_calibration` says why)
    "calibration_in_sample_tolerance": 0.05,
    "ppc_min_answers": 5,  # entities with fewer answers are not judged
    "pareto_k_max": 0.7,
    "advi_rel_tol": 0.01,  # relative change of windowed mean loss at the end
    "map_grad_norm_max": 0.1,
    "map_objective_tol": 1.0,  # starts within this of the best objective "agree"
    # data sufficiency: an assessment answered, or a lesson taken, fewer times than this is thin
    "min_module_answers": 5,
    "min_student_answers": 3,  # a student with fewer answers is thin
    "thin_share_max": 0.1,  # warn when a larger share of assessments, lessons or students is thin
}


def resolve_thresholds(given: dict[str, float]) -> dict[str, float]:
    """`DEFAULT_THRESHOLDS` overridden by `given`, with warn/fail bounds kept consistent.

    Parameters
    ----------
    given : dict
        Thresholds by name (any of `DEFAULT_THRESHOLDS`).

    Returns
    -------
    dict
        Every threshold; ``rhat_fail`` is at least ``rhat_max`` and ``ess_fail`` at most
        ``ess_min``, so that a lenient ok bound never sits beyond the fail bound.

    Raises
    ------
    TypeError
        For a name that is not a known threshold.
    """
    unknown = set(given) - set(DEFAULT_THRESHOLDS)
    if unknown:
        raise TypeError(f"unknown threshold(s) {sorted(unknown)}; known: {sorted(DEFAULT_THRESHOLDS)}")
    th = dict(DEFAULT_THRESHOLDS)
    th.update(given)
    th["rhat_fail"] = max(th["rhat_fail"], th["rhat_max"])
    th["ess_fail"] = min(th["ess_fail"], th["ess_min"])
    return th
