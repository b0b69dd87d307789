"""`diagnose`: run every check that applies to the fit's method, in a fixed order.

Skill coordinates are not identified (DESIGN §1, "Symmetries"): permuting skill
dimensions changes nothing in the likelihood or the priors, so chains may settle
on different labelings.  Everything here therefore looks first at quantities the
model identifies (pass probabilities and D-values of observed rows, |a|, |l|, |q|,
biases, σ_L) and only then at raw coordinates, after relabelling the skills of each
chain to match a reference (`align_chains`).  It never prints, and work is capped
(see `settings`) so that a 1,000-student NUTS fit is diagnosed in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import xarray as xr

from bayes_lse.diagnostics.advi import check_advi
from bayes_lse.diagnostics.alignment import align_chains, check_alignment
from bayes_lse.diagnostics.arrays import fit_method, group_of, json_attr
from bayes_lse.diagnostics.calibration import check_calibration, check_pass_rates
from bayes_lse.diagnostics.convergence import (
    chain_deviation,
    check_ess,
    check_mcse,
    check_raw_convergence,
    check_rhat,
    convergence_table,
    summarise,
    worst_first,
)
from bayes_lse.diagnostics.loo import check_loo, loo_calibration, psis_loo
from bayes_lse.diagnostics.map_optimum import (
    check_map_gradient,
    check_map_optimiser,
    check_map_starts,
    map_table,
)
from bayes_lse.diagnostics.predictive import Predictive, predictive_checks
from bayes_lse.diagnostics.quantities import identified_quantities
from bayes_lse.diagnostics.result import CheckResult, Diagnostics
from bayes_lse.diagnostics.sampler import (
    check_divergences,
    check_ebfmi,
    check_tree_depth,
    sampler_table,
)
from bayes_lse.diagnostics.settings import (
    DEFAULT_THRESHOLDS,
    MAX_ENTITIES,
    MAX_OBS,
    MAX_STATES,
    resolve_thresholds,
)
from bayes_lse.diagnostics.sufficiency import check_data_sufficiency

__all__ = ["diagnose"]


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - t0


def diagnose(
    idata: xr.DataTree,
    *,
    rhat_max: float = DEFAULT_THRESHOLDS["rhat_max"],
    ess_min: float = DEFAULT_THRESHOLDS["ess_min"],
    ebfmi_min: float = DEFAULT_THRESHOLDS["ebfmi_min"],
    max_divergences: int = 0,
    loo: bool = True,
    predictive: bool = True,
    max_obs: int = MAX_OBS,
    max_states: int = MAX_STATES,
    seed: int = 0,
    **thresholds: float,
) -> Diagnostics:
    """Run every check that applies to the fit's method and return tables, not prints.

    NUTS: R-hat, bulk/tail ESS and MCSE on identified quantities, then on raw
    coordinates after `align_chains`; divergences (count, where, what differs in
    them), tree-depth saturation, E-BFMI per chain.  ADVI: loss history verdict.
    MAP: optimiser status, iterations, gradient norm per start.  All methods:
    posterior predictive calibration and pass-rate checks; PSIS-LOO (not for MAP);
    data sufficiency (answers per assessment and student, uses per lesson).
    Thresholds: see DEFAULT_THRESHOLDS (any can be passed by name).

    Parameters
    ----------
    idata : xarray.DataTree
        The fit's DataTree (`FittedLSE.idata`).
    rhat_max, ess_min, ebfmi_min, max_divergences : float
        The most used thresholds, by name; ``**thresholds`` takes any other of
        `DEFAULT_THRESHOLDS`.
    loo : bool, default True
        Run PSIS-LOO (not for MAP, nor with fewer than 20 draws); its leave-one-out
        probabilities then replace the in-sample ones in the calibration check.
    predictive : bool, default True
        Run the posterior predictive checks.
    max_obs : int, default MAX_OBS
        Observed rows in the identified quantities.
    max_states : int, default MAX_STATES
        States whose raw coordinates (and norms, for divergences) are checked.
    seed : int, default 0
        Seed of every subsample and replicate.

    Returns
    -------
    Diagnostics
        Verdicts (check, status, value, threshold, message), the tables behind them,
        notes, the aligned posterior, the identified quantities, the predictive material
        and timings.

    Raises
    ------
    TypeError
        For an unknown threshold name.
    ValueError
        When the tree has no posterior group.
    """
    th = resolve_thresholds({**thresholds, "rhat_max": rhat_max, "ess_min": ess_min, "ebfmi_min": ebfmi_min,
                             "max_divergences": max_divergences})
    method = fit_method(idata)
    post = group_of(idata, "posterior")
    if post is None:
        raise ValueError("the DataTree has no posterior group: nothing to diagnose")
    res, timings = CheckResult(), {}
    with _timed(timings, "align"):
        aligned, perm_table = align_chains(post)
    res.tables["alignment"] = perm_table
    with _timed(timings, "identified"):
        ident = identified_quantities(idata, max_obs=max_obs, seed=seed)

    if method == "nuts":
        res.merge(_nuts_checks(idata, post, aligned, perm_table, ident, th, timings, max_states, seed))
    else:
        opt = group_of(idata, "optimization")
        res.merge(check_advi(opt, th) if method == "advi" else _map_checks(opt, th))
        res.tables["identified_summary"] = summarise(convergence_table(ident, seed=seed, stats=False))

    pred = _predictive_and_loo(idata, method, post, th, res, timings, predictive=predictive, loo=loo, seed=seed)
    # last: a fit's own problems are the more actionable, and the verdict line names the first worst
    res.merge(check_data_sufficiency(idata, th))
    return Diagnostics(method=method, verdicts=res.verdict_table(), tables=res.tables, thresholds=th,
                       notes=res.notes, aligned=aligned, identified=ident, predictive=pred, timings=timings)


def _nuts_checks(idata: xr.DataTree, post: xr.Dataset, aligned: xr.Dataset, perm_table: pd.DataFrame,
                 ident: xr.Dataset, th: dict[str, float], timings: dict[str, float], max_states: int,
                 seed: int) -> CheckResult:
    """Convergence (identified, then raw aligned), alignment, sampler health."""
    res = CheckResult()
    with _timed(timings, "identified_convergence"):
        itab = convergence_table(ident, seed=seed)
    res.tables["identified_summary"] = summarise(itab)
    res.tables["identified"] = worst_first(itab)
    deviation = chain_deviation(ident, MAX_ENTITIES, seed)
    res.merge(check_rhat(itab, th, deviation, perm_table["chain"]))
    res.merge(check_ess(itab, th, "bulk")).merge(check_ess(itab, th, "tail")).merge(check_mcse(itab, th))
    with _timed(timings, "raw_convergence"):
        res.merge(check_raw_convergence(post, aligned, perm_table, th, max_states=max_states, seed=seed))
    res.merge(check_alignment(perm_table))

    ss = group_of(idata, "sample_stats")
    if ss is None:
        res.notes.append("No sample_stats group: divergences, tree depth and E-BFMI were not checked.")
        return res
    with _timed(timings, "sampler"):
        chains, div_rows, div_arr = sampler_table(ss, json_attr(idata, "fit_config"))
        chains["identified_deviation"] = deviation if len(deviation) == len(chains) else np.nan
        chains["permuted"] = perm_table["permuted"].to_numpy() if len(perm_table) == len(chains) else False
        res.tables["chains"] = chains
        res.merge(check_divergences(idata, post, ident, chains, div_rows, div_arr, th,
                                    max_states=max_states, seed=seed))
        res.merge(check_tree_depth(chains, th)).merge(check_ebfmi(chains, th))
    return res


def _map_checks(opt: xr.Dataset | None, th: dict[str, float]) -> CheckResult:
    """Optimiser status, gradient norm and agreement of the starts."""
    res = CheckResult()
    table = map_table(opt)
    if table.empty:
        res.notes.append("No optimization group: optimiser status was not checked.")
    else:
        res.tables["map"] = table
        res.merge(check_map_optimiser(table)).merge(check_map_gradient(table, th)).merge(check_map_starts(table, th))
    res.notes.append("MAP gives a point estimate: no intervals from the posterior, and no R-hat/ESS or LOO.")
    return res


def _predictive_and_loo(idata: xr.DataTree, method: str, post: xr.Dataset, th: dict[str, float], res: CheckResult,
                        timings: dict[str, float], *, predictive: bool, loo: bool, seed: int) -> Predictive | None:
    """Posterior predictive tables, PSIS-LOO, then the calibration, pass-rate and Pareto-k verdicts
    (merged into `res`); returns the predictive material."""
    pred, ptabs = None, {}
    if predictive:
        with _timed(timings, "predictive"):
            ptabs, pred = predictive_checks(idata, seed=seed, min_answers=int(th["ppc_min_answers"]))
        res.tables.update(ptabs)
    info = None
    if loo and method != "map" and post.sizes.get("chain", 1) * post.sizes.get("draw", 1) >= 20:
        with _timed(timings, "loo"):
            try:
                ltabs, info = psis_loo(idata, seed=seed)
            except Exception as err:  # noqa: BLE001 - LOO is a bonus, never a crash
                ltabs, info = {}, None
                res.notes.append(f"PSIS-LOO could not be computed: {err}")
            res.tables.update(ltabs)
    if predictive and info is not None:
        res.merge(loo_calibration(info, seed=seed))
    res.merge(check_calibration(res.tables.get("calibration"), th))
    for what in ("students", "assessments"):
        res.merge(check_pass_rates(ptabs.get(what), what, th))
    if info is not None:
        res.merge(check_loo(info, th, method))
    return pred
