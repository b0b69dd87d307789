"""Quantities the model identifies, per draw: they do not change when skills are permuted or rotated.

Skill coordinates are not identified (DESIGN §1, "Symmetries"), so convergence is
judged first on these: pass probabilities and D-values of observed rows, |a|, |l|, |q|,
D(s_t, q) of lesson transitions, biases and σ_L.

With assessment biases the likelihood does not identify |a| and g_j separately: the length
of a requirement enters the pass logit only as −|a| (D = s·a/|a| − |a|), beside + g_j.
Only their sum is identified, so then the quantities are the assessment offset
g_j − |a_j| and the row's assessment logit D + g_j instead of |a|, g_j and D.  Judging
|a| and g_j apart judged how the sampler wanders along a ridge only the priors bound:
NUTS on 100 MoFaCTS students (4 × 1,000 draws, no divergences, pass probabilities
R-hat ≤ 1.005 and bulk ESS ≥ 846) failed on |a| (R-hat 1.05, bulk ESS 65) and g_j.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from bayes_lse.diagnostics.arrays import (
    as_array,
    dim_labels,
    group_of,
    state_owner,
    student_labels,
    subsample,
)
from bayes_lse.diagnostics.settings import MAX_OBS, MAX_TRANSITIONS
from bayes_lse.model import terms as eq
from bayes_lse.results.posterior import bias_draws, has_student_bias, has_student_states, state_draws

__all__ = ["identified_quantities"]


def identified_quantities(
    idata: xr.DataTree,
    *,
    max_obs: int = MAX_OBS,
    max_transitions: int = MAX_TRANSITIONS,
    seed: int = 0,
    length_and_bias: bool = False,
) -> xr.Dataset:
    """Per-draw quantities that do not change when skills are permuted or rotated.

    pass_probability, relevance (D(s, a)) of a random subsample of ≤ max_obs observed
    rows; prerequisite_relevance (D(s_t, q)) of ≤ max_transitions lesson transitions;
    requirement_norm |a|, gain_norm |l|, prerequisite_norm |q|; student bias and σ_L as
    they are.  With assessment biases (see the module docstring): assessment_logit
    (D + g_j) instead of relevance, assessment_offset (g_j − |a_j|) instead of |a| and
    g_j.  The subsample (fixed seed) keeps this cheap on large logs.

    ``length_and_bias=True`` adds relevance, |a| and g_j all the same: simulation-based
    calibration ranks them, as there the prior identifies them and every function of
    the parameters must be calibrated.

    Parameters
    ----------
    idata : xarray.DataTree
        The fit's DataTree.
    max_obs : int, default MAX_OBS
        Observed rows whose pass probability and D-value are kept.
    max_transitions : int, default MAX_TRANSITIONS
        Lesson transitions whose prerequisite satisfaction is kept.
    seed : int, default 0
        Seed of both subsamples.

    Returns
    -------
    xarray.Dataset
        One variable per kind of quantity, each ``(chain, draw, ...)``, labelled by student,
        assessment and lesson ids in its coordinates.
    """
    post = group_of(idata, "posterior")
    cd = group_of(idata, "constant_data")
    if post is None:
        raise ValueError("the DataTree has no posterior group")
    out: dict[str, xr.DataArray] = {}
    coords_cd = {"chain": post["chain"].values if "chain" in post.coords else np.arange(post.sizes["chain"]),
                 "draw": post["draw"].values if "draw" in post.coords else np.arange(post.sizes["draw"])}
    students = student_labels(idata)
    if cd is not None and "obs_state" in cd and has_student_states(idata) and "requirement" in post:
        n_obs = cd.sizes["obs"]
        rows = subsample(n_obs, max_obs, seed)
        st_i = np.asarray(cd["obs_state"].values)[rows].astype(int)
        as_i = np.asarray(cd["obs_assessment"].values)[rows].astype(int)
        su_i = (np.asarray(cd["obs_student"].values)[rows].astype(int) if "obs_student" in cd
                else state_owner(post, students)[st_i])
        need, inv = np.unique(st_i, return_inverse=True)
        s = state_draws(idata, need, stacked=False)[:, :, inv]
        a = as_array(post["requirement"], "assessment", "skill")[:, :, as_i]
        rel = eq.relevance(s, a)
        if has_student_bias(idata):
            need, inv = np.unique(su_i, return_inverse=True)
            gu = bias_draws(idata, need, stacked=False)[:, :, inv]
        else:
            gu = 0.0
        gj = as_array(post["assessment_bias"], "assessment")[:, :, as_i] if "assessment_bias" in post else 0.0
        if "obs_history" in cd and "history_success" in post:
            from bayes_lse.model.terms import HISTORY_COEFFICIENTS, history_logit

            h = np.asarray(cd["obs_history"].values)[rows]
            gj = gj + history_logit(h[None, None], [np.asarray(post[k].values)[..., None]
                                                    for k in HISTORY_COEFFICIENTS if k in post])
        p = eq.pass_probability(s, a, gu, gj)
        ass_lab = dim_labels(post, "assessment", post.sizes["assessment"])
        obs_coords = dict(coords_cd)
        obs_coords.update(
            obs=rows,
            obs_student=("obs", students[su_i] if len(students) > su_i.max(initial=-1) else su_i.astype(str)),
            obs_assessment=("obs", ass_lab[as_i]),
        )
        io = group_of(idata, "observed_data")
        if io is not None and "outcome" in io:
            obs_coords["outcome"] = ("obs", np.asarray(io["outcome"].values)[rows])
        out["pass_probability"] = xr.DataArray(p, dims=("chain", "draw", "obs"), coords=obs_coords)
        if "assessment_bias" in post:
            g_only = as_array(post["assessment_bias"], "assessment")[:, :, as_i]
            out["assessment_logit"] = xr.DataArray(rel + g_only, dims=("chain", "draw", "obs"), coords=obs_coords)
        if "assessment_bias" not in post or length_and_bias:
            out["relevance"] = xr.DataArray(rel, dims=("chain", "draw", "obs"), coords=obs_coords)
    if "requirement" in post and "assessment_bias" in post:
        out["assessment_offset"] = xr.DataArray(
            as_array(post["assessment_bias"], "assessment") - eq.norm(as_array(post["requirement"], "assessment", "skill")),
            dims=("chain", "draw", "assessment"),
            coords={**coords_cd, "assessment": dim_labels(post, "assessment", post.sizes["assessment"])},
        )
    if "requirement" in post and ("assessment_bias" not in post or length_and_bias):
        out["requirement_norm"] = xr.DataArray(
            eq.norm(as_array(post["requirement"], "assessment", "skill")),
            dims=("chain", "draw", "assessment"),
            coords={**coords_cd, "assessment": dim_labels(post, "assessment", post.sizes["assessment"])},
        )
    lesson_lab = dim_labels(post, "lesson", post.sizes["lesson"]) if "lesson" in post.sizes else None
    if "gain" in post:
        out["gain_norm"] = xr.DataArray(
            eq.norm(as_array(post["gain"], "lesson", "skill")),
            dims=("chain", "draw", "lesson"), coords={**coords_cd, "lesson": lesson_lab},
        )
    if "prerequisite" in post:
        q = as_array(post["prerequisite"], "lesson", "skill")
        out["prerequisite_norm"] = xr.DataArray(
            eq.norm(q), dims=("chain", "draw", "lesson"), coords={**coords_cd, "lesson": lesson_lab}
        )
        if cd is not None and "transition_lesson" in cd and has_student_states(idata):
            les = np.asarray(cd["transition_lesson"].values).astype(int)
            with_lesson = np.flatnonzero(les >= 0)
            pick = with_lesson[subsample(len(with_lesson), max_transitions, seed + 1)]
            if len(pick):
                frm = np.asarray(cd["transition_from"].values).astype(int)[pick]
                need, inv = np.unique(frm, return_inverse=True)
                s = state_draws(idata, need, stacked=False)[:, :, inv]
                owner = state_owner(post, students)[frm]
                out["prerequisite_relevance"] = xr.DataArray(
                    eq.relevance(s, q[:, :, les[pick]]),
                    dims=("chain", "draw", "transition"),
                    coords={**coords_cd, "transition": pick,
                            "transition_student": ("transition", np.where(owner >= 0, students[np.maximum(owner, 0)], "?")),
                            "transition_lesson": ("transition", lesson_lab[les[pick]])},
                )
    for v in ("student_bias", "assessment_bias", "learning_noise", *eq.HISTORY_COEFFICIENTS, "tag_bias",
              "sigma_tag_bias"):
        if v in post and (v != "assessment_bias" or length_and_bias):
            out[v] = post[v]
    return xr.Dataset(out)
