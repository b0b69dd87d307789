"""The polar sampling form of the requirement vectors and the assessment biases
(`build_model(requirement="polar")`, NUTS fit option `requirement`, the default) is
the same model as the cartesian one: same distribution of a, same joint density."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
from scipy import stats

import bayes_lse as bl
from bayes_lse.data.log import read_interactions


@pytest.mark.parametrize("d", [1, 2, 3])
def test_polar_requirement_has_the_half_normal_distribution(d):
    """a = |a|·v/|v| with |a|² ~ Gamma(d/2, 1/(2σ²)), v ~ HalfNormal(1)^d: each coordinate
    is HalfNormal(σ) and the norm is σ·χ_d (KS tests on forward draws)."""
    from bayes_lse.model.graph import _polar_half_normal

    sigma = 1.7
    with pm.Model(coords={"assessment": range(4000), "skill": range(d)}):
        req, norm = _polar_half_normal("requirement", sigma, d, "assessment")
        a, r = pm.draw([req, norm], random_seed=1)
    assert a.shape == (4000, d) and (a >= 0).all()
    for k in range(d):
        assert stats.kstest(a[:, k], stats.halfnorm(scale=sigma).cdf).pvalue > 1e-3
    assert stats.kstest(r, stats.chi(d, scale=sigma).cdf).pvalue > 1e-3
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), r, rtol=1e-4)  # NORM_EPS inside |v| (v ~ 1e-4 happens)
    if d > 1:  # norm and direction independent: the first coordinate's share does not follow the norm
        share = a[:, 0] / r
        assert abs(stats.spearmanr(share, r).statistic) < 0.06
        # a wrongly scaled prior would fail the KS tests above; a shuffled one this
        assert stats.kstest(a[:, 0], stats.halfnorm(scale=1.2 * sigma).cdf).pvalue < 1e-3


def test_polar_joint_density_matches_the_cartesian_one(tiny_cohort):
    """log p_polar(|x|², v, c, rest) = log p_cart(x = |x|·v/|v|, g = c + |a|, rest)
    + log Gamma(|a|²) + log HN(v) − log HN(a) for the requirements a: the likelihood,
    the trajectory and the bias prior are identical, only a's prior is re-expressed."""
    log = read_interactions(tiny_cohort.table)
    spec = bl.LatentSkillEmbedding(n_skills=2)
    cart, idx = spec.build_model(log, parametrization="noncentered")
    polar, _ = spec.build_model(log, parametrization="noncentered", requirement="polar")
    vectors = {"requirement": ("assessment", log.n_assessments)}
    for name in vectors:
        assert {f"{name}_norm_sq", f"{name}_direction", name} <= set(polar.named_vars)
    assert not {"gain_norm_sq", "prerequisite_direction"} & set(polar.named_vars)
    assert {"assessment_offset", "assessment_bias_prior"} <= set(polar.named_vars)
    rng = np.random.default_rng(3)
    pri = spec.config["priors"]
    base = cart.initial_point()
    shared = {k: base[k] + rng.normal(scale=0.3, size=np.shape(base[k]))
              for k in base if not k.startswith((*vectors, "assessment_bias"))}
    cart_point, polar_point, correction = dict(shared), dict(shared), 0.0
    for name, (_, n) in vectors.items():
        v = rng.uniform(0.1, 2.0, size=(n, 2))
        r = rng.uniform(0.2, 3.0, size=n)
        x = v / np.sqrt((v**2).sum(1) + 1e-12)[:, None] * r[:, None]
        cart_point[f"{name}_log__"] = np.log(x)
        polar_point[f"{name}_norm_sq_log__"] = np.log(r**2)
        polar_point[f"{name}_direction_log__"] = np.log(v)
        sig = pri[f"{name}_scale"]
        correction += (stats.gamma.logpdf(r**2, a=1.0, scale=2 * sig**2).sum()
                       + stats.halfnorm.logpdf(v).sum() - stats.halfnorm.logpdf(x, scale=sig).sum())
        if name == "requirement":
            c = rng.normal(size=n)
            cart_point["assessment_bias"] = c + r
            polar_point["assessment_offset"] = c
    p_cart = cart.compile_logp(jacobian=False)(cart_point)
    p_polar = polar.compile_logp(jacobian=False)(polar_point)
    assert np.isfinite(p_cart) and np.isfinite(p_polar)
    assert p_polar == pytest.approx(p_cart + correction, rel=1e-7, abs=1e-6)
    # and the bias really is the offset plus the norm: the offset alone in its place is detectably wrong
    p_wrong = cart.compile_logp(jacobian=False)({**cart_point, "assessment_bias": polar_point["assessment_offset"]})
    assert abs(p_polar - (p_wrong + correction)) > 1e-3


def test_polar_is_refused_where_it_has_no_meaning(tiny_cohort):
    log = read_interactions(tiny_cohort.table)
    spec = bl.LatentSkillEmbedding(n_skills=2)
    with pytest.raises(ValueError, match="requirement must be"):
        spec.build_model(log, requirement="spherical")
    with pytest.raises(ValueError, match="constrained"):
        spec.build_model(log, requirement="polar", constrained=True)


@pytest.mark.slow
def test_polar_and_cartesian_nuts_agree(tiny_cohort):
    """Both forms sample the same posterior: identified quantities agree within Monte Carlo error."""
    from bayes_lse.diagnostics import identified_quantities

    fits = {
        form: bl.LatentSkillEmbedding(n_skills=2).fit(
            tiny_cohort.table, method="nuts", sampler="nutpie", chains=2, draws=600, tune=600, seed=11,
            progressbar=False, requirement=form,
        )
        for form in ("cartesian", "polar")
    }
    post = fits["polar"].posterior
    assert {"requirement", "assessment_bias"} <= set(post.data_vars)
    assert {"gain", "prerequisite"} <= set(post.data_vars)
    assert not {"requirement_norm_sq", "requirement_direction", "assessment_offset"} & set(post.data_vars)
    assert fits["polar"].fit_config["requirement"] == "polar"
    # the same posterior, so also |a| and g_j apart (the prior identifies them; length_and_bias)
    iq = {k: identified_quantities(f.idata, length_and_bias=True) for k, f in fits.items()}
    for name in ("pass_probability", "requirement_norm", "gain_norm", "prerequisite_norm", "assessment_bias",
                 "assessment_offset", "student_bias"):
        x, y = iq["cartesian"][name], iq["polar"][name]
        mx, my = x.mean(("chain", "draw")).values, y.mean(("chain", "draw")).values
        # standard error of a difference of means with ESS ≈ 300 per fit, in units of the posterior sd
        sd = np.sqrt(0.5 * (x.var(("chain", "draw")).values + y.var(("chain", "draw")).values)) + 1e-9
        z = (mx - my) / sd
        assert np.mean(np.abs(z) < 0.25) > 0.9, (name, np.round(z, 2))
        assert np.max(np.abs(z)) < 0.5, (name, np.round(z, 2))
