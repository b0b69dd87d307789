"""Convergence and predictive checks of a fitted LSE posterior, as labelled tables.

Skill coordinates are not identified (DESIGN §1, "Symmetries"): permuting skill
dimensions changes nothing in the likelihood or the priors, so chains may settle
on different labelings.  Everything here therefore looks first at quantities the
model identifies (pass probabilities and D-values of observed rows, |a|, |l|, |q|,
biases, σ_L) and only then at raw coordinates, after relabelling the skills of each
chain to match a reference (`align_chains`).

The public entry point is `diagnose(idata, **thresholds) -> Diagnostics`; it never
prints.  Work is capped (rows, states, draws: see the ``MAX_*`` constants) so that a
1,000-student NUTS fit is diagnosed in seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import sparse
from scipy.fft import next_fast_len
from scipy.optimize import isotonic_regression, linear_sum_assignment
from scipy.special import ndtri

from bayes_lse.model import terms as eq

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Diagnostics",
    "align_chains",
    "calibration_tables",
    "convergence_stats",
    "convergence_table",
    "diagnose",
    "identified_quantities",
    "predictive_checks",
    "student_labels",
]

SAMPLE_DIMS = ("chain", "draw")
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
#: Rows used for the PAV calibration curve (random subsample beyond).
MAX_PAVA_ROWS = 20_000
#: Cap on draws × rows of the pointwise log-likelihood for PSIS-LOO; beyond it a
#: random subsample of rows is used and the ELPD is scaled to all rows.
MAX_LOO_CELLS = 4_000_000
MAX_LOO_DRAWS = 1000

STATUS_ORDER = {"ok": 0, "warn": 1, "fail": 2}

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
    "ppc_min_answers": 5,  # entities with fewer answers are not judged
    "pareto_k_max": 0.7,
    "advi_rel_tol": 0.01,  # relative change of windowed mean loss at the end
    "map_grad_norm_max": 0.1,
    "map_objective_tol": 1.0,  # starts within this of the best objective "agree"
}

TABLE_INFO: dict[str, tuple[str, str]] = {
    "identified_summary": (
        "Convergence of identified quantities",
        "R-hat, ESS and MCSE per kind of quantity that does not depend on how skills are labelled.",
    ),
    "identified": (
        "Identified quantities, worst first",
        "One row per quantity; sorted by R-hat (worst first).",
    ),
    "raw_summary": (
        "Raw coordinates after aligning skills across chains",
        "Per-dimension parameters; R-hat before and after relabelling skills chain by chain.",
    ),
    "raw": ("Raw coordinates (aligned), worst first", "One row per coordinate; sorted by R-hat."),
    "alignment": (
        "Skill alignment",
        "Which chains had their skill labels permuted to match the reference (aligned skill k = original skill permutation[k]).",
    ),
    "chains": ("Sampler, per chain", "Divergences, tree depth, E-BFMI and how far each chain sits from the others."),
    "divergent_draws": ("Divergent transitions", "Chain and draw of every divergent transition (capped)."),
    "divergence_implicated": (
        "Quantities that differ most in divergent draws",
        "z = (mean in divergent draws − mean elsewhere) / sd; large |z| points at where the sampler struggles.",
    ),
    "advi": ("ADVI convergence", "Summary of the loss (negative ELBO) history."),
    "loss_history": ("ADVI loss history", "Loss (negative ELBO) at every iteration."),
    "map": ("MAP optimiser, per start", "L-BFGS-B result of every start; the best one is kept."),
    "calibration": (
        "Calibration (binned)",
        "Observed pass rate against the mean predicted pass probability (leave-one-out when PSIS-LOO is "
        "available, else in-sample), with 90% predictive intervals.",
    ),
    "students": (
        "Per-student pass rates",
        "Observed against predicted pass rate with 90% posterior predictive interval; the most surprising first.",
    ),
    "assessments": (
        "Per-assessment pass rates",
        "Observed against predicted pass rate with 90% posterior predictive interval; the most surprising first.",
    ),
    "loo": ("PSIS-LOO", "Expected log pointwise predictive density of held-out answers (ArviZ)."),
    "pareto_k": ("Pareto k", "How reliable each row's importance-sampling LOO estimate is."),
    "pareto_k_worst": ("Rows with the largest Pareto k", "The answers LOO struggles with most."),
}


# --------------------------------------------------------------------------- helpers
def group_of(idata: xr.DataTree, name: str) -> xr.Dataset | None:
    if name in idata.children:
        return idata[name].to_dataset()
    return None


def json_attr(idata: xr.DataTree, key: str) -> dict[str, Any]:
    raw = idata.attrs.get(key)
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        out = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}


def _method(idata: xr.DataTree) -> str:
    method = str(idata.attrs.get("method", "")).lower()
    if method not in ("map", "advi", "nuts"):
        post = group_of(idata, "posterior")
        if post is not None and post.sizes.get("draw", 1) == 1:
            return "map"
        return "nuts" if "sample_stats" in idata.children else "advi"
    return method


def dim_labels(ds: xr.Dataset | None, dim: str, n: int) -> np.ndarray:
    if ds is not None and dim in ds.coords and ds[dim].ndim == 1 and ds[dim].size == n:
        return np.asarray(ds[dim].values).astype(str)
    return np.array([str(i) for i in range(n)], dtype=object).astype(str)


def student_labels(idata: xr.DataTree) -> np.ndarray:
    """Student ids indexed by the integer code used in `constant_data.obs_student`."""
    post = group_of(idata, "posterior")
    if post is not None and "student" in post.coords:
        return np.asarray(post["student"].values).astype(str)
    inter = group_of(idata, "interactions")
    if inter is not None and "student" in inter and "student_id" in inter:
        codes = np.asarray(inter["student"].values).astype(int)
        ids = np.asarray(inter["student_id"].values).astype(str)
        n = int(codes.max()) + 1 if codes.size else 0
        out = np.array([str(i) for i in range(n)], dtype=object)
        out[codes] = ids
        return out.astype(str)
    if post is not None and "state_student" in post.coords:
        vals = np.asarray(post["state_student"].values)
        _, first = np.unique(vals.astype(str), return_index=True)
        return vals.astype(str)[np.sort(first)]
    cd = group_of(idata, "constant_data")
    n = int(cd["obs_student"].max()) + 1 if cd is not None and "obs_student" in cd else 0
    return np.array([str(i) for i in range(n)]).astype(str)


def state_owner(post: xr.Dataset, students: np.ndarray) -> np.ndarray:
    """Integer student code of every flat state (−1 where unknown)."""
    n_states = post.sizes.get("state", 0)
    if "state_student" not in post.coords:
        return np.full(n_states, -1)
    vals = np.asarray(post["state_student"].values)
    if np.issubdtype(vals.dtype, np.integer) and not np.all(np.isin(vals.astype(str), students)):
        return vals.astype(int)
    lookup = {s: i for i, s in enumerate(students)}
    return np.array([lookup.get(str(v), -1) for v in vals], dtype=int)


def state_steps(post: xr.Dataset) -> np.ndarray:
    if "state_step" in post.coords:
        return np.asarray(post["state_step"].values).astype(int)
    return np.zeros(post.sizes.get("state", 0), dtype=int)


def _subsample(n: int, cap: int, seed: int) -> np.ndarray:
    """Sorted random subset of range(n) of size ≤ cap (all of it when n ≤ cap)."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


