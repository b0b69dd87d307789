"""Convergence of identified quantities and of raw (aligned) coordinates: R-hat, ESS, MCSE.

`convergence_table` labels the numpy estimators of `estimators.py`; the ``check_*``
functions turn its columns into verdicts, one check each.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayes_lse.diagnostics.alignment import ALIGN_VARS
from bayes_lse.diagnostics.arrays import flatten_quantities, subsample
from bayes_lse.diagnostics.estimators import convergence_stats
from bayes_lse.diagnostics.result import CheckResult, grade
from bayes_lse.diagnostics.settings import MAX_ENTITIES, MAX_STATES

__all__ = [
    "chain_deviation",
    "check_ess",
    "check_mcse",
    "check_raw_convergence",
    "check_rhat",
    "convergence_table",
    "summarise",
    "worst_first",
]


def convergence_table(
    ds: xr.Dataset, *, max_entities: int = MAX_ENTITIES, seed: int = 0, stats: bool = True
) -> pd.DataFrame:
    """R-hat (rank-normalised split), bulk/tail ESS and MCSE of every scalar in `ds`.

    Parameters
    ----------
    ds : xarray.Dataset
        Per-draw quantities with ``chain`` and ``draw`` dims.
    max_entities : int, default MAX_ENTITIES
        Per variable, at most this many scalars (random subsample).
    seed : int, default 0
        Seed of that subsample.
    stats : bool, default True
        Compute R-hat/ESS/MCSE (needs ≥ 4 draws); False gives mean, sd and the 5–95 %
        interval only (ADVI and MAP).

    Returns
    -------
    pandas.DataFrame
        One row per scalar: ``variable``, ``label``, ``student``, ``mean``, ``sd``, ``q5``,
        ``q95`` and, with `stats`, ``rhat``, ``ess_bulk``, ``ess_tail``, ``mcse_mean``.
    """
    arr, table = flatten_quantities(ds, max_entities, seed)
    if arr.size == 0:
        return table
    flat = arr.reshape(-1, arr.shape[2])
    table["mean"] = flat.mean(axis=0)
    table["sd"] = flat.std(axis=0, ddof=1) if flat.shape[0] > 1 else 0.0
    table["q5"], table["q95"] = np.percentile(flat, [5, 95], axis=0)
    if stats and arr.shape[1] >= 4:
        for name, values in convergence_stats(arr).items():
            table[name] = values
    return table


def worst_first(table: pd.DataFrame) -> pd.DataFrame:
    """A convergence table sorted by R-hat, largest first (NaN last)."""
    return table.sort_values("rhat", ascending=False, na_position="last").reset_index(drop=True)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """One row per variable: count, worst R-hat, smallest ESS, largest MCSE.

    Parameters
    ----------
    table : pandas.DataFrame
        A `convergence_table`.

    Returns
    -------
    pandas.DataFrame
        ``variable``, ``n`` and, when the table has R-hat, ``max_rhat``, ``min_ess_bulk``,
        ``min_ess_tail``, ``max_mcse_mean`` and the label of the ``worst`` quantity.
    """
    rows = []
    for name, g in table.groupby("variable", sort=False):
        row: dict[str, Any] = {"variable": name, "n": len(g)}
        if "rhat" in g:
            r = g["rhat"].to_numpy()
            row["max_rhat"] = float(np.nanmax(r)) if np.isfinite(r).any() else np.nan
            row["min_ess_bulk"] = float(np.nanmin(g["ess_bulk"])) if g["ess_bulk"].notna().any() else np.nan
            row["min_ess_tail"] = float(np.nanmin(g["ess_tail"])) if g["ess_tail"].notna().any() else np.nan
            row["max_mcse_mean"] = float(np.nanmax(g["mcse_mean"])) if g["mcse_mean"].notna().any() else np.nan
            row["worst"] = g["label"].iloc[int(np.nanargmax(r))] if np.isfinite(r).any() else ""
        rows.append(row)
    return pd.DataFrame(rows)


def chain_deviation(ds: xr.Dataset, max_entities: int, seed: int) -> np.ndarray:
    """Per chain: median |z| of its means against the other chains' (which chain is off).

    Parameters
    ----------
    ds : xarray.Dataset
        Per-draw quantities (the identified ones).
    max_entities, seed : int
        As in `convergence_table`.

    Returns
    -------
    numpy.ndarray
        ``(chain,)`` scores; zeros with a single chain.
    """
    arr, _ = flatten_quantities(ds, max_entities, seed)
    n_c = arr.shape[0]
    if n_c < 2 or arr.size == 0:
        return np.zeros(n_c)
    means = arr.mean(axis=1)  # (chain, K)
    within = np.sqrt(arr.var(axis=1, ddof=1).mean(axis=0)) + 1e-12
    score = []
    for c in range(n_c):
        others = np.delete(means, c, axis=0).mean(axis=0)
        score.append(float(np.median(np.abs(means[c] - others) / within)))
    return np.array(score)


def check_rhat(itab: pd.DataFrame, th: dict[str, float], deviation: np.ndarray,
               chain_labels: pd.Series) -> CheckResult:
    """"R-hat (identified)": do the chains agree on what the model identifies?

    ok at or below ``rhat_max``, fail above ``rhat_fail``, warn in between; the message
    names the chain that sits furthest from the others when it stands out (its deviation
    more than twice the median).

    Parameters
    ----------
    itab : pandas.DataFrame
        `convergence_table` of the identified quantities.
    th : dict
        Thresholds (`settings.resolve_thresholds`).
    deviation : numpy.ndarray
        `chain_deviation` of the same quantities.
    chain_labels : pandas.Series
        Chain labels, in chain order.

    Returns
    -------
    CheckResult
        One verdict, or none when no R-hat is finite (one chain, < 4 draws).
    """
    out = CheckResult()
    r = itab["rhat"].to_numpy()
    worst_r = float(np.nanmax(r)) if np.isfinite(r).any() else np.nan
    if not np.isfinite(worst_r):
        return out
    suspect = int(np.argmax(deviation)) if len(deviation) > 1 else None
    wl = itab.loc[int(np.nanargmax(r))]
    status = grade(worst_r <= th["rhat_max"], worst_r <= th["rhat_fail"])
    n_bad = int((r > th["rhat_max"]).sum())
    if status == "ok":
        msg = f"All {len(r)} identified quantities have R-hat ≤ {th['rhat_max']}: the chains agree on what the model identifies."
    else:
        msg = (f"{n_bad} of {len(r)} identified quantities have R-hat above {th['rhat_max']}; worst "
               f"{worst_r:.3g} ({wl['variable']}: {wl['label']}). The chains disagree")
        if suspect is not None and deviation[suspect] > 2 * np.median(deviation):
            msg += f"; chain {chain_labels.iloc[suspect]} sits furthest from the others"
        msg += (". Do not trust these summaries: run longer/more tuning, or inspect that chain." if status == "fail"
                else ". Borderline: more draws would help.")
    return out.add("R-hat (identified)", status, worst_r, f"≤ {th['rhat_max']} (fail > {th['rhat_fail']})", msg)


def check_ess(itab: pd.DataFrame, th: dict[str, float], kind: str) -> CheckResult:
    """"Bulk ESS (identified)" or "Tail ESS (identified)": the smallest effective sample size.

    ok at or above ``ess_min``, fail below ``ess_fail``, warn in between.

    Parameters
    ----------
    itab : pandas.DataFrame
        `convergence_table` of the identified quantities.
    th : dict
        Thresholds.
    kind : {"bulk", "tail"}
        Which ESS.

    Returns
    -------
    CheckResult
        One verdict, or none when no ESS is finite.
    """
    out = CheckResult()
    e = itab[f"ess_{kind}"].to_numpy()
    if not np.isfinite(e).any():
        return out
    worst_e = float(np.nanmin(e))
    wl = itab.loc[int(np.nanargmin(e))]
    status = grade(worst_e >= th["ess_min"], worst_e >= th["ess_fail"])
    msg = (f"Every identified quantity has {kind} ESS ≥ {th['ess_min']:g}." if status == "ok" else
           f"Smallest {kind} ESS {worst_e:.0f} ({wl['variable']}: {wl['label']}); "
           f"{int((e < th['ess_min']).sum())} quantities are below {th['ess_min']:g}. "
           + ("Estimates (especially intervals) are noisy: draw more or improve mixing." if kind == "tail"
              else "Means are noisy: draw more samples or improve mixing."))
    return out.add(f"{kind.capitalize()} ESS (identified)", status, worst_e,
                   f"≥ {th['ess_min']:g} (fail < {th['ess_fail']:g})", msg)


def check_mcse(itab: pd.DataFrame, th: dict[str, float]) -> CheckResult:
    """"MCSE (pass probabilities)": Monte Carlo error of the posterior-mean pass probabilities.

    warn above ``mcse_p_max`` (never fail: the noise is visible, not misleading).

    Parameters
    ----------
    itab : pandas.DataFrame
        `convergence_table` of the identified quantities.
    th : dict
        Thresholds.

    Returns
    -------
    CheckResult
        One verdict, or none without pass probabilities or MCSE.
    """
    out = CheckResult()
    pp = itab[itab["variable"] == "pass_probability"]
    if len(pp) and pp["mcse_mean"].notna().any():
        mc = float(pp["mcse_mean"].max())
        out.add("MCSE (pass probabilities)", "ok" if mc <= th["mcse_p_max"] else "warn", mc, f"≤ {th['mcse_p_max']}",
                f"Monte Carlo error of the posterior-mean pass probabilities is at most {mc:.2g}"
                + ("." if mc <= th["mcse_p_max"] else ": predicted probabilities carry visible simulation noise."))
    return out


def check_raw_convergence(post: xr.Dataset, aligned: xr.Dataset, perm_table: pd.DataFrame, th: dict[str, float],
                          *, max_states: int = MAX_STATES, seed: int = 0) -> CheckResult:
    """"R-hat (raw, aligned)": per-dimension coordinates after `align_chains`, and before.

    Only a warning: raw coordinates may still be mixed by a rotation the alignment cannot
    undo, and the identified quantities are what the verdicts rest on.

    Parameters
    ----------
    post : xarray.Dataset
        The posterior group as sampled.
    aligned : xarray.Dataset
        The same after `align_chains`.
    perm_table : pandas.DataFrame
        `align_chains`' per-chain table (no relabelling: "before" is not recomputed).
    th : dict
        Thresholds.
    max_states : int, default MAX_STATES
        Flat states whose coordinates enter the tables (random subsample).
    seed : int, default 0
        Seed of the subsamples.

    Returns
    -------
    CheckResult
        Tables ``raw_summary`` (with ``max_rhat_unaligned``) and ``raw``; one verdict
        when some R-hat is finite.
    """
    out = CheckResult()
    raw_names = [v for v in ALIGN_VARS if v in post]
    if not raw_names:
        return out
    picks = subsample(post.sizes.get("state", 0), max_states, seed + 4)

    def raw_ds(ds: xr.Dataset) -> xr.Dataset:
        sub = ds[raw_names]
        return sub.isel(state=picks) if "state" in sub.dims else sub

    rtab = convergence_table(raw_ds(aligned), seed=seed)
    # without relabelling, "before" is the same table: do not pay for it twice
    before = convergence_table(raw_ds(post), seed=seed) if perm_table["permuted"].any() else rtab
    rsum = summarise(rtab)
    bsum = summarise(before).set_index("variable")
    rsum.insert(2, "max_rhat_unaligned", rsum["variable"].map(bsum["max_rhat"]))
    out.tables["raw_summary"] = rsum
    out.tables["raw"] = worst_first(rtab)
    rr = rtab["rhat"].to_numpy()
    if np.isfinite(rr).any():
        worst = float(np.nanmax(rr))
        unal = float(np.nanmax(before["rhat"])) if before["rhat"].notna().any() else np.nan
        ok = worst <= th["rhat_max"]
        msg = (f"After aligning skill labels, raw coordinates have R-hat ≤ {worst:.3g}"
               + (f" (before alignment {unal:.3g})" if np.isfinite(unal) and unal > worst + 1e-3 else "")
               + ("." if ok else ". Per-dimension summaries remain uncertain (skills may be mixed by rotation); "
                  "rely on identified quantities."))
        out.add("R-hat (raw, aligned)", "ok" if ok else "warn", worst, f"≤ {th['rhat_max']}", msg)
    return out
