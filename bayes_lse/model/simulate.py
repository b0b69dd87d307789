"""Forward simulator: draws a cohort from exactly the joint distribution that the
PyMC model in `graph.py` defines (same priors, same truncated-normal transition),
so that recovery and simulation-based calibration checks mean something.

`simulate` draws a design (who answers what, which lessons) and the parameters;
`simulate_on_design` keeps a given design (a real log's, for calibration on the
user's own shape) and draws parameters and outcomes only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayes_lse.model import terms as eq
from bayes_lse.core.config import DEFAULT_MODEL_CONFIG, merge, skills_of, validate_model_config

if TYPE_CHECKING:
    from bayes_lse.model.graph import IndexArrays


@dataclass
class SimulatedCohort:
    """The interaction table (DESIGN §2 schema plus `p_true`) and the true parameters."""

    table: pd.DataFrame
    truth: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)

    def truth_json(self) -> str:
        return json.dumps(self.truth, indent=1)

    def write(self, path: str | Path, truth_path: str | Path | None = None, *, overwrite: bool = True) -> None:
        """Write the table (CSV) and, optionally, the truth (JSON); with ``overwrite=False``
        neither replaces a file that exists by the time it is written."""
        from bayes_lse.core.files import atomic_write_text

        atomic_write_text(Path(path), self.table.to_csv(index=False), exclusive=not overwrite)
        if truth_path is not None:
            atomic_write_text(Path(truth_path), self.truth_json(), exclusive=not overwrite)


def draw_with_history(student: np.ndarray, assessment: np.ndarray, time: np.ndarray, logit: np.ndarray,
                      coefficients: list[float], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes and pass probabilities of answers whose logit has the history term: `logit`
    (the rest of each answer's logit) + `terms.history_logit` of its counts, drawn in the
    order the counts are defined (by `time`, then row order, within each student).  The
    lag is fixed by the design; S and F (same assessment) and the practice counts (any
    assessment) depend on the student's earlier outcomes, so the k-th answers of every
    student are drawn together, k = 0, 1, …"""
    n = len(logit)
    # with every outcome 1, the practice successes are the answer's rank in its student's
    # answers (the wave); the lag does not depend on outcomes
    counts = eq.assessment_history_counts(student, assessment, np.ones(n), time)
    wave = counts[:, 3].astype(np.int64)
    counts[:, [0, 1, 3, 4]] = 0.0
    _, pair = np.unique(np.asarray(student, dtype=np.int64) * (int(np.max(assessment, initial=0)) + 1)
                        + np.asarray(assessment), return_inverse=True)
    _, who = np.unique(np.asarray(student, dtype=np.int64), return_inverse=True)
    seen = np.zeros((int(pair.max(initial=-1)) + 1, 2))  # each pair's successes and failures so far
    practised = np.zeros((int(who.max(initial=-1)) + 1, 2))  # each student's, on any assessment
    y = np.zeros(n)
    p = np.zeros(n)
    for k in range(int(wave.max()) + 1 if n else 0):
        rows = np.flatnonzero(wave == k)  # at most one row per student
        counts[rows, :2] = seen[pair[rows]]
        counts[rows, 3:] = practised[who[rows]]
        p[rows] = eq.sigmoid(logit[rows] + eq.history_logit(counts[rows], coefficients))
        y[rows] = rng.random(len(rows)) < p[rows]
        for table, key in ((seen, pair[rows]), (practised, who[rows])):
            table[key, 0] += y[rows]
            table[key, 1] += 1.0 - y[rows]
    return y, p