def thin_draws(n_chain: int, n_draw: int, max_total: int) -> np.ndarray:
    """Evenly spaced draw indices (the same in every chain) keeping ≤ max_total samples."""
    per_chain = max(1, min(n_draw, max_total // max(n_chain, 1)))
    return np.unique(np.linspace(0, n_draw - 1, per_chain).round().astype(int))


def as_array(da: xr.DataArray, *tail: str) -> np.ndarray:
    """Values with chain, draw first and the named dims last, in that order."""
    return np.asarray(da.transpose("chain", "draw", ..., *tail).values)


def _status(value: float, ok: bool, warn: bool) -> str:
    if ok:
        return "ok"
    return "warn" if warn else "fail"


# --------------------------------------------------------------------------- alignment
ALIGN_VARS = ("requirement", "gain", "prerequisite", "student_state")


def align_chains(idata: xr.DataTree | xr.Dataset) -> tuple[xr.Dataset, pd.DataFrame]:
    """Relabel the skills of each chain to match the others (Hungarian assignment).

    Per chain, the posterior means of requirement/gain/prerequisite/student_state
    are concatenated per skill (each variable weighted equally); the assignment
    minimising the squared distance to a reference maps the chain's skills onto the
    reference's.  The reference is refined once (mean of aligned chains) and the
    labelling shared by most chains is kept as is, so the odd chain is the one
    reported as permuted.  Returns the aligned posterior and a table per chain.
    """
    post = idata if isinstance(idata, xr.Dataset) else group_of(idata, "posterior")
    if post is None:
        raise ValueError("the DataTree has no posterior group")
    n_chain = post.sizes.get("chain", 1)
    d = post.sizes.get("skill", 0)
    names = [v for v in ALIGN_VARS if v in post and "skill" in post[v].dims]
    ident = list(range(d))
    if n_chain < 2 or d < 2 or not names:
        table = pd.DataFrame(
            {"chain": np.arange(n_chain), "permutation": [str(ident)] * n_chain,
             "permuted": False, "mismatch_before": 0.0, "mismatch_after": 0.0}
        )
        return post, table

    blocks = []
    for v in names:
        m = as_array(post[v], "skill").mean(axis=1).reshape(n_chain, -1, d)  # (chain, entity, skill)
        blocks.append(m / np.sqrt(m.shape[1]))
    feats = np.concatenate(blocks, axis=1)  # (chain, E, d)

    def assign(ref: np.ndarray, f: np.ndarray) -> np.ndarray:
        cost = ((ref[:, :, None] - f[:, None, :]) ** 2).sum(axis=0)  # (ref skill, chain skill)
        rows, cols = linear_sum_assignment(cost)
        return cols[np.argsort(rows)]

    perms = np.tile(np.arange(d), (n_chain, 1))
    ref = feats[0]
    for _ in range(2):
        perms = np.array([assign(ref, feats[c]) for c in range(n_chain)])
        ref = np.mean([feats[c][:, perms[c]] for c in range(n_chain)], axis=0)
    # keep the labelling most chains share: compose with the inverse of the modal permutation
    keys, counts = np.unique(perms, axis=0, return_counts=True)
    modal = keys[np.argmax(counts)]
    inv = np.argsort(modal)
    perms = np.array([p[inv] for p in perms])
    ref = np.mean([feats[c][:, perms[c]] for c in range(n_chain)], axis=0)

    def mismatch(f: np.ndarray) -> float:
        return float(np.sqrt(((f - ref) ** 2).sum()))

    before = [mismatch(feats[c]) for c in range(n_chain)]
    after = [mismatch(feats[c][:, perms[c]]) for c in range(n_chain)]
    permuted = [not np.array_equal(perms[c], np.arange(d)) for c in range(n_chain)]

    aligned = post
    if any(permuted):
        new_vars = {}
        for v in names:
            da = post[v].transpose("chain", ..., "skill")
            vals = np.array(da.values, copy=True)
            for c in range(n_chain):
                if permuted[c]:
                    vals[c] = vals[c][..., perms[c]]
            new_vars[v] = da.copy(data=vals).transpose(*post[v].dims)
        aligned = post.assign(new_vars)
    chain_labels = post["chain"].values if "chain" in post.coords else np.arange(n_chain)
    table = pd.DataFrame(
        {
            "chain": chain_labels,
            "permutation": [str(list(map(int, p))) for p in perms],
            "permuted": permuted,
            "mismatch_before": before,
            "mismatch_after": after,
        }
    )
    aligned.attrs = dict(post.attrs)
    aligned.attrs["skill_alignment"] = json.dumps({str(c): list(map(int, p)) for c, p in zip(chain_labels, perms)})
    return aligned, table


# --------------------------------------------------------------------------- identified quantities
def identified_quantities(
    idata: xr.DataTree,
    *,
    max_obs: int = MAX_OBS,
    max_transitions: int = MAX_TRANSITIONS,
    seed: int = 0,
) -> xr.Dataset:
    """Per-draw quantities that do not change when skills are permuted or rotated.

    pass_probability, relevance (D(s, a)) of a random subsample of ≤ max_obs observed
    rows; prerequisite_relevance (D(s_t, q)) of ≤ max_transitions lesson transitions;
    requirement_norm |a|, gain_norm |l|, prerequisite_norm |q|; biases and σ_L as they
    are.  The subsample (fixed seed) keeps this cheap on large logs.
    """
    post = group_of(idata, "posterior")
    cd = group_of(idata, "constant_data")
    if post is None:
        raise ValueError("the DataTree has no posterior group")
    out: dict[str, xr.DataArray] = {}
    coords_cd = {"chain": post["chain"].values if "chain" in post.coords else np.arange(post.sizes["chain"]),
                 "draw": post["draw"].values if "draw" in post.coords else np.arange(post.sizes["draw"])}
    students = student_labels(idata)
    if cd is not None and "obs_state" in cd and "student_state" in post and "requirement" in post:
        n_obs = cd.sizes["obs"]
        rows = _subsample(n_obs, max_obs, seed)
        st_i = np.asarray(cd["obs_state"].values)[rows].astype(int)
        as_i = np.asarray(cd["obs_assessment"].values)[rows].astype(int)
        su_i = (np.asarray(cd["obs_student"].values)[rows].astype(int) if "obs_student" in cd
                else state_owner(post, students)[st_i])
        s = as_array(post["student_state"], "state", "skill")[:, :, st_i]
        a = as_array(post["requirement"], "assessment", "skill")[:, :, as_i]
        rel = eq.relevance(s, a)
        gu = as_array(post["student_bias"], "student")[:, :, su_i] if "student_bias" in post else 0.0
        gj = as_array(post["assessment_bias"], "assessment")[:, :, as_i] if "assessment_bias" in post else 0.0
        if "obs_history" in cd and "history_success" in post:
            from bayes_lse.model.graph import history_logit

            h = np.asarray(cd["obs_history"].values)[rows]
            gj = gj + history_logit(h[None, None], np.asarray(post["history_success"].values)[..., None],
                                    np.asarray(post["history_failure"].values)[..., None])
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
        out["relevance"] = xr.DataArray(rel, dims=("chain", "draw", "obs"), coords=obs_coords)
    if "requirement" in post:
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
        if cd is not None and "transition_lesson" in cd and "student_state" in post:
            les = np.asarray(cd["transition_lesson"].values).astype(int)
            with_lesson = np.flatnonzero(les >= 0)
            pick = with_lesson[_subsample(len(with_lesson), max_transitions, seed + 1)]
            if len(pick):
                frm = np.asarray(cd["transition_from"].values).astype(int)[pick]
                s = as_array(post["student_state"], "state", "skill")[:, :, frm]
                owner = state_owner(post, students)[frm]
                out["prerequisite_relevance"] = xr.DataArray(
                    eq.relevance(s, q[:, :, les[pick]]),
                    dims=("chain", "draw", "transition"),
                    coords={**coords_cd, "transition": pick,
                            "transition_student": ("transition", np.where(owner >= 0, students[np.maximum(owner, 0)], "?")),
                            "transition_lesson": ("transition", lesson_lab[les[pick]])},
                )
    for v in ("student_bias", "assessment_bias", "learning_noise"):
        if v in post:
            out[v] = post[v]
    return xr.Dataset(out)


# --------------------------------------------------------------------------- convergence
def flatten_quantities(ds: xr.Dataset, max_entities: int, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Stack every scalar quantity of `ds` into (chain, draw, K) with a label table."""
    blocks, labels = [], []
    for name, da in ds.data_vars.items():
        other = [d for d in da.dims if d not in SAMPLE_DIMS]
        arr = as_array(da, *other)
        n_c, n_d = arr.shape[:2]
        arr = arr.reshape(n_c, n_d, -1)
        k = arr.shape[2]
        pick = _subsample(k, max_entities, seed) if other else np.arange(k)
        blocks.append(arr[:, :, pick])
        if not other:
            labels += [(name, name, "")] * len(pick)
            continue
        idx = np.unravel_index(pick, [da.sizes[d] for d in other])
        parts = []
        for dim, i in zip(other, idx):
            lab = dim_labels(ds, dim, da.sizes[dim]) if dim in ds.coords else np.arange(da.sizes[dim]).astype(str)
            parts.append((dim, lab[i]))
        student = np.full(len(pick), "", dtype=object)
        for c in ("obs_student", "transition_student"):
            if c in da.coords and da.coords[c].dims == (other[0],):
                student = np.asarray(da.coords[c].values).astype(str)[idx[0]]
        if "student" in other:
            student = np.asarray(dim_labels(ds, "student", da.sizes["student"]))[idx[other.index("student")]]
        for j in range(len(pick)):
            bits = []
            for dim, lab in parts:
                bits.append(f"{dim} {lab[j]}" if dim in ("skill", "obs", "transition", "state") else str(lab[j]))
            if name in ("pass_probability", "relevance") and "obs_assessment" in da.coords:
                bits.append(f"{student[j]} on {np.asarray(da.coords['obs_assessment'].values)[idx[0][j]]}")
            if name == "prerequisite_relevance" and "transition_lesson" in da.coords:
                bits.append(f"{student[j]} taking {np.asarray(da.coords['transition_lesson'].values)[idx[0][j]]}")
            labels.append((name, ", ".join(bits), student[j]))
    if not blocks:
        return np.empty((0, 0, 0)), pd.DataFrame(columns=["variable", "label", "student"])
    return np.concatenate(blocks, axis=2), pd.DataFrame(labels, columns=["variable", "label", "student"])


def _split_chains(x: np.ndarray) -> np.ndarray:
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half:]], axis=0)


def _average_ranks(a: np.ndarray) -> np.ndarray:
    """scipy.stats.rankdata(a, 'average', axis=0), several times faster on wide arrays."""
    a = np.ascontiguousarray(a.T)  # sort along contiguous rows
    n = a.shape[1]
    order = np.argsort(a, axis=1)
    srt = np.take_along_axis(a, order, axis=1)
    pos = np.broadcast_to(np.arange(n, dtype=float), a.shape)
    differs = srt[:, 1:] != srt[:, :-1]
    edge = np.ones((a.shape[0], 1), dtype=bool)
    start = np.maximum.accumulate(np.where(np.hstack([edge, differs]), pos, 0.0), axis=1)
    end = np.minimum.accumulate(np.where(np.hstack([differs, edge]), pos, n)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty_like(start)
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=1)
    return ranks.T


def _z_scale(x: np.ndarray) -> np.ndarray:
    m, n, k = x.shape
    r = _average_ranks(x.reshape(m * n, k))
    return ndtri((r - 3 / 8) / (m * n - 2 * 3 / 8 + 1)).reshape(m, n, k)


def _rhat_basic(x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    between = n * x.mean(axis=1).var(axis=0, ddof=1)
    within = x.var(axis=1, ddof=1).mean(axis=0)
    with np.errstate(all="ignore"):
        return np.sqrt((between / within + n - 1) / n)


def _ess_basic(x: np.ndarray) -> np.ndarray:
    """Geyer initial-monotone-sequence ESS of (chain, draw, K), vectorised over K."""
    m, n, k = x.shape
    x = x.astype(float)
    const = (x.max(axis=(0, 1)) - x.min(axis=(0, 1))) < np.finfo(float).resolution
    size = next_fast_len(2 * n)
    f = np.fft.rfft(x - x.mean(axis=1, keepdims=True), n=size, axis=1)
    acov = np.fft.irfft(f * np.conjugate(f), n=size, axis=1)[:, :n] / n  # (m, n, K)
    mean_var = acov[:, 0].mean(axis=0) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + x.mean(axis=1).var(axis=0, ddof=1)
    with np.errstate(all="ignore"):
        rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus  # (n, K)
    rho[0] = 1.0
    i_max = max(int(np.ceil((n - 2) / 2)) - 1, 0)  # last pair Geyer's loop may reach
    pairs = rho[0 : 2 * i_max + 2 : 2] + rho[1 : 2 * i_max + 2 : 2]  # (i_max+1, K)
    nonpos = pairs <= 0
    first = np.where(nonpos.any(axis=0), nonpos.argmax(axis=0), i_max)
    last = np.minimum(first, i_max)  # index of the pair the loop stopped at
    cummin = np.minimum.accumulate(pairs, axis=0)  # initial monotone sequence
    body = np.where(np.arange(len(pairs))[:, None] < last[None, :], cummin, 0.0).sum(axis=0)
    cols = np.arange(k)
    r_last = rho[2 * last, cols]
    tail = np.where(last == 0, 1.0, np.where((pairs[last, cols] >= 0) | (r_last > 0), r_last, 0.0))
    tau = np.maximum(-1.0 + 2.0 * body + tail, 1.0 / np.log10(m * n))
    ess = m * n / tau
    ess[np.isnan(rho).any(axis=0)] = np.nan
    ess[const] = m * n
    return ess


def convergence_stats(arr: np.ndarray) -> dict[str, np.ndarray]:
    """Rank-normalised split R-hat, bulk/tail ESS and MCSE of the mean for (chain, draw, K).

    The same estimators as `arviz_stats.rhat/ess/mcse` (Vehtari et al. 2021), vectorised
    over K: ArviZ loops over scalars in Python, which made a 1,000-student fit take
    10 s here; tests check the values against ArviZ's.
    """
    arr = np.asarray(arr, dtype=float)
    m, n, k = arr.shape
    out = {name: np.full(k, np.nan) for name in ("rhat", "ess_bulk", "ess_tail", "mcse_mean")}
    if n < 4:
        return out
    bad = ~np.isfinite(arr).all(axis=(0, 1))
    x = np.where(bad[None, None, :], 0.0, arr)
    split = _split_chains(x)
    if m >= 2:
        folded = np.abs(split - np.median(split.reshape(-1, k), axis=0))
        out["rhat"] = np.maximum(_rhat_basic(_z_scale(split)), _rhat_basic(_z_scale(folded)))
    out["ess_bulk"] = _ess_basic(_z_scale(split))
    flat = x.reshape(m * n, k)
    q_lo, q_hi = np.quantile(flat, [0.05, 0.95], axis=0)
    out["ess_tail"] = np.minimum(_ess_basic(_split_chains((x <= q_lo).astype(float))),
                                 _ess_basic(_split_chains((x <= q_hi).astype(float))))
    with np.errstate(all="ignore"):
        out["mcse_mean"] = flat.std(axis=0, ddof=1) / np.sqrt(_ess_basic(split))
    for v in out.values():
        v[bad] = np.nan
    return out


def convergence_table(
    ds: xr.Dataset, *, max_entities: int = MAX_ENTITIES, seed: int = 0, stats: bool = True
) -> pd.DataFrame:
    """R-hat (rank-normalised split), bulk/tail ESS and MCSE of every scalar in `ds`."""
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


def _summarise(table: pd.DataFrame) -> pd.DataFrame:
    """One row per variable: count, worst R-hat, smallest ESS, largest MCSE."""
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


def _chain_deviation(ds: xr.Dataset, max_entities: int, seed: int) -> np.ndarray:
    """Per chain: median |z| of its means against the other chains' (which chain is off)."""
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


# --------------------------------------------------------------------------- sampler
def _first(ds: xr.Dataset, *names: str) -> xr.DataArray | None:
    for n in names:
        if n in ds:
            return ds[n]
    return None


def _max_treedepth(idata: xr.DataTree, ss: xr.Dataset, fit_config: dict) -> int:
    for k in ("max_treedepth", "maxdepth"):
        if k in fit_config and fit_config[k]:
            return int(fit_config[k])
    try:
        settings = json.loads(ss.attrs.get("inference_library_settings", "{}"))
        return int(settings.get("settings", {}).get("maxdepth", 10))
    except (TypeError, ValueError, AttributeError):
        return 10


def _sampler_tables(
    idata: xr.DataTree, ss: xr.Dataset, fit_config: dict
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray | None]:
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
    max_depth = _max_treedepth(idata, ss, fit_config)
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


def _divergence_implicated(quant: xr.Dataset, div: np.ndarray, top: int = 15) -> pd.DataFrame:
    """Quantities whose draws differ most between divergent and other transitions."""
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


# --------------------------------------------------------------------------- ADVI / MAP
def _advi_table(opt: xr.Dataset | None, rel_tol: float) -> tuple[pd.DataFrame, dict]:
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


def _map_table(opt: xr.Dataset | None) -> pd.DataFrame:
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


# --------------------------------------------------------------------------- predictive checks
@dataclass
class Predictive:
    """Posterior predictive material shared by the tables and the plots."""

    p_mean: np.ndarray  # (N,) posterior mean pass probability of every observed row
    outcome: np.ndarray  # (N,)
    student: np.ndarray  # (N,) codes
    assessment: np.ndarray  # (N,) codes
    n_draws: int  # draws used
    logit_draws: np.ndarray | None = field(default=None, repr=False)  # (S, N) if kept


def _row_logits(post: xr.Dataset, cd: xr.Dataset, chains: np.ndarray, draws: np.ndarray,
                rows: np.ndarray) -> np.ndarray:
    """Pass logits D(s,a)+g_u+g_j of the given observed rows for the chosen draws: (S, len(rows))."""
    st_i = np.asarray(cd["obs_state"].values)[rows].astype(int)
    as_i = np.asarray(cd["obs_assessment"].values)[rows].astype(int)
    su_i = np.asarray(cd["obs_student"].values)[rows].astype(int)
    sel = {"chain": xr.DataArray(chains, dims="sample"), "draw": xr.DataArray(draws, dims="sample")}

    def take(name: str, *tail: str) -> np.ndarray:
        da = post[name].isel(sel)
        return np.asarray(da.transpose("sample", *tail).values)

    s = take("student_state", "state", "skill")[:, st_i]
    a = take("requirement", "assessment", "skill")[:, as_i]
    logit = eq.pass_logit(s, a)
    if "student_bias" in post:
        logit = logit + take("student_bias", "student")[:, su_i]
    if "assessment_bias" in post:
        logit = logit + take("assessment_bias", "assessment")[:, as_i]
    return logit


def _sample_index(post: xr.Dataset, max_total: int) -> tuple[np.ndarray, np.ndarray]:
    n_c, n_d = post.sizes["chain"], post.sizes["draw"]
    d_idx = thin_draws(n_c, n_d, max_total)
    chains = np.repeat(np.arange(n_c), len(d_idx))
    draws = np.tile(d_idx, n_c)
    return chains, draws


def _rate_table(codes: np.ndarray, labels: np.ndarray, y: np.ndarray, p_draws: np.ndarray,
                y_rep: np.ndarray, name: str, min_answers: int) -> pd.DataFrame:
    n = len(labels)
    m = sparse.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(n, len(codes)))
    count = np.asarray(m.sum(axis=1)).ravel()
    safe = np.maximum(count, 1)
    observed = (m @ y) / safe
    predicted = np.asarray(m @ p_draws.mean(axis=0)) / safe
    rep = np.asarray(m @ y_rep.T).T / safe  # (S, n)
    lo, hi = np.percentile(rep, [5, 95], axis=0)
    t = pd.DataFrame({name: labels, "answers": count.astype(int), "observed": observed, "predicted": predicted,
                      "lo90": lo, "hi90": hi})
    t = t[t["answers"] > 0].copy()
    t["outside"] = (t["observed"] < t["lo90"]) | (t["observed"] > t["hi90"])
    t["judged"] = t["answers"] >= min_answers
    width = np.maximum(t["hi90"] - t["lo90"], 1.0 / np.maximum(t["answers"], 1))
    t["surprise"] = (t["observed"] - t["predicted"]).abs() / width
    return t.sort_values("surprise", ascending=False).reset_index(drop=True)


def calibration_tables(p: np.ndarray, y: np.ndarray, y_rep: np.ndarray, *, n_bins: int = 10,
                       seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Binned reliability table and PAV-adjusted reliability curve of predictions `p`.

    `y_rep` (replicates × rows) are outcomes drawn from the model; their spread gives
    the 90% intervals (bins) and consistency band (PAV curve, as ArviZ's plot_ppc_pava
    computes it: Dimitriadis et al. 2021).
    """
    n = len(y)
    edges = np.linspace(0, 1, n_bins + 1)
    b = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    rows = []
    for k in range(n_bins):
        sel = b == k
        if not sel.any():
            continue
        rep_rate = y_rep[:, sel].mean(axis=1)
        lo, hi = np.percentile(rep_rate, [5, 95])
        obs_rate = y[sel].mean()
        rows.append({"bin": f"{edges[k]:.1f}–{edges[k + 1]:.1f}", "answers": int(sel.sum()),
                     "predicted": float(p[sel].mean()), "observed": float(obs_rate),
                     "lo90": float(lo), "hi90": float(hi), "outside": bool(obs_rate < lo or obs_rate > hi)})
    cal = pd.DataFrame(rows, columns=["bin", "answers", "predicted", "observed", "lo90", "hi90", "outside"])
    pr = _subsample(n, MAX_PAVA_ROWS, seed + 2)
    order = pr[np.argsort(p[pr], kind="stable")]
    cep = isotonic_regression(y[order], increasing=True).x
    n_band = min(len(y_rep), 100)
    band = np.array([isotonic_regression(y_rep[i, order], increasing=True).x for i in range(n_band)])
    lo, hi = np.percentile(band, [5, 95], axis=0)
    pava = pd.DataFrame({"predicted": p[order], "cep": cep, "lo90": lo, "hi90": hi})
    if len(pava) > 400:  # keep the curve's shape, not every row
        keep = np.unique(np.linspace(0, len(pava) - 1, 400).round().astype(int))
        pava = pava.iloc[keep].reset_index(drop=True)
    return cal, pava


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
    budget = min(max_draws, max(20, MAX_PREDICTIVE_CELLS // n))
    chains, draws = _sample_index(post, budget)
    rng = np.random.default_rng(seed)
    p_draws = np.empty((len(chains), n))
    chunk = max(1, 2_000_000 // max(len(chains), 1))
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        p_draws[:, rows] = eq.sigmoid(_row_logits(post, cd, chains, draws, rows))
    # several Bernoulli replicates per draw when draws are few (MAP has one)
    reps = max(1, int(np.ceil(budget / len(chains))))
    rep_of = np.repeat(np.arange(len(chains)), reps)
    y_rep = (rng.random((len(rep_of), n)) < p_draws[rep_of]).astype(float)
    p_mean = p_draws.mean(axis=0)
    student = np.asarray(cd["obs_student"].values).astype(int)
    assessment = np.asarray(cd["obs_assessment"].values).astype(int)
    tables: dict[str, pd.DataFrame] = {}

    tables["calibration"], tables["pava"] = calibration_tables(p_mean, y, y_rep, n_bins=n_bins, seed=seed)
    tables["calibration"].attrs["source"] = "in-sample"

    tables["students"] = _rate_table(student, student_labels(idata), y, p_draws, y_rep, "student", min_answers)
    ass_labels = dim_labels(post, "assessment", post.sizes.get("assessment", int(assessment.max()) + 1))
    tables["assessments"] = _rate_table(assessment, ass_labels, y, p_draws, y_rep, "assessment", min_answers)
    pred = Predictive(p_mean=p_mean, outcome=y, student=student, assessment=assessment, n_draws=len(chains))
    return tables, pred


def _loo(idata: xr.DataTree, seed: int = 0) -> tuple[dict[str, pd.DataFrame], dict | None]:
    """PSIS-LOO (arviz_stats.loo) on the Bernoulli log-likelihood of observed rows."""
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
    rows = _subsample(n, m, seed + 3)
    chains, draws = np.repeat(np.arange(n_c), len(d_idx)), np.tile(d_idx, n_c)
    logit = _row_logits(post, cd, chains, draws, rows)
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


# --------------------------------------------------------------------------- the result
@dataclass
class Diagnostics:
    """Result of `diagnose`: a verdict table and the labelled tables behind it."""

    method: str
    verdicts: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    thresholds: dict[str, float]
    notes: list[str] = field(default_factory=list)
    aligned: xr.Dataset | None = field(default=None, repr=False)
    identified: xr.Dataset | None = field(default=None, repr=False)
    predictive: Predictive | None = field(default=None, repr=False)
    timings: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def status(self) -> str:
        """Worst status over all checks: 'ok', 'warn' or 'fail'."""
        if self.verdicts.empty:
            return "ok"
        return max(self.verdicts["status"], key=STATUS_ORDER.__getitem__)

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name == "verdicts":
            return self.verdicts
        return self.tables[name]

    def check(self, name: str) -> pd.Series:
        """The verdict row of one check, by its name."""
        rows = self.verdicts[self.verdicts["check"] == name]
        if rows.empty:
            raise KeyError(f"no check named {name!r}; checks: {list(self.verdicts['check'])}")
        return rows.iloc[0]

    def __repr__(self) -> str:
        with pd.option_context("display.max_colwidth", 80, "display.width", 160):
            return (f"Diagnostics({self.method}, status={self.status})\n"
                    f"{self.verdicts[['check', 'status', 'value', 'threshold']].to_string(index=False)}")


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
    posterior predictive calibration and pass-rate checks; PSIS-LOO (not for MAP).
    Thresholds: see DEFAULT_THRESHOLDS (any can be passed by name).
    """
    import time

    unknown = set(thresholds) - set(DEFAULT_THRESHOLDS)
    if unknown:
        raise TypeError(f"unknown threshold(s) {sorted(unknown)}; known: {sorted(DEFAULT_THRESHOLDS)}")
    th = dict(DEFAULT_THRESHOLDS)
    th.update(thresholds)
    th.update(rhat_max=rhat_max, ess_min=ess_min, ebfmi_min=ebfmi_min, max_divergences=max_divergences)
    th["rhat_fail"] = max(th["rhat_fail"], th["rhat_max"])
    th["ess_fail"] = min(th["ess_fail"], th["ess_min"])
    method = _method(idata)
    fit_config = json_attr(idata, "fit_config")
    post = group_of(idata, "posterior")
    if post is None:
        raise ValueError("the DataTree has no posterior group: nothing to diagnose")
    verdicts: list[dict[str, Any]] = []
    tables: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    timings: dict[str, float] = {}

    def add(check: str, status: str, value: Any, threshold: Any, message: str) -> None:
        verdicts.append({"check": check, "status": status, "value": value, "threshold": threshold,
                         "message": message})

    t0 = time.perf_counter()
    aligned, perm_table = align_chains(post)
    tables["alignment"] = perm_table
    timings["align"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ident = identified_quantities(idata, max_obs=max_obs, seed=seed)
    timings["identified"] = time.perf_counter() - t0
    n_chain, n_draw = post.sizes.get("chain", 1), post.sizes.get("draw", 1)

    if method == "nuts":
        t0 = time.perf_counter()
        itab = convergence_table(ident, seed=seed)
        timings["identified_convergence"] = time.perf_counter() - t0
        tables["identified_summary"] = _summarise(itab)
        tables["identified"] = itab.sort_values("rhat", ascending=False, na_position="last").reset_index(drop=True)
        deviation = _chain_deviation(ident, MAX_ENTITIES, seed)
        suspect = int(np.argmax(deviation)) if len(deviation) > 1 else None

        # R-hat
        r = itab["rhat"].to_numpy()
        worst_r = float(np.nanmax(r)) if np.isfinite(r).any() else np.nan
        if np.isfinite(worst_r):
            wl = itab.loc[int(np.nanargmax(r))]
            status = _status(worst_r, worst_r <= th["rhat_max"], worst_r <= th["rhat_fail"])
            n_bad = int((r > th["rhat_max"]).sum())
            if status == "ok":
                msg = f"All {len(r)} identified quantities have R-hat ≤ {th['rhat_max']}: the chains agree on what the model identifies."
            else:
                msg = (f"{n_bad} of {len(r)} identified quantities have R-hat above {th['rhat_max']}; worst "
                       f"{worst_r:.3g} ({wl['variable']}: {wl['label']}). The chains disagree")
                if suspect is not None and deviation[suspect] > 2 * np.median(deviation):
                    msg += f"; chain {perm_table['chain'].iloc[suspect]} sits furthest from the others"
                msg += (". Do not trust these summaries: run longer/more tuning, or inspect that chain." if status == "fail"
                        else ". Borderline: more draws would help.")
            add("R-hat (identified)", status, worst_r, f"≤ {th['rhat_max']} (fail > {th['rhat_fail']})", msg)
        for kind, col in (("bulk", "ess_bulk"), ("tail", "ess_tail")):
            e = itab[col].to_numpy()
            if not np.isfinite(e).any():
                continue
            worst_e = float(np.nanmin(e))
            wl = itab.loc[int(np.nanargmin(e))]
            status = _status(worst_e, worst_e >= th["ess_min"], worst_e >= th["ess_fail"])
            msg = (f"Every identified quantity has {kind} ESS ≥ {th['ess_min']:g}." if status == "ok" else
                   f"Smallest {kind} ESS {worst_e:.0f} ({wl['variable']}: {wl['label']}); "
                   f"{int((e < th['ess_min']).sum())} quantities are below {th['ess_min']:g}. "
                   + ("Estimates (especially intervals) are noisy: draw more or improve mixing." if kind == "tail"
                      else "Means are noisy: draw more samples or improve mixing."))
            add(f"{kind.capitalize()} ESS (identified)", status, worst_e,
                f"≥ {th['ess_min']:g} (fail < {th['ess_fail']:g})", msg)
        pp = itab[itab["variable"] == "pass_probability"]
        if len(pp) and pp["mcse_mean"].notna().any():
            mc = float(pp["mcse_mean"].max())
            add("MCSE (pass probabilities)", "ok" if mc <= th["mcse_p_max"] else "warn", mc, f"≤ {th['mcse_p_max']}",
                f"Monte Carlo error of the posterior-mean pass probabilities is at most {mc:.2g}"
                + ("." if mc <= th["mcse_p_max"] else ": predicted probabilities carry visible simulation noise."))

        # raw coordinates, before and after alignment
        t0 = time.perf_counter()
        raw_names = [v for v in ALIGN_VARS if v in post]
        if raw_names:
            picks = _subsample(post.sizes.get("state", 0), max_states, seed + 4)

            def raw_ds(ds: xr.Dataset) -> xr.Dataset:
                sub = ds[raw_names]
                return sub.isel(state=picks) if "state" in sub.dims else sub

            rtab = convergence_table(raw_ds(aligned), seed=seed)
            # without relabelling, "before" is the same table: do not pay for it twice
            before = convergence_table(raw_ds(post), seed=seed) if perm_table["permuted"].any() else rtab
            rsum = _summarise(rtab)
            bsum = _summarise(before).set_index("variable")
            rsum.insert(2, "max_rhat_unaligned", rsum["variable"].map(bsum["max_rhat"]))
            tables["raw_summary"] = rsum
            tables["raw"] = rtab.sort_values("rhat", ascending=False, na_position="last").reset_index(drop=True)
            rr = rtab["rhat"].to_numpy()
            if np.isfinite(rr).any():
                worst = float(np.nanmax(rr))
                unal = float(np.nanmax(before["rhat"])) if before["rhat"].notna().any() else np.nan
                ok = worst <= th["rhat_max"]
                msg = (f"After aligning skill labels, raw coordinates have R-hat ≤ {worst:.3g}"
                       + (f" (before alignment {unal:.3g})" if np.isfinite(unal) and unal > worst + 1e-3 else "")
                       + ("." if ok else ". Per-dimension summaries remain uncertain (skills may be mixed by rotation); "
                          "rely on identified quantities."))
                add("R-hat (raw, aligned)", "ok" if ok else "warn", worst, f"≤ {th['rhat_max']}", msg)
        timings["raw_convergence"] = time.perf_counter() - t0
        perm = perm_table[perm_table["permuted"]]
        if len(perm):
            msg = "Relabelled skills of chain(s) " + ", ".join(
                f"{c} (aligned skill k = original {p})" for c, p in zip(perm["chain"], perm["permutation"])
            ) + " to match the others; per-dimension tables and pictures use the aligned draws."
        else:
            msg = "All chains use the same skill labels; nothing was relabelled."
        add("Skill alignment", "ok", int(len(perm)), "informational", msg)

        ss = group_of(idata, "sample_stats")
        if ss is None:
            notes.append("No sample_stats group: divergences, tree depth and E-BFMI were not checked.")
        else:
            t0 = time.perf_counter()
            chains_t, div_rows, div_arr = _sampler_tables(idata, ss, fit_config)
            chains_t["identified_deviation"] = deviation if len(deviation) == len(chains_t) else np.nan
            chains_t["permuted"] = perm_table["permuted"].to_numpy() if len(perm_table) == len(chains_t) else False
            tables["chains"] = chains_t
            if div_arr is not None:
                n_div = int(div_arr.sum())
                tables["divergent_draws"] = div_rows
                total = div_arr.size
                if n_div <= th["max_divergences"]:
                    add("Divergences", "ok", n_div, f"≤ {th['max_divergences']:g}",
                        f"No divergent transitions in {total} draws." if n_div == 0 else
                        f"{n_div} divergent transitions in {total} draws (allowed by threshold).")
                else:
                    where = ", ".join(f"chain {c}: {k}" for c, k in zip(chains_t["chain"], chains_t["divergent"]) if k)
                    # what is special about divergent draws
                    quant = ident.copy()
                    if "student_state" in post and post.sizes.get("state", 0):
                        picks = _subsample(post.sizes["state"], max_states, seed + 5)
                        owner = state_owner(post, student_labels(idata))[picks]
                        labs = student_labels(idata)
                        sn = eq.norm(as_array(post["student_state"].isel(state=picks), "state", "skill"))
                        who = np.where(owner >= 0, labs[np.maximum(owner, 0)], "?")
                        steps = state_steps(post)[picks]
                        quant["state_norm"] = xr.DataArray(
                            sn, dims=("chain", "draw", "student_step"),
                            coords={"student_step": [f"{w} at step {t}" for w, t in zip(who, steps)],
                                    "state_student": ("student_step", who)})
                    imp = _divergence_implicated(quant, div_arr)
                    if "state_norm" in quant and len(imp):
                        sl = dict(zip(quant["student_step"].values.astype(str), quant["state_student"].values))
                        is_state = imp["variable"] == "state_norm"
                        imp.loc[is_state, "student"] = [sl.get(lbl, "") for lbl in imp.loc[is_state, "label"]]
                    tables["divergence_implicated"] = imp
                    studs = [s for s in dict.fromkeys(imp["student"].astype(str)) if s][:3] if len(imp) else []
                    msg = (f"{n_div} of {total} transitions diverged ({100 * n_div / total:.2g}%; {where}). "
                           "The sampler could not follow the posterior's curvature there, so it may have missed part of it.")
                    if len(imp):
                        msg += f" Most different in divergent draws: {imp['variable'].iloc[0]} ({imp['label'].iloc[0]})"
                        msg += f"; students involved: {', '.join(studs)}." if studs else "."
                    msg += " Raise target_accept or reparameterise."
                    add("Divergences", "fail", n_div, f"≤ {th['max_divergences']:g}", msg)
            if "saturated" in chains_t:
                frac = float(chains_t["saturated"].sum() / max(chains_t["draws"].sum(), 1))
                md = chains_t.attrs.get("max_treedepth", 10)
                ok = frac <= th["treedepth_saturation_max"]
                add("Tree depth saturation", "ok" if ok else "warn", frac, f"≤ {th['treedepth_saturation_max']:g} of draws",
                    (f"No draw hit the maximum tree depth ({md})." if frac == 0 else
                     f"{100 * frac:.2g}% of draws hit the maximum tree depth ({md})")
                    + ("" if ok else ": trajectories were cut short, which costs efficiency (not validity); "
                       "raise max_treedepth or reparameterise."))
            if "e_bfmi" in chains_t:
                eb = chains_t["e_bfmi"].to_numpy()
                low = [str(c) for c, v in zip(chains_t["chain"], eb) if v < th["ebfmi_min"]]
                worst = float(np.nanmin(eb))
                add("E-BFMI", "ok" if not low else "fail", worst, f"≥ {th['ebfmi_min']}",
                    f"E-BFMI is at least {worst:.2f} in every chain: momentum resampling explores the energy well."
                    if not low else
                    f"E-BFMI below {th['ebfmi_min']} in chain(s) {', '.join(low)} (min {worst:.2f}): the sampler "
                    "explores the posterior's energy levels poorly, typical of heavy tails or funnels; reparameterise.")
            timings["sampler"] = time.perf_counter() - t0
    elif method == "advi":
        opt = group_of(idata, "optimization")
        table, verdict = _advi_table(opt, th["advi_rel_tol"])
        tables["advi"] = table
        if opt is not None and "loss" in opt:
            it = opt["iteration"].values if "iteration" in opt.coords else np.arange(opt.sizes["iteration"])
            tables["loss_history"] = pd.DataFrame({"iteration": it, "loss": np.asarray(opt["loss"].values)})
        add("ADVI convergence", verdict["status"], verdict["value"], f"relative change ≤ {th['advi_rel_tol']:g}",
            verdict["message"])
        tables["identified_summary"] = _summarise(convergence_table(ident, seed=seed, stats=False))
    else:  # map
        opt = group_of(idata, "optimization")
        mt = _map_table(opt)
        if mt.empty:
            notes.append("No optimization group: optimiser status was not checked.")
        else:
            tables["map"] = mt
            best = mt[mt["best"]].iloc[0] if mt["best"].any() else mt.iloc[0]
            succ = bool(best.get("success", True))
            msg = str(best.get("message", ""))
            # an iteration budget is a choice (early stopping on large logs), not a breakdown
            at_limit = not succ and "ITERATIONS REACHED LIMIT" in msg.upper()
            add("MAP optimiser", "ok" if succ else "warn" if at_limit else "fail", msg, "success",
                f"The best of {len(mt)} starts (start {best['start']}) "
                + (f"converged after {int(best['n_iterations'])} iterations." if succ and "n_iterations" in best
                   else "converged." if succ
                   else f"stopped at the iteration limit ({int(best['n_iterations'])} iterations) before meeting its "
                   "tolerance: the point is near, not at, a mode (see the gradient norm); raise maxiter to converge."
                   if at_limit else "did not report convergence: the point may not be a mode."))
            if "grad_norm" in best:
                g = float(best["grad_norm"])
                ok = g <= th["map_grad_norm_max"]
                add("MAP gradient norm", "ok" if ok else "warn", g, f"≤ {th['map_grad_norm_max']:g}",
                    f"Gradient norm at the optimum is {g:.2g}"
                    + ("." if ok else ": the optimiser stopped before the gradient vanished; tighten gtol/ftol."))
            if "objective" in mt and len(mt) > 1:
                obj = mt["objective"].to_numpy(dtype=float)
                agree = int((np.abs(obj - float(best["objective"])) <= th["map_objective_tol"]).sum())
                ok = agree >= 2
                add("MAP starts agree", "ok" if ok else "warn", agree, f"≥ 2 of {len(mt)} within {th['map_objective_tol']:g}",
                    f"{agree} of {len(mt)} starts reached the best objective"
                    + ("." if ok else ": the others stopped at worse optima, so the best may not be global; "
                       "use more starts, or NUTS."))
        notes.append("MAP gives a point estimate: no intervals from the posterior, and no R-hat/ESS or LOO.")
        tables["identified_summary"] = _summarise(convergence_table(ident, seed=seed, stats=False))

    # posterior predictive checks and PSIS-LOO
    pred = None
    ptabs: dict[str, pd.DataFrame] = {}
    if predictive:
        t0 = time.perf_counter()
        ptabs, pred = predictive_checks(idata, seed=seed, min_answers=int(th["ppc_min_answers"]))
        tables.update(ptabs)
        timings["predictive"] = time.perf_counter() - t0
    info = None
    if loo and method != "map" and n_chain * n_draw >= 20:
        t0 = time.perf_counter()
        try:
            ltabs, info = _loo(idata, seed=seed)
        except Exception as err:  # noqa: BLE001 - LOO is a bonus, never a crash
            ltabs, info = {}, None
            notes.append(f"PSIS-LOO could not be computed: {err}")
        tables.update(ltabs)
        timings["loo"] = time.perf_counter() - t0
    if predictive and info is not None:
        # Calibrate held-out predictions: in-sample probabilities were fit to these very
        # answers, which makes observed rates look more extreme than predicted.
        rng = np.random.default_rng(seed + 7)
        y_rep = (rng.random((MAX_PREDICTIVE_DRAWS, len(info["y"]))) < info["p_loo"]).astype(float)
        cal, pava = calibration_tables(info["p_loo"], info["y"], y_rep, seed=seed)
        cal.attrs["source"] = "leave-one-out"
        tables["calibration"], tables["pava"] = cal, pava
    if "calibration" in tables and len(tables["calibration"]):
        cal = tables["calibration"]
        source = cal.attrs.get("source", "in-sample")
        big = cal[cal["answers"] >= th["ppc_min_answers"]]
        frac = float(big["outside"].mean()) if len(big) else 0.0
        ece = float(np.average(np.abs(cal["observed"] - cal["predicted"]), weights=cal["answers"]))
        ok = frac <= th["calibration_outside_max"]
        msg = (f"{'Leave-one-out' if source == 'leave-one-out' else 'In-sample'} predicted pass probabilities: "
               f"mean |observed − predicted| rate across bins {ece:.3f}; {int(big['outside'].sum())} of {len(big)} "
               f"bins outside their 90% interval")
        msg += "." if ok else ": predicted probabilities are miscalibrated."
        if source != "leave-one-out":
            msg += (" (In-sample: the predictions were fit to these answers, so observed rates tend to look more "
                    "extreme than predicted even for a good model.)")
        add("Calibration", "ok" if ok else "warn", frac, f"≤ {th['calibration_outside_max']:g} of bins outside 90%",
            msg)
    for key, what in (("students", "students"), ("assessments", "assessments")):
        if key in ptabs and len(ptabs[key]):
            t = ptabs[key]
            j = t[t["judged"]]
            if not len(j):
                continue
            frac = float(j["outside"].mean())
            ok = frac <= th["ppc_outside_max"]
            top = ", ".join(str(x) for x in j[j["outside"]].iloc[:3, 0])
            add(f"Pass rates per {what[:-1]}", "ok" if ok else "warn", frac,
                f"≤ {th['ppc_outside_max']:g} outside 90%",
                f"{int(j['outside'].sum())} of {len(j)} {what} (with ≥ {int(th['ppc_min_answers'])} answers) have an "
                f"observed pass rate outside their 90% posterior predictive interval"
                + (f" (e.g. {top})" if top else "") + ("." if ok else ": the model misfits these " + what + "."))
    if info is not None:
        thr = min(th["pareto_k_max"], info["good_k"])
        n_bad = info["n_bad"]
        msg = f"ELPD-LOO {info['elpd']:.1f} (SE {info['se']:.1f}); "
        msg += ("every Pareto k is below " + f"{thr:.2f}: LOO estimates are reliable." if n_bad == 0 else
                f"{n_bad} of {info['n']} rows have Pareto k above {thr:.2f} (max {info['max_k']:.2f}): "
                "their LOO estimates are unreliable; those answers are highly influential.")
        if method == "advi":
            msg += " (Draws come from the ADVI approximation, not the exact posterior.)"
        add("PSIS-LOO Pareto k", "ok" if n_bad == 0 else "warn", info["max_k"], f"≤ {thr:.2f}", msg)
    vt = pd.DataFrame(verdicts, columns=["check", "status", "value", "threshold", "message"])
    return Diagnostics(method=method, verdicts=vt, tables=tables, thresholds=th, notes=notes,
                       aligned=aligned, identified=ident, predictive=pred, timings=timings)
