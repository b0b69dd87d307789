"""The recommender against the truth (issue 4): regret, band coverage and the
blog's Figure 4, on simulated cohorts whose true parameters are known.
The helpers are shared by the slow tests (``tests/evaluate/test_recommend_truth.py``, which
holds the assertions) and the script that prints the figures:

    python -m benchmarks.recommend_truth            # from the repository root
    python -m benchmarks.recommend_truth --quick    # skip the no-prerequisite cohort

What "the true pass probability after a sequence" means
-------------------------------------------------------
The learning update is noisy (truncated normal, σ_L), so a student's pass
probability after a sequence is itself random. Three truths, all under the TRUE
parameters (states, biases, requirements, gains, prerequisites, σ_L):

* ``expected``  – push the true current state through the expected update
  `equations.expected_next_state` (truncated-normal mean) step by step, then
  `pass_probability`. This is exactly the functional that the default
  recommendation (``include_noise=False``) evaluates on every posterior draw,
  so its band is a posterior band *of this quantity*: compare like with like.
* ``averaged``  – E over the learning noise of the pass probability (Monte Carlo,
  common random numbers across sequences): the probability that the student
  passes, which is what a student would want maximised. Used for regret.
* ``realised``  – the pass probability after ONE draw of the true learning noise
  along the sequence (what actually happens to this student). With
  ``include_noise=True`` each posterior draw carries its own noise path, so that
  band is a posterior *predictive* band of exactly this quantity.

Goals: per student the 1 (odd position) or 2 (even position) assessments with the
lowest current pass probability *under the fitted model* (posterior mean) — hard
goals, chosen without looking at the truth. Random goals are mostly passed
already (current true pass probability ≈ 0.83 on average), which makes regret
trivially small.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayes_lse.model import terms as eq

#: The cohort the checks use (150 students keeps a NUTS fit near 45 s of CPU).
COHORT = dict(n_students=150, n_steps=6, n_assessments=20, n_lessons=10, n_skills=2)
NUTS = dict(method="nuts", chains=2, draws=300, tune=300)


# --------------------------------------------------------------------------- #
# the truth
# --------------------------------------------------------------------------- #
@dataclass
class Truth:
    """True module parameters aligned to the fitted model's lesson/assessment order."""

    gain: np.ndarray  # (L, d)
    prerequisite: np.ndarray | None  # (L, d); None: the cohort was simulated without
    requirement: np.ndarray  # (A, d)
    assessment_bias: np.ndarray  # (A,)
    noise: float
    lesson_ids: list[str]
    assessment_ids: list[str]
    students: dict[str, tuple[np.ndarray, float]]  # id -> (current state (d,), bias)

    @classmethod
    def from_cohort(cls, cohort: Any, lesson_ids: list[str], assessment_ids: list[str]) -> Truth:
        tr = cohort.truth
        prereq = tr["model_config"]["prerequisites"]
        return cls(
            gain=np.array([tr["lessons"][k]["gain"] for k in lesson_ids]),
            prerequisite=np.array([tr["lessons"][k]["prerequisite"] for k in lesson_ids]) if prereq else None,
            requirement=np.array([tr["assessments"][a]["requirement"] for a in assessment_ids]),
            assessment_bias=np.array([tr["assessments"][a]["bias"] for a in assessment_ids]),
            noise=float(tr["learning_noise"]),
            lesson_ids=list(lesson_ids),
            assessment_ids=list(assessment_ids),
            students={
                sid: (np.array(s["states"][-1], dtype=float), float(s["bias"])) for sid, s in tr["students"].items()
            },
        )


