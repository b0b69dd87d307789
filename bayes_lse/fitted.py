"""`FittedLSE`: what a fit returns.  It carries the posterior, the training
interactions and the configs in one `xarray.DataTree` (layout in ARCHITECTURE.md),
predicts pass probabilities, and saves/loads itself as a folder of open formats.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import equations as eq
from . import storage
from ._lazy import LazyModule
from .config import canonical_json, config_hash
from .errors import InteractionLogError

if TYPE_CHECKING:
    import xarray as xr

    from .data import InteractionLog
    from .model import IndexArrays

GROUPS_OPTIONAL = ("sample_stats", "optimization")

#: imported on first use: a MAP fit builds its tree only after the optimiser (issue 7)
xr: Any = LazyModule("xarray")


def _version() -> str:
    from . import __version__

    return __version__


def _table_dataset(table: pd.DataFrame) -> xr.Dataset:
    """The training table as a netCDF-safe Dataset (strings stay strings)."""
    data = {}
    for col in table.columns:
        s = table[col]
        if pd.api.types.is_bool_dtype(s):
            data[col] = ("row", s.to_numpy(dtype=np.int8))
        elif pd.api.types.is_numeric_dtype(s):
            data[col] = ("row", s.to_numpy(dtype=float if s.isna().any() else None))
        else:
            # via the distinct values: no Python string per row (≈90 MB on 535k rows)
            codes, uniques = pd.factorize(s, use_na_sentinel=False)
            vocab = np.asarray([str(u) for u in uniques], dtype=str)
            data[col] = ("row", vocab[codes] if len(vocab) else np.asarray(codes, dtype=str))
    return xr.Dataset(data, coords={"row": np.arange(len(table))})


def data_fingerprint(table: pd.DataFrame) -> str:
    """`config_hash` of the rows' hashes as a JSON list, streamed in blocks: the same
    digest as `config_hash(h.tolist())` without 536k Python ints and their JSON text
    at once (~35 MB on ASSISTments, at the end of a MAP fit; issue 7)."""
    import hashlib

    cols = [c for c in ("student_id", "module_id", "module_type", "outcome", "timestep") if c in table]
    h = pd.util.hash_pandas_object(table[cols], index=False).to_numpy()
    digest = hashlib.sha256(b"[")
    for lo in range(0, len(h), 65536):
        block = ",".join(map(str, h[lo : lo + 65536].tolist()))
        digest.update(((b"," if lo else b"") + block.encode()))
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
    d = int(model_config["n_skills"])
    first = raw[list(raw.data_vars)[0]]
    n_chain, n_draw = first.shape[0], first.shape[1]
    state = np.empty((n_chain, n_draw, idx.n_states, d))
    state[:, :, idx.initial_state] = np.asarray(raw["initial_state"])
    if len(idx.later_state):
        state[:, :, idx.later_state] = np.asarray(raw["later_state"])
    students = np.asarray(log.students, dtype=object)
    coords = {
        "chain": np.arange(n_chain),
        "draw": np.arange(n_draw),
        "state": np.arange(idx.n_states),
        "skill": np.arange(d),
        "student": students,
        "assessment": np.asarray(log.assessments, dtype=object),
        "lesson": np.asarray(log.lessons, dtype=object),
    }
    cd = ("chain", "draw")
    post = {"student_state": ((*cd, "state", "skill"), state)}
    dims = {
        "requirement": ("assessment", "skill"),
        "gain": ("lesson", "skill"),
        "prerequisite": ("lesson", "skill"),
        "student_bias": ("student",),
        "assessment_bias": ("assessment",),
        "learning_noise": (),
        "history_success": (),
        "history_failure": (),
    }
    for name, dd in dims.items():
        if name in raw:
            post[name] = ((*cd, *dd), np.asarray(raw[name]))
    posterior = xr.Dataset(post, coords=coords)
    posterior = posterior.assign_coords(
        state_student=("state", students[idx.state_student]),
        state_step=("state", idx.state_step),
    )
    posterior = posterior.drop_vars([c for c in ("student", "assessment", "lesson") if c not in posterior.dims])

    observed = xr.Dataset({"outcome": ("obs", idx.outcome)}, coords={"obs": np.arange(len(idx.outcome))})
    constant = xr.Dataset(
        {
            "obs_state": ("obs", idx.obs_state),
            "obs_student": ("obs", idx.obs_student),
            "obs_assessment": ("obs", idx.obs_assessment),
            "transition_from": ("transition", idx.transition_from),
            "transition_to": ("transition", idx.transition_to),
            "transition_lesson": ("transition", idx.transition_lesson),
        },
        coords={"obs": np.arange(len(idx.outcome)), "transition": np.arange(len(idx.transition_from))},
    )
    if model_config.get("history"):
        constant["obs_history"] = (("obs", "history_kind"), idx.history)
        constant = constant.assign_coords(history_kind=["success", "failure"])
    table = log.table
    groups = {
        "posterior": posterior,
        "observed_data": observed,
        "constant_data": constant,
        "interactions": _table_dataset(table),
        **{k: v for k, v in extra.items() if k in GROUPS_OPTIONAL},
    }
    tree = xr.DataTree.from_dict(groups)
    fingerprint = data_fingerprint(table)
    tree.attrs = {
        "format_version": storage.FORMAT_VERSION,
        "method": method,
        "model_config": canonical_json(model_config),
        "fit_config": canonical_json(fit_config),
        "data_fingerprint": fingerprint,
        "config_hash": config_hash(model_config, fit_config, method, fingerprint),
        "bayes_lse_version": _version(),
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


#: how `FittedLSE.predict` moves a state through a step it was not fitted on
UPDATES = ("expected", "mode", "sample")


class FittedLSE:
    """A fitted Latent Skill Embedding: posterior draws plus everything needed to use them."""

    def __init__(self, idata: xr.DataTree) -> None:
        self.idata = idata

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
    def n_skills(self) -> int:
        return int(self.model_config["n_skills"])

    @property
    def posterior(self) -> xr.Dataset:
        return self.idata["posterior"].to_dataset()

    @property
    def students(self) -> pd.Index:
        return pd.Index(self._ids("student"))

    def _ids(self, dim: str) -> np.ndarray:
        ids = json.loads(self.idata.attrs.get("ids", "{}"))
        if dim in ids:
            return np.asarray(ids[dim], dtype=object)
        post = self.idata["posterior"]
        return np.asarray(post.coords[dim].values) if dim in post.coords else np.asarray([], dtype=object)

    @property
    def assessments(self) -> pd.Index:
        return pd.Index(self._ids("assessment"))

    @property
    def lessons(self) -> pd.Index:
        return pd.Index(self._ids("lesson"))

    @property
    def interactions(self) -> pd.DataFrame:
        return self.idata["interactions"].to_dataset().to_dataframe().reset_index(drop=True)

    @property
    def n_samples(self) -> int:
        p = self.idata["posterior"]
        return int(p.sizes["chain"] * p.sizes["draw"])

    def __repr__(self) -> str:
        p = self.idata["posterior"]
        return (
            f"<FittedLSE method={self.method} d={self.n_skills} students={p.sizes.get('student', '?')} "
            f"states={p.sizes['state']} chains={p.sizes['chain']} draws={p.sizes['draw']} hash={self.config_hash}>"
        )

    # ------------------------------------------------------------------ draws
    def draws(self, name: str) -> np.ndarray:
        """Posterior draws of a variable, chains stacked: shape (chain·draw, ...)."""
        v = np.asarray(self.idata["posterior"][name].values)
        return v.reshape(-1, *v.shape[2:])

    def has(self, name: str) -> bool:
        return name in self.idata["posterior"]

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
                "student_id": np.asarray(p["state_student"].values, dtype=object),
                "step": np.asarray(p["state_step"].values),
                "state": np.arange(p.sizes["state"]),
            }
        )

    def last_states(self) -> pd.DataFrame:
        """Each student's last fitted step and its flat state index."""
        si = self.state_index()
        return si.groupby("student_id", sort=False).last()

    def student_states(self, student: str) -> np.ndarray:
        """Draws of every state of `student`: shape (samples, steps, skills)."""
        si = self.state_index()
        rows = si.index[si["student_id"] == str(student)]
        if len(rows) == 0:
            raise KeyError(f"student {student!r} is not in the fitted model")
        return self.draws("student_state")[:, rows.to_numpy()]

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
        return _pass_draws(self, self.draws("student_state")[:, st], asm, stu, hist)

    def predict(
        self,
        interactions: pd.DataFrame | str | Path | InteractionLog,
        *,
        ci: float = 0.9,
        update: str = "expected",
        seed: int | None = None,
    ) -> pd.DataFrame:
        """Pass probability of every assessment row: posterior mean and central `ci` interval.

        A row within a student's fitted history uses that step's state; a row beyond it
        starts from the student's last fitted state and follows the lessons given in the
        same table. `update` says how a state moves through a step:

        - ``"expected"`` (default): the mean of the truncated-normal update, what the
          model says happens on average. Truncation at zero adds σ_L·φ(z)/Φ(z) to every
          coordinate at every step, so a state drifts upwards even without lessons;
        - ``"mode"``: the most likely next state, max(0, s + l·σ(D(s, q))), no drift. A
          MAP fit's trajectories follow the mode of every transition; on ASSISTments
          (docs/results.md) the two forecasts score within 0.01 AUC of each other;
        - ``"sample"``: one noisy update per draw, the full posterior predictive.
        """
        from .data import InteractionLog, read_interactions

        log = interactions if isinstance(interactions, InteractionLog) else read_interactions(interactions)
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
        if (is_a & (a_idx < 0)).any():
            fail(is_a & (a_idx < 0), "module_id", "assessment")
        l_idx = l_codes.get_indexer(t["module_id"])
        last_step = known_students["step"].reindex(t["student_id"]).to_numpy()
        last_state = known_students["state"].reindex(t["student_id"]).to_numpy()
        step = t["timestep"].to_numpy()
        is_l = ~is_a
        future_lesson = is_l & (step >= last_step)
        if (future_lesson & (l_idx < 0)).any() and self.model_config["lessons"]:
            fail(future_lesson & (l_idx < 0), "module_id", "lesson")

        rows = np.flatnonzero(is_a)
        states = self.draws("student_state")
        n = states.shape[0]
        d = states.shape[-1]
        within = step[rows] <= last_step[rows]
        row_state = np.empty((n, len(rows), d))
        flat = (last_state[rows] - last_step[rows] + step[rows]).astype(np.int64)
        row_state[:, within] = states[:, flat[within]]

        beyond = np.flatnonzero(~within)
        if len(beyond):
            row_state[:, beyond] = self._push_forward(t, rows[beyond], is_l, l_idx, last_step, last_state, states, update, seed)

        stu_codes = pd.Index(self._ids("student")).get_indexer(t["student_id"].iloc[rows]) if self.has("student_bias") else None
        p = _pass_draws(self, row_state, a_idx[rows], stu_codes, self._history_of(t.iloc[rows]))
        alpha = (1 - ci) / 2
        out = pd.DataFrame(
            {
                "student_id": t["student_id"].iloc[rows].to_numpy(),
                "module_id": t["module_id"].iloc[rows].to_numpy(),
                "timestep": step[rows],
                "p_mean": p.mean(axis=0),
                "p_low": np.quantile(p, alpha, axis=0),
                "p_high": np.quantile(p, 1 - alpha, axis=0),
            }
        )
        for extra in ("outcome", "p_true"):
            if extra in t:
                out[extra] = t[extra].iloc[rows].to_numpy()
        return out

    def _history_of(self, rows: pd.DataFrame) -> np.ndarray | None:
        """Earlier successes/failures on the same assessment for rows to predict, counted
        over the fitted training answers at or before each row's timestep (None without
        a history term). Rows being predicted do not count each other, as for `pfa`."""
        if not self.model_config.get("history"):
            return None
        t = self.interactions
        t = t.loc[t["module_type"].astype(str) == "assessment", ["student_id", "module_id", "timestep", "outcome"]]
        t = t.astype({"student_id": str, "module_id": str})
        r = pd.DataFrame({"student_id": rows["student_id"].astype(str).to_numpy(),
                          "module_id": rows["module_id"].astype(str).to_numpy(),
                          "at": rows["timestep"].to_numpy(), "i": np.arange(len(rows))})
        m = r.merge(t, on=["student_id", "module_id"])
        m = m[m["timestep"] <= m["at"]]
        agg = m.groupby("i")["outcome"].agg(["sum", "size"])
        out = np.zeros((len(rows), 2))
        out[agg.index.to_numpy(), 0] = agg["sum"].to_numpy()
        out[agg.index.to_numpy(), 1] = (agg["size"] - agg["sum"]).to_numpy()
        return out

    @staticmethod
    def resolve_update(update: str) -> str:
        """Check `update` (see `predict`)."""
        if update not in UPDATES:
            raise ValueError(f"update must be one of {', '.join(map(repr, UPDATES))}, got {update!r}")
        return update

    def _push_forward(self, t, rows, is_l, l_idx, last_step, last_state, states, update, seed) -> np.ndarray:
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
        out = np.empty((states.shape[0], len(rows), states.shape[-1]))
        students = pd.unique(sid[rows])
        target = {s: [] for s in students}
        for j, r in enumerate(rows):
            target[sid[r]].append((int(step[r]), j))
        first_pos: dict[str, int] = {}
        for j, r in enumerate(rows):
            first_pos.setdefault(sid[r], int(r))
        first = {s: int(last_step[first_pos[s]]) for s in students}
        cur = states[:, [int(last_state[first_pos[s]]) for s in students]]
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
            mu = cur.copy()
            if gain is not None:
                has = lk >= 0
                if has.any():
                    g = gain[:, lk[has]]
                    q = prereq[:, lk[has]] if prereq is not None else None
                    mu[:, has] = eq.expected_update(cur[:, has], g, q)
            sigma = noise[:, None, None]
            if update == "mode":
                cur = np.maximum(mu, 0.0)
            elif update == "expected":
                z = mu / sigma
                from scipy.special import log_ndtr

                cur = mu + sigma * np.exp(-0.5 * z * z - 0.5 * np.log(2 * np.pi) - log_ndtr(z))
            else:
                from scipy import stats

                cur = stats.truncnorm.rvs(a=-mu / sigma, b=np.inf, loc=mu, scale=sigma, random_state=rng)
        return out

    # ----------------------------------------------------------- diagnostics
    def diagnostics(self, **thresholds: Any) -> Any:
        """Convergence and predictive checks with ok/warn/fail verdicts (see `diagnostics.diagnose`)."""
        from .diagnostics import diagnose

        return diagnose(self.idata, **thresholds)

    def report(self, path: str | Path, *, title: str | None = None, **options: Any) -> Path:
        """Write the self-contained HTML diagnostic report (see `report.write_report`)."""
        from .report import write_report

        return write_report(self.idata, Path(path), title=title, **options)

    # ------------------------------------------------------------- recommend
    def recommend(
        self,
        student: str | None,
        goals: list[str] | str,
        max_length: int = 3,
        candidates: list[str] | None = None,
        *,
        history: pd.DataFrame | str | Path | None = None,
        n_particles: int = 500,
        seed: int | None = None,
        **options: Any,
    ) -> Any:
        """Rank lesson sequences by the posterior probability of passing `goals`.

        `student` is a student of the training data, or (with `history`) a new one
        placed from their interactions so far without refitting. Other options
        (band, include_noise, search, beam_width, top, costs, budget, target,
        confidence, allow_repeats) go to `recommend.recommend_sequences`.
        """
        from . import recommend as rec

        if not self.model_config["lessons"] or not self.has("gain"):
            raise ValueError("this model has no lessons (fit with lessons=True): there is nothing to recommend")
        if self.model_config.get("history"):
            raise ValueError("recommending with the assessment-history term (history=True) is not supported: "
                             "fit the model without it to rank lesson sequences")
        goals = [goals] if isinstance(goals, str) else list(goals)
        if not goals:
            raise ValueError("give at least one goal assessment")
        noise = self.learning_noise_draws()
        prereq = self.draws("prerequisite") if self.has("prerequisite") else None
        a_bias = self.draws("assessment_bias") if self.has("assessment_bias") else None
        if history is not None:
            hist = history if isinstance(history, pd.DataFrame) else _read_history(history)
            pri = self.model_config["priors"]
            placed = rec.place_student(
                hist,
                requirement=self.draws("requirement"),
                assessment_ids=[str(a) for a in self.assessments],
                gain=self.draws("gain"),
                lesson_ids=[str(x) for x in self.lessons],
                prerequisite=prereq,
                assessment_bias=a_bias,
                state_scale=pri["initial_state_scale"],
                bias_scale=pri["student_bias_sd"] if self.has("student_bias") else None,
                noise=noise,
                n_particles=n_particles,
                seed=seed,
            )
            state, s_bias = placed.state, placed.student_bias
            student = student or "new student"
        else:
            if student is None:
                raise ValueError("give a student id, or a history for a new student")
            if str(student) not in set(self.last_states().index):
                raise KeyError(f"student {student!r} is not in the fitted model; pass history= to place a new student")
            state = self.current_state(str(student))
            s_bias = None
            if self.has("student_bias"):
                s_bias = self.draws("student_bias")[:, list(self._ids("student")).index(str(student))]
        modules = rec.ModuleDraws.from_arrays(
            gain=self.draws("gain"),
            lesson_ids=[str(x) for x in self.lessons],
            requirement=self.draws("requirement"),
            assessment_ids=[str(a) for a in self.assessments],
            goals=goals,
            prerequisite=prereq,
            assessment_bias=a_bias,
            student_bias=s_bias,
            noise=noise,
        )
        return rec.recommend_sequences(
            state, modules, max_length=max_length, candidates=candidates, seed=seed, student=str(student), **options
        )

    # ---------------------------------------------------------- save / load
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model folder atomically; refuses to replace an existing model unless `overwrite`."""
        tree = self.idata
        config = {
            "method": self.method,
            "model_config": self.model_config,
            "fit_config": self.fit_config,
            "config_hash": self.config_hash,
        }
        ids = {
            "students": [str(s) for s in self._ids("student")],
            "assessments": [str(a) for a in self._ids("assessment")],
            "lessons": [str(x) for x in self._ids("lesson")],
        }

        def write_nc(p: Path) -> None:
            tree.to_netcdf(p, engine="h5netcdf")

        writers = {
            "config.json": lambda p: p.write_text(json.dumps(config, indent=1, sort_keys=True)),
            "ids.json": lambda p: p.write_text(json.dumps(ids, indent=1)),
            "fit.nc": write_nc,
        }
        manifest = {
            "bayes_lse_version": _version(),
            "method": self.method,
            "config_hash": self.config_hash,
            "saved": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        return storage.write_folder(Path(path), writers, manifest, overwrite)


def _pass_draws(fitted: FittedLSE, state: np.ndarray, assessment: np.ndarray, student: np.ndarray | None,
                history: np.ndarray | None = None) -> np.ndarray:
    """σ(D(s, a) + biases [+ history term]) for (samples, rows) given row states
    (samples, rows, d); `history`: (rows, 2) earlier successes/failures on the same
    assessment, needed when the model has the history term."""
    req = fitted.draws("requirement")[:, assessment]
    g_u = fitted.draws("student_bias")[:, student] if student is not None and fitted.has("student_bias") else 0.0
    g_j = fitted.draws("assessment_bias")[:, assessment] if fitted.has("assessment_bias") else 0.0
    if fitted.has("history_success"):
        from .model import history_logit

        if history is None:
            raise ValueError("this model has a history term: pass the earlier successes/failures of each row")
        h = history_logit(np.asarray(history, dtype=float)[None], fitted.draws("history_success")[:, None],
                          fitted.draws("history_failure")[:, None])
        g_j = g_j + h
    return eq.pass_probability(state, req, g_u, g_j)


def _read_history(path: str | Path) -> pd.DataFrame:
    """A new student's interactions so far, validated like any interaction log."""
    from .data import read_interactions

    t = read_interactions(path).table
    if t["student_id"].nunique() != 1:
        raise ValueError(f"{path}: a history holds one student's interactions, found {t['student_id'].nunique()}")
    return t[["student_id", "module_id", "module_type", "outcome", "timestep"]]


def load(path: str | Path) -> FittedLSE:
    """Open a saved model folder, refusing one that is incomplete, tampered with,
    from another format version, or whose draws and config do not belong together."""
    path = Path(path)
    manifest = storage.check_folder(path)
    try:
        config = json.loads((path / "config.json").read_text())
        ids = json.loads((path / "ids.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise storage.ModelFolderError(f"{path}: config.json or ids.json is not valid JSON ({exc})") from None
    try:
        tree = xr.open_datatree(path / "fit.nc", engine="h5netcdf").load()
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unusable folder
        raise storage.ModelFolderError(f"{path}: fit.nc could not be read ({type(exc).__name__}: {exc})") from None
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
    if "state_student" in post.coords and len(ids.get("students", [])) and not set(np.asarray(post["state_student"].values, dtype=str)) <= set(ids["students"]):
        raise storage.ModelFolderError(f"{path}: ids.json does not match the students in the draws")
    tree.attrs["ids"] = json.dumps({"student": ids["students"], "assessment": ids["assessments"], "lesson": ids["lessons"]})
    return FittedLSE(tree)
