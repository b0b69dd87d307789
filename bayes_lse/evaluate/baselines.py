"""Baseline models for the evaluation harness (DESIGN §5), written in PyMC and fit by
MAP with the same machinery as the LSE (PyMC-compiled log-density and gradient,
scipy L-BFGS-B).

Every baseline is a logistic model of the pass probability of an assessment row:

| name | logit P(pass) |
|---|---|
| ``student-rate`` | μ + θ_u (a smoothed per-student pass rate) |
| ``assessment-rate`` | μ + b_j (a smoothed per-assessment pass rate) |
| ``irt1pl`` | μ + θ_u + b_j (Rasch / 1PL IRT; b_j is the item's easiness) |
| ``irt2pl`` | μ + exp(α_j)·θ_u + b_j (2PL IRT: a discrimination exp(α_j) per item) |
| ``mirt-d<d>`` | μ + a_j·θ_u + b_j, θ_u, a_j ∈ R^d (compensatory multidimensional IRT, no dynamics) |
| ``pfa`` | μ + θ_u + b_j + γ·log1p(counts) (performance-factors style) |

Priors (fixed scales, no hierarchical scales: the joint mode of a hierarchical scale
collapses to zero): μ ~ N(0, 2.5); θ_u ~ N(0, 1); b_j ~ N(0, 1); α_j ~ N(0, 0.5);
MIRT loadings a_j ~ N(0, 1/√d) per coordinate and θ_u ~ N(0, I); PFA coefficients
γ ~ N(0, 1). The student and assessment scales equal the LSE's bias priors.

Performance factors: the data hold no skill tags per item (ASSISTments problem ids,
EdNet questions), so the per-skill counts of classical PFA are replaced by the
student's earlier successes and failures **overall** and **on the same assessment**;
counts enter as log(1 + n) so that histories of a thousand answers stay on a sane
scale. ``pfa`` computes the counts of a held-out row from the training rows only
(the same information every other model gets); ``pfa-online`` also counts the
outcomes of the student's earlier *held-out* rows — the usual next-step protocol of
knowledge tracing, which gives it information the other models do not have.

A student or assessment absent from the training data gets its prior mean effect
(0, discrimination 1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from scipy import optimize

from bayes_lse.evaluate.names import BASELINES

if TYPE_CHECKING:
    from bayes_lse.data.log import InteractionLog

__all__ = [
    "BASELINES",
    "AssessmentRate",
    "Baseline",
    "FittedBaseline",
    "IRT1PL",
    "IRT2PL",
    "MIRT",
    "PerformanceFactors",
    "StudentRate",
    "make_baseline",
]


# --------------------------------------------------------------------------- #
# the design: integer codes, outcomes and (for PFA) history features
# --------------------------------------------------------------------------- #
def _assessment_frame(log: InteractionLog) -> pd.DataFrame:
    """Assessment rows of a log in chronological order within each student."""
    t = log.table
    m = (t["module_type"] == "assessment").to_numpy()
    rows = np.flatnonzero(m)
    out = pd.DataFrame(
        {
            "row": rows,
            "student_id": t["student_id"].to_numpy()[m],
            "module_id": t["module_id"].to_numpy()[m],
            "student": t["student"].to_numpy()[m].astype(np.int64),
            "assessment": t["assessment"].to_numpy()[m].astype(np.int64),
            "timestep": t["timestep"].to_numpy()[m],
            "outcome": t["outcome"].to_numpy()[m].astype(float),
        }
    )
    return out


def pfa_history_counts(frame: pd.DataFrame) -> np.ndarray:
    """Earlier successes/failures per row, overall and on the same module: (n, 4) float.

    `frame` has columns student_id, module_id, outcome, timestep; rows are counted in
    (timestep, row order) order within each student. Columns: successes overall,
    failures overall, successes on this module, failures on this module.  (The LSE
    history term's own counts, per assessment only, are
    `model.terms.assessment_history_counts`.)
    """
    n = len(frame)
    if n == 0:
        return np.zeros((0, 4))
    order = np.lexsort((np.arange(n), frame["timestep"].to_numpy(), pd.factorize(frame["student_id"])[0]))
    f = frame.iloc[order]
    y = f["outcome"].to_numpy(dtype=float)
    succ = pd.Series(y, index=f.index)
    fail = pd.Series(1.0 - y, index=f.index)
    by_s = f["student_id"].to_numpy()
    by_sm = [by_s, f["module_id"].to_numpy()]
    out = np.empty((n, 4))
    out[order, 0] = succ.groupby(by_s).cumsum().to_numpy() - y
    out[order, 1] = fail.groupby(by_s).cumsum().to_numpy() - (1.0 - y)
    out[order, 2] = succ.groupby(by_sm).cumsum().to_numpy() - y
    out[order, 3] = fail.groupby(by_sm).cumsum().to_numpy() - (1.0 - y)
    return out


# --------------------------------------------------------------------------- #
# base class
# --------------------------------------------------------------------------- #
class Baseline:
    """A logistic baseline: subclasses define the parameters and the logit.

    `fit(log)` returns a :class:`FittedBaseline`; its `predict(rows)` gives the pass
    probability of each row of a DataFrame with ``student_id``, ``module_id`` (and,
    for the performance-factors models, ``outcome`` and ``timestep``).
    """

    name = "baseline"
    #: start the optimiser from a small random point (symmetric models need it)
    jitter = 0.0
    uses_history = False

    def __init__(self, **priors: float) -> None:
        self.priors = {"intercept_sd": 2.5, "student_sd": 1.0, "assessment_sd": 1.0, **priors}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    # --- to implement ----------------------------------------------------- #
    def _params(self, n_students: int, n_assessments: int) -> None:
        """Declare the free variables inside the active pm.Model."""
        raise NotImplementedError

    def _logit(self, p: dict[str, Any], student: Any, assessment: Any, x: Any, lib: Any) -> Any:
        """The logit, written once for pytensor (lib=pt) and numpy (lib=np)."""
        raise NotImplementedError

    # --- fitting ---------------------------------------------------------- #
    def _features(self, frame: pd.DataFrame) -> np.ndarray:
        return np.zeros((len(frame), 0))

    def build_model(self, log: InteractionLog) -> pm.Model:
        """The PyMC model of this baseline for the assessment rows of `log`."""
        frame = _assessment_frame(log)
        x = self._features(frame)
        with pm.Model() as model:
            s = pm.Data("obs_student", frame["student"].to_numpy())
            a = pm.Data("obs_assessment", frame["assessment"].to_numpy())
            xd = pm.Data("features", x) if x.shape[1] else None
            self._params(log.n_students, log.n_assessments)
            p = {v.name: v for v in model.free_RVs}
            logit = self._logit(p, s, a, xd, pt)
            pm.Bernoulli("outcome", logit_p=logit, observed=frame["outcome"].to_numpy().astype(np.int8))
        return model

    def fit_key(self) -> tuple:
        """Baselines with equal keys have the same fit (they differ only in prediction)."""
        return (type(self).__name__, getattr(self, "n_skills", None), tuple(sorted(self.priors.items())))

    def with_fit(self, fitted: FittedBaseline) -> FittedBaseline:
        """This baseline predicting with another's fit of the same model (see `fit_key`)."""
        if fitted.baseline.fit_key() != self.fit_key():
            raise ValueError(f"{self.name} cannot reuse the fit of {fitted.name}: different models")
        return FittedBaseline(baseline=self, params=fitted.params, students=fitted.students,
                              assessments=fitted.assessments, info={**fitted.info, "seconds": 0.0},
                              history=fitted.history)

    def fit(self, log: InteractionLog, *, maxiter: int = 3000, ftol: float = 1e-9,
            seed: int | None = 0) -> FittedBaseline:
        """Joint MAP by L-BFGS-B on the PyMC log-density (one start)."""
        from bayes_lse.inference.engine import logp_and_grad

        if not (log.table["module_type"] == "assessment").any():
            raise ValueError("the interaction log has no assessment rows: there is nothing to fit")
        t0 = time.perf_counter()
        model = self.build_model(log)
        fn, x0 = logp_and_grad(model, jacobian=False)
        rng = np.random.default_rng(seed)
        x_init = x0.data + (rng.normal(0.0, self.jitter, size=x0.data.shape) if self.jitter else 0.0)

        def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
            f, g = fn(x)
            if not np.isfinite(f):
                return 1e300, np.zeros_like(x)
            return float(f), np.asarray(g, dtype=float)

        res = optimize.minimize(
            fun, x_init, jac=True, method="L-BFGS-B",
            options={"maxiter": int(maxiter), "ftol": float(ftol), "gtol": 1e-5, "maxcor": 20},
        )
        point = pm.blocking.DictToArrayBijection.rmap(pm.blocking.RaveledVars(res.x, x0.point_map_info))
        params = {k: np.asarray(v) for k, v in point.items()}
        fb = FittedBaseline(
            baseline=self,
            params=params,
            students=pd.Index(log.students),
            assessments=pd.Index(log.assessments),
            info={
                "objective": float(res.fun),
                "n_iterations": int(res.nit),
                "success": bool(res.success),
                "message": str(res.message),
                "seconds": time.perf_counter() - t0,
            },
        )
        if self.uses_history:
            fb.history = _assessment_frame(log)[["student_id", "module_id", "outcome"]]
        return fb


