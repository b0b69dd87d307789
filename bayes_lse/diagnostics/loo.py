"""PSIS-LOO: expected log predictive density of held-out answers, Pareto k, and calibration of
the leave-one-out pass probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from bayes_lse.diagnostics.arrays import (
    dim_labels,
    group_of,
    student_labels,
    subsample,
    thin_draws,
)
from bayes_lse.diagnostics.calibration import calibration_tables
from bayes_lse.diagnostics.predictive import row_logits
from bayes_lse.diagnostics.result import CheckResult
from bayes_lse.diagnostics.settings import (
    MAX_LOO_CELLS,
    MAX_LOO_DRAWS,
    MAX_PREDICTIVE_DRAWS,
)
from bayes_lse.model import terms as eq

__all__ = ["check_loo", "loo_calibration", "psis_loo"]


def psis_loo(idata: xr.DataTree, seed: int = 0) -> tuple[dict[str, pd.DataFrame], dict | None]:
    """PSIS-LOO (arviz_stats.loo) on the Bernoulli log-likelihood of observed rows.

    ≤ MAX_LOO_DRAWS evenly thinned draws; beyond MAX_LOO_CELLS draws × rows a random
    subsample of rows (at least 200), with the ELPD and its SE scaled to all rows.

    Parameters
    ----------
    idata : xarray.DataTree
        The fit's DataTree.
    seed : int, default 0
        Seed of the row subsample.

    Returns
    -------
    tables : dict of pandas.DataFrame
        ``loo`` (elpd_loo, se, p_loo, rows used, draws, r_eff, good k threshold),
        ``pareto_k`` (rows per k range), ``pareto_k_worst`` (the 10 largest k).
    info : dict or None
        ``elpd``, ``se``, ``good_k``, ``max_k``, ``n_bad``, ``n``, and per row used the
        leave-one-out pass probability ``p_loo`` and outcome ``y``; None without data.
    """
    import arviz_stats as azs

    post = group_of(idata, "posterior")
    cd = group_of(idata, "constant_data")
    obs = group_of(idata, "observed_data")
    if post is None or cd is None or obs is None or "outcome" not in obs:
        return {}, None
    y = np.asarray(obs["outcome"].values, dtype=float)
    n = len(y)
    n_c, n_d = post.sizes["chain"], post.sizes["draw"]
    d_idx = thin_draws(n_c, n_d, MAX_LOO_DRAWS)
    s_total = n_c * len(d_idx)
    m = min(n, max(200, MAX_LOO_CELLS // s_total))
    rows = subsample(n, m, seed + 3)
    chains, draws = np.repeat(np.arange(n_c), len(d_idx)), np.tile(d_idx, n_c)
    logit = row_logits(post, cd, chains, draws, rows, idata)
    p_rows = eq.sigmoid(logit)  # (S, m)
    yy = y[rows]
    ll = -(yy * np.logaddexp(0.0, -logit) + (1 - yy) * np.logaddexp(0.0, logit))
    ll = ll.reshape(n_c, len(d_idx), len(rows))
    if n_c > 1:
        reff = float(np.nanmean(azs.ess(ll[:, :, : min(200, len(rows))], chain_axis=0, draw_axis=1,
                                        method="mean", relative=True)))
        reff = float(np.clip(reff, 0.01, 1.0)) if np.isfinite(reff) else 1.0
    else:
        reff = 1.0
    dt = xr.DataTree.from_dict({
        "posterior": xr.Dataset({"dummy": (("chain", "draw"), np.zeros((n_c, len(d_idx))))}),
        "log_likelihood": xr.Dataset({"outcome": (("chain", "draw", "obs"), ll)}, coords={"obs": rows}),
        "observed_data": xr.Dataset({"outcome": ("obs", yy)}, coords={"obs": rows}),
    })
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = azs.loo(dt, pointwise=True, reff=reff)
    elpd_i = np.asarray(res.elpd_i.values)
    k = np.asarray(res.pareto_k.values)
    if m < n:  # simple random sample of rows: scale to all rows
        elpd = float(n * elpd_i.mean())
        se = float(np.sqrt(n * elpd_i.var(ddof=1) + n**2 * elpd_i.var(ddof=1) / m * (1 - m / n)))
        p_loo = float(res.p * n / m)
    else:
        elpd, se, p_loo = float(res.elpd), float(res.se), float(res.p)
    good_k = float(res.good_k)
    summary = pd.DataFrame({
        "item": ["elpd_loo", "se", "p_loo", "rows used", "rows", "draws", "r_eff", "good k threshold"],
        "value": [elpd, se, p_loo, m, n, s_total, reff, good_k],
    })
    bins = [("good", k <= good_k), (f"{good_k:.2f} < k ≤ 1 (unreliable)", (k > good_k) & (k <= 1)),
            ("k > 1 (very bad)", k > 1)]
    pk = pd.DataFrame({"range": [b[0] for b in bins], "rows": [int(b[1].sum()) for b in bins],
                       "pct": [100.0 * b[1].mean() for b in bins]})
    worst = np.argsort(-k)[:10]
    students = student_labels(idata)
    ass = dim_labels(post, "assessment", post.sizes.get("assessment", 0))
    su = np.asarray(cd["obs_student"].values).astype(int)[rows[worst]]
    aj = np.asarray(cd["obs_assessment"].values).astype(int)[rows[worst]]
    worst_t = pd.DataFrame({"row": rows[worst], "student": students[su] if len(students) else su,
                            "assessment": ass[aj] if len(ass) else aj, "outcome": yy[worst],
                            "pareto_k": k[worst], "elpd_i": elpd_i[worst]})
    # leave-one-out predictive pass probability of every row: the PSIS-weighted mean
    lw = np.asarray(res.log_weights.transpose("chain", "draw", "obs").values).reshape(-1, len(rows))
    w = np.exp(lw - lw.max(axis=0))
    p_loo = (w * p_rows).sum(axis=0) / w.sum(axis=0)
    info = {"elpd": elpd, "se": se, "good_k": good_k, "max_k": float(np.nanmax(k)) if k.size else np.nan,
            "n_bad": int((k > good_k).sum()), "n": len(k), "p_loo": p_loo, "y": yy}
    return {"loo": summary, "pareto_k": pk, "pareto_k_worst": worst_t}, info


def loo_calibration(info: dict, seed: int = 0) -> CheckResult:
    """Calibration tables of the leave-one-out pass probabilities (attr ``source`` = ``"leave-one-out"``).

    Calibrate held-out predictions: in-sample probabilities were fit to these very
    answers, which makes observed rates look more extreme than predicted.

    Parameters
    ----------
    info : dict
        `psis_loo`'s second value.
    seed : int, default 0
        Seed of the replicates.

    Returns
    -------
    CheckResult
        Tables ``calibration`` and ``pava`` (no verdict: `calibration.check_calibration` judges them).
    """
    rng = np.random.default_rng(seed + 7)
    y_rep = (rng.random((MAX_PREDICTIVE_DRAWS, len(info["y"]))) < info["p_loo"]).astype(float)
    cal, pava = calibration_tables(info["p_loo"], info["y"], y_rep, seed=seed)
    cal.attrs["source"] = "leave-one-out"
    return CheckResult(tables={"calibration": cal, "pava": pava})


def check_loo(info: dict, th: dict[str, float], method: str) -> CheckResult:
    """"PSIS-LOO Pareto k": warn when some row's Pareto k exceeds min(``pareto_k_max``, ArviZ's good-k
    threshold): those rows' LOO estimates are unreliable, the answers highly influential.

    Parameters
    ----------
    info : dict
        `psis_loo`'s second value.
    th : dict
        Thresholds.
    method : str
        The fit's method (ADVI draws come from the approximation, which the message says).

    Returns
    -------
    CheckResult
        One verdict; its value is the largest Pareto k.
    """
    thr = min(th["pareto_k_max"], info["good_k"])
    n_bad = info["n_bad"]
    msg = f"ELPD-LOO {info['elpd']:.1f} (SE {info['se']:.1f}); "
    msg += ("every Pareto k is below " + f"{thr:.2f}: LOO estimates are reliable." if n_bad == 0 else
            f"{n_bad} of {info['n']} rows have Pareto k above {thr:.2f} (max {info['max_k']:.2f}): "
            "their LOO estimates are unreliable; those answers are highly influential.")
    if method == "advi":
        msg += " (Draws come from the ADVI approximation, not the exact posterior.)"
    return CheckResult().add("PSIS-LOO Pareto k", "ok" if n_bad == 0 else "warn", info["max_k"], f"≤ {thr:.2f}", msg)
