"""Posterior predictive checks from the DataTree: pass probabilities of every observed row per
draw, Bernoulli replicates, and the calibration and pass-rate tables built from them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from bayes_lse.diagnostics.arrays import (
    dim_labels,
    group_of,
    student_labels,
    thin_draws,
)
from bayes_lse.diagnostics.calibration import calibration_tables, rate_table
from bayes_lse.diagnostics.settings import MAX_PREDICTIVE_CELLS, MAX_PREDICTIVE_DRAWS, MAX_PREDICTIVE_ROWS
from bayes_lse.model import terms as eq
from bayes_lse.results.posterior import bias_draws, has_student_bias, state_draws

__all__ = ["Predictive", "predictive_checks", "row_logits", "sample_index"]


@dataclass
class Predictive:
    """Posterior predictive material shared by the tables and the plots."""

    p_mean: np.ndarray  # (N,) posterior mean pass probability of every observed row
    outcome: np.ndarray  # (N,)
    student: np.ndarray  # (N,) codes
    assessment: np.ndarray  # (N,) codes
    n_draws: int  # draws used
    logit_draws: np.ndarray | None = field(default=None, repr=False)  # (S, N) if kept


def row_logits(post: xr.Dataset, cd: xr.Dataset, chains: np.ndarray, draws: np.ndarray,
               rows: np.ndarray, idata: xr.DataTree | None = None) -> np.ndarray:
    """Pass logits D(s,a)+g_u+g_j (+ the history term) of the given observed rows for the chosen draws: (S, len(rows)).

    Parameters
    ----------
    post : xarray.Dataset
        The posterior group.
    cd : xarray.Dataset
        The ``constant_data`` group (``obs_state``, ``obs_assessment``, ``obs_student``).
    chains, draws : numpy.ndarray
        ``(S,)`` chain and draw index of every sample used.
    rows : numpy.ndarray
        Observed rows.
    idata : xarray.DataTree, optional
        The whole tree: needed for a fit that keeps its students' posterior as
        parameters (`results.posterior.STUDENT_POSTERIOR`), whose states and biases are
        drawn for these rows only.

    Returns
    -------
    numpy.ndarray
        ``(S, len(rows))`` logits.
    """
    st_i = np.asarray(cd["obs_state"].values)[rows].astype(int)
    as_i = np.asarray(cd["obs_assessment"].values)[rows].astype(int)
    su_i = np.asarray(cd["obs_student"].values)[rows].astype(int)
    sel = {"chain": xr.DataArray(chains, dims="sample"), "draw": xr.DataArray(draws, dims="sample")}

    def take(name: str, *tail: str) -> np.ndarray:
        da = post[name].isel(sel)
        return np.asarray(da.transpose("sample", *tail).values)

    if "student_state" in post or idata is None:
        s = take("student_state", "state", "skill")[:, st_i]
    else:
        need, inv = np.unique(st_i, return_inverse=True)
        s = state_draws(idata, need, samples=(chains, draws))[:, inv]
    a = take("requirement", "assessment", "skill")[:, as_i]
    logit = eq.pass_logit(s, a)
    if "student_bias" in post:
        logit = logit + take("student_bias", "student")[:, su_i]
    elif idata is not None and has_student_bias(idata):
        need, inv = np.unique(su_i, return_inverse=True)
        logit = logit + bias_draws(idata, need, samples=(chains, draws))[:, inv]
    if "assessment_bias" in post:
        logit = logit + take("assessment_bias", "assessment")[:, as_i]
    if "history_success" in post and "obs_history" in cd:
        # the history term (γ_s·log(1+S) + γ_f·log(1+F) + γ_r·R + practice, model.terms.history_logit).  Without
        # it every predictive check of a history fit was off: a NUTS fit of 100 MoFaCTS
        # students flagged 100 % of students' and 85 % of items' pass rates and 90 % of the
        # calibration bins, and PSIS-LOO scored a different model from the one fitted.
        counts = np.asarray(cd["obs_history"].values)[rows]
        logit = logit + eq.history_logit(counts[None], [take(k)[:, None] for k in eq.HISTORY_COEFFICIENTS
                                                         if k in post])
    return logit


def sample_index(post: xr.Dataset, max_total: int) -> tuple[np.ndarray, np.ndarray]:
    """Chain and draw index of ≤ `max_total` evenly thinned samples (the same draws in every chain).

    Parameters
    ----------
    post : xarray.Dataset
        The posterior group.
    max_total : int
        Cap on the number of samples.

    Returns
    -------
    chains, draws : numpy.ndarray
        ``(S,)`` each.
    """
    n_c, n_d = post.sizes["chain"], post.sizes["draw"]
    d_idx = thin_draws(n_c, n_d, max_total)
    chains = np.repeat(np.arange(n_c), len(d_idx))
    draws = np.tile(d_idx, n_c)
    return chains, draws


def predictive_checks(
    idata: xr.DataTree,
    *,
    max_draws: int = MAX_PREDICTIVE_DRAWS,
    n_bins: int = 10,
    min_answers: int = 5,
    seed: int = 0,
) -> tuple[dict[str, pd.DataFrame], Predictive | None]:
    """Calibration (binned and PAV), per-student and per-assessment pass-rate checks.

    Uses ≤ max_draws evenly thinned draws (fewer on very large logs, so that draws ×
    rows ≤ MAX_PREDICTIVE_CELLS) and Bernoulli replicates of every observed answer.

    Parameters
    ----------
    idata : xarray.DataTree
        The fit's DataTree.
    max_draws : int, default MAX_PREDICTIVE_DRAWS
        Draws used at most.
    n_bins : int, default 10
        Calibration bins.
    min_answers : int, default 5
        Students / assessments with fewer answers are not judged.
    seed : int, default 0
        Seed of the replicates.

    Returns
    -------
    tables : dict of pandas.DataFrame
        ``calibration`` (attr ``source`` = ``"in-sample"``), ``pava``, ``students``,
        ``assessments``; empty without observed data.
    predictive : Predictive or None
        Mean pass probability, outcome and codes of every observed row.
    """
    post = group_of(idata, "posterior")
    cd = group_of(idata, "constant_data")
    obs = group_of(idata, "observed_data")
    if post is None or cd is None or obs is None or "outcome" not in obs or "obs_state" not in cd:
        return {}, None
    y = np.asarray(obs["outcome"].values, dtype=float)
    n = len(y)
    if n == 0:
        return {}, None
    student = np.asarray(cd["obs_student"].values).astype(int)
    assessment = np.asarray(cd["obs_assessment"].values).astype(int)
    keep = _student_sample(student, MAX_PREDICTIVE_ROWS, seed)
    if keep is not None:  # every answer of a random set of students: the per-student check stays whole
        y, student, assessment = y[keep], student[keep], assessment[keep]
        n = len(y)
    budget = min(max_draws, max(20, MAX_PREDICTIVE_CELLS // n))
    chains, draws = sample_index(post, budget)
    rng = np.random.default_rng(seed)
    p_draws = np.empty((len(chains), n))
    chunk = max(1, 2_000_000 // max(len(chains), 1))
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        p_draws[:, rows] = eq.sigmoid(row_logits(post, cd, chains, draws, rows if keep is None else keep[rows], idata))
    # several Bernoulli replicates per draw when draws are few (MAP has one)
    reps = max(1, int(np.ceil(budget / len(chains))))
    rep_of = np.repeat(np.arange(len(chains)), reps)
    y_rep = (rng.random((len(rep_of), n)) < p_draws[rep_of]).astype(float)
    p_mean = p_draws.mean(axis=0)
    tables: dict[str, pd.DataFrame] = {}

    tables["calibration"], tables["pava"] = calibration_tables(p_mean, y, y_rep, n_bins=n_bins, seed=seed)
    tables["calibration"].attrs["source"] = "in-sample"

    tables["students"] = rate_table(student, student_labels(idata), y, p_draws, y_rep, "student", min_answers)
    ass_labels = dim_labels(post, "assessment", post.sizes.get("assessment", int(assessment.max()) + 1))
    tables["assessments"] = rate_table(assessment, ass_labels, y, p_draws, y_rep, "assessment", min_answers)
    if keep is not None:
        note = (f"the answers of a random {len(np.unique(student)):,} of {len(student_labels(idata)):,} students "
                f"({n:,} of {len(obs['outcome']):,} answers; MAX_PREDICTIVE_ROWS)")
        for t in tables.values():
            t.attrs["sample"] = note
    pred = Predictive(p_mean=p_mean, outcome=y, student=student, assessment=assessment, n_draws=len(chains))
    return tables, pred


def _student_sample(student: np.ndarray, max_rows: int, seed: int) -> np.ndarray | None:
    """Rows of a random set of students holding about `max_rows` answers (None when the
    log has no more than that): at 25M interactions 20 draws of every answer and their
    replicates would take 5 GB."""
    n = len(student)
    if n <= max_rows:
        return None
    counts = np.bincount(student)
    order = np.random.default_rng(seed + 11).permutation(len(counts))
    take = order[: int(np.searchsorted(np.cumsum(counts[order]), max_rows)) + 1]
    chosen = np.zeros(len(counts), dtype=bool)
    chosen[take] = True
    return np.flatnonzero(chosen[student])