@dataclass
class FittedBaseline:
    """A baseline's MAP point and what is needed to predict with it."""

    baseline: Baseline
    params: dict[str, np.ndarray]
    students: pd.Index
    assessments: pd.Index
    info: dict[str, Any] = field(default_factory=dict)
    history: pd.DataFrame | None = None

    @property
    def name(self) -> str:
        return self.baseline.name

    @property
    def runtime_seconds(self) -> float:
        return float(self.info.get("seconds", float("nan")))

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        """Pass probability of each row (columns student_id, module_id; PFA also
        outcome and timestep), in the order given."""
        s = self.students.get_indexer(rows["student_id"].astype(str))
        a = self.assessments.get_indexer(rows["module_id"].astype(str))
        # index −1 (unknown) picks an appended prior-mean row
        p = {k: _extend(v, k) for k, v in self.params.items()}
        x = self.baseline._predict_features(self, rows) if self.baseline.uses_history else None
        logit = self.baseline._logit(p, s, a, x, np)
        return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(logit, dtype=float)))


_PER_STUDENT = {"student_effect", "student_ability"}
_PER_ASSESSMENT = {"assessment_effect", "log_discrimination", "loading"}


def _extend(v: np.ndarray, name: str) -> np.ndarray:
    if name in _PER_STUDENT or name in _PER_ASSESSMENT:
        return np.concatenate([v, np.zeros((1, *v.shape[1:]))], axis=0)
    return v


