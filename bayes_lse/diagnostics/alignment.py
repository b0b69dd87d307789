"""Chain alignment: relabel each chain's skills to match the others (Hungarian assignment).

Skill coordinates are not identified (DESIGN §1, "Symmetries"): permuting skill
dimensions changes nothing in the likelihood or the priors, so chains may settle on
different labelings.  Per-dimension summaries and pictures use the aligned draws.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr
from scipy.optimize import linear_sum_assignment

from bayes_lse.diagnostics.arrays import as_array, group_of
from bayes_lse.diagnostics.result import CheckResult

__all__ = ["ALIGN_VARS", "align_chains", "check_alignment", "match_skills"]

ALIGN_VARS = ("requirement", "gain", "prerequisite", "student_state")


def match_skills(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per chain, the skill permutation that best matches the reference (numpy core of `align_chains`).

    The reference starts as chain 0 and is refined once (mean of aligned chains); the
    labelling shared by most chains is kept as is, so the odd chain is the permuted one.

    Parameters
    ----------
    feats : numpy.ndarray
        ``(chain, feature, skill)`` per-chain posterior means, stacked per skill.

    Returns
    -------
    perms : numpy.ndarray
        ``(chain, skill)``: aligned skill k of chain c is its original skill ``perms[c, k]``.
    ref : numpy.ndarray
        ``(feature, skill)``: the mean of the aligned chains.
    """
    n_chain, _, d = feats.shape

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
    return perms, ref


def align_chains(idata: xr.DataTree | xr.Dataset) -> tuple[xr.Dataset, pd.DataFrame]:
    """Relabel the skills of each chain to match the others (Hungarian assignment).

    Per chain, the posterior means of requirement/gain/prerequisite/student_state
    are concatenated per skill (each variable weighted equally); the assignment
    minimising the squared distance to a reference maps the chain's skills onto the
    reference's.  The reference is refined once (mean of aligned chains) and the
    labelling shared by most chains is kept as is, so the odd chain is the one
    reported as permuted.  Returns the aligned posterior and a table per chain.

    Parameters
    ----------
    idata : xarray.DataTree or xarray.Dataset
        The fit's DataTree, or its posterior group.

    Returns
    -------
    aligned : xarray.Dataset
        The posterior with skills relabelled chain by chain (the input itself when nothing
        moved); attr ``skill_alignment`` holds the permutations as JSON.
    table : pandas.DataFrame
        One row per chain: ``chain``, ``permutation``, ``permuted``, ``mismatch_before``,
        ``mismatch_after`` (distance of its means to the reference).
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
    perms, ref = match_skills(feats)

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


def check_alignment(perm_table: pd.DataFrame) -> CheckResult:
    """The "Skill alignment" verdict (informational, always ok): which chains were relabelled.

    Parameters
    ----------
    perm_table : pandas.DataFrame
        The per-chain table of `align_chains`.

    Returns
    -------
    CheckResult
        One verdict; its value is the number of relabelled chains.
    """
    perm = perm_table[perm_table["permuted"]]
    if len(perm):
        msg = "Relabelled skills of chain(s) " + ", ".join(
            f"{c} (aligned skill k = original {p})" for c, p in zip(perm["chain"], perm["permutation"])
        ) + " to match the others; per-dimension tables and pictures use the aligned draws."
    else:
        msg = "All chains use the same skill labels; nothing was relabelled."
    return CheckResult().add("Skill alignment", "ok", int(len(perm)), "informational", msg)