def simulate(
    n_students: int = 200,
    n_steps: int = 10,
    n_assessments: int = 20,
    n_lessons: int = 10,
    n_skills: int = 2,
    answers_per_step: int = 3,
    seed: int | None = None,
    model_config: dict[str, Any] | None = None,
) -> SimulatedCohort:
    """Draw a cohort: every student answers `answers_per_step` distinct random
    assessments at each of `n_steps` timesteps and takes one random lesson between
    consecutive timesteps (so `n_steps - 1` lessons each).

    The parameters are drawn from the model's priors (`model.terms.PRIORS`) and the
    trajectory from its learning update, so the cohort comes from exactly the joint
    distribution the PyMC graph defines (tests check the moments against the scales).

    Parameters
    ----------
    n_students, n_steps, n_assessments, n_lessons, n_skills : int
        The design: students × timesteps, module counts, skill dimension d.
    answers_per_step : int
        Distinct assessments each student answers at every timestep (0 allowed).
    seed : int, optional
        Seed of the numpy generator; the same seed gives the same cohort.
    model_config : dict, optional
        Merged over the defaults (`core.config.DEFAULT_MODEL_CONFIG`; ``n_skills``
        is taken from the argument): priors, σ_L and the variant (prerequisites,
        biases, lessons). ``history=True`` also draws the assessment-history term:
        γ_s, γ_f, γ_r from their priors (``truth["history"]``) and the answers in order,
        each with the counts of the outcomes drawn before it (`draw_with_history`);
        ``"auto"`` (the default) simulates without it.

    Returns
    -------
    SimulatedCohort
        ``.table`` (the DESIGN §2 interaction table, with the true pass probability
        ``p_true`` of every answer) and ``.truth`` (every true parameter, JSON-able).
    """
    for name, value, low in [
        ("n_students", n_students, 1),
        ("n_steps", n_steps, 1),
        ("n_assessments", n_assessments, 1),
        ("n_lessons", n_lessons, 1),
        ("n_skills", n_skills, 1),
        ("answers_per_step", answers_per_step, 0),
    ]:
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if answers_per_step > n_assessments:
        raise ValueError("answers_per_step cannot exceed n_assessments (answers at one step are distinct)")
    cfg = validate_model_config(merge(DEFAULT_MODEL_CONFIG, {**(model_config or {}), "n_skills": n_skills}, "model"))
    pri = cfg["priors"]
    rng = np.random.default_rng(seed)
    d, U, A, L, T = n_skills, n_students, n_assessments, n_lessons, n_steps

    # hierarchical model: the prior scales (and the assessment biases' mean) first, from
    # their hyperpriors; every parameter below is then drawn with them (terms.HYPER_OF)
    hyper = {h: float(eq.draw_prior(h, pri, rng)) for h in eq.hyperparameters_used(cfg)} or None
    noise = cfg["learning_noise"]
    if noise == "learned":
        noise = float(eq.draw_prior("learning_noise", pri, rng))
    s0 = eq.draw_prior("initial_state", pri, rng, (U, d))
    req = eq.draw_prior("requirement", pri, rng, (A, d), hyper)
    gain = eq.draw_prior("gain", pri, rng, (L, d), hyper)
    prereq = eq.draw_prior("prerequisite", pri, rng, (L, d), hyper)
    if cfg["biases"]:
        g_student = eq.draw_prior("student_bias", pri, rng, U, hyper)
        g_assess = eq.draw_prior("assessment_bias", pri, rng, A, hyper)
    else:
        g_student, g_assess = np.zeros(U), np.zeros(A)

    states = np.empty((U, T, d))
    states[:, 0] = s0
    lesson_taken = rng.integers(0, L, size=(U, max(T - 1, 0)))
    for t in range(T - 1):
        k = lesson_taken[:, t]
        if cfg["lessons"]:
            mu = eq.expected_update(states[:, t], gain[k], prereq[k] if cfg["prerequisites"] else None)
        else:
            mu = states[:, t]
        states[:, t + 1] = eq.sample_truncated_normal(mu, noise, rng)

    # answers: distinct assessments per (student, step)
    n_ans = answers_per_step
    picks = np.argsort(rng.random((U, T, A)), axis=-1)[..., :n_ans]  # (U, T, n_ans)
    history: dict[str, float] = {}
    if cfg["history"] is True:  # the history term, drawn answer by answer (`draw_with_history`)
        # practice="auto" as a fit of this cohort decides it (lesson rows exist when L > 0 and T > 1)
        history = {k: float(eq.draw_prior(k, pri, rng)) for k in eq.history_coefficients(cfg, has_lessons=L > 0 and T > 1)}
        logit = eq.pass_logit(states[:, :, None, :], req[picks], g_student[:, None, None], g_assess[picks])
        uu0, tt0, _ = np.meshgrid(np.arange(U), np.arange(T), np.arange(n_ans), indexing="ij")
        y, pp = draw_with_history(uu0.ravel(), picks.ravel(), tt0.ravel(), logit.ravel(), list(history.values()), rng)
        p, outcome = pp.reshape(picks.shape), y.reshape(picks.shape).astype(int)
    else:
        p = eq.pass_probability(
            states[:, :, None, :], req[picks], g_student[:, None, None], g_assess[picks]
        )
        outcome = (rng.random(p.shape) < p).astype(int)

    sid = [f"s{u:0{len(str(U - 1))}d}" for u in range(U)]
    aid = [f"A{j:0{len(str(A - 1))}d}" for j in range(A)]
    lid = [f"L{k:0{len(str(L - 1))}d}" for k in range(L)]

    # rows: at each step the answers, then (except at the last step) the lesson
    uu, tt, nn = np.meshgrid(np.arange(U), np.arange(T), np.arange(n_ans), indexing="ij")
    ans = pd.DataFrame(
        {
            "student_id": np.asarray(sid)[uu.ravel()],
            "module_id": np.asarray(aid)[picks.ravel()],
            "module_type": "assessment",
            "outcome": outcome.ravel().astype(float),
            "timestep": tt.ravel(),
            "p_true": p.ravel(),
            "_u": uu.ravel(),
            "_order": tt.ravel() * 2,
        }
    )
    lu, lt = np.meshgrid(np.arange(U), np.arange(max(T - 1, 0)), indexing="ij")
    les = pd.DataFrame(
        {
            "student_id": np.asarray(sid)[lu.ravel()],
            "module_id": np.asarray(lid)[lesson_taken.ravel()],
            "module_type": "lesson",
            "outcome": np.nan,
            "timestep": lt.ravel(),
            "p_true": np.nan,
            "_u": lu.ravel(),
            "_order": lt.ravel() * 2 + 1,
        }
    )
    table = (
        pd.concat([ans, les], ignore_index=True)
        .sort_values(["_u", "_order"], kind="stable")
        .drop(columns=["_u", "_order"])
        .reset_index(drop=True)
    )
    table["outcome"] = table["outcome"].astype("Int64")

    truth = {
        "model_config": cfg,
        "learning_noise": noise,
        **({"hyperparameters": hyper} if hyper else {}),
        **({"history": history} if history else {}),
        "students": {
            sid[u]: {"bias": float(g_student[u]), "states": states[u].tolist()} for u in range(U)
        },
        "assessments": {aid[j]: {"requirement": req[j].tolist(), "bias": float(g_assess[j])} for j in range(A)},
        "lessons": {lid[k]: {"gain": gain[k].tolist(), "prerequisite": prereq[k].tolist()} for k in range(L)},
    }
    return SimulatedCohort(table=table, truth=truth, config=cfg)


