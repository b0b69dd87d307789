"""The single definition of the model's terms (`bayes_lse.model.terms`): the priors table
read by the graph and the simulator, and the hand-written MAP kernels checked against a
density built only from `terms` functions and scipy.stats (not against a copy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import bayes_lse as bl
from bayes_lse import LatentSkillEmbedding
from bayes_lse.data.log import read_interactions
from bayes_lse.inference.map_kernel import CentredObjective
from bayes_lse.model import terms as eq
from bayes_lse.model.graph import IndexArrays
from canned import DISTINCT_PRIORS, MODEL_VARIANTS as KERNEL_VARIANTS

#: distinct, non-default scales: a prior read under another parameter's key shows
PRIORS = DISTINCT_PRIORS


def test_model_density_pins_every_prior_to_its_own_scale():
    """model.logp() at a point with every prior scale different equals a sum written by
    hand with the literal scales (scipy.stats) and the terms' numpy forms."""
    cfg = {"priors": PRIORS, "learning_noise": "learned", "history": True, "practice": True}
    coh = bl.simulate(n_students=10, n_steps=4, n_assessments=5, n_lessons=3, seed=11, model_config=cfg)
    log = read_interactions(coh.table)
    spec = LatentSkillEmbedding(n_skills=2, priors=PRIORS, learning_noise="learned", history=True, practice=True)
    model, idx = spec.build_model(log, parametrization="centered")
    tr = coh.truth
    states = np.concatenate([np.asarray(tr["students"][s]["states"])[:n]
                             for s, n in zip(log.students, np.diff(log.state_offset), strict=True)])
    req = np.array([tr["assessments"][a]["requirement"] for a in log.assessments])
    gain = np.array([tr["lessons"][k]["gain"] for k in log.lessons])
    prereq = np.array([tr["lessons"][k]["prerequisite"] for k in log.lessons])
    g_u = np.array([tr["students"][s]["bias"] for s in log.students])
    g_j = np.array([tr["assessments"][a]["bias"] for a in log.assessments])
    sigma, g_s, g_f, g_r, g_ps, g_pf = tr["learning_noise"], 0.3, -0.2, 0.25, 0.15, -0.1
    point = {
        "initial_state_log__": np.log(states[idx.initial_state]),
        "later_state_log__": np.log(states[idx.later_state]),
        "requirement_log__": np.log(req),
        "gain_log__": np.log(gain),
        "prerequisite_log__": np.log(prereq),
        "learning_noise_log__": np.log(sigma),
        "student_bias": g_u,
        "assessment_bias": g_j,
        "history_success": g_s,
        "history_failure": g_f,
        "history_recency": g_r,
        "history_practice_success": g_ps,
        "history_practice_failure": g_pf,
    }
    lp = float(model.compile_logp(jacobian=False)(point))

    ref = stats.halfnorm.logpdf(states[idx.initial_state], scale=0.7).sum()
    ref += stats.halfnorm.logpdf(req, scale=1.3).sum()
    ref += stats.halfnorm.logpdf(gain, scale=0.4).sum()
    ref += stats.halfnorm.logpdf(prereq, scale=0.9).sum()
    ref += stats.norm.logpdf(g_u, scale=0.6).sum()
    ref += stats.norm.logpdf(g_j, scale=1.7).sum()
    ref += stats.halfnorm.logpdf(sigma, scale=0.45)
    ref += stats.norm.logpdf([g_s, g_f, g_r, g_ps, g_pf], scale=2.2).sum()
    k = idx.transition_lesson
    mu = eq.expected_update(states[idx.transition_from], gain[k], prereq[k])
    ref += stats.truncnorm.logpdf(states[idx.transition_to], a=-mu / sigma, b=np.inf, loc=mu, scale=sigma).sum()
    logit = eq.pass_logit(states[idx.obs_state], req[idx.obs_assessment], g_u[idx.obs_student], g_j[idx.obs_assessment])
    assert (idx.history[:, 2:] > 0).any(axis=0).all()  # every feature is exercised
    logit = logit + eq.history_logit(idx.history, [g_s, g_f, g_r, g_ps, g_pf])
    ref += stats.bernoulli.logpmf(idx.outcome, eq.sigmoid(logit)).sum()
    # PyMC's normal_lcdf (the truncation normaliser) is good to ~2e-8 per term
    assert lp == pytest.approx(ref, rel=1e-9, abs=1e-6)


def test_simulated_parameters_follow_their_own_prior_scales():
    """Moments of many simulated draws: E|x| = σ·√(2/π) for the half-normals, sd σ for
    the biases (8000 values each: relative standard error below 1 %, tolerance 5 %)."""
    n = 8000
    coh = bl.simulate(n_students=n, n_steps=1, n_assessments=n, n_lessons=4000, n_skills=2,
                      answers_per_step=0, seed=5, model_config={"priors": PRIORS})
    tr = coh.truth
    s0 = np.array([v["states"][0] for v in tr["students"].values()])
    req = np.array([v["requirement"] for v in tr["assessments"].values()])
    gain = np.array([v["gain"] for v in tr["lessons"].values()])
    prereq = np.array([v["prerequisite"] for v in tr["lessons"].values()])
    g_u = np.array([v["bias"] for v in tr["students"].values()])
    g_j = np.array([v["bias"] for v in tr["assessments"].values()])
    c = math.sqrt(2.0 / math.pi)
    for x, scale in ((s0, 0.7), (req, 1.3), (gain, 0.4), (prereq, 0.9)):
        assert (x > 0).all()
        assert x.mean() == pytest.approx(c * scale, rel=0.05)
    assert g_u.std() == pytest.approx(0.6, rel=0.05)
    assert g_j.std() == pytest.approx(1.7, rel=0.05)


