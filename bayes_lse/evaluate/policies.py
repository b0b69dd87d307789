"""Lesson policies against "true" students (issue 18): a policy simulator with common
random numbers, an oracle that knows the true state, and the cohorts of the benchmark.

A true student is one draw of the world: module parameters (gain, prerequisite,
requirements, biases, σ_L) and an initial state.  Truths come from a fitted model's
posterior (`truths_from_belief`: the particles themselves, so the belief is exactly
right about the population it plans for) or from a simulated cohort with known truth
(`cohort_problem`: `model.simulate` modules, the cohort's own students).

Common random numbers: student i's k-th lesson moves its true state with the uniforms
`U[i, k]` (through `terms.truncated_normal_quantile`) and its a-th assessment is
passed when `V[i, a]` < its true pass probability, whatever the policy; the policies'
own randomness (belief noise, Thompson draws) is seeded per student the same way for
every policy.  So two policies that act alike on a student get the same outcome, and
the paired differences have small variance.

The oracle knows the true parameters and, after every lesson, the true state (noise
included); it re-plans a full-budget sequence by the same beam search on that single
point, and never assesses (it has nothing to learn).  Regret = oracle's reward − the
policy's.  "oracle-start" knows the true parameters and initial state only, and then
executes its best plan blind: the value of knowing who the student is, without the
value of seeing the learning noise.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from bayes_lse.model import terms as eq
from bayes_lse.recommend.policies import Belief, OpenLoop, PlanModel, Policy, RecedingHorizon

__all__ = [
    "PolicyComparison",
    "Truths",
    "cohort_problem",
    "designed_cohort",
    "simulate_policies",
    "truths_from_belief",
]

FloatArray = NDArray[np.float64]


@dataclass
class Truths:
    """N true students: `model` has one draw per student (its true modules, biases, σ_L);
    `state` (N, d) their true initial states."""

    model: PlanModel
    state: FloatArray

    @property
    def n(self) -> int:
        return self.state.shape[0]


def truths_from_belief(belief: Belief, n: int, seed: int | None = 0) -> Truths:
    """n true students drawn from the belief's particles by weight (true = a posterior draw)."""
    rng = np.random.default_rng(seed)
    i = rng.choice(len(belief.logw), size=n, p=belief.weights)
    return Truths(belief.model.take(belief.draw[i]), belief.state[i].copy())


def cohort_problem(
    truth: Mapping[str, Any],
    goals: Sequence[str],
    *,
    probes: Sequence[str] | None = None,
    n_draws: int = 300,
    n_students: int | None = None,
    lesson_costs: Sequence[float] | None = None,
    assessment_cost: float = 0.5,
    discount: float = 1.0,
    seed: int | None = 0,
) -> tuple[Belief, Truths]:
    """A planning problem from a simulated cohort's truth (`SimulatedCohort.truth`): the
    modules are known (the true ones in every draw, as after a large fit), the student is
    new — the belief's particles draw the initial state and student bias from the model's
    priors — and the true students are the cohort's own (state 0, bias).

    Returns the initial belief (n_draws particles) and the Truths (the first n_students
    of the cohort, default all)."""
    rng = np.random.default_rng(seed)
    cfg = truth["model_config"]
    pri = cfg["priors"]
    hyper = truth.get("hyperparameters")
    lessons = list(truth["lessons"])
    probes = list(goals) if probes is None else list(probes)
    gain = np.array([truth["lessons"][k]["gain"] for k in lessons])
    pre = np.array([truth["lessons"][k]["prerequisite"] for k in lessons]) if cfg["prerequisites"] else None
    req = {a: np.array(v["requirement"]) for a, v in truth["assessments"].items()}
    ab = {a: float(v["bias"]) for a, v in truth["assessments"].items()}
    noise = float(truth["learning_noise"])
    students = list(truth["students"])[: n_students or None]
    d = gain.shape[1]

    def model(student_bias: FloatArray) -> PlanModel:
        S = len(student_bias)
        rep = lambda x: np.broadcast_to(x, (S, *x.shape)).copy()  # noqa: E731
        return PlanModel(
            gain=rep(gain), prerequisite=None if pre is None else rep(pre),
            goal_requirement=rep(np.array([req[g] for g in goals])), lesson_ids=lessons, goal_ids=goals,
            goal_bias=np.array([ab[g] for g in goals])[None] + student_bias[:, None],
            probe_requirement=rep(np.array([req[g] for g in probes])),
            probe_bias=np.array([ab[g] for g in probes])[None] + student_bias[:, None], probe_ids=probes,
            noise=noise, lesson_costs=lesson_costs, assessment_cost=assessment_cost, discount=discount,
        )

    sb = eq.draw_prior("student_bias", pri, rng, n_draws, hyper) if cfg["biases"] else np.zeros(n_draws)
    s0 = eq.draw_prior("initial_state", pri, rng, (n_draws, d))
    belief = Belief(model(np.asarray(sb, dtype=float)), s0)
    tb = np.array([truth["students"][u]["bias"] for u in students])
    ts = np.array([truth["students"][u]["states"][0] for u in students])
    return belief, Truths(model(tb), ts)