@dataclass
class DesignDraw:
    """One draw from the model's joint distribution on a fixed design.

    ``params`` holds every parameter the PyMC graph has, in the posterior layout of
    `inference.assemble.build_datatree` without the (chain, draw) dims:
    ``student_state`` (flat state, skill), ``requirement`` (assessment, skill),
    ``gain`` / ``prerequisite`` (lesson, skill) when the variant has them,
    ``student_bias`` / ``assessment_bias`` with biases, ``learning_noise`` when it is
    learned.  ``outcome`` (int8) and ``p`` are per answer, in the design's answer order.
    """

    params: dict[str, np.ndarray]
    outcome: np.ndarray
    p: np.ndarray


def simulate_on_design(
    idx: IndexArrays,
    n_assessments: int,
    n_lessons: int,
    model_config: dict[str, Any],
    rng: np.random.Generator,
) -> DesignDraw:
    """Parameters from the priors, the trajectory and the outcomes on a fixed design.

    The design is the index arrays of an interaction log (`model.graph.IndexArrays`):
    who answers which assessment in which state, and which lesson (or none, code −1)
    moves each state to the next.  Only parameters and outcomes are random, drawn
    exactly as the PyMC graph built from the same log defines them: the same variant
    logic (lessons only when the log has some; prerequisites only with lessons; σ_L
    drawn only when learned and some transition exists; tag effects when the design's
    log carries a modules table, `graph.tags_on`), the same priors
    (`terms.draw_prior`), the truncated-normal learning update (a step without a
    lesson keeps the mean) and Bernoulli outcomes of σ(D(s, a) + g_u + g_j).

    Parameters
    ----------
    idx : IndexArrays
        The design.
    n_assessments, n_lessons : int
        Module counts of the log the design comes from (codes index into them).
    model_config : dict
        A validated model config (``ModelSpec.config``); ``history=True`` draws the
        history term too (`draw_with_history`), ``history="auto"`` simulates without it.
    rng : numpy.random.Generator
        The random stream.

    Returns
    -------
    DesignDraw
    """
    from bayes_lse.model.graph import tags_on

    cfg = validate_model_config(merge(DEFAULT_MODEL_CONFIG, model_config, "model"))
    pri, d = cfg["priors"], skills_of(cfg)
    n_students = len(idx.initial_state)
    use_lessons = bool(cfg["lessons"]) and n_lessons > 0
    has_transitions = len(idx.transition_from) > 0
    params: dict[str, np.ndarray] = {}
    # a hierarchical config: its hyperparameters first, as the graph (terms.HYPER_OF)
    hyper = {h: float(eq.draw_prior(h, pri, rng)) for h in eq.hyperparameters_used({**cfg, "lessons": use_lessons})}
    params.update({h: np.asarray(v) for h, v in hyper.items()})
    hyper = hyper or None
    noise: Any = cfg["learning_noise"]
    if has_transitions and noise == "learned":
        noise = float(eq.draw_prior("learning_noise", pri, rng))
        params["learning_noise"] = np.asarray(noise)
    s0 = eq.draw_prior("initial_state", pri, rng, (n_students, d))
    req = eq.draw_prior("requirement", pri, rng, (n_assessments, d), hyper)
    params["requirement"] = req
    gain = prereq = None
    if use_lessons:
        gain = params["gain"] = eq.draw_prior("gain", pri, rng, (n_lessons, d), hyper)
        if cfg["prerequisites"]:
            prereq = params["prerequisite"] = eq.draw_prior("prerequisite", pri, rng, (n_lessons, d), hyper)
    g_student = np.zeros(n_students)
    g_assess = np.zeros(n_assessments)
    if cfg["biases"]:
        g_student = params["student_bias"] = eq.draw_prior("student_bias", pri, rng, n_students, hyper)
        g_assess = params["assessment_bias"] = eq.draw_prior("assessment_bias", pri, rng, n_assessments, hyper)
        if tags_on(cfg, idx):  # tag effects, as the graph: σ_τ, then τ ~ N(0, σ_τ²), biases centred on their tags
            s_tau = float(eq.draw_prior("sigma_tag_bias", pri, rng))
            tau = params["tag_bias"] = eq.draw_prior("tag_bias", pri, rng, idx.tag_matrix.shape[1],
                                                     {"sigma_tag_bias": s_tau})
            params["sigma_tag_bias"] = np.asarray(s_tau)
            g_assess = params["assessment_bias"] = g_assess + eq.tag_mean(idx.tag_matrix, tau)

    states = np.full((idx.n_states, d), np.nan)
    states[idx.initial_state] = s0
    step_from = idx.state_step[idx.transition_from]
    for k in np.unique(step_from):  # ascending: every "from" state is drawn before it is used
        tk = np.flatnonzero(step_from == k)
        s = states[idx.transition_from[tk]]
        mu = s.copy()
        if use_lessons:
            lesson = idx.transition_lesson[tk]
            has = lesson >= 0
            if has.any():
                mu[has] = eq.expected_update(s[has], gain[lesson[has]],
                                             None if prereq is None else prereq[lesson[has]])
        states[idx.transition_to[tk]] = eq.sample_truncated_normal(mu, noise, rng)
    params["student_state"] = states
    if cfg["history"] is True:  # the graph's history term, its counts from the drawn outcomes
        coefs = {k: float(eq.draw_prior(k, pri, rng)) for k in eq.history_coefficients(cfg, has_lessons=n_lessons > 0)}
        params.update({k: np.asarray(v) for k, v in coefs.items()})
        logit = eq.pass_logit(states[idx.obs_state], req[idx.obs_assessment],
                              g_student[idx.obs_student], g_assess[idx.obs_assessment])
        y, p = draw_with_history(idx.obs_student, idx.obs_assessment, idx.obs_state, logit, list(coefs.values()), rng)
        return DesignDraw(params=params, outcome=y.astype(np.int8), p=p)
    p = eq.pass_probability(states[idx.obs_state], req[idx.obs_assessment],
                            g_student[idx.obs_student], g_assess[idx.obs_assessment])
    outcome = (rng.random(p.shape) < p).astype(np.int8)
    return DesignDraw(params=params, outcome=outcome, p=p)