# --------------------------------------------------------------------------- #
# the models
# --------------------------------------------------------------------------- #
class StudentRate(Baseline):
    """Per-student pass rate: logit = μ + θ_u."""

    name = "student-rate"

    def _params(self, n_students: int, n_assessments: int) -> None:
        pm.Normal("intercept", 0.0, self.priors["intercept_sd"])
        pm.Normal("student_effect", 0.0, self.priors["student_sd"], shape=n_students)

    def _logit(self, p, student, assessment, x, lib):
        return p["intercept"] + p["student_effect"][student]


class AssessmentRate(Baseline):
    """Per-assessment pass rate: logit = μ + b_j."""

    name = "assessment-rate"

    def _params(self, n_students: int, n_assessments: int) -> None:
        pm.Normal("intercept", 0.0, self.priors["intercept_sd"])
        pm.Normal("assessment_effect", 0.0, self.priors["assessment_sd"], shape=n_assessments)

    def _logit(self, p, student, assessment, x, lib):
        return p["intercept"] + p["assessment_effect"][assessment]


class IRT1PL(Baseline):
    """Rasch / 1PL IRT: logit = μ + θ_u + b_j."""

    name = "irt1pl"

    def _params(self, n_students: int, n_assessments: int) -> None:
        pm.Normal("intercept", 0.0, self.priors["intercept_sd"])
        pm.Normal("student_ability", 0.0, self.priors["student_sd"], shape=n_students)
        pm.Normal("assessment_effect", 0.0, self.priors["assessment_sd"], shape=n_assessments)

    def _logit(self, p, student, assessment, x, lib):
        return p["intercept"] + p["student_ability"][student] + p["assessment_effect"][assessment]


class IRT2PL(IRT1PL):
    """2PL IRT: logit = μ + exp(α_j)·θ_u + b_j, a discrimination per item."""

    name = "irt2pl"

    def __init__(self, **priors: float) -> None:
        super().__init__(**{"log_discrimination_sd": 0.5, **priors})

    def _params(self, n_students: int, n_assessments: int) -> None:
        super()._params(n_students, n_assessments)
        pm.Normal("log_discrimination", 0.0, self.priors["log_discrimination_sd"], shape=n_assessments)

    def _logit(self, p, student, assessment, x, lib):
        disc = lib.exp(p["log_discrimination"][assessment])
        return p["intercept"] + disc * p["student_ability"][student] + p["assessment_effect"][assessment]