def all_sequences(n_lessons: int, max_length: int) -> np.ndarray:
    """Every ordered sequence of distinct lessons of length 0..max_length (the
    recommender's default search space), rows padded with -1: (M, max_length)."""
    rows = [()]
    for k in range(1, max_length + 1):
        rows += list(itertools.permutations(range(n_lessons), k))
    out = np.full((len(rows), max(max_length, 1)), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def _step_mean(truth: Truth, x: np.ndarray, k: np.ndarray) -> np.ndarray:
    q = None if truth.prerequisite is None else truth.prerequisite[k]
    return eq.expected_update(x, truth.gain[k], q)


def true_pass(
    truth: Truth,
    student: str,
    goals: np.ndarray,
    seqs: np.ndarray,
    kind: str = "expected",
    n_noise: int = 2000,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """TRUE probability of passing every goal (indices into assessment_ids) after each
    sequence of `seqs` (M, n), -1 padded: kind "expected" (expected update, exact),
    "averaged" (E over the learning noise, `n_noise` Monte Carlo paths shared by all
    sequences) or "realised" (one noise path per sequence)."""
    s0, bias = truth.students[student]
    M, n = seqs.shape
    req, ab = truth.requirement[goals], truth.assessment_bias[goals]
    if kind == "expected":
        x = np.broadcast_to(s0, (M, len(s0))).copy()
        for t in range(n):
            on = seqs[:, t] >= 0
            x[on] = eq.truncated_normal_mean(_step_mean(truth, x[on], seqs[on, t]), truth.noise)
        return eq.pass_probability(x[:, None, :], req, bias, ab).prod(-1)
    rng = rng if rng is not None else np.random.default_rng()
    N = n_noise if kind == "averaged" else 1
    x = np.broadcast_to(s0, (M, N, len(s0))).copy()
    for t in range(n):
        on = seqs[:, t] >= 0
        u = 1.0 - rng.random((N, len(s0))) if kind == "averaged" else 1.0 - rng.random((int(on.sum()), 1, len(s0)))
        mu = _step_mean(truth, x[on], seqs[on, t][:, None])
        x[on] = eq.truncated_normal_quantile(mu, truth.noise, np.broadcast_to(u, mu.shape))
    return eq.pass_probability(x[:, :, None, :], req, bias, ab).prod(-1).mean(1)


# --------------------------------------------------------------------------- #
# the fitted model's side
# --------------------------------------------------------------------------- #
def hard_goals(fitted: Any) -> dict[str, list[str]]:
    """Per student (in fitted order) the 1 or 2 (alternating) assessments with the
    lowest posterior-mean current pass probability."""
    last = fitted.last_states()
    states = fitted.state_draws(last["state"].to_numpy())  # (S, U, d)
    req = fitted.draws("requirement")  # (S, A, d)
    sids = [str(s) for s in fitted.students]
    sb = fitted.bias_draws(np.array([sids.index(s) for s in last.index])) if fitted.has("student_bias") else 0.0
    ab = fitted.draws("assessment_bias")[:, None, :] if fitted.has("assessment_bias") else 0.0
    sb = sb[..., None] if np.ndim(sb) else sb
    p = eq.pass_probability(states[:, :, None, :], req[:, None], sb, ab).mean(0)  # (U, A)
    assessments = list(fitted.assessments)
    return {
        sid: [str(assessments[j]) for j in np.argsort(p[i], kind="stable")[: 1 + i % 2]]
        for i, sid in enumerate(last.index)
    }


def evaluate(
    cohort: Any,
    fitted: Any,
    max_length: int,
    *,
    averaged: bool = True,
    with_noise: bool = True,
    n_noise: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per student: the TRUE pass probabilities of the recommended sequence
    and of the best / empty / average full-length sequence, and the recommended
    row's band, for the default recommendation (and for include_noise=True)."""
    lessons, assessments = [str(x) for x in fitted.lessons], [str(a) for a in fitted.assessments]
    truth = Truth.from_cohort(cohort, lessons, assessments)
    seqs = all_sequences(len(lessons), max_length)
    index = {tuple(r[r >= 0]): i for i, r in enumerate(seqs)}
    full = (seqs >= 0).sum(1) == max_length
    goals_of = hard_goals(fitted)
    rows = []
    for i, (sid, goals) in enumerate(goals_of.items()):
        gi = np.array([assessments.index(g) for g in goals])
        row: dict[str, Any] = {"student": sid, "n_goals": len(goals)}
        p_exp = true_pass(truth, sid, gi, seqs, "expected")
        curves = {"expected": p_exp}
        if averaged:
            rng = np.random.default_rng([seed, i, 1])
            curves["averaged"] = true_pass(truth, sid, gi, seqs, "averaged", n_noise, rng)
        for name, p in curves.items():
            row[f"{name}_best"] = p.max()
            row[f"{name}_none"] = p[0]
            row[f"{name}_random"] = p[full].mean()
        # regret is measured against every sequence, taken lessons included
        rec = fitted.recommend(sid, goals, max_length=max_length, seed=seed + i, allow_taken=True)
        top = rec.table.iloc[0]
        j = index[tuple(lessons.index(x) for x in top.lessons)]
        row.update(lessons=tuple(top.lessons), p_mean=top.p_mean, p_low=top.p_low, p_high=top.p_high)
        row.update(current_p_low=rec.current["p_low"], current_p_high=rec.current["p_high"])
        for name, p in curves.items():
            row[f"{name}_rec"] = p[j]
            row[f"{name}_is_best"] = bool(p[j] >= p.max() - 1e-12)
        if with_noise:
            recn = fitted.recommend(sid, goals, max_length=max_length, seed=seed + i, include_noise=True,
                                    allow_taken=True)
            topn = recn.table.iloc[0]
            jn = index[tuple(lessons.index(x) for x in topn.lessons)]
            row.update(noise_lessons=tuple(topn.lessons), noise_p_mean=topn.p_mean, noise_p_low=topn.p_low,
                       noise_p_high=topn.p_high)
            for name, p in curves.items():
                row[f"noise_{name}_rec"] = p[jn]
            row["noise_realised_rec"] = true_pass(
                truth, sid, gi, seqs[jn : jn + 1], "realised", rng=np.random.default_rng([seed, i, 2])
            )[0]
        rows.append(row)
    return pd.DataFrame(rows)


def regret(df: pd.DataFrame, truth: str = "expected", prefix: str = "") -> dict[str, float]:
    """Regret figures of the recommended sequences under one truth."""
    rec, best = df[f"{prefix}{truth}_rec"], df[f"{truth}_best"]
    none, rnd = df[f"{truth}_none"], df[f"{truth}_random"]
    gap = (best - none).clip(lower=1e-9)
    return {
        "mean_ratio": float((rec / best).mean()),
        "ratio_of_means": float(rec.mean() / best.mean()),
        "min_ratio": float((rec / best).min()),
        "gap_closed": float(((rec - none) / gap).mean()),
        "random_ratio": float((rnd / best).mean()),
        "none_ratio": float((none / best).mean()),
        "p_none": float(none.mean()),
        "p_rec": float(rec.mean()),
        "p_best": float(best.mean()),
    }


def coverage(df: pd.DataFrame, truth_col: str, prefix: str = "") -> dict[str, float]:
    lo, hi, p = df[f"{prefix}p_low"], df[f"{prefix}p_high"], df[truth_col]
    return {
        "coverage": float(((p >= lo) & (p <= hi)).mean()),
        "below": float((p < lo).mean()),
        "above": float((p > hi).mean()),
        "width": float((hi - lo).mean()),
    }


# --------------------------------------------------------------------------- #
# Figure 4
# --------------------------------------------------------------------------- #
def figure4(fitted: Any, lesson: str = "L1", goal: str = "A3", threshold: float = 0.1) -> pd.DataFrame:
    """Per student: predicted pass probability of `goal` at step 0 (before the
    lesson) and after `lesson`, from the posterior draws of the step-0 state
    pushed through the recommender (expected update, per-draw σ_L)."""
    from bayes_lse.recommend.sequences import ModuleDraws, recommend_sequences

    sids = [str(s) for s in fitted.students]
    prereq = fitted.draws("prerequisite") if fitted.has("prerequisite") else None
    rows = []
    for s in sids:
        st0 = fitted.student_states(s)[:, 0]
        mods = ModuleDraws.from_arrays(
            gain=fitted.draws("gain"),
            lesson_ids=[str(x) for x in fitted.lessons],
            requirement=fitted.draws("requirement"),
            assessment_ids=[str(a) for a in fitted.assessments],
            goals=[goal],
            prerequisite=prereq,
            assessment_bias=fitted.draws("assessment_bias") if fitted.has("assessment_bias") else None,
            student_bias=fitted.bias_draws(np.array([sids.index(s)]))[:, 0] if fitted.has("student_bias") else None,
            noise=fitted.learning_noise_draws(),
        )
        rec = recommend_sequences(st0, mods, max_length=1, candidates=[lesson], top=None, search="exhaustive")
        order = [tuple(x) for x in rec.table.lessons]
        before, after = rec.p_draws[order.index(())], rec.p_draws[order.index((lesson,))]
        gain = after - before
        k = list(fitted.lessons).index(lesson)
        w = np.ones(len(st0)) if prereq is None else eq.gain_weight(st0, prereq[:, k])
        rows.append(
            {
                "student": s,
                "p_before": before.mean(),
                "p_after": after.mean(),
                "gain": gain.mean(),
                "gain_q05": np.quantile(gain, 0.05),
                "gain_q95": np.quantile(gain, 0.95),
                f"P(gain>{threshold:g})": (gain > threshold).mean(),
                "prereq_weight": w.mean(),
            }
        )
    return pd.DataFrame(rows).set_index("student")


# --------------------------------------------------------------------------- #
# script
# --------------------------------------------------------------------------- #
def fit_cohort(seed: int, prerequisites: bool = True) -> tuple[Any, Any, float]:
    import bayes_lse as bl

    cohort = bl.simulate(**COHORT, seed=seed, model_config={"prerequisites": prerequisites})
    t0 = time.perf_counter()
    fitted = bl.LatentSkillEmbedding(prerequisites=prerequisites).fit(
        cohort.table, **NUTS, seed=seed, progressbar=False
    )
    return cohort, fitted, time.perf_counter() - t0
