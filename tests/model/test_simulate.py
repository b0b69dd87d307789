"""`simulate_on_design`: parameters and outcomes drawn on a fixed design, from the same joint
distribution as the PyMC graph built from that design (what SBC on a user's design needs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayes_lse as bl
from bayes_lse.data.log import read_interactions
from bayes_lse.model import terms as eq
from bayes_lse.model.graph import IndexArrays
from bayes_lse.model.simulate import simulate_on_design


def _design_with_gaps(n_students: int = 40, seed: int = 0):
    """A simulated design with every third lesson row dropped: those steps have no lesson (code −1)."""
    table = bl.simulate(n_students=n_students, n_steps=4, n_assessments=6, n_lessons=3, answers_per_step=2,
                        seed=seed).table
    lesson_rows = np.flatnonzero((table["module_type"] == "lesson").to_numpy())
    table = table.drop(index=lesson_rows[::3]).reset_index(drop=True)
    log = read_interactions(table[["student_id", "module_id", "module_type", "outcome", "timestep"]])
    return log, IndexArrays.from_log(log)


def test_trajectory_follows_the_learning_update_and_steps_without_lessons():
    log, idx = _design_with_gaps()
    assert (idx.transition_lesson == -1).any() and (idx.transition_lesson >= 0).any()
    spec = bl.LatentSkillEmbedding(n_skills=2, learning_noise=1e-9)
    draw = simulate_on_design(idx, len(log.assessments), len(log.lessons), spec.config, np.random.default_rng(1))
    s = draw.params["student_state"]
    assert s.shape == (idx.n_states, 2) and np.isfinite(s).all() and (s >= 0).all()
    frm, to, les = idx.transition_from, idx.transition_to, idx.transition_lesson
    has = les >= 0
    expect = eq.expected_update(s[frm[has]], draw.params["gain"][les[has]], draw.params["prerequisite"][les[has]])
    np.testing.assert_allclose(s[to[has]], expect, atol=1e-6)
    np.testing.assert_allclose(s[to[~has]], s[frm[~has]], atol=1e-6)  # no lesson: the mean stays
    p = eq.pass_probability(s[idx.obs_state], draw.params["requirement"][idx.obs_assessment],
                            draw.params["student_bias"][idx.obs_student],
                            draw.params["assessment_bias"][idx.obs_assessment])
    np.testing.assert_allclose(draw.p, p)
    assert draw.outcome.dtype == np.int8 and draw.outcome.shape == idx.outcome.shape
    assert set(np.unique(draw.outcome)) <= {0, 1}


def test_variants_draw_exactly_the_graphs_parameters():
    log, idx = _design_with_gaps(10)
    rng = np.random.default_rng(2)
    full = simulate_on_design(idx, len(log.assessments), len(log.lessons),
                              bl.LatentSkillEmbedding(learning_noise="learned").config, rng).params
    assert set(full) == {"student_state", "requirement", "gain", "prerequisite", "student_bias",
                         "assessment_bias", "learning_noise"}
    bare = simulate_on_design(idx, len(log.assessments), len(log.lessons),
                              bl.LatentSkillEmbedding(prerequisites=False, biases=False, lessons=False).config,
                              rng).params
    assert set(bare) == {"student_state", "requirement"}
    hist = simulate_on_design(idx, len(log.assessments), len(log.lessons),
                              bl.LatentSkillEmbedding(history=True).config, rng)
    assert {"history_success", "history_failure", "history_recency"} <= set(hist.params)
    assert set(np.unique(hist.outcome)) <= {0, 1} and np.all((hist.p > 0) & (hist.p < 1))


def test_same_joint_as_the_pymc_prior_on_the_design():
    """Moments of states per step and the pass rate agree with prior draws of the (non-centred,
    cartesian) PyMC graph of the same design, steps without a lesson included."""
    import pymc as pm

    log, idx = _design_with_gaps(60, seed=3)
    spec = bl.LatentSkillEmbedding(n_skills=2)
    model, _ = spec.build_model(log, parametrization="noncentered")
    n = 300
    with model:
        prior = pm.sample_prior_predictive(draws=n, random_seed=1, var_names=["later_state", "initial_state", "outcome"])
    pri = prior["prior"]
    model_states = np.empty((n, idx.n_states, 2))
    model_states[:, idx.initial_state] = pri["initial_state"].values.reshape(n, -1, 2)
    model_states[:, idx.later_state] = pri["later_state"].values.reshape(n, -1, 2)
    rng = np.random.default_rng(4)
    draws = [simulate_on_design(idx, len(log.assessments), len(log.lessons), spec.config, rng) for _ in range(n)]
    sim_states = np.stack([d.params["student_state"] for d in draws])
    for k in range(int(idx.state_step.max()) + 1):
        at = idx.state_step == k
        a, b = model_states[:, at].ravel(), sim_states[:, at].ravel()
        assert b.mean() == pytest.approx(a.mean(), rel=0.05), k
        assert b.std() == pytest.approx(a.std(), rel=0.08), k
    y_model = prior["prior_predictive"]["outcome"].values.mean()
    y_sim = np.mean([d.outcome.mean() for d in draws])
    assert y_sim == pytest.approx(y_model, abs=0.02)
    assert pd.Series(draws[0].p).between(0, 1).all()


def test_draw_with_history_is_the_sequential_model():
    """Outcomes drawn wave by wave equal a row-by-row draw in (time, row) order with the same
    uniforms: each answer's history counts are those of the outcomes drawn before it."""
    from bayes_lse.model.simulate import draw_with_history

    rng = np.random.default_rng(0)
    n = 300
    student, assessment = rng.integers(0, 6, n), rng.integers(0, 4, n)
    time, logit = rng.integers(0, 5, n), rng.normal(size=n)
    coefs = [1.2, -0.8, 0.9, 0.4, -0.3]  # practice too: it depends on every earlier outcome of the student
    y, p = draw_with_history(student, assessment, time, logit, coefs, np.random.default_rng(1))
    # the reference: counts from the drawn outcomes (assessment_history_counts), then p per row
    counts = eq.assessment_history_counts(student, assessment, y, time)
    np.testing.assert_allclose(p, eq.sigmoid(logit + eq.history_logit(counts, coefs)), rtol=1e-12)
    assert (counts[:, 0] > 0).any() and (counts[:, 2] > 1).any() and (counts[:, 3:] > 0).all(axis=1).any()


