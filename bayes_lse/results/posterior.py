"""`FitResult`, the core of `bayes_lse.FittedLSE` (what a fit returns).  It carries the posterior, the training
interactions and the configs in one `xarray.DataTree` (layout in ARCHITECTURE.md),
predicts pass probabilities, and saves/loads itself as a folder of open formats.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayes_lse.model import terms as eq
from bayes_lse.results import storage
from bayes_lse.core.lazy import LazyModule
from bayes_lse.core.config import canonical_json, config_hash
from bayes_lse.inference.assemble import package_version, table_frame, table_frame_of_students
from bayes_lse.core.errors import InteractionLogError
from bayes_lse.data.modules import ModuleTable

if TYPE_CHECKING:
    import xarray as xr

    from bayes_lse.data.log import InteractionLog
    from bayes_lse.model.graph import IndexArrays

#: imported on first use: a MAP fit builds its tree only after the optimiser (issue 7)
xr: Any = LazyModule("xarray")


#: how `FittedLSE.predict` moves a state through a step it was not fitted on
UPDATES = eq.UPDATES

#: What `FitResult.predict` says when an input without timesteps is taken to follow
#: each student's fitted history.
CONTINUED_NOTE = ("{source} has no timestep column: each student's rows are taken to follow their fitted "
                  "history, starting from their current (last fitted) state; give timesteps (or "
                  "from_last_state=False) to score rows inside the fitted history")

#: Largest padded (chain, draw, student, step, skill) array `FitResult.states` builds.
MAX_STATE_CELLS = 50_000_000

#: Root attribute of the tree that holds the fit's overall verdict as JSON
#: (`Diagnostics.to_record`): recorded by `FittedLSE.diagnostics()` with the default
#: thresholds, saved inside fit.nc with the model (so covered by its hash), and read by
#: `saved_verdict`. Optional: a folder without it loads as before, and the same format
#: version reads both.
VERDICT_ATTR = "fit_verdict"


#: The group of an amortised fit whose students' posterior is kept as parameters, not
#: draws (ARCHITECTURE.md, "student posterior"): ``state_loc``, ``state_scale``
#: (state, skill), each state's truncated-normal (at 0, per skill) posterior from the
#: encoder, and ``bias_loc``, ``bias_scale`` (student), the bias's normal posterior;
#: attribute ``seed``.  Draws are made on demand, for the states asked for only
#: (`state_draws`, `bias_draws`), and are the same numbers whichever subset is asked
#: for: draw k of state i, skill j comes from a counter-based uniform of (seed, k, i, j).
STUDENT_POSTERIOR = "student_posterior"

def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on uint64 arrays (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def counter_uniforms(seed: int, stream: int, keys: np.ndarray) -> np.ndarray:
    """Uniforms in (0, 1) that are a pure function of (seed, stream, key): the same key
    gives the same number in any call, so a subset of draws equals the same cells of the
    whole array.  53-bit resolution, SplitMix64 of the key mixed with the seed."""
    with np.errstate(over="ignore"):
        base = _splitmix64(np.asarray([(seed & 0xFFFFFFFF) << 8 | (stream & 0xFF)], dtype=np.uint64))[0]
        x = _splitmix64(np.asarray(keys, dtype=np.uint64) ^ base)
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / 9007199254740992.0


def student_posterior(tree: xr.DataTree) -> xr.Dataset | None:
    """The `STUDENT_POSTERIOR` group of a tree, or None when its states are stored as draws."""
    return tree[STUDENT_POSTERIOR].to_dataset() if STUDENT_POSTERIOR in tree.children else None


def has_student_states(tree: xr.DataTree) -> bool:
    """True when the fit has student states, stored as draws or as parameters."""
    return "student_state" in tree["posterior"] or student_posterior(tree) is not None


def has_student_bias(tree: xr.DataTree) -> bool:
    """True when the model has a per-student bias, stored as draws or as parameters."""
    sp = student_posterior(tree)
    return "student_bias" in tree["posterior"] or (sp is not None and "bias_loc" in sp)


def _sample_shape(tree: xr.DataTree) -> tuple[int, int]:
    p = tree["posterior"]
    return int(p.sizes["chain"]), int(p.sizes["draw"])


def _student_draws(tree: xr.DataTree, name: str, index: np.ndarray | None, stacked: bool,
                   samples: tuple[np.ndarray, np.ndarray] | None, on_demand: Any) -> np.ndarray:
    """What `state_draws` and `bias_draws` share: variable `name`'s draws at `index` on its
    first non-sample dim, from the posterior when it stores them, else ``on_demand(k, S)``
    — the draws for sample keys ``k`` (chain·D + draw) out of ``S`` — in the layout asked for."""
    post = tree["posterior"]
    C, D = _sample_shape(tree)
    idx = None if index is None else np.asarray(index, dtype=np.int64)
    if name in post:
        v = post[name]
        if samples is not None:
            sel = {"chain": xr.DataArray(samples[0], dims="sample"), "draw": xr.DataArray(samples[1], dims="sample")}
            a = np.asarray(v.isel(sel).transpose("sample", *v.dims[2:]).values)
            return a if idx is None else a[:, idx]
        a = np.asarray(v.values)
        out = a if idx is None else a[:, :, idx]
    else:
        S = C * D
        k = (np.arange(S, dtype=np.uint64) if samples is None
             else (np.asarray(samples[0], dtype=np.int64) * D + np.asarray(samples[1], dtype=np.int64)).astype(np.uint64))
        out = on_demand(idx, k, S)
        if samples is not None:
            return out
        out = out.reshape(C, D, *out.shape[1:])
    return out.reshape(-1, *out.shape[2:]) if stacked else out


def state_student_ids(post: xr.Dataset, students: np.ndarray) -> np.ndarray:
    """(state,) object array: the student id of every flat state.  The ``state_student``
    coordinate holds codes into `students` (trees since 2026-12-04: the ids by reference, no
    string per state) or, in older folders, the ids themselves."""
    vals = post["state_student"].values
    if np.issubdtype(vals.dtype, np.integer):
        return np.asarray(students, dtype=object)[vals]
    return np.asarray(vals, dtype=object)


def state_draws(tree: xr.DataTree, flat: np.ndarray | None = None, *, stacked: bool = True,
                samples: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Posterior draws of the flat states `flat` (default: all): ``(chain·draw, n, d)``, or
    ``(chain, draw, n, d)`` with ``stacked=False``.  From the stored draws when the
    posterior has them, else drawn on demand from the `STUDENT_POSTERIOR` parameters
    (only the states asked for).  ``samples=(chains, draws)``: only those samples,
    ``(len(chains), n, d)`` (what thinned diagnostics use: no other draw is made)."""
    sp = None if "student_state" in tree["posterior"] else student_posterior(tree)
    if sp is None and "student_state" not in tree["posterior"]:
        raise KeyError("this fit has no student states")

    def on_demand(idx: np.ndarray | None, k: np.ndarray, S: int) -> np.ndarray:
        loc, scale = sp["state_loc"].values, sp["state_scale"].values
        n_states, d = loc.shape
        flat = np.arange(n_states, dtype=np.int64) if idx is None else idx
        keys = ((flat[None, :, None].astype(np.uint64) * np.uint64(d) + np.arange(d, dtype=np.uint64)[None, None])
                * np.uint64(S) + k[:, None, None])
        u = counter_uniforms(int(sp.attrs.get("seed", 0)), 0, keys)
        return eq.truncated_normal_quantile(loc[flat].astype(float), scale[flat].astype(float), 1.0 - u)

    return _student_draws(tree, "student_state", flat, stacked, samples, on_demand)


