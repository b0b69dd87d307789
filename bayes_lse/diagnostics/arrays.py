"""xarray / DataTree helpers that the checks, the plots and the report share.

Public on purpose: `report/plots.py` and `report/html.py` read the posterior DataTree
with the same helpers the checks use, so labels and draw thinning agree everywhere.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "SAMPLE_DIMS",
    "as_array",
    "dim_labels",
    "fit_method",
    "flatten_quantities",
    "group_of",
    "json_attr",
    "state_owner",
    "state_steps",
    "student_labels",
    "subsample",
    "thin_draws",
]

SAMPLE_DIMS = ("chain", "draw")


def group_of(idata: xr.DataTree, name: str) -> xr.Dataset | None:
    """One group of the posterior DataTree as a Dataset.

    Parameters
    ----------
    idata : xarray.DataTree
        The fit's DataTree (ARCHITECTURE.md, "The posterior").
    name : str
        Group name, e.g. ``"posterior"``, ``"sample_stats"``, ``"constant_data"``.

    Returns
    -------
    xarray.Dataset or None
        The group, or None when the tree has no such group.
    """
    if name in idata.children:
        return idata[name].to_dataset()
    return None


def json_attr(idata: xr.DataTree, key: str) -> dict[str, Any]:
    """A root attribute stored as a JSON string (``model_config``, ``fit_config``) as a dict.

    Parameters
    ----------
    idata : xarray.DataTree
        The fit's DataTree.
    key : str
        Attribute name.

    Returns
    -------
    dict
        The decoded attribute; ``{}`` when it is missing or not a JSON object.
    """
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


def fit_method(idata: xr.DataTree) -> str:
    """``"map"``, ``"advi"`` or ``"nuts"``: the root ``method`` attr, else guessed from the groups.

    Parameters
    ----------
    idata : xarray.DataTree
        The fit's DataTree.

    Returns
    -------
    str
        The inference method (one draw means MAP; a ``sample_stats`` group means NUTS).
    """
    method = str(idata.attrs.get("method", "")).lower()
    if method not in ("map", "advi", "nuts"):
        post = group_of(idata, "posterior")
        if post is not None and post.sizes.get("draw", 1) == 1:
            return "map"
        return "nuts" if "sample_stats" in idata.children else "advi"
    return method


def dim_labels(ds: xr.Dataset | None, dim: str, n: int) -> np.ndarray:
    """String labels of a dimension: its coordinate when there is one of length `n`, else "0".."n-1".

    Parameters
    ----------
    ds : xarray.Dataset or None
        Where to look for the coordinate.
    dim : str
        Dimension name (``"assessment"``, ``"lesson"``, ...).
    n : int
        Its length.

    Returns
    -------
    numpy.ndarray
        ``n`` strings.
    """
    if ds is not None and dim in ds.coords and ds[dim].ndim == 1 and ds[dim].size == n:
        return np.asarray(ds[dim].values).astype(str)
    return np.array([str(i) for i in range(n)], dtype=object).astype(str)


def student_labels(idata: xr.DataTree) -> np.ndarray:
    """Student ids indexed by the integer code used in `constant_data.obs_student`.

    Parameters
    ----------
    idata : xarray.DataTree
        The fit's DataTree.

    Returns
    -------
    numpy.ndarray
        One string per student code, from the posterior's ``student`` coordinate, else the
        ``interactions`` table, else ``state_student``, else the codes themselves.
    """
    post = group_of(idata, "posterior")
    if post is not None and "student" in post.coords:
        vals = np.asarray(post["student"].values)
        # ids already text stay the object array they are: a fixed-width copy of 3.65M ids
        # (and pandas' object copy of that when it indexes a Series) was ~0.4 GB
        if vals.dtype == object and pd.api.types.infer_dtype(vals, skipna=False) == "string":
            return vals
        return vals.astype(str)
    inter = group_of(idata, "interactions")
    if inter is not None and "student" in inter and "student_id" in inter:
        codes = np.asarray(inter["student"].values).astype(int)
        ids = np.asarray(inter["student_id"].values).astype(str)
        n = int(codes.max()) + 1 if codes.size else 0
        out = np.array([str(i) for i in range(n)], dtype=object)
        out[codes] = ids
        return out.astype(str)
    if post is not None and "state_student" in post.coords and not np.issubdtype(post["state_student"].dtype, np.integer):
        vals = np.asarray(post["state_student"].values)
        _, first = np.unique(vals.astype(str), return_index=True)
        return vals.astype(str)[np.sort(first)]
    cd = group_of(idata, "constant_data")
    n = int(cd["obs_student"].max()) + 1 if cd is not None and "obs_student" in cd else 0
    return np.array([str(i) for i in range(n)]).astype(str)


def state_owner(post: xr.Dataset, students: np.ndarray) -> np.ndarray:
    """Integer student code of every flat state (−1 where unknown).

    Parameters
    ----------
    post : xarray.Dataset
        The posterior group (``state_student`` coordinate on ``state``).
    students : numpy.ndarray
        Student ids by code, as `student_labels` returns them.

    Returns
    -------
    numpy.ndarray
        ``(state,)`` integer codes.
    """
    n_states = post.sizes.get("state", 0)
    if "state_student" not in post.coords:
        return np.full(n_states, -1)
    vals = np.asarray(post["state_student"].values)
    if np.issubdtype(vals.dtype, np.integer):  # codes into the students (trees since 2026-12-04)
        return vals.astype(int)
    lookup = {s: i for i, s in enumerate(students)}
    return np.array([lookup.get(str(v), -1) for v in vals], dtype=int)


def state_steps(post: xr.Dataset) -> np.ndarray:
    """Timestep of every flat state (the ``state_step`` coordinate; zeros without it).

    Parameters
    ----------
    post : xarray.Dataset
        The posterior group.

    Returns
    -------
    numpy.ndarray
        ``(state,)`` integers.
    """
    if "state_step" in post.coords:
        return np.asarray(post["state_step"].values).astype(int)
    return np.zeros(post.sizes.get("state", 0), dtype=int)


def subsample(n: int, cap: int, seed: int) -> np.ndarray:
    """Sorted random subset of range(n) of size ≤ cap (all of it when n ≤ cap).

    Parameters
    ----------
    n : int
        How many items there are.
    cap : int
        How many to keep at most.
    seed : int
        Seed of the choice (fixed seeds keep the tables reproducible).

    Returns
    -------
    numpy.ndarray
        Sorted indices.
    """
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


def thin_draws(n_chain: int, n_draw: int, max_total: int) -> np.ndarray:
    """Evenly spaced draw indices (the same in every chain) keeping ≤ max_total samples.

    Parameters
    ----------
    n_chain, n_draw : int
        Posterior shape.
    max_total : int
        Cap on chains × kept draws (at least one draw per chain is kept).

    Returns
    -------
    numpy.ndarray
        Sorted unique draw indices.
    """
    per_chain = max(1, min(n_draw, max_total // max(n_chain, 1)))
    return np.unique(np.linspace(0, n_draw - 1, per_chain).round().astype(int))


def as_array(da: xr.DataArray, *tail: str) -> np.ndarray:
    """Values with chain, draw first and the named dims last, in that order.

    Parameters
    ----------
    da : xarray.DataArray
        A variable with ``chain`` and ``draw`` dims.
    *tail : str
        Dims to put last, in this order.

    Returns
    -------
    numpy.ndarray
        ``(chain, draw, ..., *tail)``.
    """
    return np.asarray(da.transpose("chain", "draw", ..., *tail).values)


def flatten_quantities(ds: xr.Dataset, max_entities: int, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Stack every scalar quantity of `ds` into (chain, draw, K) with a label table.

    Parameters
    ----------
    ds : xarray.Dataset
        Per-draw quantities (e.g. from `identified_quantities`).
    max_entities : int
        Per variable, at most this many scalars (a random subsample, `seed`).
    seed : int
        Seed of that subsample.

    Returns
    -------
    arr : numpy.ndarray
        ``(chain, draw, K)``.
    labels : pandas.DataFrame
        K rows: ``variable``, a readable ``label`` and the ``student`` involved ("" if none).
    """
    blocks, labels = [], []
    for name, da in ds.data_vars.items():
        other = [d for d in da.dims if d not in SAMPLE_DIMS]
        arr = as_array(da, *other)
        n_c, n_d = arr.shape[:2]
        arr = arr.reshape(n_c, n_d, -1)
        k = arr.shape[2]
        pick = subsample(k, max_entities, seed) if other else np.arange(k)
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
            if name in ("pass_probability", "relevance", "assessment_logit") and "obs_assessment" in da.coords:
                bits.append(f"{student[j]} on {np.asarray(da.coords['obs_assessment'].values)[idx[0][j]]}")
            if name == "prerequisite_relevance" and "transition_lesson" in da.coords:
                bits.append(f"{student[j]} taking {np.asarray(da.coords['transition_lesson'].values)[idx[0][j]]}")
            labels.append((name, ", ".join(bits), student[j]))
    if not blocks:
        return np.empty((0, 0, 0)), pd.DataFrame(columns=["variable", "label", "student"])
    return np.concatenate(blocks, axis=2), pd.DataFrame(labels, columns=["variable", "label", "student"])