def designed_cohort(
    n_students: int = 200, *, noise: float = 0.3, prerequisites: bool = True, seed: int | None = 0
) -> dict[str, Any]:
    """A cohort truth (the `SimulatedCohort.truth` layout) built so that adaptivity can matter.

    d = 2; one goal G with requirement (2, 2) (it counts s0 + s1); students of three kinds in
    equal shares — strong in skill 0 (2.4, 0.3), strong in skill 1 (0.3, 2.4), middling
    (1, 1), scattered by 0.25 — and lessons: F (gain (0.5, 0.5), no real prerequisite) and
    X0 / X1 (gain 1.8 on skill 0 / 1, prerequisite 1.6 on the same skill: realised mostly
    by students already strong there).  The best blind plan has to hedge between X0 and X1;
    one probe (P0: requirement (1.6, 0), P1: (0, 1.6)) tells the kinds apart.  With
    ``prerequisites=False`` the same lessons are realised in full by everyone, the order and
    the student's kind no longer matter, and adaptivity should be worth about nothing.
    """
    rng = np.random.default_rng(seed)
    cfg = {"n_skills": 2, "prerequisites": prerequisites, "biases": True, "lessons": True,
           "learning_noise": noise, "priors": {"student_bias_sd": 0.3, "initial_state_scale": 1.0}}
    kinds = np.array([[2.4, 0.3], [0.3, 2.4], [1.0, 1.0]])
    k = rng.integers(0, 3, n_students)
    s0 = np.abs(kinds[k] + rng.normal(0, 0.25, (n_students, 2)))
    bias = rng.normal(0, 0.3, n_students)
    lessons = {
        "F": {"gain": [0.5, 0.5], "prerequisite": [0.05, 0.05]},
        "X0": {"gain": [1.8, 0.0], "prerequisite": [1.6, 0.0]},
        "X1": {"gain": [0.0, 1.8], "prerequisite": [0.0, 1.6]},
    }
    assessments = {
        "G": {"requirement": [2.0, 2.0], "bias": 0.0},
        "P0": {"requirement": [1.6, 0.0], "bias": 0.0},
        "P1": {"requirement": [0.0, 1.6], "bias": 0.0},
    }
    return {
        "model_config": cfg, "learning_noise": noise, "kinds": kinds.tolist(),
        "students": {f"s{u:03d}": {"bias": float(bias[u]), "states": [s0[u].tolist()], "kind": int(k[u])}
                     for u in range(n_students)},
        "assessments": assessments, "lessons": lessons,
    }


def designed_problem(truth: Mapping[str, Any], *, n_draws: int = 300, assessment_cost: float = 0.5,
                     seed: int | None = 0, **kw: Any) -> tuple[Belief, Truths]:
    """`cohort_problem` for `designed_cohort`: goal G, probes P0, P1, G; the belief's prior is
    the population mixture itself (the three kinds), not the model's half-normal."""
    belief, truths = cohort_problem(truth, ["G"], probes=["P0", "P1", "G"], n_draws=n_draws,
                                    assessment_cost=assessment_cost, seed=seed, **kw)
    rng = np.random.default_rng(None if seed is None else seed + 1)
    kinds = np.asarray(truth["kinds"])
    belief.state = np.abs(kinds[rng.integers(0, len(kinds), n_draws)] + rng.normal(0, 0.25, (n_draws, 2)))
    return belief, truths


# --------------------------------------------------------------------------- #
@dataclass
class PolicyComparison:
    """Per (policy, student): final true P(pass all goals), time used, lessons, assessments,
    reward (final p · γ^time) and the oracle's reward; `summary()` the table."""

    records: pd.DataFrame
    budget: float
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self, baseline: str = "open-loop") -> pd.DataFrame:
        r = self.records
        orc = r[r.policy == "oracle"].set_index("student")
        ost = r[r.policy == "oracle-start"].set_index("student")
        base = r[r.policy == baseline].set_index("student") if baseline in set(r.policy) else None
        rows = []
        for name, g in r.groupby("policy", sort=False):
            g = g.set_index("student")
            n = len(g)
            row = {"policy": name, "students": n,
                   "final_p": g.final_p.mean(), "final_p_q05": g.final_p.quantile(0.05),
                   "final_p_q95": g.final_p.quantile(0.95), "reward": g.reward.mean(),
                   "time": g.time.mean(), "lessons": g.lessons.mean(), "assessments": g.assessments.mean()}
            reg = orc.reward.loc[g.index] - g.reward
            row["regret"] = reg.mean()
            row["regret_se"] = reg.std(ddof=1) / math.sqrt(n) if n > 1 else np.nan
            row["of_oracle"] = g.reward.mean() / orc.reward.loc[g.index].mean()
            if len(ost):
                row["of_oracle_start"] = g.reward.mean() / ost.reward.loc[g.index].mean()
            if base is not None:
                diff = g.final_p - base.final_p.loc[g.index]
                se = diff.std(ddof=1) / math.sqrt(n) if n > 1 else np.nan
                row["vs_open_loop"] = diff.mean()
                row["vs_open_loop_lo"] = diff.mean() - 1.96 * se
                row["vs_open_loop_hi"] = diff.mean() + 1.96 * se
            row["ms_per_decision"] = self.seconds.get(name, np.nan)
            rows.append(row)
        return pd.DataFrame(rows)