def bias_draws(tree: xr.DataTree, students: np.ndarray | None = None, *, stacked: bool = True,
               samples: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Posterior draws of the biases of student codes `students` (default: all):
    ``(chain·draw, n)`` or ``(chain, draw, n)``, or ``(len(chains), n)`` for
    ``samples=(chains, draws)``; stored draws or drawn on demand as in `state_draws`."""
    sp = None if "student_bias" in tree["posterior"] else student_posterior(tree)
    if "student_bias" not in tree["posterior"] and (sp is None or "bias_loc" not in sp):
        raise KeyError("this model has no student bias")

    def on_demand(idx: np.ndarray | None, k: np.ndarray, S: int) -> np.ndarray:
        from scipy.special import ndtri

        loc, scale = sp["bias_loc"].values, sp["bias_scale"].values
        idx = np.arange(len(loc), dtype=np.int64) if idx is None else idx
        keys = idx[None, :].astype(np.uint64) * np.uint64(S) + k[:, None]
        u = counter_uniforms(int(sp.attrs.get("seed", 0)), 1, keys)
        return loc[idx][None].astype(float) + scale[idx][None].astype(float) * ndtri(u)

    return _student_draws(tree, "student_bias", students, stacked, samples, on_demand)


class FitResult:
    """A fitted Latent Skill Embedding's posterior and data: accessors, prediction and saving.

    The public class is `bayes_lse.FittedLSE`, which adds diagnostics, the report and
    recommendations on top of this (api.py); this layer knows nothing of those.
    """

    def __init__(self, idata: xr.DataTree) -> None:
        self.idata = idata
        #: the amortised placement encoder (`inference.encoder.Encoder`), if trained or loaded
        self.encoder: Any = None
        #: the modules table the fit was given (`data.modules.ModuleTable`), if any: the tags
        #: from which an assessment added after the fit is predicted (`predict`)
        self.modules: ModuleTable | None = None
        self._tag_check: tuple[Any, dict[str, Any]] | None = None  # (modules it was made for, result)

    def tag_check(self) -> dict[str, Any]:
        """Whether the tags say something about the fitted assessments' difficulty — the
        gate on predicting new assessments from their tags (`tag_check`, computed once)."""
        if self._tag_check is None or self._tag_check[0] is not self.modules:
            self._tag_check = (self.modules, tag_check(self))
        return self._tag_check[1]

    def tag_means(self, module_ids: Any, seed: int | None = None, *,
                  unknown: str = "drop") -> tuple[np.ndarray, np.ndarray]:
        """Draws of each module's tag mean (`terms.tag_mean` over its row of the key matrix:
        its tags' and group values' effects averaged, from `modules`) and whether it has
        any tag, for a fit with tag effects.  A tag the fit has no effect for is left out (``unknown="drop"``, the
        default: the fit keeps only tags shared by two assessments, so a tag it lacks is
        one that pools nothing, like a new item's own id) or drawn from its prior
        N(0, tag_bias_sd²) (``"prior"``).

        Returns (samples, n) draws and a bool per module (False: no tag; its draws are 0).
        """
        tau = self.draws("tag_bias")
        col = {str(t): i for i, t in enumerate(self.ids_of("tag"))}
        keys = self.modules.keys_of("assessment") if self.modules is not None else {}
        sd = float(self.model_config["priors"].get("tag_bias_sd", 1.0))
        from scipy import sparse

        rng = np.random.default_rng(seed)
        # the modules' rows of the key matrix over the fit's keys, plus one column per
        # unknown key of a module drawn from the prior; then the model's own tag mean
        rows: list[int] = []
        cols: list[int] = []
        drawn: list[np.ndarray] = []
        for i, m in enumerate(module_ids):
            ks = sorted(keys.get(str(m), ()))
            known = [col[k] for k in ks if k in col]
            rows += [i] * len(known)
            cols += known
            if unknown == "prior":
                for _ in (k for k in ks if k not in col):
                    rows.append(i)
                    cols.append(len(col) + len(drawn))
                    drawn.append(rng.normal(0.0, sd, tau.shape[0]))
        per_row = np.bincount(np.asarray(rows, dtype=np.int64), minlength=len(module_ids))
        has = per_row > 0
        matrix = sparse.csr_matrix((1.0 / per_row[rows], (rows, cols)), shape=(len(module_ids), len(col) + len(drawn)))
        effects = np.column_stack([tau, *drawn]) if drawn else tau
        return eq.tag_mean(matrix, effects), has

    # ------------------------------------------------------------ properties
    @property
    def method(self) -> str:
        return str(self.idata.attrs["method"])

    @property
    def model_config(self) -> dict[str, Any]:
        return json.loads(self.idata.attrs["model_config"])

    @property
    def fit_config(self) -> dict[str, Any]:
        return json.loads(self.idata.attrs["fit_config"])

    @property
    def config_hash(self) -> str:
        return str(self.idata.attrs["config_hash"])

    @property
    def runtime_seconds(self) -> float:
        return float(self.idata.attrs["runtime_seconds"])

    @property
    def choices(self) -> list[str]:
        """What was chosen from the data because it was left at "auto" (the method, MAP's
        starts and iterations, the history term), each with its reason."""
        return list(json.loads(self.idata.attrs.get("choices", "[]")))

    @property
    def n_skills(self) -> int:
        return int(self.model_config["n_skills"])

    @property
    def posterior(self) -> xr.Dataset:
        return self.idata["posterior"].to_dataset()

    @property
    def students(self) -> pd.Index:
        return pd.Index(self.ids_of("student"))

    def ids_of(self, dim: str) -> np.ndarray:
        """The user's ids of `dim` ("student", "assessment", "lesson") in code order: the
        posterior's coordinate when it has one (the same ids, checked against ids.json on
        load), else the tree's "ids" attribute.  That attribute is a JSON text of every id:
        parsing it for each call was 3.65M strings (~0.3 GB, 1–2 s) a call at 25M rows."""
        post = self.idata["posterior"]
        if dim in post.coords:
            return np.asarray(post.coords[dim].values, dtype=object)
        ids = json.loads(self.idata.attrs.get("ids", "{}"))
        return np.asarray(ids.get(dim, []), dtype=object)

    @property
    def assessments(self) -> pd.Index:
        return pd.Index(self.ids_of("assessment"))

    @property
    def lessons(self) -> pd.Index:
        return pd.Index(self.ids_of("lesson"))

    @property
    def interactions(self) -> pd.DataFrame:
        return table_frame(self.idata["interactions"].to_dataset())

    @property
    def n_samples(self) -> int:
        p = self.idata["posterior"]
        return int(p.sizes["chain"] * p.sizes["draw"])

    def __repr__(self) -> str:
        p = self.idata["posterior"]
        return (
            f"<{type(self).__name__} method={self.method} d={self.n_skills} students={p.sizes.get('student', '?')} "
            f"states={p.sizes['state']} chains={p.sizes['chain']} draws={p.sizes['draw']} hash={self.config_hash}>"
        )

    def saved_verdict(self) -> dict[str, Any] | None:
        """The overall verdict recorded with the fit (`VERDICT_ATTR`), or None when the
        fit was never diagnosed with the default thresholds before it was saved."""
        raw = self.idata.attrs.get(VERDICT_ATTR)
        if not raw:
            return None
        try:
            rec = json.loads(raw)
        except (TypeError, ValueError):
            return None
        return rec if isinstance(rec, dict) and rec.get("status") in ("ok", "warn", "fail") else None

    # ------------------------------------------------------------------ draws
    def draws(self, name: str) -> np.ndarray:
        """Posterior draws of a variable, chains stacked: shape (chain·draw, ...).

        ``student_state`` and ``student_bias`` of a fit that keeps them as parameters
        (`STUDENT_POSTERIOR`) are drawn for every state / student here: at scale ask
        for the ones needed with `state_draws` / `bias_draws`."""
        if name not in self.idata["posterior"]:
            if name == "student_state" and has_student_states(self.idata):
                return state_draws(self.idata)
            if name == "student_bias" and has_student_bias(self.idata):
                return bias_draws(self.idata)
        v = np.asarray(self.idata["posterior"][name].values)
        return v.reshape(-1, *v.shape[2:])

    def state_draws(self, flat: np.ndarray | None = None) -> np.ndarray:
        """Draws of the flat states `flat` (`state_index`), ``(samples, n, d)``: only those
        are read or drawn."""
        return state_draws(self.idata, flat)

    def bias_draws(self, students: np.ndarray | None = None) -> np.ndarray:
        """Draws of the biases of student codes `students`, ``(samples, n)``."""
        return bias_draws(self.idata, students)

    def has(self, name: str) -> bool:
        if name == "student_state":
            return has_student_states(self.idata)
        if name == "student_bias":
            return has_student_bias(self.idata)
        return name in self.idata["posterior"]

    def history_draws(self) -> list[np.ndarray] | None:
        """Draws of the history term's coefficients (`terms.HISTORY_COEFFICIENTS` the
        fit has: two for a model saved before the recency feature, three before the practice
        counts — always a leading run, in feature order), or None without the term."""
        names = list(itertools.takewhile(self.has, eq.HISTORY_COEFFICIENTS))
        return [self.draws(k) for k in names] if names else None

    def learning_noise_draws(self) -> np.ndarray:
        if self.has("learning_noise"):
            return self.draws("learning_noise")
        noise = self.model_config["learning_noise"]
        return np.full(self.n_samples, float(noise))

    def state_index(self) -> pd.DataFrame:
        """Flat state index per (student_id, step) — the ragged layout of `student_state`."""
        p = self.idata["posterior"]
        return pd.DataFrame(
            {
                "student_id": state_student_ids(p, self.ids_of("student")),
                "step": np.asarray(p["state_step"].values),
                "state": np.arange(p.sizes["state"]),
            }
        )

    def last_states(self) -> pd.DataFrame:
        """Each student's last fitted step and its flat state index (indexed by student id,
        in the order of the flat states).

        A student's states are contiguous in the flat order, so the last ones are where
        the ``state_student`` codes change: at 25M rows (11.3M states, 3.65M students) the
        groupby over a per-state column of ids took ~23 s and `predict` ran it twice."""
        p = self.idata["posterior"]
        codes = p["state_student"].values
        if np.issubdtype(codes.dtype, np.integer) and codes.size:
            ends = np.flatnonzero(np.r_[codes[1:] != codes[:-1], True])
            owner = codes[ends]
            if len(np.unique(owner)) == len(owner):  # contiguous: each student once
                ids = np.asarray(self.ids_of("student"), dtype=object)[owner]
                return pd.DataFrame({"step": np.asarray(p["state_step"].values)[ends], "state": ends},
                                    index=pd.Index(ids, name="student_id", dtype=object))
        si = self.state_index()
        return si.groupby("student_id", sort=False).last()

    def student_states(self, student: str) -> np.ndarray:
        """Draws of every state of `student`: shape (samples, steps, skills)."""
        si = self.state_index()
        rows = si.index[si["student_id"] == str(student)]
        if len(rows) == 0:
            raise KeyError(f"student {student!r} is not in the fitted model")
        return self.state_draws(rows.to_numpy())

    def states(self, students: list[str] | str | None = None, *, max_cells: int = MAX_STATE_CELLS) -> xr.DataArray:
        """The student states as a labelled `xarray.DataArray` with dims
        ``(chain, draw, student, step, skill)``, so ``.sel(student="s17")`` and
        ``.sel(step=3)`` work (the posterior keeps them on one flat, ragged ``state`` dim).

        Steps past a student's last fitted step are NaN; the ``last_step`` coordinate on
        ``student`` says where each history ends. Skill labels are the raw ones (not
        aligned across chains: norms and pass probabilities are what the model
        identifies).

        Parameters
        ----------
        students : str or list of str, optional
            Only these students, in this order (default: every student).
        max_cells : int
            Refuse a padded array larger than this many numbers (long, uneven histories
            would make most of it NaN); ask for fewer students instead.

        Returns
        -------
        xarray.DataArray
            Named ``student_state``.

        Raises
        ------
        KeyError
            For a student not in the model.
        ValueError
            When the padded array would exceed `max_cells`.
        """
        si = self.state_index()
        if students is None:
            ids = pd.unique(si["student_id"]).tolist()
        else:
            ids = [str(students)] if isinstance(students, str) else [str(s) for s in students]
            unknown = sorted(set(ids) - set(si["student_id"]))
            if unknown:
                raise KeyError(f"student(s) {', '.join(map(repr, unknown[:5]))} not in the fitted model")
            si = si[si["student_id"].isin(ids)]
        post = self.idata["posterior"]
        n_chain, n_draw = int(post.sizes["chain"]), int(post.sizes["draw"])
        d = self.n_skills
        n_steps = int(si["step"].max()) + 1 if len(si) else 0
        cells = n_chain * n_draw * len(ids) * n_steps * d
        if cells > max_cells:
            raise ValueError(f"the padded states array would hold {cells:,} numbers (> max_cells={max_cells:,}); "
                             "ask for fewer students (states(students=[...])) or use student_states(student)")
        out = np.full((n_chain, n_draw, len(ids), n_steps, d), np.nan)
        row = pd.Index(ids).get_indexer(si["student_id"])
        out[:, :, row, si["step"].to_numpy()] = state_draws(self.idata, si["state"].to_numpy(), stacked=False)
        last = si.groupby("student_id")["step"].max().reindex(ids).to_numpy()
        return xr.DataArray(
            out, name="student_state", dims=("chain", "draw", "student", "step", "skill"),
            coords={"chain": post["chain"].values, "draw": post["draw"].values, "student": ids,
                    "step": np.arange(n_steps), "skill": np.arange(d), "last_step": ("student", last)},
        )

    def current_state(self, student: str) -> np.ndarray:
        """Draws of the student's state after its last fitted step: (samples, skills)."""
        return self.student_states(student)[:, -1]

    # --------------------------------------------------------------- predict
    def pass_probability_draws(self) -> np.ndarray:
        """Pass probability of every observed training row, per draw: (samples, obs)."""
        cd = self.idata["constant_data"]
        st = cd["obs_state"].values
        stu = cd["obs_student"].values
        asm = cd["obs_assessment"].values
        hist = cd["obs_history"].values if "obs_history" in cd else None
        return pass_draws(self, self.state_draws(st), asm, stu, hist)

    def predict(
        self,
        interactions: pd.DataFrame | str | Path | InteractionLog,
        *,
        ci: float = 0.9,
        update: str = "auto",
        seed: int | None = None,
        new_assessments: bool = True,
        from_last_state: bool | None = None,
    ) -> pd.DataFrame:
        """Pass probability of every assessment row: posterior mean and central `ci` interval.

        An assessment that is not in the model (added after the fit) is predicted as a
        draw from the population of assessments (`new_assessment_draws`): its interval
        covers the spread of assessments as well as the student's uncertainty, and the
        row's ``assessment_seen`` is False.  When the fit has tag effects (a modules
        table given to ``fit``, model config ``tags``), the table tags that assessment and
        the fit's `tag_check` says tags predict difficulty, its bias is centred on its
        tags' fitted effects (`tag_means`, `new_assessment_draws`) and ``assessment_from``
        says ``"tags"``; otherwise ``"population"`` (``"fit"`` for a seen assessment).
        ``new_assessments=False`` refuses such rows.

        A row within a student's fitted history uses that step's state; a row beyond it
        starts from the student's last fitted state and follows the lessons given in the
        same table. `update` says how a state moves through a step:

        - ``"expected"``: the mean of the truncated-normal update, what the
          model says happens on average. Truncation at zero adds σ_L·φ(z)/Φ(z) to every
          coordinate at every step, so a state drifts upwards even without lessons;
        - ``"mode"``: the most likely next state, max(0, s + l·σ(D(s, q))), no drift. A
          MAP fit's trajectories follow the mode of every transition; on ASSISTments
          (docs/results.md) the two forecasts score within 0.01 AUC of each other;
        - ``"sample"``: one noisy update per draw, the full posterior predictive;
        - ``"auto"`` (default): ``"mode"`` for a MAP fit, whose fitted trajectory follows
          the modes (the expected update's drift, σ_L·φ(0)/Φ(0) ≈ 0.56 a step for a state
          near 0, is something its fit never saw: on the 26-user Riiid log, whose held-out
          answers lie many lecture steps beyond the fit, d = 1 MAP scored AUC 0.765
          expected against 0.819 mode, 1PL 0.824; docs/results.md "Tags"), ``"expected"``
          for ADVI and NUTS.

        Rows need no outcome (the column may be missing or empty). Without a
        ``timestep`` column a student's rows are taken to come after their fitted
        history (`from_last_state`): the first answers are scored in the student's
        current (last fitted) state, and a lesson row moves it one step on; the
        returned ``timestep`` is then the step each row was scored at.

        Parameters
        ----------
        interactions : DataFrame, path or InteractionLog
            Rows of students in the model (DESIGN §2); lesson rows beyond a student's
            fitted history are the lessons to push the state through.
        ci : float
            Width of the central interval (default 0.9).
        update : {"auto", "expected", "mode", "sample"}
            How a state moves through a step beyond the fitted history (above).
        seed : int, optional
            Seed for ``update="sample"``.
        from_last_state : bool, optional
            True: each student's timesteps count from their last fitted step (timestep 0
            of the input = the current state). False: timesteps are the fitted history's
            own (timestep 0 = the student's first state). Default: True exactly when the
            input has no ``timestep`` column, with a `UserWarning` saying so (before
            issue 20 such rows were scored at step 0, the student's state before any
            lesson).

        Returns
        -------
        pandas.DataFrame
            One row per assessment row: ``student_id, module_id, timestep, p_mean,
            p_low, p_high, assessment_seen, assessment_from`` (and ``outcome`` / ``p_true`` when the
            input has them; an ``outcome`` column left empty is not returned).
            A point estimate (MAP) gives ``p_low = p_high = p_mean``.
        """
        from bayes_lse.data.log import InteractionLog, read_interactions

        log = (interactions if isinstance(interactions, InteractionLog)
               else read_interactions(interactions, require_outcomes=False))
        if not 0 < ci < 1:
            raise ValueError(f"ci must be in (0, 1), got {ci}")
        update = self.resolve_update(update)
        t = log.table
        src = str(log.source)
        known_students = self.last_states()
        a_codes = pd.Index(self.assessments)
        l_codes = pd.Index(self.lessons)

        def fail(mask: np.ndarray, column: str, what: str) -> None:
            i = int(np.flatnonzero(mask)[0])
            raise InteractionLogError(
                src,
                f"{what} {t[column].iloc[i]!r} is not in the fitted model",
                row=int(t["source_row"].iloc[i]),
                column=column,
                row_kind=getattr(log, "row_kind", "row"),
            )

        is_a = (t["module_type"] == "assessment").to_numpy()
        unknown_s = ~t["student_id"].isin(known_students.index).to_numpy()
        if unknown_s.any():
            fail(unknown_s, "student_id", "student")
        a_idx = a_codes.get_indexer(t["module_id"])
        if (is_a & (a_idx < 0)).any() and not new_assessments:
            fail(is_a & (a_idx < 0), "module_id", "assessment")
        l_idx = l_codes.get_indexer(t["module_id"])
        last_step = known_students["step"].reindex(t["student_id"]).to_numpy()
        last_state = known_students["state"].reindex(t["student_id"]).to_numpy()
        step = t["timestep"].to_numpy()
        if from_last_state is None:
            from_last_state = bool(getattr(log, "timesteps_derived", False))
            if from_last_state:
                import warnings

                warnings.warn(CONTINUED_NOTE.format(source=src), UserWarning, stacklevel=2)
        if from_last_state:  # every later use (lessons to push through, history term) reads these steps
            step = step + last_step.astype(step.dtype)
            t = t.assign(timestep=step)
        is_l = ~is_a
        future_lesson = is_l & (step >= last_step)
        if (future_lesson & (l_idx < 0)).any() and self.model_config["lessons"]:
            fail(future_lesson & (l_idx < 0), "module_id", "lesson")

        rows = np.flatnonzero(is_a)
        n = self.n_samples
        d = self.n_skills
        within = step[rows] <= last_step[rows]
        flat = (last_state[rows] - last_step[rows] + step[rows]).astype(np.int64)
        beyond = np.flatnonzero(~within)
        # rows beyond the fitted history: pushed through their lessons together (few, usually)
        pushed = (self._push_forward(t, rows[beyond], is_l, l_idx, last_step, last_state, update, seed)
                  if len(beyond) else None)
        at_beyond = np.full(len(rows), -1, dtype=np.int64)
        at_beyond[beyond] = np.arange(len(beyond))

        stu_codes = pd.Index(self.ids_of("student")).get_indexer(t["student_id"].iloc[rows]) if self.has("student_bias") else None
        seen = a_idx[rows] >= 0
        row_ids = t["module_id"].iloc[rows].astype(str).to_numpy()
        source = np.where(seen, "fit", "population").astype(object)
        shifts: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # new assessment → (fitted tag means, its own)
        if self.has("tag_bias") and self.modules is not None and (~seen).any() and self.tag_check()["use"]:
            new_ids = np.unique(row_ids[~seen])
            own, _ = self.tag_means(self.assessments, unknown="drop")
            means, has = self.tag_means(new_ids)
            for i, m in enumerate(new_ids):
                if has[i]:
                    shifts[str(m)] = (own, means[:, i])
                    source[~seen & (row_ids == m)] = "tags"
        # every answer row, seen assessment or not: each counts as an answer in between for the lag
        history = self.history_of(t.iloc[rows])
        alpha = (1 - ci) / 2
        p_mean = np.empty(len(rows))
        p_low = np.empty(len(rows))
        p_high = np.empty(len(rows))

        def summarise(p: np.ndarray, at: np.ndarray) -> None:
            p_mean[at] = p.mean(axis=0)
            p_low[at], p_high[at] = np.quantile(p, [alpha, 1 - alpha], axis=0)  # one partition for both

        # rows in chunks of PREDICT_CELLS // draws: the (draws, rows, d) states and the pass
        # probability's temporaries of 46,519 rows × 1,000 draws peaked at 8.7 GB (25M-row model)
        step_rows = max(1, PREDICT_CELLS // max(n, 1))
        for lo in range(0, len(rows), step_rows):
            c = np.arange(lo, min(lo + step_rows, len(rows)))
            row_state = np.empty((n, len(c), d))
            w = within[c]
            # only the states these rows need are read (or drawn, for a fit that keeps its
            # students' posterior as parameters; the same draws in any chunking)
            if w.any():
                need, inv = np.unique(flat[c][w], return_inverse=True)
                row_state[:, w] = self.state_draws(need)[:, inv]
            if (~w).any():
                row_state[:, ~w] = pushed[:, at_beyond[c[~w]]]
            sc = None if stu_codes is None else stu_codes[c]
            k = seen[c]
            if k.any():
                hk = None if history is None else history[c[k]]
                summarise(pass_draws(self, row_state[:, k], a_idx[rows[c[k]]], None if sc is None else sc[k], hk), c[k])
            if (~k).any():
                # the population once for the untagged, once per new assessment centred on its tags
                groups = [(None, ~k & (source[c] == "population"))]
                groups += [(shifts[m], ~k & (row_ids[c] == m)) for m in np.unique(row_ids[c][~k & (source[c] == "tags")])]
                for shift, g in groups:
                    if g.any():
                        hn = None if history is None else history[c[g]]
                        summarise(new_assessment_draws(self, row_state[:, g], None if sc is None else sc[g], seed,
                                                       history=hn, tags=shift), c[g])
        out = pd.DataFrame(
            {
                "student_id": t["student_id"].iloc[rows].to_numpy(),
                "module_id": t["module_id"].iloc[rows].to_numpy(),
                "timestep": step[rows],
                "p_mean": p_mean,
                "p_low": p_low,
                "p_high": p_high,
                "assessment_seen": seen,
                "assessment_from": source.astype(str),
            }
        )
        for extra in ("outcome", "p_true"):
            if extra in t and not (extra == "outcome" and t[extra].iloc[rows].isna().all()):
                out[extra] = t[extra].iloc[rows].to_numpy()
        return out

    def history_of(self, rows: pd.DataFrame, sequential: bool = True) -> np.ndarray | None:
        """The history term's counts (rows, 5) for rows to predict (None without the term):
        earlier successes/failures on the same assessment and on any assessment (practice),
        counted over the fitted training answers at or before each row's timestep, and the
        lag since the last answer to the same assessment — the
        student's answers from it to the row, where the rows being predicted (in the order
        given) count as answers in between; `sequential=False`: each row is a what-if of its
        own, answered next (`evaluate.paths` scores two branches of one student).  Rows being
        predicted do not count each other's outcomes, as for `pfa`."""
        if not self.model_config.get("history"):
            return None
        # only the training rows of these rows' students, decoded to text (the whole table as
        # text was 25M strings a column, +1 GB, at 25M rows)
        t = table_frame_of_students(self.idata["interactions"].to_dataset(), rows["student_id"].astype(str).unique())
        t = t.loc[t["module_type"].astype(str) == "assessment", ["student_id", "module_id", "timestep", "outcome"]]
        t = t.astype({"student_id": str, "module_id": str})
        r = pd.DataFrame({"student_id": rows["student_id"].astype(str).to_numpy(),
                          "module_id": rows["module_id"].astype(str).to_numpy(),
                          "at": rows["timestep"].to_numpy(), "i": np.arange(len(rows))})
        # each training answer's rank in its student's (timestep, row) order; each row's
        # answers at or before it (n_before) and its rank among the rows being predicted
        t = t.sort_values(["student_id", "timestep"], kind="stable")
        t["rank"] = t.groupby("student_id", sort=False).cumcount()
        r["k"] = r.groupby("student_id", sort=False).cumcount() if sequential else 0
        code = pd.Index(pd.unique(np.concatenate([t["student_id"].to_numpy(), r["student_id"].to_numpy()])))
        key_t = code.get_indexer(t["student_id"]).astype(np.int64)
        ts = t["timestep"].to_numpy(np.int64)
        big = int(max(ts.max(initial=0), r["at"].max()) + 2)
        by_key = np.argsort(key_t * big + ts, kind="stable")
        keys = (key_t * big + ts)[by_key]
        won = np.concatenate([[0.0], np.cumsum(t["outcome"].to_numpy(float)[by_key])])  # successes up to a position
        key_r = code.get_indexer(r["student_id"]).astype(np.int64)
        hi = np.searchsorted(keys, key_r * big + r["at"].to_numpy(np.int64), side="right")
        lo = np.searchsorted(keys, key_r * big, side="left")
        n_before = hi - lo
        m = r.merge(t, on=["student_id", "module_id"])
        m = m[m["timestep"] <= m["at"]]
        agg = m.groupby("i").agg(s=("outcome", "sum"), n=("outcome", "size"), last=("rank", "max"))
        at = agg.index.to_numpy()
        out = np.zeros((len(rows), len(eq.HISTORY_COUNTS)))
        out[at, 0] = agg["s"].to_numpy()
        out[at, 1] = (agg["n"] - agg["s"]).to_numpy()
        out[at, 2] = n_before[at] - agg["last"].to_numpy() + r["k"].to_numpy()[at]
        out[:, 3] = won[hi] - won[lo]  # the student's successes and failures on any assessment (practice)
        out[:, 4] = n_before - out[:, 3]
        return out

    def resolve_update(self, update: str) -> str:
        """Check `update` (see `predict`); "auto" is "mode" for a MAP fit and "expected"
        for ADVI and NUTS."""
        if update == "auto":
            return "mode" if self.method == "map" else "expected"
        if update not in UPDATES:
            raise ValueError(f"update must be 'auto' or one of {', '.join(map(repr, UPDATES))}, got {update!r}")
        return update

    def _push_forward(self, t, rows, is_l, l_idx, last_step, last_state, update, seed) -> np.ndarray:
        """States of rows beyond the fitted history, stepping all students at once."""
        rng = np.random.default_rng(seed)
        noise = self.learning_noise_draws()
        use_lessons = self.model_config["lessons"] and self.has("gain")
        gain = self.draws("gain") if use_lessons else None
        prereq = self.draws("prerequisite") if use_lessons and self.has("prerequisite") else None
        sid = t["student_id"].to_numpy()
        step = t["timestep"].to_numpy()
        # lessons per (student, step) from the prediction table
        lesson_at: dict[tuple[str, int], int] = {}
        for i in np.flatnonzero(is_l & (step >= last_step)):
            lesson_at[(sid[i], int(step[i]))] = int(l_idx[i])
        out = np.empty((self.n_samples, len(rows), self.n_skills))
        students = pd.unique(sid[rows])
        target = {s: [] for s in students}
        for j, r in enumerate(rows):
            target[sid[r]].append((int(step[r]), j))
        first_pos: dict[str, int] = {}
        for j, r in enumerate(rows):
            first_pos.setdefault(sid[r], int(r))
        first = {s: int(last_step[first_pos[s]]) for s in students}
        cur = self.state_draws(np.array([int(last_state[first_pos[s]]) for s in students], dtype=np.int64))
        base = np.array([first[s] for s in students])
        horizon = max(max(st for st, _ in target[s]) - first[s] for s in students)
        for k in range(horizon + 1):
            # record rows answered at this step
            for si, s in enumerate(students):
                for st, j in target[s]:
                    if st == base[si] + k:
                        out[:, j] = cur[:, si]
            if k == horizon:
                break
            lk = np.array([lesson_at.get((s, int(base[si] + k)), -1) for si, s in enumerate(students)])
            cur = eq.step_states(cur, lk, gain, prereq, noise[:, None, None], update, rng)
        return out

    # ---------------------------------------------------------- save / load
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model folder (results.storage) atomically.

        Parameters
        ----------
        path : str or Path
            The folder to write.
        overwrite : bool
            Replace an existing model there (only after the new one is complete);
            without it an existing model is refused, and anything else at `path` is
            never touched.

        Returns
        -------
        Path
            The folder written.
        """
        from bayes_lse.core.memory import release_free_memory

        release_free_memory()  # what the fit and its diagnostics freed, before the file's encoding
        tree = self.idata
        config = {
            "method": self.method,
            "model_config": self.model_config,
            "fit_config": self.fit_config,
            "config_hash": self.config_hash,
        }
        def write_ids(p: Path) -> None:  # the lists built here and freed before fit.nc is encoded
            ids = {
                "students": [str(s) for s in self.ids_of("student")],
                "assessments": [str(a) for a in self.ids_of("assessment")],
                "lessons": [str(x) for x in self.ids_of("lesson")],
            }
            p.write_text(json.dumps(ids, indent=1))

        def write_nc(p: Path) -> None:
            file_tree(tree).to_netcdf(p, engine="h5netcdf")

        writers = {
            "config.json": lambda p: p.write_text(json.dumps(config, indent=1, sort_keys=True)),
            "ids.json": write_ids,
            "fit.nc": write_nc,
        }
        if self.modules is not None:
            text = self.modules.to_json()
            writers["modules.json"] = lambda p: p.write_text(text)
        encoder = getattr(self, "encoder", None)
        if encoder is not None:  # the amortised placement encoder (issue 16), checked to be this fit's
            from bayes_lse.results.encoder import check_encoder, encoder_writers

            check_encoder(encoder, self)
            writers.update(encoder_writers(encoder))
        manifest = {
            "bayes_lse_version": package_version(),
            "method": self.method,
            "config_hash": self.config_hash,
            "saved": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        return storage.write_folder(Path(path), writers, manifest, overwrite)


#: dims whose coordinate is 0..n−1: kept in memory as a RangeIndex, not written to fit.nc
#: (xarray materialised all of them at once while writing: 0.4 GB at 25M rows), restored by
#: `load_tree`
RANGE_DIMS = ("state", "obs", "transition")


def _is_range(index: Any) -> bool:
    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1


def file_tree(tree: xr.DataTree) -> xr.DataTree:
    """`tree` as written to fit.nc: the same groups and attributes, without the `RANGE_DIMS`
    coordinates that are plain ranges (no data copied)."""
    nodes = {}
    for node in tree.subtree:
        ds = node.to_dataset(inherit=False)
        drop = [d for d in RANGE_DIMS if d in ds.indexes and _is_range(ds.indexes[d])]
        nodes[node.path] = ds.drop_vars(drop) if drop else ds
    return xr.DataTree.from_dict(nodes)


def _restore_ranges(tree: xr.DataTree) -> None:
    """The `RANGE_DIMS` coordinates a saved tree was written without, as RangeIndex."""
    for node in tree.subtree:
        ds = node.to_dataset(inherit=False)
        missing = {d: pd.RangeIndex(ds.sizes[d]) for d in RANGE_DIMS if d in ds.dims and d not in ds.coords}
        if missing:
            node.dataset = ds.assign_coords(missing)


def pass_draws(fitted: FitResult, state: np.ndarray, assessment: np.ndarray, student: np.ndarray | None,
                history: np.ndarray | None = None) -> np.ndarray:
    """σ(D(s, a) + biases [+ history term]) for (samples, rows) given row states
    (samples, rows, d); `history`: (rows, 5) earlier successes/failures on the same
    assessment, the lag since the last of them, and successes/failures on any assessment
    (`terms.assessment_history_counts`),
    needed when the model has the history term."""
    req = fitted.draws("requirement")[:, assessment]
    g_u = fitted.bias_draws(student) if student is not None and fitted.has("student_bias") else 0.0
    g_j = fitted.draws("assessment_bias")[:, assessment] if fitted.has("assessment_bias") else 0.0
    coefs = fitted.history_draws()
    if coefs is not None:
        if history is None:
            raise ValueError("this model has a history term: pass the earlier successes/failures of each row")
        g_j = g_j + eq.history_logit(np.asarray(history, dtype=float)[None], [c[:, None] for c in coefs])
    return eq.pass_probability(state, req, g_u, g_j)


#: draws × rows scored at a time by `FitResult.predict` (8,192 rows at 1,000 draws)
PREDICT_CELLS = 8_192_000


#: population draws for an assessment the model has not seen: about this many in all
#: (posterior draws × population draws per posterior draw, at least one per draw)
NEW_ASSESSMENT_DRAWS = 4096


def new_assessment_draws(fitted: FitResult, state: np.ndarray, student: np.ndarray | None,
                         seed: int | None = None, total: int = NEW_ASSESSMENT_DRAWS,
                         history: np.ndarray | None = None,
                         tags: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Pass-probability draws (samples·k, rows) for assessments the model has not seen.

    Such an assessment is one more draw from the population the fitted ones come from,
    so per posterior draw k (requirement, bias) pairs are drawn (k·samples ≈ `total`):
    from the learned population of a hierarchical fit by ADVI or NUTS (requirement ~
    HalfNormal(σ_a)^d, bias ~ N(μ_g, σ_g²) at that draw's hyperparameters); otherwise
    — and for MAP, where σ_a is not learned (inference.empirical_bayes) — by resampling
    that draw's fitted assessments (the empirical population).  With no earlier answers
    to it, its history term has only the student's practice counts: `history` (rows, 5),
    `FitResult.history_of`, for a model with the term.  The draws' spread is the band
    that says the assessment is unknown.

    `tags` = (tag means of the fitted assessments (samples, J), the new one's (samples,)),
    `FitResult.tag_means`, for a fit with tag effects: the new assessment's bias is then
    centred on its tags — a resampled assessment keeps its deviation from its own tags'
    mean and takes the new one's (g_new = g_pick − m_pick + m_new), a learned population
    is shifted by it (docs/results.md, "Tags").
    """
    rng = np.random.default_rng(seed)
    req = fitted.draws("requirement")  # (S, J, d)
    n_s, n_j, d = req.shape
    k = int(np.clip(total // n_s, 1, 256))
    g_j = fitted.draws("assessment_bias") if fitted.has("assessment_bias") else np.zeros((n_s, n_j))
    learned_population = (fitted.method != "map" and fitted.has("sigma_assessment_bias")
                          and fitted.has("sigma_requirement"))
    if learned_population:
        sa = fitted.draws("sigma_requirement").reshape(n_s, 1, 1)
        new_req = np.abs(rng.normal(size=(n_s, k, d))) * sa
        new_g = fitted.draws("mu_assessment_bias").reshape(n_s, 1) + fitted.draws(
            "sigma_assessment_bias").reshape(n_s, 1) * rng.normal(size=(n_s, k))
    else:
        pick = rng.integers(0, n_j, size=(n_s, k))
        new_req = np.take_along_axis(req, pick[..., None], axis=1)
        new_g = np.take_along_axis(g_j, pick, axis=1)
    if tags is not None:
        own, new = tags
        new_g = new_g + new[:, None]
        if not learned_population:
            new_g = new_g - np.take_along_axis(own, pick, axis=1)
    g_u = fitted.bias_draws(student) if student is not None and fitted.has("student_bias") else None
    rows = state.shape[1]
    coefs = fitted.history_draws()
    off = (np.zeros((n_s, rows)) if history is None or coefs is None
           else eq.history_logit(np.asarray(history, dtype=float)[None], [c[:, None] for c in coefs]))
    out = np.empty((n_s, k, rows))
    for lo in range(0, rows, 256):  # (S, k, block, d) at a time
        hi = min(lo + 256, rows)
        gu = 0.0 if g_u is None else g_u[:, None, lo:hi]
        out[:, :, lo:hi] = eq.pass_probability(state[:, None, lo:hi], new_req[:, :, None], gu,
                                               new_g[:, :, None] + off[:, None, lo:hi])
    return out.reshape(n_s * k, rows)


def tag_check(fitted: FitResult) -> dict[str, Any]:
    """Do the tags predict an assessment's difficulty?  The gate on predicting a new
    assessment from its tags (`FitResult.predict`).

    Each fitted assessment's identified difficulty offset c_j = g_j − |a_j| (posterior
    means; the pass logit sees the bias and the requirement length only through it) is
    predicted, leaving it out, by the mean offset of the other assessments sharing its
    tags (the tags the fit has effects for, averaged) and by the mean of all the others;
    tags are used when their mean squared error is the lower.  Why a gate and not the
    tag effects alone: the model's tag effects move the bias g_j, and g_j trades against
    |a_j| — on MoFaCTS the fitted σ_τ was 1.4, yet the four cloze items of a fact are no
    more alike in c_j than any four (LOO MSE 1.17 with tags, 1.06 without, 144 items),
    and new items predicted from their tags lost 0.013 AUC against the population; on
    the Riiid smoke set the tags do predict c_j (0.259 against 0.300, 6,868 questions)
    and gained 0.007 (`benchmarks/real_logs_new_items.py`).

    Returns ``use`` (bool), ``mse_tags``, ``mse_population``, ``items`` (assessments
    with tags shared by another), ``reason`` (one line).
    """
    out: dict[str, Any] = {"use": False, "mse_tags": float("nan"), "mse_population": float("nan"), "items": 0}
    if fitted.modules is None or not fitted.has("tag_bias"):
        return {**out, "reason": "no tag effects in this fit"}
    ids = [str(a) for a in fitted.assessments]
    c = fitted.draws("assessment_bias").mean(axis=0) - np.linalg.norm(fitted.draws("requirement").mean(axis=0), axis=-1)
    matrix, _ = fitted.modules.key_matrix(ids, "assessment", min_modules=2)
    member = (matrix > 0).astype(float).tocsc()
    total, count = member.T @ c, np.asarray(member.sum(axis=0)).ravel()
    member = member.tocsr()
    n = len(c)
    err_t, err_p = [], []
    for j in range(n):
        cols = member.indices[member.indptr[j]:member.indptr[j + 1]]
        cols = cols[count[cols] > 1]
        if len(cols) == 0 or n < 3:
            continue
        err_t.append((c[j] - np.mean((total[cols] - c[j]) / (count[cols] - 1))) ** 2)
        err_p.append((c[j] - (c.sum() - c[j]) / (n - 1)) ** 2)
    if len(err_t) < 2:
        return {**out, "reason": "too few tagged assessments share a tag to check the tags"}
    mt, mp = float(np.mean(err_t)), float(np.mean(err_p))
    use = mt < mp
    return {"use": use, "mse_tags": mt, "mse_population": mp, "items": len(err_t),
            "reason": (f"tags {'do' if use else 'do not'} predict the fitted assessments' difficulty better than "
                       f"the population (leave-one-out MSE {mt:.3f} vs {mp:.3f} over {len(err_t)} assessments): "
                       f"an assessment added after the fit is predicted from {'its tags' if use else 'all of them'}")}


def read_modules_file(path: str | Path) -> ModuleTable | None:
    """The modules table saved in model folder `path` (``modules.json``), None if it
    has none; checked against the manifest's hash and validated again."""
    text = storage.read_optional_file(Path(path), "modules.json")
    if text is None:
        return None
    try:
        return ModuleTable.from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise storage.ModelFolderError(f"{path}: modules.json cannot be read ({type(exc).__name__}: {exc})") from None


def read_history(path: str | Path) -> pd.DataFrame:
    """A new student's interactions so far, validated like any interaction log."""
    from bayes_lse.data.log import read_interactions

    t = read_interactions(path).table
    if t["student_id"].nunique() != 1:
        raise ValueError(f"{path}: a history holds one student's interactions, found {t['student_id'].nunique()}")
    return t[["student_id", "module_id", "module_type", "outcome", "timestep"]]


def load_tree(path: str | Path) -> xr.DataTree:
    """Open a saved model folder, refusing one that is incomplete, tampered with,
    from another format version, or whose draws and config do not belong together."""
    path = Path(path)
    manifest = storage.check_folder(path)
    try:
        config = json.loads((path / "config.json").read_text())
        ids = json.loads((path / "ids.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise storage.ModelFolderError(f"{path}: config.json or ids.json is not valid JSON ({exc})") from None
    for name, obj, keys in (("config.json", config, ("method", "config_hash", "model_config", "fit_config")),
                            ("ids.json", ids, ("students", "assessments", "lessons"))):
        if not isinstance(obj, dict) or any(k not in obj for k in keys):
            raise storage.ModelFolderError(f"{path}: {name} is not a bayes-lse {name} (a JSON object with "
                                           f"{', '.join(keys)} is expected)")
    # every value of the right JSON type before any is used (found by tests/results/
    # test_storage_properties.py: `"students": null` in a re-hashed ids.json was a TypeError)
    for name, obj, key, kind, what in (
            ("config.json", config, "method", str, "text"), ("config.json", config, "config_hash", str, "text"),
            ("config.json", config, "model_config", dict, "a JSON object"),
            ("config.json", config, "fit_config", dict, "a JSON object"),
            *(("ids.json", ids, k, list, "a list of ids (text)") for k in ("students", "assessments", "lessons"))):
        value = obj[key]
        if not isinstance(value, kind) or (kind is list and not all(isinstance(x, str) for x in value)):
            raise storage.ModelFolderError(f"{path}: {name}'s {key!r} must be {what}, got {type(value).__name__}")
    try:
        tree = xr.open_datatree(path / "fit.nc", engine="h5netcdf").load()
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unusable folder
        raise storage.ModelFolderError(f"{path}: fit.nc could not be read ({type(exc).__name__}: {exc})") from None
    _restore_ranges(tree)
    for key in ("method", "config_hash"):
        if str(tree.attrs.get(key)) != str(config.get(key)) or str(manifest.get(key)) != str(config.get(key)):
            raise storage.ModelFolderError(f"{path}: the draws and config.json disagree on {key}; refusing to load")
    mc = json.loads(tree.attrs["model_config"])
    fc = json.loads(tree.attrs["fit_config"])
    if canonical_json(mc) != canonical_json(config["model_config"]) or canonical_json(fc) != canonical_json(config["fit_config"]):
        raise storage.ModelFolderError(f"{path}: the draws were made with a different config than config.json records")
    recomputed = config_hash(mc, fc, tree.attrs["method"], tree.attrs["data_fingerprint"])
    if recomputed != tree.attrs["config_hash"]:
        raise storage.ModelFolderError(f"{path}: config hash does not match the recorded config; refusing to load")
    post = tree["posterior"]
    if "state_student" in post.coords and len(ids.get("students", [])):
        vals = post["state_student"].values
        if np.issubdtype(vals.dtype, np.integer):  # codes into the students (folders since 2026-12-04)
            bad = len(vals) and (int(vals.min()) < 0 or int(vals.max()) >= len(ids["students"]))
        else:
            bad = not set(np.asarray(vals, dtype=str)) <= set(ids["students"])
        if bad:
            raise storage.ModelFolderError(f"{path}: ids.json does not match the students in the draws")
    _check_ids_against_draws(path, tree, ids)
    _check_writer_version(path, manifest)
    tree.attrs["ids"] = json.dumps({"student": ids["students"], "assessment": ids["assessments"], "lesson": ids["lessons"]})
    return tree


def _check_ids_against_draws(path: Path, tree: xr.DataTree, ids: dict[str, Any]) -> None:
    """Every id map of ids.json, in order, against the ids stored with the draws (fit.nc's
    `ids` attribute and the posterior's coordinates). The manifest's hashes only catch
    accidents: two ids swapped in ids.json with the manifest re-hashed loaded fine and
    moved predictions by up to 0.58 (issue 19 item 4)."""
    stored = json.loads(tree.attrs.get("ids", "{}") or "{}")
    post = tree["posterior"]
    for dim, key in (("student", "students"), ("assessment", "assessments"), ("lesson", "lessons")):
        mine = [str(x) for x in ids[key]]
        if dim in stored and [str(x) for x in stored[dim]] != mine:
            raise storage.ModelFolderError(f"{path}: ids.json's {key} differ from the ids saved with the draws "
                                           "(edited after saving?); refusing to load")
        if dim in post.coords and [str(x) for x in post[dim].values] != mine:
            raise storage.ModelFolderError(f"{path}: ids.json's {key} differ from the draws' {dim} coordinates; "
                                           "refusing to load")


def _check_writer_version(path: Path, manifest: dict[str, Any]) -> None:
    """The bayes-lse version that wrote the folder must be recorded; a folder written
    by a newer version than this one is read (same format version) with a warning."""
    import warnings

    written = manifest.get("bayes_lse_version")
    if not isinstance(written, str) or not written.strip():
        raise storage.ModelFolderError(f"{path}: manifest.json records no bayes_lse_version; refusing to load")

    def parts(v: str) -> tuple[int, ...]:
        out = []
        for p in v.split("."):
            digits = "".join(ch for ch in p if ch.isdigit())
            out.append(int(digits) if digits else 0)
        return tuple(out)

    if parts(written) > parts(package_version()):
        warnings.warn(f"{path}: written by bayes-lse {written}, newer than this {package_version()}; "
                      "reading it as format version 1", UserWarning, stacklevel=3)