def test_every_prior_key_is_a_config_key_and_used_once_per_parameter():
    from bayes_lse.core.config import DEFAULT_PRIORS

    assert {key for _, key in eq.PRIORS.values()} == set(DEFAULT_PRIORS)
    assert {fam for fam, _ in eq.PRIORS.values()} == {"halfnormal", "normal"}


# --------------------------------------------------------------------------- #
# the MAP kernels against the single definition
# --------------------------------------------------------------------------- #
#: test_map_kernel's variants, and one with every prior scale distinct
VARIANTS = [*KERNEL_VARIANTS, {"priors": PRIORS, "learning_noise": "learned", "history": True}]


@pytest.fixture(scope="module")
def small_log() -> bl.InteractionLog:
    return bl.read_interactions(bl.simulate(n_students=15, n_steps=4, n_assessments=6, n_lessons=4, seed=3).table)


def reference_logp(values: dict[str, np.ndarray], idx: IndexArrays, config: dict, normalised: bool) -> float:
    """The centred log-density from `terms` and scipy.stats only."""
    pri = config["priors"]
    states = values["state"]
    lp = eq.prior_logpdf("initial_state", states[idx.initial_state], pri).sum()
    for name in ("requirement", "gain", "prerequisite", "student_bias", "assessment_bias",
                 "learning_noise", *eq.HISTORY_COEFFICIENTS):
        if name in values:
            lp += eq.prior_logpdf(name, values[name], pri).sum()
    sigma = values["learning_noise"] if "learning_noise" in values else float(config["learning_noise"])
    gain = values.get("gain")
    prereq = values.get("prerequisite")
    mu = eq.lesson_update_mean(states[idx.transition_from][None], idx.transition_lesson,
                               None if gain is None else gain[None], None if prereq is None else prereq[None])[0]
    x = states[idx.transition_to]
    if normalised:
        lp += stats.truncnorm.logpdf(x, a=-mu / sigma, b=np.inf, loc=mu, scale=sigma).sum()
    else:
        lp += stats.norm.logpdf(x, loc=mu, scale=sigma).sum()
    zeros_u, zeros_a = np.zeros(int(idx.obs_student.max()) + 1), np.zeros(len(values["requirement"]))
    logit = eq.pass_logit(states[idx.obs_state], values["requirement"][idx.obs_assessment],
                          values.get("student_bias", zeros_u)[idx.obs_student],
                          values.get("assessment_bias", zeros_a)[idx.obs_assessment])
    if "history_success" in values:
        logit = logit + eq.history_logit(idx.history, [values[k] for k in eq.HISTORY_COEFFICIENTS if k in values])
    lp += stats.bernoulli.logpmf(idx.outcome, eq.sigmoid(logit)).sum()
    return float(lp)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("normalised", [True, False])
@pytest.mark.parametrize("variant", VARIANTS, ids=[",".join(f"{k}={x}" for k, x in v.items() if k != "priors")
                                                   + (",priors" if "priors" in v else "") or "full" for v in VARIANTS])
def test_kernel_objective_is_the_terms_density(small_log, variant, normalised, backend):
    """At random points the hand-written kernel's log-density equals `reference_logp`, and
    its gradient the reference's central differences on a sample of coordinates."""
    spec = LatentSkillEmbedding(**variant)
    idx = IndexArrays.from_log(small_log)
    obj = CentredObjective(idx, spec.config, n_students=small_log.n_students, n_assessments=small_log.n_assessments,
                           n_lessons=small_log.n_lessons, normalised=normalised, log_space=False, backend=backend)
    rng = np.random.default_rng(7)
    for _ in range(2):
        x = np.abs(rng.normal(size=obj.size)) + 0.05
        x[~obj.positive] = rng.normal(size=int((~obj.positive).sum()))
        lp, g = obj.logp_and_grad(x)
        assert lp == pytest.approx(reference_logp(obj.values(x), idx, spec.config, normalised), rel=1e-10)
        for i in rng.choice(obj.size, size=8, replace=False):
            e = np.zeros(obj.size)
            e[i] = 1e-6
            fd = (reference_logp(obj.values(x + e), idx, spec.config, normalised)
                  - reference_logp(obj.values(x - e), idx, spec.config, normalised)) / 2e-6
            assert g[i] == pytest.approx(fd, rel=1e-5, abs=1e-5)


def test_sampling_keeps_a_single_draw_axis():
    """scipy's truncnorm.rvs drops a leading axis of length 1 unless given a size: with
    one posterior draw (MAP) prediction by sampling used to fail on the shape."""
    mu = np.full((1, 3, 2), 0.5)
    x = eq.sample_truncated_normal(mu, np.full((1, 1, 1), 0.3), np.random.default_rng(0))
    assert x.shape == (1, 3, 2) and (x > 0).all()