def _true_goal_p(truths: Truths, i: int, state: FloatArray) -> float:
    m = truths.model
    return float(eq.pass_probability(state, m.goal_requirement[i], 0.0, m.goal_bias[i]).prod())


def simulate_policies(
    belief: Belief,
    truths: Truths,
    policies: Mapping[str, Policy],
    *,
    budget: float,
    seed: int = 0,
    oracle: bool = True,
    oracle_width: int = 20,
) -> PolicyComparison:
    """Run every policy on every true student from the same initial `belief`, with common
    random numbers (see the module docstring); returns the records."""
    m = belief.model
    N, d = truths.n, m.n_skills
    max_lessons = int(budget // m.lesson_costs.min() + 1e-9) + 1
    max_assess = int(budget // m.assessment_cost + 1e-9) + 1 if m.assessment_cost > 0 else 4 * max_lessons
    rng = np.random.default_rng(seed)
    U = 1.0 - rng.random((N, max_lessons, d))
    V = rng.random((N, max_assess))
    tm = truths.model
    tsig = tm.noise if np.ndim(tm.noise) == 0 else np.asarray(tm.noise)
    recs: list[dict[str, Any]] = []
    secs: dict[str, float] = {}
    runs: dict[str, Policy | None] = dict(policies)
    repeats = getattr(next(iter(policies.values()), None), "allow_repeats", False)
    if oracle:
        runs["oracle"] = None
        runs["oracle-start"] = OpenLoop(width=oracle_width, allow_repeats=repeats)
    for name, pol in runs.items():
        n_dec, t_dec = 0, 0.0
        for i in range(N):
            prng = np.random.default_rng([seed, i, 1])
            state = truths.state[i].copy()
            nl = na = 0
            if name == "oracle-start":  # knows the true parameters and initial state, then blind
                pol.reset()
                b = Belief(tm.take(np.array([i])), state[None])
            elif pol is not None:
                pol.reset()
                pol.rng = np.random.default_rng([seed, i, 2])
                b = belief.copy()
            else:
                orc = RecedingHorizon(horizon=max_lessons, width=oracle_width, assess="never", allow_repeats=repeats)
                one = tm.take(np.array([i]))
                b = Belief(one, state[None])
            t_used = 0.0
            for _ in range(max_lessons + max_assess + 1):
                left = budget - t_used
                t0 = _time.perf_counter()
                act = (pol if pol is not None else orc).next_action(b, left)
                t_dec += _time.perf_counter() - t0
                n_dec += 1
                if act.kind == "stop":
                    break
                if act.kind == "lesson":
                    k = m.lesson_ids.index(act.module)
                    if m.lesson_costs[k] > left + 1e-9 or nl >= max_lessons:
                        break
                    q = None if tm.prerequisite is None else tm.prerequisite[i, k]
                    mu = eq.expected_update(state, tm.gain[i, k], q)
                    sig = tsig if np.ndim(tsig) == 0 else tsig[i]
                    state = eq.truncated_normal_quantile(mu, sig, U[i, nl])
                    nl += 1
                    t_used += float(m.lesson_costs[k])
                    if pol is not None:
                        b.lesson(k, prng)
                    else:
                        b = Belief(one, state[None], time=t_used, events=[*b.events, ("lesson", act.module)])
                else:
                    j = m.probe_ids.index(act.module)
                    if na >= max_assess or m.assessment_cost > left + 1e-9:
                        break
                    p = float(eq.pass_probability(state, tm.probe_requirement[i, j], 0.0, tm.probe_bias[i, j]))
                    passed = bool(V[i, na] < p)
                    na += 1
                    t_used += m.assessment_cost
                    b.observe(j, passed, prng)
            fp = _true_goal_p(truths, i, state)
            recs.append({"policy": name, "student": i, "final_p": fp, "time": t_used, "lessons": nl,
                         "assessments": na, "reward": fp * m.discount ** t_used})
        secs[name] = 1000 * t_dec / max(n_dec, 1)
    return PolicyComparison(pd.DataFrame(recs), float(budget), secs)