@dataclass
class SimulatedStudents:
    """New students simulated on given module parameters (`simulate_students`), as
    flat rows sorted by student, then step, answers before the step's lesson.

    ``student``, ``kind`` (0 answer, 1 lesson), ``code`` (assessment or lesson code),
    ``outcome`` (0/1, NaN for lessons), ``step``, ``p`` (true pass probability, NaN for
    lessons) per row; per student ``draw`` (the module draw it was simulated on),
    ``states`` (n, T_max + 1, d, the whole true trajectory), ``bias`` (n,), ``last``
    (n,) its last timestep.
    """

    student: np.ndarray
    kind: np.ndarray
    code: np.ndarray
    outcome: np.ndarray
    step: np.ndarray
    p: np.ndarray
    draw: np.ndarray
    states: np.ndarray
    bias: np.ndarray
    last: np.ndarray

    @property
    def n_students(self) -> int:
        return len(self.last)

    def rows(self, keep: np.ndarray) -> SimulatedStudents:
        """The same students with only the rows flagged in `keep` (their truth unchanged)."""
        return SimulatedStudents(self.student[keep], self.kind[keep], self.code[keep], self.outcome[keep],
                                 self.step[keep], self.p[keep], self.draw, self.states, self.bias, self.last)


def simulate_students(
    n_students: int,
    *,
    requirement: np.ndarray,
    priors: dict[str, Any],
    assessment_bias: np.ndarray | None = None,
    gain: np.ndarray | None = None,
    prerequisite: np.ndarray | None = None,
    noise: Any = 0.0,
    biases: bool = True,
    max_steps: int = 10,
    min_steps: int = 1,
    max_answers: int = 3,
    lesson_probability: float = 1.0,
    assessment_weights: np.ndarray | None = None,
    lesson_weights: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> SimulatedStudents:
    """New students on the modules of a fit: each student takes one module draw at random
    (`requirement` (S, A, d), `assessment_bias` (S, A), `gain` / `prerequisite` (S, L, d),
    `noise` σ_L scalar or (S,)), an initial state and a bias from their priors (`priors`:
    the model config's; `biases=False`: no student bias), a number of timesteps uniform in
    `min_steps..max_steps`, 0..`max_answers` answers per timestep (assessments drawn by
    `assessment_weights`) and, between timesteps, a lesson (drawn by `lesson_weights`) with
    probability `lesson_probability` (else the step passes with noise only).  The states
    move by the model's learning update (`terms.expected_update`, truncated-normal noise)
    and answers are drawn with `terms.pass_probability`: the joint distribution the fitted
    model defines for a new student.  What the amortised encoder is trained on
    (`inference.amortised`), and the held-out students of its benchmark."""
    rng = rng if rng is not None else np.random.default_rng()
    req = np.asarray(requirement, dtype=float)
    S, A, d = req.shape
    ab = np.zeros((S, A)) if assessment_bias is None else np.asarray(assessment_bias, dtype=float)
    L = 0 if gain is None else np.asarray(gain).shape[1]
    sig = np.broadcast_to(np.asarray(noise, dtype=float), (S,))
    n = int(n_students)
    draw = rng.integers(0, S, size=n)
    steps = rng.integers(min_steps, max_steps + 1, size=n)  # timesteps 0..steps-1
    Tm = int(steps.max()) if n else 1
    states = np.zeros((n, Tm, d))
    states[:, 0] = eq.draw_prior("initial_state", priors, rng, (n, d))
    bias = eq.draw_prior("student_bias", priors, rng, n) if biases else np.zeros(n)
    lesson = np.full((n, max(Tm - 1, 0)), -1, dtype=np.int64)
    if L and Tm > 1:
        lw = None if lesson_weights is None else np.asarray(lesson_weights, float) / np.sum(lesson_weights)
        lesson = rng.choice(L, size=(n, Tm - 1), p=lw)
        lesson[rng.random((n, Tm - 1)) >= lesson_probability] = -1
    lesson[np.arange(Tm - 1)[None, :] >= (steps - 1)[:, None]] = -1
    for t in range(Tm - 1):
        k = lesson[:, t]
        mu = states[:, t].copy()
        has = k >= 0
        if has.any():
            q = None if prerequisite is None else np.asarray(prerequisite)[draw[has], k[has]]
            mu[has] = eq.expected_update(mu[has], np.asarray(gain)[draw[has], k[has]], q)
        states[:, t + 1] = eq.sample_truncated_normal(mu, sig[draw][:, None], rng, method="rejection")
    # answers
    m = rng.integers(0, max_answers + 1, size=(n, Tm))
    m[np.arange(Tm)[None, :] >= steps[:, None]] = 0
    au = np.repeat(np.repeat(np.arange(n), Tm), m.ravel())
    at = np.repeat(np.tile(np.arange(Tm), n), m.ravel())
    aw = None if assessment_weights is None else np.asarray(assessment_weights, float) / np.sum(assessment_weights)
    aj = rng.choice(A, size=len(au), p=aw)
    p = eq.pass_probability(states[au, at], req[draw[au], aj], bias[au], ab[draw[au], aj])
    y = (rng.random(len(au)) < p).astype(float)
    lu, lt = np.nonzero(lesson >= 0)
    student = np.concatenate([au, lu])
    kind = np.concatenate([np.zeros(len(au), np.int64), np.ones(len(lu), np.int64)])
    code = np.concatenate([aj, lesson[lu, lt]]).astype(np.int64)
    step = np.concatenate([at, lt]).astype(np.int64)
    order = np.lexsort((kind, step, student))
    # the current timestep as a history states it (`recommend.sequences.place_student`):
    # the last answer's, or one past the last lesson; 0 for a student with no rows
    last = np.zeros(n, dtype=np.int64)
    np.maximum.at(last, student, step + kind)
    return SimulatedStudents(
        student=student[order], kind=kind[order], code=code[order],
        outcome=np.concatenate([y, np.full(len(lu), np.nan)])[order], step=step[order],
        p=np.concatenate([p, np.full(len(lu), np.nan)])[order], draw=draw, states=states, bias=bias,
        last=last,
    )
