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
    with pytest.raises(ValueError, match="history"):
        simulate_on_design(idx, len(log.assessments), len(log.lessons),
                           bl.LatentSkillEmbedding(history=True).config, rng)


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
