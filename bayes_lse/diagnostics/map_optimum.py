"""MAP optimiser checks: did the best start converge, is the gradient small, do starts agree?"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from bayes_lse.diagnostics.result import CheckResult

__all__ = ["at_limit", "best_start", "check_map_gradient", "check_map_optimiser", "check_map_starts", "map_table"]


def map_table(opt: xr.Dataset | None) -> pd.DataFrame:
    """One row per L-BFGS-B start, with a ``best`` column.

    Parameters
    ----------
    opt : xarray.Dataset or None
        The ``optimization`` group of a MAP fit (dim ``start``, attr ``best_start``).

    Returns
    -------
    pandas.DataFrame
        ``start``, every per-start variable (``objective``, ``n_iterations``, ``grad_norm``,
        ``success``, ``message``, ...) and ``best`` (the start kept: attr ``best_start``,
        else the smallest objective); empty without such a group.
    """
    if opt is None or "start" not in opt.dims:
        return pd.DataFrame()
    cols = {k: np.asarray(v.values) for k, v in opt.data_vars.items() if v.dims == ("start",)}
    table = pd.DataFrame(cols)
    table.insert(0, "start", opt["start"].values if "start" in opt.coords else np.arange(opt.sizes["start"]))
    best = opt.attrs.get("best_start")
    if best is None and "objective" in table:
        best = int(np.nanargmin(table["objective"].to_numpy(dtype=float)))
    table["best"] = [bool(best is not None and i == int(best)) for i in range(len(table))]
    return table


def best_start(table: pd.DataFrame) -> pd.Series:
    """The row of the start that was kept (the first row if none is marked)."""
    return table[table["best"]].iloc[0] if table["best"].any() else table.iloc[0]


def at_limit(best: pd.Series) -> bool:
    """Whether a start stopped at its iteration limit (L-BFGS-B's message) without converging."""
    return not bool(best.get("success", True)) and "ITERATIONS REACHED LIMIT" in str(best.get("message", "")).upper()


def check_map_optimiser(table: pd.DataFrame) -> CheckResult:
    """"MAP optimiser": did the best start report convergence?

    Stopping at the iteration limit is a warning, not a failure: an iteration budget is
    a choice (early stopping on large logs), not a breakdown.

    Parameters
    ----------
    table : pandas.DataFrame
        `map_table`.

    Returns
    -------
    CheckResult
        One verdict; its value is the optimiser's message.
    """
    best = best_start(table)
    succ = bool(best.get("success", True))
    msg = str(best.get("message", ""))
    limit = at_limit(best)
    # an iteration budget is a choice (early stopping on large logs), not a breakdown: 5-fold CV on
    # MoFaCTS, last 10 %, the default fit with its modules table: AUC / log-loss 0.865 / 0.443 at 1,000
    # iterations, 0.865 / 0.443 at 4,000, 0.863 / 0.445 at 15,000 (docs/results.md)
    return CheckResult().add(
        "MAP optimiser", "ok" if succ else "warn" if limit else "fail", msg, "success",
        f"The best of {len(table)} starts (start {best['start']}) "
        + (f"converged after {int(best['n_iterations'])} iterations." if succ and "n_iterations" in best
           else "converged." if succ
           else f"stopped at the iteration limit ({int(best['n_iterations'])} iterations) before meeting its "
           "tolerance: the point is near, not at, a mode (see the gradient norm). On large logs the default "
           "budget works as an early stop: on MoFaCTS 4,000 and 15,000 iterations predicted held-out answers no "
           "better (AUC 0.865, 0.865, 0.863). Raise maxiter to come closer to the mode; fit by ADVI or NUTS for "
           "a posterior."
           if limit else "did not report convergence: the point may not be a mode."))


def check_map_gradient(table: pd.DataFrame, th: dict[str, float]) -> CheckResult:
    """"MAP gradient norm": warn when the best start's gradient norm exceeds ``map_grad_norm_max``.

    Parameters
    ----------
    table : pandas.DataFrame
        `map_table`.
    th : dict
        Thresholds.

    Returns
    -------
    CheckResult
        One verdict, none without a ``grad_norm`` column.
    """
    out = CheckResult()
    best = best_start(table)
    if "grad_norm" in best:
        g = float(best["grad_norm"])
        ok = g <= th["map_grad_norm_max"]
        out.add("MAP gradient norm", "ok" if ok else "warn", g, f"≤ {th['map_grad_norm_max']:g}",
                f"Gradient norm at the optimum is {g:.2g}"
                + ("." if ok else ": the optimiser stopped before the gradient vanished"
                   + (" (at its iteration limit: see MAP optimiser)." if at_limit(best)
                      else "; tighten gtol/ftol.")))
    return out


def check_map_starts(table: pd.DataFrame, th: dict[str, float]) -> CheckResult:
    """"MAP starts agree": how many starts reached the best objective (within ``map_objective_tol``).

    Warn when only the best one did: the others stopped at worse optima, so the best may
    not be global.

    Parameters
    ----------
    table : pandas.DataFrame
        `map_table`.
    th : dict
        Thresholds.

    Returns
    -------
    CheckResult
        One verdict, none with a single start.
    """
    out = CheckResult()
    if "objective" in table and len(table) > 1:
        best = best_start(table)
        obj = table["objective"].to_numpy(dtype=float)
        agree = int((np.abs(obj - float(best["objective"])) <= th["map_objective_tol"]).sum())
        ok = agree >= 2
        out.add("MAP starts agree", "ok" if ok else "warn", agree,
                f"≥ 2 of {len(table)} within {th['map_objective_tol']:g}",
                f"{agree} of {len(table)} starts reached the best objective"
                + ("." if ok else ": the others stopped at worse optima, so the best may not be global; "
                   "use more starts, or NUTS."))
    return out
