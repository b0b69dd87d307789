"""Every engine's result in one layout: `build_datatree` turns an engine's raw free
variables into the posterior `xarray.DataTree` documented in ARCHITECTURE.md (the
schema that `results` reads, saves and loads).
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayes_lse.core.config import canonical_json, config_hash, skills_of
from bayes_lse.core.lazy import LazyModule
from bayes_lse.model.terms import HISTORY_COEFFICIENTS, HISTORY_COUNTS, LEARNED_SCALES

if TYPE_CHECKING:
    import xarray as xr

    from bayes_lse.data.log import InteractionLog
    from bayes_lse.model.graph import IndexArrays

#: version of the DataTree layout and of the saved-model folder (results.storage)
FORMAT_VERSION = 1
#: groups an engine may add beside posterior / observed_data / constant_data / interactions
GROUPS_OPTIONAL = ("sample_stats", "optimization", "student_posterior")

#: imported on first use: a MAP fit builds its tree only after the optimiser (issue 7)
xr: Any = LazyModule("xarray")


def package_version() -> str:
    """The installed bayes-lse version, recorded in every tree and model folder."""
    from bayes_lse import __version__

    return __version__


#: attribute of an `interactions` column stored as integer codes into a vocabulary
CATEGORIES_ATTR = "categories"


def _table_dataset(table: pd.DataFrame, shared: dict[str, tuple[str, pd.Index]] | None = None) -> xr.Dataset:
    """The training table as a netCDF-safe Dataset, sharing the table's memory.  A text
    column is stored as integer codes into its distinct values (the coordinate
    ``<column>__categories`` of its own dim, named in the codes' attribute `CATEGORIES_ATTR`;
    `table_frame` turns them back into text): at 25M rows the per-row strings were 2.1 GB in
    memory and most of the folder.  A category column gives its own codes and categories
    (no copy); numeric columns are the table's arrays; no ``row`` coordinate is stored (it
    was a 0.2 GB arange at 25M rows).  `shared` maps a text column to (the column holding
    its codes, the vocabulary): ``student_id`` is the ``student`` codes into the log's
    students (the InteractionLog contract), stored with the very Index the posterior's
    ``student`` coordinate holds — one set of id strings in memory, not two."""
    data: dict[str, Any] = {}
    coords: dict[str, Any] = {}
    shared = shared or {}
    for col in table.columns:
        s = table[col]
        if col in shared and shared[col][0] in table:
            name = f"{col}__categories"
            coords[name] = shared[col][1].rename(name)
            data[col] = xr.Variable("row", table[shared[col][0]].to_numpy(), attrs={CATEGORIES_ATTR: name})
        elif pd.api.types.is_bool_dtype(s):
            data[col] = ("row", s.to_numpy(dtype=np.int8))
        elif pd.api.types.is_numeric_dtype(s):
            data[col] = ("row", s.to_numpy(dtype=float if s.isna().any() else None))
        else:
            name = f"{col}__categories"
            if isinstance(s.dtype, pd.CategoricalDtype) and not s.isna().any():
                codes = s.cat.codes.to_numpy()
                # the vocabulary as the coordinate of its own dim, given as an Index: xarray
                # keeps it without copying (an object array was copied string by string:
                # 0.45 GB for 3.65M student ids)
                coords[name] = pd.Index(s.cat.categories, name=name).astype("str")
            else:
                codes, uniques = pd.factorize(s, use_na_sentinel=False)
                codes = codes.astype(np.int32)
                coords[name] = pd.Index([str(u) for u in uniques], dtype="str", name=name)
            data[col] = xr.Variable("row", codes, attrs={CATEGORIES_ATTR: name})
    return xr.Dataset(data, coords=coords)


def table_frame(ds: xr.Dataset) -> pd.DataFrame:
    """The `interactions` group back as the training table (text columns as text; a
    folder written before codes were used has its strings stored as they are)."""
    cols: dict[str, Any] = {}
    for name, v in ds.data_vars.items():
        if "row" not in v.dims:
            continue
        cat = v.attrs.get(CATEGORIES_ATTR)
        if cat is not None and cat in ds:
            vocab = np.asarray(ds[cat].values, dtype=object)
            cols[name] = (pd.Series(pd.Categorical.from_codes(np.asarray(v.values), categories=pd.Index(vocab, dtype=object)))
                          .astype("str") if len(vocab) else pd.Series([], dtype="str"))
        else:
            cols[name] = np.asarray(v.values)
    return pd.DataFrame(cols, index=pd.RangeIndex(ds.sizes.get("row", 0)))


def table_frame_of_students(ds: xr.Dataset, students: Any) -> pd.DataFrame:
    """`table_frame` of the rows of `students` (ids as text) only: the codes are matched
    first and only those rows decoded (the whole 25M-row table as text was +1 GB)."""
    if "student_id" not in ds or ds.sizes.get("row", 0) == 0:
        return table_frame(ds)
    col = ds["student_id"]
    cat = col.attrs.get(CATEGORIES_ATTR)
    wanted = pd.Index(pd.unique(np.asarray(students, dtype=object)))
    if cat is not None and cat in ds:
        want = pd.Index(np.asarray(ds[cat].values, dtype=object)).get_indexer(wanted)
        keep = np.isin(np.asarray(col.values), want[want >= 0])
    else:
        keep = pd.Index(np.asarray(col.values, dtype=object)).isin(wanted)
    rows = np.flatnonzero(keep)
    out = table_frame(ds.isel(row=rows))
    out.index = pd.Index(rows)
    return out


#: rows hashed at a time by `data_fingerprint`
FINGERPRINT_ROWS = 1 << 20


def data_fingerprint(table: pd.DataFrame, rows: int = FINGERPRINT_ROWS) -> str:
    """`config_hash` of the rows' hashes as a JSON list, streamed: the rows hashed
    `rows` at a time (a row's hash depends on that row alone) and the JSON text in blocks
    of 65,536 — the same digest as `config_hash(h.tolist())` without 536k Python ints
    and their JSON text at once (~35 MB on ASSISTments, at the end of a MAP fit; issue 7),
    nor the whole table's hashes and their per-column temporaries (~1 GB at 25M rows)."""
    import hashlib

    cols = [c for c in ("student_id", "module_id", "module_type", "outcome", "timestep") if c in table]
    digest = hashlib.sha256(b"[")
    first = True
    for r0 in range(0, len(table), rows):
        part = table[cols].iloc[r0 : r0 + rows]
        for c in cols:  # a category column hashes all its categories: only the chunk's (same row hashes)
            if isinstance(part[c].dtype, pd.CategoricalDtype):
                part[c] = part[c].cat.remove_unused_categories()
        h = pd.util.hash_pandas_object(part, index=False).to_numpy()
        for lo in range(0, len(h), 65536):
            block = ",".join(map(str, h[lo : lo + 65536].tolist()))
            digest.update(((b"" if first else b",") + block.encode()))
            first = False
    digest.update(b"]")
    return digest.hexdigest()[:16]


def build_datatree(
    model_config: dict[str, Any],
    fit_config: dict[str, Any],
    method: str,
    log: InteractionLog,
    idx: IndexArrays,
    raw: xr.Dataset,
    extra: dict[str, xr.Dataset],
    runtime: float,
) -> xr.DataTree:
    """Assemble the contract layout from the fit's raw free variables."""
    d = skills_of(model_config)
    first = raw[list(raw.data_vars)[0]]
    n_chain, n_draw = first.shape[0], first.shape[1]
    if "student_state" in raw:  # already in the flat state layout (amortised ADVI: no second copy)
        state = raw["student_state"].values
    elif "initial_state" in raw:
        state = np.empty((n_chain, n_draw, idx.n_states, d))
        state[:, :, idx.initial_state] = np.asarray(raw["initial_state"])
        if len(idx.later_state):
            state[:, :, idx.later_state] = np.asarray(raw["later_state"])
    else:  # the students' posterior is kept as parameters (extra group "student_posterior")
        state = None
    # the ids as one object Index: xarray keeps an Index as the coordinate's index and its
    # `.values` are this array (an object ndarray was copied string by string, 0.45 GB for
    # 3.65M students; an Arrow-backed Index made new strings at every `.values`, in each
    # diagnostic and twice in the file's encoding); the interactions' student_id shares it
    students = pd.Index(np.asarray(log.students, dtype=object), dtype=object)
    coords = {
        "chain": np.arange(n_chain),
        "draw": np.arange(n_draw),
        # range coordinates as RangeIndex: no materialised arange (state, obs and transition
        # were 0.29 GB of int64 at 25M rows); `.values` still gives the integers
        "state": pd.RangeIndex(idx.n_states),
        "skill": np.arange(d),
        "student": students,
        "assessment": np.asarray(log.assessments, dtype=object),
        "lesson": np.asarray(log.lessons, dtype=object),
    }
    cd = ("chain", "draw")
    post = {} if state is None else {"student_state": ((*cd, "state", "skill"), state)}
    dims = {
        "requirement": ("assessment", "skill"),
        "gain": ("lesson", "skill"),
        "prerequisite": ("lesson", "skill"),
        "student_bias": ("student",),
        "assessment_bias": ("assessment",),
        "tag_bias": ("tag",),
        "learning_noise": (),
        **{h: () for h in HISTORY_COEFFICIENTS},
        # the hierarchical model's hyperparameters (model.terms.HYPER_OF)
        **{h: () for h in LEARNED_SCALES},
    }
    for name, dd in dims.items():
        if name in raw:
            post[name] = ((*cd, *dd), np.asarray(raw[name]))
    if "tag_bias" in post:  # the tags and group values of the modules table (`IndexArrays.tag_names`)
        coords["tag"] = np.asarray(idx.tag_names, dtype=object)
    posterior = xr.Dataset(post, coords=coords)
    # each state's student as its code into the ``student`` coordinate / the "ids" attribute:
    # ids as strings per state were 11.3M Python strings at 25M rows (0.9 GB when xarray
    # copied them, and again on every load)
    posterior = posterior.assign_coords(
        state_student=xr.Variable("state", idx.state_student, attrs={"codes_of": "student"}),
        state_step=("state", idx.state_step),
    )
    posterior = posterior.drop_vars([c for c in ("student", "assessment", "lesson") if c not in posterior.dims])

    observed = xr.Dataset({"outcome": ("obs", idx.outcome)}, coords={"obs": pd.RangeIndex(len(idx.outcome))})
    constant = xr.Dataset(
        {
            "obs_state": ("obs", idx.obs_state),
            "obs_student": ("obs", idx.obs_student),
            "obs_assessment": ("obs", idx.obs_assessment),
            "transition_from": ("transition", idx.transition_from),
            "transition_to": ("transition", idx.transition_to),
            "transition_lesson": ("transition", idx.transition_lesson),
        },
        coords={"obs": pd.RangeIndex(len(idx.outcome)), "transition": pd.RangeIndex(len(idx.transition_from))},
    )
    if model_config.get("history"):
        constant["obs_history"] = (("obs", "history_kind"), idx.history)
        constant = constant.assign_coords(history_kind=list(HISTORY_COUNTS))
    table = log.table
    groups = {
        "posterior": posterior,
        "observed_data": observed,
        "constant_data": constant,
        "interactions": _table_dataset(table, {"student_id": ("student", students)}),
        **{k: v for k, v in extra.items() if k in GROUPS_OPTIONAL},
    }
    tree = xr.DataTree.from_dict(groups)
    fingerprint = data_fingerprint(table)
    tree.attrs = {
        "format_version": FORMAT_VERSION,
        "method": method,
        "model_config": canonical_json(model_config),
        "fit_config": canonical_json(fit_config),
        "data_fingerprint": fingerprint,
        "config_hash": config_hash(model_config, fit_config, method, fingerprint),
        "bayes_lse_version": package_version(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "runtime_seconds": float(runtime),
        "source": str(log.source),
        # the user's ids, also for dims a variant has no variable on (e.g. students without biases)
        "ids": json.dumps(
            {
                "student": [str(x) for x in log.students],
                "assessment": [str(x) for x in log.assessments],
                "lesson": [str(x) for x in log.lessons],
            }
        ),
    }
    return tree
