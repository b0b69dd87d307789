"""NUTS sampler health, per chain: divergences (and what differs in divergent draws),
tree-depth saturation, E-BFMI.

Reads every sampler's statistics: ``diverging`` and ``energy`` everywhere, the tree
depth as ``tree_depth`` (pymc, numpyro) or ``depth`` + ``maxdepth_reached`` (nutpie).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr

from bayes_lse.diagnostics.arrays import (
    as_array,
    flatten_quantities,
    state_owner,
    state_steps,
    student_labels,
    subsample,
)
from bayes_lse.diagnostics.result import CheckResult
from bayes_lse.diagnostics.settings import MAX_ENTITIES, MAX_STATES
from bayes_lse.model import terms as eq

__all__ = [
    "check_divergences",
    "check_ebfmi",
    "check_tree_depth",
    "divergence_implicated",
    "max_treedepth",
    "sampler_table",
]


def _first(ds: xr.Dataset, *names: str) -> xr.DataArray | None:
    for n in names:
        if n in ds:
            return ds[n]
    return None


def max_treedepth(ss: xr.Dataset, fit_config: dict) -> int:
    """The sampler's maximum tree depth: the fit config's, else the sampler's settings, else 10.

    Parameters
    ----------
    ss : xarray.Dataset
        The ``sample_stats`` group.
    fit_config : dict
        The fit's config (root attr ``fit_config``).

    Returns
    -------
    int
    """
    for k in ("max_treedepth", "maxdepth"):
        if k in fit_config and fit_config[k]:
            return int(fit_config[k])
    try:
        settings = json.loads(ss.attrs.get("inference_library_settings", "{}"))
        return int(settings.get("settings", {}).get("maxdepth", 10))
    except (TypeError, ValueError, AttributeError):
        return 10


def sampler_table(ss: xr.Dataset, fit_config: dict) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray | None]:
    """Per-chain sampler statistics.

    Parameters
    ----------
    ss : xarray.Dataset
        The ``sample_stats`` group.
    fit_config : dict
        The fit's config (for the maximum tree depth).

    Returns
    -------
    table : pandas.DataFrame
        One row per chain: ``chain``, ``draws`` and, as the statistics allow, ``divergent``
        (+ ``_pct``), ``mean_tree_depth``, ``max_tree_depth``, ``saturated`` (+ ``_pct``;
        attr ``max_treedepth``), ``e_bfmi`` (arviz_stats.bfmi), ``step_size``.
    divergent_draws : pandas.DataFrame
        ``chain``, ``draw`` of every divergent transition (first 1,000).
    diverging : numpy.ndarray or None
        ``(chain, draw)`` booleans, None without a ``diverging`` statistic.
    """
    n_c = ss.sizes.get("chain", 1)
    n_d = ss.sizes.get("draw", 0)
    chain_labels = ss["chain"].values if "chain" in ss.coords else np.arange(n_c)
    table = pd.DataFrame({"chain": chain_labels, "draws": n_d})
    div = _first(ss, "diverging")
    div_arr = None
    div_rows = pd.DataFrame(columns=["chain", "draw"])
    if div is not None:
        div_arr = as_array(div).astype(bool)
        table["divergent"] = div_arr.sum(axis=1)
        table["divergent_pct"] = 100.0 * div_arr.mean(axis=1)
        c_i, d_i = np.nonzero(div_arr)
        draw_labels = ss["draw"].values if "draw" in ss.coords else np.arange(n_d)
        div_rows = pd.DataFrame({"chain": chain_labels[c_i], "draw": draw_labels[d_i]}).head(1000)
    depth = _first(ss, "tree_depth", "depth")
    sat = _first(ss, "reached_max_treedepth", "maxdepth_reached")
    max_depth = max_treedepth(ss, fit_config)
    if depth is not None:
        dep = as_array(depth).astype(float)
        table["mean_tree_depth"] = dep.mean(axis=1)
        table["max_tree_depth"] = dep.max(axis=1)
    if sat is not None or depth is not None:
        s_arr = as_array(sat).astype(bool) if sat is not None else as_array(depth) >= max_depth
        table["saturated"] = s_arr.sum(axis=1)
        table["saturated_pct"] = 100.0 * s_arr.mean(axis=1)
        table.attrs["max_treedepth"] = max_depth
    energy = _first(ss, "energy")
    if energy is not None and n_d >= 2:
        import arviz_stats as azs

        e = as_array(energy).astype(float)
        table["e_bfmi"] = np.asarray(azs.bfmi(e, chain_axis=0, draw_axis=1), dtype=float).reshape(-1)
    step = _first(ss, "step_size")
    if step is not None:
        table["step_size"] = as_array(step).astype(float).mean(axis=1)
    return table, div_rows, div_arr


def divergence_implicated(quant: xr.Dataset, div: np.ndarray, top: int = 15) -> pd.DataFrame:
    """Quantities whose draws differ most between divergent and other transitions.

    Parameters
    ----------
    quant : xarray.Dataset
        Per-draw quantities (identified ones, plus state norms).
    div : numpy.ndarray
        ``(chain, draw)`` booleans.
    top : int, default 15
        Rows kept.

    Returns
    -------
    pandas.DataFrame
        ``variable``, ``label``, ``student``, ``z`` = (mean in divergent draws − mean
        elsewhere) / sd, ``mean_divergent``, ``mean_other``; largest |z| first; empty
        when no draw or every draw diverged.
    """
    arr, labels = flatten_quantities(quant, MAX_ENTITIES * 4, 0)
    if arr.size == 0 or not div.any() or div.all():
        return pd.DataFrame(columns=["variable", "label", "student", "z", "mean_divergent", "mean_other"])
    flat = arr.reshape(-1, arr.shape[2])
    mask = div.reshape(-1)
    m1, m0 = flat[mask].mean(axis=0), flat[~mask].mean(axis=0)
    sd = flat.std(axis=0) + 1e-12
    z = (m1 - m0) / sd
    out = labels.assign(z=z, mean_divergent=m1, mean_other=m0)
    out = out.iloc[np.argsort(-np.abs(z))].head(top).reset_index(drop=True)
    return out


def _with_state_norms(idata: xr.DataTree, post: xr.Dataset, ident: xr.Dataset, max_states: int,
                      seed: int) -> xr.Dataset:
    """The identified quantities plus |s| of a subsample of states, labelled "<student> at step t"."""
    quant = ident.copy()
    if "student_state" in post and post.sizes.get("state", 0):
        picks = subsample(post.sizes["state"], max_states, seed + 5)
        owner = state_owner(post, student_labels(idata))[picks]
        labs = student_labels(idata)
        sn = eq.norm(as_array(post["student_state"].isel(state=picks), "state", "skill"))
        who = np.where(owner >= 0, labs[np.maximum(owner, 0)], "?")
        steps = state_steps(post)[picks]
        quant["state_norm"] = xr.DataArray(
            sn, dims=("chain", "draw", "student_step"),
            coords={"student_step": [f"{w} at step {t}" for w, t in zip(who, steps)],
                    "state_student": ("student_step", who)})
    return quant


def check_divergences(idata: xr.DataTree, post: xr.Dataset, ident: xr.Dataset, chains: pd.DataFrame,
                      divergent_draws: pd.DataFrame, diverging: np.ndarray | None, th: dict[str, float],
                      *, max_states: int = MAX_STATES, seed: int = 0) -> CheckResult:
    """"Divergences": how many transitions diverged, in which chains, and what differs in them.

    Fails above ``max_divergences``: the sampler could not follow the posterior's
    curvature there, so it may have missed part of it.

    Parameters
    ----------
    idata : xarray.DataTree
        The fit's DataTree (student labels).
    post : xarray.Dataset
        Its posterior group.
    ident : xarray.Dataset
        `identified_quantities` of the fit.
    chains, divergent_draws, diverging
        What `sampler_table` returns.
    th : dict
        Thresholds.
    max_states : int, default MAX_STATES
        States whose norm |s| is compared in divergent and other draws.
    seed : int, default 0
        Seed of that subsample.

    Returns
    -------
    CheckResult
        Table ``divergent_draws`` and, on failure, ``divergence_implicated``; one verdict
        (none without a ``diverging`` statistic).
    """
    out = CheckResult()
    if diverging is None:
        return out
    n_div = int(diverging.sum())
    out.tables["divergent_draws"] = divergent_draws
    total = diverging.size
    if n_div <= th["max_divergences"]:
        return out.add("Divergences", "ok", n_div, f"≤ {th['max_divergences']:g}",
                       f"No divergent transitions in {total} draws." if n_div == 0 else
                       f"{n_div} divergent transitions in {total} draws (allowed by threshold).")
    where = ", ".join(f"chain {c}: {k}" for c, k in zip(chains["chain"], chains["divergent"]) if k)
    # what is special about divergent draws
    quant = _with_state_norms(idata, post, ident, max_states, seed)
    imp = divergence_implicated(quant, diverging)
    if "state_norm" in quant and len(imp):
        sl = dict(zip(quant["student_step"].values.astype(str), quant["state_student"].values))
        is_state = imp["variable"] == "state_norm"
        imp.loc[is_state, "student"] = [sl.get(lbl, "") for lbl in imp.loc[is_state, "label"]]
    out.tables["divergence_implicated"] = imp
    studs = [s for s in dict.fromkeys(imp["student"].astype(str)) if s][:3] if len(imp) else []
    msg = (f"{n_div} of {total} transitions diverged ({100 * n_div / total:.2g}%; {where}). "
           "The sampler could not follow the posterior's curvature there, so it may have missed part of it.")
    if len(imp):
        msg += f" Most different in divergent draws: {imp['variable'].iloc[0]} ({imp['label'].iloc[0]})"
        msg += f"; students involved: {', '.join(studs)}." if studs else "."
    msg += " Raise target_accept or reparameterise."
    return out.add("Divergences", "fail", n_div, f"≤ {th['max_divergences']:g}", msg)


def check_tree_depth(chains: pd.DataFrame, th: dict[str, float]) -> CheckResult:
    """"Tree depth saturation": the fraction of draws at the maximum tree depth.

    Only a warning above ``treedepth_saturation_max``: trajectories cut short cost
    efficiency, not validity.

    Parameters
    ----------
    chains : pandas.DataFrame
        `sampler_table`'s per-chain table.
    th : dict
        Thresholds.

    Returns
    -------
    CheckResult
        One verdict, none without tree-depth statistics.
    """
    out = CheckResult()
    if "saturated" not in chains:
        return out
    frac = float(chains["saturated"].sum() / max(chains["draws"].sum(), 1))
    md = chains.attrs.get("max_treedepth", 10)
    ok = frac <= th["treedepth_saturation_max"]
    return out.add("Tree depth saturation", "ok" if ok else "warn", frac,
                   f"≤ {th['treedepth_saturation_max']:g} of draws",
                   (f"No draw hit the maximum tree depth ({md})." if frac == 0 else
                    f"{100 * frac:.2g}% of draws hit the maximum tree depth ({md})")
                   + ("" if ok else ": trajectories were cut short, which costs efficiency (not validity); "
                      "raise max_treedepth or reparameterise."))


def check_ebfmi(chains: pd.DataFrame, th: dict[str, float]) -> CheckResult:
    """"E-BFMI": energy Bayesian fraction of missing information, per chain.

    Fails below ``ebfmi_min`` in any chain: momentum resampling then explores the
    posterior's energy levels poorly, typical of heavy tails or funnels.

    Parameters
    ----------
    chains : pandas.DataFrame
        `sampler_table`'s per-chain table.
    th : dict
        Thresholds.

    Returns
    -------
    CheckResult
        One verdict, none without an energy statistic.
    """
    out = CheckResult()
    if "e_bfmi" not in chains:
        return out
    eb = chains["e_bfmi"].to_numpy()
    low = [str(c) for c, v in zip(chains["chain"], eb) if v < th["ebfmi_min"]]
    worst = float(np.nanmin(eb))
    return out.add("E-BFMI", "ok" if not low else "fail", worst, f"≥ {th['ebfmi_min']}",
                   f"E-BFMI is at least {worst:.2f} in every chain: momentum resampling explores the energy well."
                   if not low else
                   f"E-BFMI below {th['ebfmi_min']} in chain(s) {', '.join(low)} (min {worst:.2f}): the sampler "
                   "explores the posterior's energy levels poorly, typical of heavy tails or funnels; reparameterise.")