class MIRT(Baseline):
    """Compensatory multidimensional IRT with d skills and no dynamics:
    logit = μ + a_j·θ_u + b_j with θ_u ~ N(0, I_d), a_j ~ N(0, I_d/d)."""

    jitter = 0.1

    def __init__(self, n_skills: int = 2, **priors: float) -> None:
        if int(n_skills) != n_skills or n_skills < 1:
            raise ValueError(f"n_skills must be an integer >= 1, got {n_skills!r}")
        self.n_skills = int(n_skills)
        super().__init__(**{"loading_sd": 1.0 / np.sqrt(n_skills), **priors})
        self.name = f"mirt-d{self.n_skills}"

    def _params(self, n_students: int, n_assessments: int) -> None:
        d = self.n_skills
        pm.Normal("intercept", 0.0, self.priors["intercept_sd"])
        pm.Normal("student_ability", 0.0, self.priors["student_sd"], shape=(n_students, d))
        pm.Normal("loading", 0.0, self.priors["loading_sd"], shape=(n_assessments, d))
        pm.Normal("assessment_effect", 0.0, self.priors["assessment_sd"], shape=n_assessments)

    def _logit(self, p, student, assessment, x, lib):
        inner = (p["loading"][assessment] * p["student_ability"][student]).sum(axis=-1)
        return p["intercept"] + inner + p["assessment_effect"][assessment]


class PerformanceFactors(IRT1PL):
    """Performance-factors logistic model with item and student effects:
    logit = μ + θ_u + b_j + γ_1·log1p(S_u) + γ_2·log1p(F_u) + γ_3·log1p(S_uj) + γ_4·log1p(F_uj),
    S/F the student's earlier successes/failures overall (u) and on this assessment (uj).

    `online=True`: a held-out row also counts the outcomes of the student's earlier
    held-out rows (next-step prediction); otherwise only training rows are counted.
    """

    uses_history = True

    def __init__(self, online: bool = False, **priors: float) -> None:
        super().__init__(**{"coefficient_sd": 1.0, **priors})
        self.online = bool(online)
        self.name = "pfa-online" if self.online else "pfa"

    def _features(self, frame: pd.DataFrame) -> np.ndarray:
        return np.log1p(pfa_history_counts(frame))

    def _params(self, n_students: int, n_assessments: int) -> None:
        super()._params(n_students, n_assessments)
        pm.Normal("coefficients", 0.0, self.priors["coefficient_sd"], shape=4)

    def _logit(self, p, student, assessment, x, lib):
        base = super()._logit(p, student, assessment, x, lib)
        return base + (x * p["coefficients"]).sum(axis=-1)

    def _predict_features(self, fitted: FittedBaseline, rows: pd.DataFrame) -> np.ndarray:
        hist = fitted.history
        sid = rows["student_id"].astype(str).to_numpy()
        mid = rows["module_id"].astype(str).to_numpy()
        y = hist["outcome"].to_numpy(dtype=float)
        succ = pd.Series(y).groupby(hist["student_id"].to_numpy()).sum()
        fail = pd.Series(1.0 - y).groupby(hist["student_id"].to_numpy()).sum()
        key = [hist["student_id"].to_numpy(), hist["module_id"].to_numpy()]
        succ_m = pd.Series(y).groupby(key).sum()
        fail_m = pd.Series(1.0 - y).groupby(key).sum()
        mi = pd.MultiIndex.from_arrays([sid, mid])
        counts = np.column_stack(
            [
                succ.reindex(sid).fillna(0.0).to_numpy(),
                fail.reindex(sid).fillna(0.0).to_numpy(),
                succ_m.reindex(mi).fillna(0.0).to_numpy(),
                fail_m.reindex(mi).fillna(0.0).to_numpy(),
            ]
        )
        if self.online:
            if "outcome" not in rows or rows["outcome"].isna().any():
                raise ValueError("pfa-online needs the outcome of every row it predicts")
            frame = pd.DataFrame(
                {
                    "student_id": sid,
                    "module_id": mid,
                    "outcome": rows["outcome"].to_numpy(dtype=float),
                    "timestep": rows["timestep"].to_numpy() if "timestep" in rows else np.zeros(len(rows)),
                }
            )
            counts = counts + pfa_history_counts(frame)
        return np.log1p(counts)


# --------------------------------------------------------------------------- #
# names
# --------------------------------------------------------------------------- #
#: baseline names accepted by :func:`make_baseline` (``mirt`` also as ``mirt-d<d>``): `names.BASELINES`


def make_baseline(name: str, n_skills: int = 2) -> Baseline:
    """A baseline from its name: one of :data:`BASELINES`, or ``mirt-d<d>``."""
    key = str(name).strip().lower()
    simple = {
        "student-rate": StudentRate,
        "assessment-rate": AssessmentRate,
        "irt1pl": IRT1PL,
        "irt2pl": IRT2PL,
    }
    if key in simple:
        return simple[key]()
    if key == "pfa":
        return PerformanceFactors()
    if key == "pfa-online":
        return PerformanceFactors(online=True)
    if key == "mirt":
        return MIRT(n_skills)
    if key.startswith("mirt-d") and key[6:].isdigit() and int(key[6:]) >= 1:
        return MIRT(int(key[6:]))
    raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)} (or mirt-d<d>)")
