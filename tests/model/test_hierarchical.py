"""The hierarchical model (config ``hierarchical=True``): learned prior scales and the
assessment biases' mean, in the PyMC graph (non-centred), in the simulator (the same
joint distribution) and in the saved posterior."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import bayes_lse as bl
from bayes_lse import LatentSkillEmbedding
from bayes_lse.data.log import read_interactions
from bayes_lse.model import terms as eq
from canned import DISTINCT_PRIORS

PRIORS = DISTINCT_PRIORS


def test_hyperparameters_follow_the_variant():
    assert eq.hyperparameters_used({"hierarchical": False}) == ()
    full = eq.hyperparameters_used({"hierarchical": True, "lessons": True, "prerequisites": True, "biases": True})
    assert set(full) == set(eq.HYPERPARAMETERS)
    bare = eq.hyperparameters_used({"hierarchical": True, "lessons": False, "prerequisites": True, "biases": False})
    assert bare == ("sigma_requirement",)


def test_graph_density_is_the_hierarchical_prior_in_non_centred_form():
    """model.logp() of the learned-scale graph at a point equals a sum written by hand:
    hyperpriors at their config scales, each parameter's prior at the hyperparameters
    (scipy.stats, in the parameter's own coordinates) plus the log-Jacobian of the
    non-centred map (σ per value of a scaled vector, σ per bias), and the likelihood."""
    cfg = {"priors": PRIORS, "hierarchical": True, "learning_noise": 0.5}
    coh = bl.simulate(n_students=8, n_steps=3, n_assessments=5, n_lessons=3, seed=2, model_config=cfg)
    log = read_interactions(coh.table)
    spec = LatentSkillEmbedding(n_skills=2, priors=PRIORS, hierarchical=True, learning_noise=0.5, history=False)
    model, idx = spec.build_model(log, parametrization="centered")
    assert {f"{h}" for h in eq.HYPERPARAMETERS} <= set(model.named_vars)
    tr = coh.truth
    hyper = tr["hyperparameters"]
    states = np.concatenate([np.asarray(tr["students"][s]["states"])[:n]
                             for s, n in zip(log.students, np.diff(log.state_offset), strict=True)])
    req = np.array([tr["assessments"][a]["requirement"] for a in log.assessments])
    gain = np.array([tr["lessons"][k]["gain"] for k in log.lessons])
    prereq = np.array([tr["lessons"][k]["prerequisite"] for k in log.lessons])
    g_u = np.array([tr["students"][s]["bias"] for s in log.students])
    g_j = np.array([tr["assessments"][a]["bias"] for a in log.assessments])
    sa, sl, sq = hyper["sigma_requirement"], hyper["sigma_gain"], hyper["sigma_prerequisite"]
    su, sg, mu = hyper["sigma_student_bias"], hyper["sigma_assessment_bias"], hyper["mu_assessment_bias"]
    point = {
        "initial_state_log__": np.log(states[idx.initial_state]),
        "later_state_log__": np.log(states[idx.later_state]),
        "requirement_raw_log__": np.log(req / sa),
        "gain_raw_log__": np.log(gain / sl),
        "prerequisite_raw_log__": np.log(prereq / sq),
        "student_bias_raw": g_u / su,
        "assessment_bias_raw": (g_j - mu) / sg,
        **{f"{h}_log__": np.log(hyper[h]) for h in eq.HYPERPARAMETERS if h.startswith("sigma_")},
        "mu_assessment_bias": mu,
    }
    lp = float(model.compile_logp(jacobian=False)(point))

    ref = stats.halfnorm.logpdf([sa, sl, sq, su, sg], scale=[1.3, 0.4, 0.9, 0.6, 1.7]).sum()
    ref += stats.norm.logpdf(mu, scale=1.7)
    ref += stats.halfnorm.logpdf(states[idx.initial_state], scale=0.7).sum()
    for x, s in ((req, sa), (gain, sl), (prereq, sq)):
        ref += stats.halfnorm.logpdf(x, scale=s).sum() + x.size * math.log(s)
    ref += stats.norm.logpdf(g_u, scale=su).sum() + g_u.size * math.log(su)
    ref += stats.norm.logpdf(g_j, loc=mu, scale=sg).sum() + g_j.size * math.log(sg)
    k = idx.transition_lesson
    m = eq.expected_update(states[idx.transition_from], gain[k], prereq[k])
    ref += stats.truncnorm.logpdf(states[idx.transition_to], a=-m / 0.5, b=np.inf, loc=m, scale=0.5).sum()
    logit = eq.pass_logit(states[idx.obs_state], req[idx.obs_assessment], g_u[idx.obs_student], g_j[idx.obs_assessment])
    ref += stats.bernoulli.logpmf(idx.outcome, eq.sigmoid(logit)).sum()
    assert lp == pytest.approx(ref, rel=1e-9, abs=1e-6)


def test_simulator_draws_parameters_from_the_drawn_hyperparameters():
    """Two cohorts with different seeds draw different scales, and each cohort's
    parameters have the spread of its own scales (4000 values: tolerance 6 %)."""
    n = 4000
    for seed in (1, 2):
        coh = bl.simulate(n_students=n, n_steps=1, n_assessments=n, n_lessons=n, n_skills=2, answers_per_step=0,
                          seed=seed, model_config={"priors": PRIORS, "hierarchical": True})
        h = coh.truth["hyperparameters"]
        tr = coh.truth
        req = np.array([v["requirement"] for v in tr["assessments"].values()])
        gain = np.array([v["gain"] for v in tr["lessons"].values()])
        g_u = np.array([v["bias"] for v in tr["students"].values()])
        g_j = np.array([v["bias"] for v in tr["assessments"].values()])
        c = math.sqrt(2 / math.pi)
        assert req.mean() == pytest.approx(c * h["sigma_requirement"], rel=0.06)
        assert gain.mean() == pytest.approx(c * h["sigma_gain"], rel=0.06)
        assert g_u.std() == pytest.approx(h["sigma_student_bias"], rel=0.06)
        assert g_j.std() == pytest.approx(h["sigma_assessment_bias"], rel=0.06)
        assert g_j.mean() == pytest.approx(h["mu_assessment_bias"], abs=0.1 * h["sigma_assessment_bias"])


def test_non_hierarchical_simulation_is_unchanged_by_the_option():
    """hierarchical=False draws no hyperparameters: the same seed gives the same cohort
    as before the option existed (the random stream starts with the parameters)."""
    a = bl.simulate(n_students=5, n_steps=2, n_assessments=4, n_lessons=2, seed=9)
    b = bl.simulate(n_students=5, n_steps=2, n_assessments=4, n_lessons=2, seed=9,
                    model_config={"hierarchical": False})
    assert "hyperparameters" not in a.truth
    assert a.table.equals(b.table)
