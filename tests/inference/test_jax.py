"""The JAX paths: NUTS through numpyro and ADVI compiled by JAX (CPU here; the same code
runs on a GPU with `jax[cuda12]`).  Skipped when JAX / numpyro are not installed; the
`test` extra installs them, so CI runs these.

What "the same predictions within Monte Carlo error" means here: for every observed
assessment row, the posterior-mean pass probability from numpyro and from nutpie differ
by less than z · sqrt(MCSE_a² + MCSE_b²), with each MCSE from the rank-normalised ESS
of that row's draws and z the two-sided Bonferroni quantile over all rows at family-wise
level 0.001 — a tolerance set by the draws, not a hand-picked number.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import bayes_lse as bl
from bayes_lse.diagnostics import convergence_stats, identified_quantities

jax = pytest.importorskip("jax")
numpyro = pytest.importorskip("numpyro")

FAMILY_ALPHA = 1e-3


@pytest.fixture(scope="module", autouse=True)
def jax_compile_cache(tmp_path_factory):
    """JAX's persistent compilation cache in a temporary folder for this module: a numpyro
    fit spends most of its time compiling the NUTS loop with XLA (~30 s CPU on the tiny
    cohort), and a second fit of the same model is served from the cache (~6 s)."""
    keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    before = {k: getattr(jax.config, k) for k in keys}
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    yield
    for k, v in before.items():
        jax.config.update(k, v)


def _row_pass_probabilities(fitted: bl.FittedLSE) -> np.ndarray:
    """(chain, draw, obs) pass probabilities of every observed row."""
    n_obs = fitted.idata["observed_data"].sizes["obs"]
    q = identified_quantities(fitted.idata, max_obs=n_obs)
    return np.asarray(q["pass_probability"].transpose("chain", "draw", "obs").values)


def _agree_within_mc_error(p_a: np.ndarray, p_b: np.ndarray) -> tuple[np.ndarray, float]:
    """|z| per row of the difference of posterior means, and the Bonferroni bound."""
    se_a = convergence_stats(p_a)["mcse_mean"]
    se_b = convergence_stats(p_b)["mcse_mean"]
    diff = p_a.mean(axis=(0, 1)) - p_b.mean(axis=(0, 1))
    z = diff / np.sqrt(se_a**2 + se_b**2)
    bound = stats.norm.ppf(1 - FAMILY_ALPHA / (2 * len(diff)))
    return z, float(bound)


@pytest.fixture(scope="module")
def numpyro_fit(tiny_cohort):
    return bl.LatentSkillEmbedding(n_skills=2).fit(
        tiny_cohort.table, method="nuts", sampler="numpyro", chains=2, draws=40, tune=40, seed=5
    )


def test_numpyro_fit_has_the_contract_layout(numpyro_fit, tiny_nuts):
    """Same posterior variables, dims and coords as a nutpie fit; sampler statistics that
    the diagnostics read (diverging, energy, tree depth)."""
    f = numpyro_fit
    post, ref = f.posterior, tiny_nuts.posterior
    assert f.fit_config["sampler"] == "numpyro"
    assert (post.sizes["chain"], post.sizes["draw"]) == (2, 40)
    assert set(post.data_vars) == set(ref.data_vars)
    for name in post.data_vars:
        assert post[name].dims == ref[name].dims, name
        assert post[name].shape[2:] == ref[name].shape[2:], name
        assert np.isfinite(post[name].values).all(), name
    assert (post["requirement"].values >= 0).all() and (post["student_state"].values >= 0).all()
    ss = f.idata["sample_stats"].to_dataset()
    for stat in ("diverging", "energy", "tree_depth"):
        assert stat in ss and ss[stat].shape == (2, 40), stat
    assert ss["diverging"].dtype == bool
    assert ((ss["tree_depth"] >= 1) & (ss["tree_depth"] <= 10)).all()


def test_numpyro_fit_is_diagnosed_like_any_nuts_fit(numpyro_fit):
    d = numpyro_fit.diagnostics(loo=False)
    checks = set(d.verdicts["check"])
    assert {"Bulk ESS (identified)", "Divergences", "Tree depth saturation", "E-BFMI"} <= checks
    assert d.check("Divergences")["value"] == int(numpyro_fit.idata["sample_stats"]["diverging"].sum())


def test_chain_method_is_checked(tiny_cohort):
    from bayes_lse.inference.engine import jax_chain_method

    with pytest.raises(ValueError, match="chain_method"):
        bl.LatentSkillEmbedding().fit(tiny_cohort.table, method="nuts", sampler="numpyro", chain_method="threads")
    assert jax_chain_method("auto", 1) == "sequential"
    assert jax_chain_method("vectorized", 4) == "vectorized"
    # JAX is initialised by now in this process: 'auto' uses what it has, and never asks for more than exists
    method = jax_chain_method("auto", 4)
    assert method == ("parallel" if jax.local_device_count() >= 4 else "sequential")


@pytest.mark.slow
def test_numpyro_predicts_like_nutpie_within_mc_error(tiny_cohort):
    """2 chains × 200 draws each way; every observed row's posterior-mean pass probability
    agrees within the Bonferroni MCSE bound (module docstring)."""
    spec = bl.LatentSkillEmbedding(n_skills=2, history=False)  # _row_pass_probabilities has no history term
    kw = dict(method="nuts", chains=2, draws=200, tune=300, seed=11)
    a = spec.fit(tiny_cohort.table, sampler="numpyro", **kw)
    b = spec.fit(tiny_cohort.table, sampler="nutpie", **kw)
    p_a, p_b = _row_pass_probabilities(a), _row_pass_probabilities(b)
    z, bound = _agree_within_mc_error(p_a, p_b)
    assert np.isfinite(z).all()
    assert np.abs(z).max() < bound, f"worst |z| {np.abs(z).max():.2f} >= {bound:.2f}"
    # and the public prediction path says the same thing as the draws
    pred_a = a.predict(tiny_cohort.table)
    np.testing.assert_allclose(np.sort(pred_a["p_mean"].to_numpy()), np.sort(p_a.mean(axis=(0, 1))), atol=1e-9)


def test_mc_bound_rejects_a_shifted_posterior():
    """The agreement check is not vacuous: draws shifted by 5 MCSE fail it."""
    rng = np.random.default_rng(0)
    p = rng.beta(4, 6, size=(2, 200, 30))
    q = rng.beta(4, 6, size=(2, 200, 30))
    z, bound = _agree_within_mc_error(p, q)
    assert np.abs(z).max() < bound
    shift = 5 * np.sqrt(2) * convergence_stats(p)["mcse_mean"].max()
    z, bound = _agree_within_mc_error(p + shift, q)
    assert np.abs(z).max() > bound


def test_advi_backend_is_checked(tiny_cohort):
    with pytest.raises(ValueError, match="backend"):
        bl.LatentSkillEmbedding().fit(tiny_cohort.table, method="advi", backend="cuda")


def test_numpyro_seed_reproduces_draws(numpyro_fit, tiny_cohort):
    """Same seed, same draws (the refit's XLA programs come from the module's compile cache)."""
    again = bl.LatentSkillEmbedding(n_skills=2).fit(
        tiny_cohort.table, method="nuts", sampler="numpyro", chains=2, draws=40, tune=40, seed=5
    )
    np.testing.assert_array_equal(again.posterior["gain"].values, numpyro_fit.posterior["gain"].values)
    np.testing.assert_array_equal(again.posterior["student_state"].values, numpyro_fit.posterior["student_state"].values)


def _elbo_draws(model, mode, n_calls: int, n_mc: int, seed: int) -> np.ndarray:
    """`n_calls` independent Monte Carlo estimates of ADVI's loss (negative ELBO) at one
    fixed, non-trivial approximation, compiled by PyTensor `mode`."""
    import warnings

    import pymc as pm

    with model:
        inference = pm.ADVI(random_seed=seed)
    rng = np.random.default_rng(0)  # the same approximation for every mode
    for p in inference.approx.params:
        v = p.get_value()
        p.set_value(rng.normal(0.0, 0.3, v.shape) + (-1.0 if "rho" in p.name else 0.0))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*RandomType SharedVariables.*")
        score = inference.objective.score_function(sc_n_mc=n_mc, compile_kwargs={"mode": mode} if mode else None)
        return np.array([float(score()) for _ in range(n_calls)])


def test_advi_objective_compiled_by_jax_matches_default(tiny_cohort):
    """What `fit(method="advi", backend="jax")` changes is who compiles ADVI's objective
    (pm.fit(backend="jax")).  At one fixed approximation, the JAX-compiled Monte Carlo
    loss and the default one estimate the same number: means agree within their
    standard errors (independent calls, so plain SEs), and JAX's draws are fresh each call."""
    from pytensor.compile.mode import get_mode

    from bayes_lse.data.log import read_interactions

    log = read_interactions(tiny_cohort.table)
    model, _ = bl.LatentSkillEmbedding(n_skills=2).build_model(log, parametrization="auto")
    n = 60
    default = _elbo_draws(model, None, n, 20, seed=1)
    jaxed = _elbo_draws(model, get_mode("JAX"), n, 20, seed=2)
    assert len(np.unique(jaxed)) == n  # not the same Monte Carlo draw every step
    se = np.sqrt(default.var(ddof=1) / n + jaxed.var(ddof=1) / n)
    z = (jaxed.mean() - default.mean()) / se
    assert abs(z) < stats.norm.ppf(1 - FAMILY_ALPHA / 2), (jaxed.mean(), default.mean(), se)


@pytest.mark.slow
def test_advi_fit_with_jax_backend_predicts_like_default(tiny_cohort):
    """End to end: ADVI optimised by JAX predicts like the default backend.  Two ADVI runs
    differ by their stochastic optimisation even on one backend (measured: up to 0.6
    posterior sd per row between seeds on this cohort), so the check is that the backends
    differ by much less than the posterior's own uncertainty on average."""
    spec = bl.LatentSkillEmbedding(n_skills=1, prerequisites=False)
    kw = dict(method="advi", max_iterations=3000, window=200, tolerance=1e-3, draws=400, seed=1)
    jx = spec.fit(tiny_cohort.table, backend="jax", **kw)
    df = spec.fit(tiny_cohort.table, **kw)
    assert jx.fit_config["backend"] == "jax"
    loss = jx.idata["optimization"]["loss"].values
    assert np.isfinite(loss).all() and loss[-200:].mean() < loss[:200].mean()
    p_jx, p_df = _row_pass_probabilities(jx), _row_pass_probabilities(df)
    sd = p_df.std(axis=(0, 1))
    assert np.mean(np.abs(p_jx.mean(axis=(0, 1)) - p_df.mean(axis=(0, 1))) / sd) < 0.5
