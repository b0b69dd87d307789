"""MAP of the hierarchical model: empirical Bayes (`inference.empirical_bayes`)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import optimize

import bayes_lse as bl
from bayes_lse import LatentSkillEmbedding
from bayes_lse.inference.empirical_bayes import HyperObjective, bias_curvature


def _quadratic(x: np.ndarray) -> tuple[float, np.ndarray]:
    """A stand-in MAP objective (−log p, −∇log p) whose bias priors are N(0, 1): a
    Gaussian likelihood around fixed targets plus those priors."""
    target = np.linspace(-1.5, 2.0, x.size)
    f = 0.5 * 3.0 * np.sum((x - target) ** 2) + 0.5 * np.sum(x**2)
    return f, 3.0 * (x - target) + x


def _objective(n_u: int = 4, n_j: int = 6) -> HyperObjective:
    rng = np.random.default_rng(0)
    return HyperObjective(_quadratic, slice(0, n_u), slice(n_u, n_u + n_j), (1.0, 1.0), (0.6, 1.7, 1.7),
                          rng.uniform(0.5, 3, n_u), rng.uniform(0.5, 3, n_j))


def test_gradient_matches_finite_differences():
    obj = _objective()
    z = np.concatenate([np.random.default_rng(1).normal(size=10), [-0.3, 0.2, 0.4]])
    err = optimize.check_grad(lambda v: obj(v)[0], lambda v: obj(v)[1], z)
    assert err < 1e-5 * max(1.0, float(np.linalg.norm(obj(z)[1])))


def test_optimum_is_the_laplace_em_fixed_point():
    """At the joint optimum each scale satisfies σ² = mean((θ − μ)² + 1/(F + 1/σ²)) and
    μ_g is the assessment biases' mean (up to its hyperprior's pull): the PQL estimate
    the module doc promises, without alternating."""
    obj = _objective(n_u=30, n_j=40)
    z0 = np.zeros(73)
    res = optimize.minimize(obj, z0, jac=True, method="L-BFGS-B", options={"gtol": 1e-10, "ftol": 1e-14})
    z = res.x
    h = HyperObjective.hyper_of(z)
    gu, gj = z[:30], z[30:70]
    su, sg, mu = h["sigma_student_bias"], h["sigma_assessment_bias"], h["mu_assessment_bias"]
    # the hyperprior adds −σ²/s_h² to the stationarity condition; include it
    lhs_u = np.mean(gu**2 + 1 / (obj.fisher_u + 1 / su**2))
    assert su**2 * (1 + su**2 / (30 * 0.6**2)) == pytest.approx(lhs_u, rel=1e-4)
    lhs_g = np.mean((gj - mu) ** 2 + 1 / (obj.fisher_j + 1 / sg**2))
    assert sg**2 * (1 + sg**2 / (40 * 1.7**2)) == pytest.approx(lhs_g, rel=1e-4)
    assert mu == pytest.approx(np.sum(gj) / (40 + sg**2 / 1.7**2), rel=1e-4)


@pytest.fixture(scope="module")
def cohort() -> bl.SimulatedCohort:
    return bl.simulate(n_students=60, n_steps=3, n_assessments=12, n_lessons=3, n_skills=1, seed=4,
                       model_config={"hierarchical": True})


@pytest.mark.parametrize("engine", ["pytensor", "kernel"])
def test_map_fit_learns_and_records_the_bias_hyperparameters(cohort, engine):
    opts = {"parametrization": "centered"} if engine == "kernel" else {}
    fit = LatentSkillEmbedding(n_skills=1, hierarchical=True).fit(
        cohort.table, method="map", starts=1, maxiter=300, engine=engine, progressbar=False, **opts)
    post = fit.idata.posterior.to_dataset().squeeze(("chain", "draw"))
    for h in ("sigma_requirement", "sigma_gain", "sigma_prerequisite", "sigma_student_bias",
              "sigma_assessment_bias", "mu_assessment_bias"):
        assert post[h].shape == ()
    # the scales MAP leaves fixed stay at the config's scale; the learned ones moved
    assert float(post["sigma_requirement"]) == 1.0
    assert float(post["sigma_assessment_bias"]) != 1.0
    rounds = json.loads(fit.idata["optimization"].attrs["empirical_bayes"])
    assert len(rounds) == 2
    # μ_g is (up to its hyperprior) the mean of the fitted assessment biases
    gj = post["assessment_bias"].values.ravel()
    sg = float(post["sigma_assessment_bias"])
    assert float(post["mu_assessment_bias"]) == pytest.approx(gj.sum() / (len(gj) + sg**2 / 1.0), abs=2e-3)


def test_bias_curvature_is_the_sum_of_p_times_1_minus_p(cohort):
    from bayes_lse.model.graph import IndexArrays

    log = bl.read_interactions(cohort.table)
    idx = IndexArrays.from_log(log)
    d = 1
    point = {"initial_state": np.ones((log.n_students, d)), "later_state": np.ones((len(idx.later_state), d)),
             "requirement": np.ones((log.n_assessments, d)), "student_bias": np.zeros(log.n_students),
             "assessment_bias": np.zeros(log.n_assessments)}
    fu, fj = bias_curvature(point, idx, {"history": False}, log.n_students, log.n_assessments)
    # every logit is 1·1/1 − 1 = 0 → p(1−p) = 1/4 per answer
    assert fu == pytest.approx(np.bincount(idx.obs_student, minlength=log.n_students) / 4)
    assert fj.sum() == pytest.approx(len(idx.outcome) / 4)
    assert math.isclose(fu.sum(), fj.sum())


# ------------------------------------------------------------------ tag effects' scale
def _tag_objective(n: int = 8, sd0: float = 1.0, fisher: np.ndarray | None = None):
    from bayes_lse.inference.empirical_bayes import TagScaleObjective

    fisher = np.random.default_rng(2).uniform(0.5, 4.0, n) if fisher is None else fisher
    return TagScaleObjective(_quadratic, slice(2, 2 + n), sd0, fisher)


def test_tag_scale_gradient_matches_finite_differences():
    obj = _tag_objective()
    z = np.concatenate([np.random.default_rng(3).normal(size=12), [-0.4]])
    err = optimize.check_grad(lambda v: obj(v)[0], lambda v: obj(v)[1], z)
    assert err < 1e-5 * max(1.0, float(np.linalg.norm(obj(z)[1])))


def test_tag_scale_optimum_is_the_laplace_em_fixed_point():
    """σ_τ² (1 + σ_τ²/(n σ0²)) = mean(τ̂² + 1/(F + 1/σ_τ²)) at the joint optimum: the PQL
    fixed point of TagScaleObjective's doc, with its hyperprior's pull."""
    n = 40
    obj = _tag_objective(n=n, sd0=1.3)
    res = optimize.minimize(obj, np.zeros(n + 5), jac=True, method="L-BFGS-B", options={"gtol": 1e-10, "ftol": 1e-14})
    tau, s = res.x[2:2 + n], math.exp(res.x[-1])
    lhs = np.mean(tau**2 + 1 / (obj.fisher_t + 1 / s**2))
    assert s**2 * (1 + s**2 / (n * 1.3**2)) == pytest.approx(lhs, rel=1e-4)


def test_tag_curvature_weights_each_assessment_by_its_answers():
    from scipy import sparse

    from bayes_lse.inference.empirical_bayes import TagScaleObjective

    w = sparse.csr_matrix(np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 0.0]]))
    f = TagScaleObjective.curvature(w, np.array([4, 8, 0]), 1.0)
    # F_j = n_j / 4 = 1, 2; precision 1/(σ_g² + 1/F_j) = 0.5, 2/3; F_t = Σ_j w_jt² · that
    np.testing.assert_allclose(f, [0.5 + 0.25 * 2 / 3, 0.25 * 2 / 3])


def test_map_fit_with_tags_learns_their_scale(cohort):
    """A cohort whose assessment biases are set by two tags far apart: the MAP fit with the
    modules table learns a large σ_τ, tag effects apart in the right order, and says so."""
    import pandas as pd

    from bayes_lse.data.modules import read_modules

    t = cohort.table.copy()
    ids = sorted(t.loc[t["module_type"] == "assessment", "module_id"].unique())
    easy = set(ids[::2])
    rng = np.random.default_rng(0)
    a = t["module_type"] == "assessment"
    t.loc[a, "outcome"] = np.where(t.loc[a, "module_id"].isin(easy), rng.random(a.sum()) < 0.95,
                                   rng.random(a.sum()) < 0.2).astype(float)
    modules = read_modules(pd.DataFrame({"module_id": ids, "module_type": "assessment",
                                         "tags": ["easy" if m in easy else "hard" for m in ids]}))
    fit = LatentSkillEmbedding(n_skills=1, history=False).fit(t, method="map", starts=1, seed=0, modules=modules)
    tau = fit.idata.posterior["tag_bias"].mean(("chain", "draw")).to_series()
    assert tau["easy"] > tau["hard"] + 1.0
    assert float(fit.draws("sigma_tag_bias").mean()) > 0.5
    assert any("tag effects on 2 tags" in c for c in fit.choices)
    assert fit.tag_check()["use"]
