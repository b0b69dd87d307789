"""ADVI convergence: has the loss (negative ELBO) levelled off?"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayes_lse.diagnostics.result import CheckResult

__all__ = ["advi_table", "check_advi", "loss_history"]


def advi_table(opt: xr.Dataset | None, rel_tol: float) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Summary of the loss history and its verdict.

    The mean loss over the last window (a tenth of the run, at least 10 iterations) is
    compared with the window before; a relative change ≤ `rel_tol` has levelled off.

    Parameters
    ----------
    opt : xarray.Dataset or None
        The ``optimization`` group (``loss (iteration)`` and the fit's convergence attrs).
    rel_tol : float
        Largest relative change that counts as converged.

    Returns
    -------
    table : pandas.DataFrame
        ``item``, ``value`` rows (iterations, windowed means, relative change, the fit's
        own stopping attrs); empty without a loss history.
    verdict : dict
        ``status``, ``value`` (the relative change) and ``message``.
    """
    if opt is None or "loss" not in opt:
        return pd.DataFrame(), {"status": "warn", "value": np.nan, "message": "No loss history was recorded."}
    loss = np.asarray(opt["loss"].values, dtype=float)
    n = len(loss)
    finite = np.isfinite(loss)
    window = max(10, n // 10)
    info: dict[str, Any] = {"iterations": n, "non_finite": int((~finite).sum())}
    if n >= 2 * window and finite[-2 * window:].all():
        recent, before = loss[-window:].mean(), loss[-2 * window: -window].mean()
        rel = abs(before - recent) / max(abs(recent), 1e-12)
        info.update(window=window, final_mean_loss=recent, previous_mean_loss=before, relative_change=rel)
    else:
        rel = np.nan
    for k in ("kind", "converged", "converged_at", "rule", "iterations", "tolerance", "approximation"):
        if k in opt.attrs:
            info[f"attr_{k}" if k == "iterations" else k] = opt.attrs[k]
    table = pd.DataFrame({"item": list(info), "value": [str(v) if isinstance(v, str) else v for v in info.values()]})
    if not finite[-max(1, window):].all():
        verdict = {"status": "fail", "value": rel,
                   "message": "The loss ended in NaN/inf: the approximation diverged; lower the learning rate."}
    elif not np.isfinite(rel):
        verdict = {"status": "warn", "value": rel, "message": f"Only {n} iterations: too short to judge convergence."}
    else:
        ok = rel <= rel_tol
        said = opt.attrs.get("converged")
        msg = (f"The mean loss over the last {window} iterations changed by {rel:.2g} (relative) from the window before"
               + (": it has levelled off." if ok else ": it is still moving; run more iterations."))
        if said is not None and not int(said):
            msg += " The fit's own stopping rule was not met."
            ok = False
        msg += " ADVI tends to understate posterior uncertainty; compare with NUTS before trusting intervals."
        verdict = {"status": "ok" if ok else "warn", "value": rel, "message": msg}
    return table, verdict


def loss_history(opt: xr.Dataset) -> pd.DataFrame:
    """The loss at every iteration, as a table (``iteration``, ``loss``)."""
    it = opt["iteration"].values if "iteration" in opt.coords else np.arange(opt.sizes["iteration"])
    return pd.DataFrame({"iteration": it, "loss": np.asarray(opt["loss"].values)})


def check_advi(opt: xr.Dataset | None, th: dict[str, float]) -> CheckResult:
    """"ADVI convergence": ok when the windowed mean loss moved by ≤ ``advi_rel_tol`` and the
    fit's own stopping rule (if any) was met; fail when the loss ended in NaN/inf.

    Parameters
    ----------
    opt : xarray.Dataset or None
        The ``optimization`` group.
    th : dict
        Thresholds.

    Returns
    -------
    CheckResult
        Tables ``advi`` and ``loss_history`` (when recorded); one verdict.
    """
    out = CheckResult()
    table, verdict = advi_table(opt, th["advi_rel_tol"])
    out.tables["advi"] = table
    if opt is not None and "loss" in opt:
        out.tables["loss_history"] = loss_history(opt)
    return out.add("ADVI convergence", verdict["status"], verdict["value"],
                   f"relative change ≤ {th['advi_rel_tol']:g}", verdict["message"])