def test_simulate_with_history_is_the_graphs_likelihood():
    """`simulate(model_config={"history": True})` draws γ_s, γ_f, γ_r from their priors and
    every answer with the history term: the model's pass probability at the true parameters,
    with the counts the fit computes from the table (`IndexArrays.history`), is the
    simulator's p_true to the last digit."""
    cohort = bl.simulate(n_students=40, n_steps=6, n_assessments=4, n_lessons=3, n_skills=2, answers_per_step=2,
                         seed=3, model_config={"history": True, "practice": True})
    tr = cohort.truth
    assert set(tr["history"]) == set(eq.HISTORY_COEFFICIENTS)
    # practice="auto" is off where lessons teach, as a fit of this cohort decides it
    plain = bl.simulate(n_students=5, n_steps=3, n_assessments=4, n_lessons=3, seed=3, model_config={"history": True})
    assert list(plain.truth["history"]) == list(eq.HISTORY_COEFFICIENTS[:3])
    log = read_interactions(cohort.table)
    idx = IndexArrays.from_log(log)
    assert (idx.history[:, 0] + idx.history[:, 1] > 0).any()  # repeats exist
    states = np.concatenate([np.asarray(tr["students"][s]["states"]) for s in log.students])
    req = np.array([tr["assessments"][a]["requirement"] for a in log.assessments])
    g_j = np.array([tr["assessments"][a]["bias"] for a in log.assessments])
    g_u = np.array([tr["students"][s]["bias"] for s in log.students])
    logit = eq.pass_logit(states[idx.obs_state], req[idx.obs_assessment], g_u[idx.obs_student], g_j[idx.obs_assessment])
    p = eq.sigmoid(logit + eq.history_logit(idx.history, [tr["history"][k] for k in eq.HISTORY_COEFFICIENTS]))
    answers = cohort.table[cohort.table["module_type"] == "assessment"]
    np.testing.assert_allclose(p, answers["p_true"].to_numpy(), rtol=1e-12)
