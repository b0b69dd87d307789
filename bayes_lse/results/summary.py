"""`summarise`: what a fit learned, as tidy tables — one row per student, lesson and
assessment — the way pyBKT's ``params()`` gives a table per parameter.

Issue 20: the posterior was hard to use from pandas/xarray.  The columns are quantities
the model identifies (norms, difficulties, pass probabilities, biases) with their
posterior intervals and the evidence behind them (answers, uses); per-skill values are
only meaningful after the chains' skill labels are aligned, which `FittedLSE.summary`
does before calling this (`diagnostics.align_chains`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bayes_lse.results.posterior import pass_draws

if TYPE_CHECKING:
    import xarray as xr

    from bayes_lse.results.posterior import FitResult

__all__ = ["Summary", "summarise"]


@dataclass
class Summary:
    """Tidy tables of a fit, indexed by the user's ids.

    Attributes
    ----------
    students : pandas.DataFrame
        Per student: ``n_answers``, ``n_lessons``, ``last_step``; the current (last
        fitted) state's norm ``skill_norm`` with ``skill_norm_low`` / ``_high``; the
        posterior mean per skill ``skill_0..``; ``bias`` (posterior mean student bias,
        with biases); ``p_<goal>`` (mean pass probability now) for each goal asked for.
    lessons : pandas.DataFrame
        Per lesson: ``n_uses`` (transitions through it), ``gain_norm`` with its interval,
        ``prerequisite_norm`` (mean, with prerequisites).
    assessments : pandas.DataFrame
        Per assessment: ``n_answers``, ``pass_rate`` (observed), ``difficulty`` =
        |requirement| − assessment bias with its interval (how far above the origin a
        student must be to pass half the time, along the requirement), ``requirement_norm``
        and ``bias`` (means).
    ci : float
        The interval mass of every ``_low`` / ``_high`` pair.
    notes : list of str
        How the tables were made (alignment, point estimates).
    """

    students: pd.DataFrame
    lessons: pd.DataFrame
    assessments: pd.DataFrame
    ci: float = 0.9
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in ("students", "lessons", "assessments"):
            raise KeyError(f"no table {name!r}; tables: students, lessons, assessments")
        return getattr(self, name)

    def __repr__(self) -> str:
        return (f"Summary(students={len(self.students)}, lessons={len(self.lessons)}, "
                f"assessments={len(self.assessments)}, ci={self.ci:g})")


def _interval(x: np.ndarray, ci: float, name: str) -> dict[str, np.ndarray]:
    """Posterior mean and central `ci` interval over axis 0."""
    alpha = (1 - ci) / 2
    return {name: x.mean(axis=0), f"{name}_low": np.quantile(x, alpha, axis=0),
            f"{name}_high": np.quantile(x, 1 - alpha, axis=0)}


def summarise(fitted: FitResult, *, posterior: xr.Dataset | None = None, ci: float = 0.9,
              goals: list[str] | None = None) -> Summary:
    """Per-student, per-lesson and per-assessment tables of a fit.

    Parameters
    ----------
    fitted : FitResult
        The fit.
    posterior : xarray.Dataset, optional
        The posterior to read the per-skill columns from (chains' skills aligned);
        default: the fit's own.
    ci : float
        Interval mass (default 0.9).
    goals : list of str, optional
        Assessments whose current pass probability gets a column ``p_<id>`` in the
        students table.

    Returns
    -------
    Summary
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    cd = fitted.idata["constant_data"]
    obs_s = np.asarray(cd["obs_student"].values, dtype=np.int64)
    obs_a = np.asarray(cd["obs_assessment"].values, dtype=np.int64)
    outcome = np.asarray(fitted.idata["observed_data"]["outcome"].values, dtype=float)
    les = np.asarray(cd["transition_lesson"].values, dtype=np.int64)
    t_from = np.asarray(cd["transition_from"].values, dtype=np.int64)
    student_ids = [str(s) for s in fitted.ids_of("student")]
    assessment_ids = [str(a) for a in fitted.assessments]
    lesson_ids = [str(x) for x in fitted.lessons]
    notes: list[str] = []
    if fitted.n_samples == 1:
        notes.append("A point estimate (MAP): every interval is the estimate itself.")

    # ---- students: the current (last fitted) state of each
    last = fitted.last_states().reindex(student_ids)
    flat = last["state"].to_numpy(dtype=np.int64)
    state = fitted.state_draws(flat)  # (samples, students, d)
    students = pd.DataFrame(index=pd.Index(student_ids, name="student_id"))
    students["n_answers"] = np.bincount(obs_s, minlength=len(student_ids))
    owner = fitted.state_index()["student_id"].to_numpy()[t_from] if len(t_from) else np.array([], dtype=object)
    lessons_taken = pd.Series(les >= 0).groupby(owner).sum() if len(t_from) else pd.Series(dtype=int)
    students["n_lessons"] = lessons_taken.reindex(student_ids).fillna(0).astype(int).to_numpy()
    students["last_step"] = last["step"].to_numpy()
    for k, v in _interval(np.linalg.norm(state, axis=-1), ci, "skill_norm").items():
        students[k] = v
    src = posterior["student_state"].values if posterior is not None and "student_state" in posterior else None
    if src is not None:
        per_skill = np.asarray(src).reshape(-1, *src.shape[2:])[:, flat].mean(axis=0)
        if posterior.sizes.get("chain", 1) > 1:
            notes.append("Per-skill columns are from chains whose skill labels were aligned; skill labels "
                         "themselves are arbitrary (only norms, difficulties and probabilities are identified).")
    else:
        per_skill = state.mean(axis=0)
    for j in range(per_skill.shape[-1]):
        students[f"skill_{j}"] = per_skill[:, j]
    if fitted.has("student_bias"):
        students["bias"] = fitted.bias_draws().mean(axis=0)
    for goal in goals or []:
        if str(goal) not in assessment_ids:
            raise KeyError(f"goal {goal!r} is not an assessment of the model")
        j = assessment_ids.index(str(goal))
        rows = pd.DataFrame({"student_id": student_ids, "module_id": str(goal), "timestep": last["step"].to_numpy()})
        codes = np.arange(len(student_ids)) if fitted.has("student_bias") else None
        p = pass_draws(fitted, state, np.full(len(student_ids), j), codes, fitted.history_of(rows))
        students[f"p_{goal}"] = p.mean(axis=0)

    # ---- lessons
    lessons = pd.DataFrame(index=pd.Index(lesson_ids, name="lesson_id"))
    if len(lesson_ids):
        lessons["n_uses"] = np.bincount(les[les >= 0], minlength=len(lesson_ids))
        if fitted.has("gain"):
            for k, v in _interval(np.linalg.norm(fitted.draws("gain"), axis=-1), ci, "gain_norm").items():
                lessons[k] = v
        if fitted.has("prerequisite"):
            lessons["prerequisite_norm"] = np.linalg.norm(fitted.draws("prerequisite"), axis=-1).mean(axis=0)

    # ---- assessments
    assessments = pd.DataFrame(index=pd.Index(assessment_ids, name="assessment_id"))
    n_ans = np.bincount(obs_a, minlength=len(assessment_ids))
    assessments["n_answers"] = n_ans
    with np.errstate(invalid="ignore", divide="ignore"):
        assessments["pass_rate"] = np.bincount(obs_a, weights=outcome, minlength=len(assessment_ids)) / n_ans
    norm = np.linalg.norm(fitted.draws("requirement"), axis=-1)
    bias = fitted.draws("assessment_bias") if fitted.has("assessment_bias") else np.zeros_like(norm)
    for k, v in _interval(norm - bias, ci, "difficulty").items():
        assessments[k] = v
    assessments["requirement_norm"] = norm.mean(axis=0)
    if fitted.has("assessment_bias"):
        assessments["bias"] = bias.mean(axis=0)
    return Summary(students=students, lessons=lessons, assessments=assessments, ci=ci, notes=notes)
