"""The PyMC model: its density is the simulator's, every variant builds, every
fit method runs end to end on tiny data, prediction behaves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayes_lse as bl
from bayes_lse.model import terms as eq
from bayes_lse.data.log import read_interactions


def _truth_arrays(cohort, log):
    tr = cohort.truth
    s_all = np.concatenate([np.asarray(tr["students"][s]["states"])[: n] for s, n in
                            zip(log.students, np.diff(log.state_offset))])
    return {
        "states": s_all,
        "requirement": np.array([tr["assessments"][a]["requirement"] for a in log.assessments]),
        "gain": np.array([tr["lessons"][k]["gain"] for k in log.lessons]),
        "prerequisite": np.array([tr["lessons"][k]["prerequisite"] for k in log.lessons]),
        "student_bias": np.array([tr["students"][s]["bias"] for s in log.students]),
        "assessment_bias": np.array([tr["assessments"][a]["bias"] for a in log.assessments]),
        "noise": tr["learning_noise"],
    }


def test_model_density_is_the_simulators_density(tiny_cohort):
    """log p of the PyMC model at the true parameters equals the generative density
    written independently with scipy: same priors, same truncated transition."""
    log = read_interactions(tiny_cohort.table)
    spec = bl.LatentSkillEmbedding(n_skills=2, history=False)  # the simulator draws no history term
    model, idx = spec.build_model(log, parametrization="centered")
    t = _truth_arrays(tiny_cohort, log)
    point = {
        "initial_state_log__": np.log(t["states"][idx.initial_state]),
        "later_state_log__": np.log(t["states"][idx.later_state]),
        "requirement_log__": np.log(t["requirement"]),
        "gain_log__": np.log(t["gain"]),
        "prerequisite_log__": np.log(t["prerequisite"]),
        "student_bias": t["student_bias"],
        "assessment_bias": t["assessment_bias"],
    }
    pymc_logp = model.compile_logp(jacobian=False)(point)

    pri = spec.config["priors"]
    ref = stats.halfnorm.logpdf(t["states"][idx.initial_state], scale=pri["initial_state_scale"]).sum()
    ref += stats.halfnorm.logpdf(t["requirement"], scale=pri["requirement_scale"]).sum()
    ref += stats.halfnorm.logpdf(t["gain"], scale=pri["gain_scale"]).sum()
    ref += stats.halfnorm.logpdf(t["prerequisite"], scale=pri["prerequisite_scale"]).sum()
    ref += stats.norm.logpdf(t["student_bias"], scale=pri["student_bias_sd"]).sum()
    ref += stats.norm.logpdf(t["assessment_bias"], scale=pri["assessment_bias_sd"]).sum()
    s_from = t["states"][idx.transition_from]
    k = idx.transition_lesson
    mu = eq.expected_update(s_from, t["gain"][k], t["prerequisite"][k])
    sig = t["noise"]
    ref += stats.truncnorm.logpdf(t["states"][idx.transition_to], a=-mu / sig, b=np.inf, loc=mu, scale=sig).sum()
    p = eq.pass_probability(t["states"][idx.obs_state], t["requirement"][idx.obs_assessment],
                            t["student_bias"][idx.obs_student], t["assessment_bias"][idx.obs_assessment])
    ref += stats.bernoulli.logpmf(idx.outcome, p).sum()
    assert np.isfinite(pymc_logp)
    assert pymc_logp == pytest.approx(ref, rel=1e-9, abs=1e-6)


def test_innovation_map_is_the_truncated_normal():
    """The non-centred map z ↦ s is exactly the truncated-normal transition (KS test)."""
    import pytensor.tensor as pt

    from bayes_lse.model.terms import truncated_normal_from_innovation

    rng = np.random.default_rng(0)
    for mu, sigma in [(0.0, 0.7), (0.3, 0.7), (2.5, 0.7), (0.05, 0.2)]:
        z = rng.standard_normal(20000)
        x = truncated_normal_from_innovation(pt.as_tensor(mu), sigma, pt.as_tensor(z)).eval()
        assert (x >= 0).all()
        ks = stats.kstest(x, stats.truncnorm(a=-mu / sigma, b=np.inf, loc=mu, scale=sigma).cdf)
        assert ks.pvalue > 0.001, (mu, sigma, ks)


def test_innovation_map_matches_the_log_space_inverse_cdf_in_both_tails():
    """The erfc/erfcinv form of the map equals scipy's log-space inverse CDF,
    −ndtri_exp(log Φ(m) + log Φ(−z)), to near machine precision far into both tails, and
    so does its gradient; beyond the clip it stays finite."""
    import pytensor
    import pytensor.tensor as pt
    from scipy import special

    from bayes_lse.model.terms import INNOVATION_CLIP, truncated_normal_from_innovation

    sigma = 0.7
    mu_v, z_v = pt.vector("mu"), pt.vector("z")
    x = truncated_normal_from_innovation(mu_v, sigma, z_v)
    f = pytensor.function([mu_v, z_v], [x, *pt.grad(pt.sum(x), [mu_v, z_v])])
    zz, mm = np.meshgrid(np.r_[np.linspace(-36, 36, 145), 0.0, -1e-300, 1e-300], [0.0, 1e-8, 0.3, 1.0, 3.0, 8.0, 21.0])
    z, mu = zz.ravel(), mm.ravel()
    got, d_mu, d_z = f(mu, z)
    m = mu / sigma
    y = -special.ndtri_exp(special.log_ndtr(m) + special.log_ndtr(-z))
    np.testing.assert_allclose(got, np.maximum(mu + sigma * y, 0.0), rtol=1e-12, atol=1e-12)
    # dY/dz = Φ(m)φ(z)/φ(Y), dY/dm = −φ(m)Φ(−z)/φ(Y), from Φ(−Y) = Φ(m)Φ(−z)
    log_phi = lambda v: -0.5 * v * v  # noqa: E731 (the 1/√(2π) cancels)
    np.testing.assert_allclose(d_z, sigma * np.exp(special.log_ndtr(m) + log_phi(z) - log_phi(y)), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(d_mu, 1.0 - np.exp(log_phi(m) + special.log_ndtr(-z) - log_phi(y)), rtol=1e-9, atol=1e-12)
    far = np.array([-1e3, -INNOVATION_CLIP - 3, INNOVATION_CLIP + 3, 1e3])
    out = f(np.full(4, 5.0), far)
    assert all(np.isfinite(o).all() for o in out)


def test_noncentered_prior_matches_the_simulator():
    """Prior draws of the (non-centred) PyMC model match the simulator's moments:
    states at each step and pass rates, on the same cohort structure."""
    import pymc as pm

    coh = bl.simulate(n_students=150, n_steps=4, n_assessments=10, n_lessons=5, seed=3)
    log = read_interactions(coh.table)
    # history=False: simulate's default ("auto") draws no history term
    model, idx = bl.LatentSkillEmbedding(history=False).build_model(log, parametrization="noncentered")
    with model:
        prior = pm.sample_prior_predictive(draws=300, random_seed=1, var_names=["later_state", "initial_state", "outcome"])
    pri = prior["prior"]
    states = np.concatenate([pri["initial_state"].values.reshape(300, -1, 2),
                             pri["later_state"].values.reshape(300, -1, 2)], axis=1)
    flat_ids = np.concatenate([idx.initial_state, idx.later_state])
    step = idx.state_step[flat_ids]
    sims = [bl.simulate(n_students=150, n_steps=4, n_assessments=10, n_lessons=5, seed=100 + i) for i in range(60)]
    for k in range(4):
        model_k = states[:, step == k].ravel()
        sim_k = np.concatenate([np.array([v["states"][k] for v in c.truth["students"].values()]).ravel() for c in sims])
        assert model_k.mean() == pytest.approx(sim_k.mean(), rel=0.06), k
        assert model_k.std() == pytest.approx(sim_k.std(), rel=0.08), k
    y_model = prior["prior_predictive"]["outcome"].values.mean()
    y_sim = np.mean([c.table.loc[c.table.module_type == "assessment", "outcome"].astype(float).mean() for c in sims])
    assert y_model == pytest.approx(y_sim, abs=0.03)


def test_simulator_moments_match_the_priors():
    """The simulator's draws have the prior moments the model states."""
    coh = bl.simulate(n_students=4000, n_steps=2, n_assessments=2000, n_lessons=2000, seed=0)
    s0 = np.array([v["states"][0] for v in coh.truth["students"].values()])
    req = np.array([v["requirement"] for v in coh.truth["assessments"].values()])
    half_normal_mean = np.sqrt(2 / np.pi)
    assert s0.mean() == pytest.approx(half_normal_mean, abs=0.03)
    assert req.mean() == pytest.approx(half_normal_mean, abs=0.03)
    assert s0.var() == pytest.approx(1 - 2 / np.pi, abs=0.03)
    biases = np.array([v["bias"] for v in coh.truth["students"].values()])
    assert biases.std() == pytest.approx(1.0, abs=0.05)
    # the transition: E[s1 | s0, lesson] is the truncated-normal mean of the update
    t = coh.table
    lesson = t[t.module_type == "lesson"].set_index("student_id")["module_id"]
    s1 = np.array([coh.truth["students"][s]["states"][1] for s in lesson.index])
    s0l = np.array([coh.truth["students"][s]["states"][0] for s in lesson.index])
    g = np.array([coh.truth["lessons"][k]["gain"] for k in lesson])
    q = np.array([coh.truth["lessons"][k]["prerequisite"] for k in lesson])
    expected = eq.expected_next_state(s0l, g, q, coh.truth["learning_noise"])
    resid = s1 - expected
    assert abs(resid.mean()) < 0.03
    assert (s1 >= 0).all()


def test_simulated_p_true_is_the_model_probability(tiny_cohort):
    t = tiny_cohort.table
    a = t[t.module_type == "assessment"]
    assert a["p_true"].between(0, 1).all()
    assert set(a["outcome"].unique()) <= {0, 1}
    assert t[t.module_type == "lesson"]["p_true"].isna().all()


@pytest.mark.parametrize(
    "kwargs, present, absent",
    [
        ({}, {"gain", "prerequisite", "student_bias", "assessment_bias"}, {"learning_noise"}),
        ({"prerequisites": False}, {"gain"}, {"prerequisite"}),
        ({"biases": False}, {"gain"}, {"student_bias", "assessment_bias"}),
        ({"lessons": False}, set(), {"gain", "prerequisite"}),
        ({"learning_noise": "learned", "n_skills": 3}, {"learning_noise"}, set()),
        ({"n_skills": 1}, {"gain"}, set()),
    ],
)
def test_variants_build(tiny_cohort, kwargs, present, absent):
    spec = bl.LatentSkillEmbedding(**kwargs)
    model, _ = spec.build_model(read_interactions(tiny_cohort.table))
    names = {v.name for v in model.free_RVs}
    assert present <= names
    assert not (absent & names)
    assert np.isfinite(model.compile_logp()(model.initial_point()))
    assert model.named_vars_to_dims["requirement"] == ("assessment", "skill")
    assert list(model.coords["student"]) == list(read_interactions(tiny_cohort.table).students)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="n_skills"):
        bl.LatentSkillEmbedding(n_skills=0)
    with pytest.raises(ValueError, match="learning_noise"):
        bl.LatentSkillEmbedding(learning_noise=-1)
    with pytest.raises(ValueError, match="unknown model.priors setting 'gain_sd'"):
        bl.LatentSkillEmbedding(priors={"gain_sd": 1.0})
    with pytest.raises(ValueError, match="unknown map fit setting 'draws'"):
        bl.LatentSkillEmbedding().fit(bl.simulate(n_students=2, n_steps=2, seed=0).table, method="map", draws=5)


def test_map_end_to_end(tiny_map, tiny_cohort):
    f = tiny_map
    assert f.method == "map"
    post = f.posterior
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == 1
    assert post["student_state"].dims == ("chain", "draw", "state", "skill")
    assert (post["student_state"].values >= 0).all()
    assert (post["gain"].values >= 0).all()
    opt = f.idata["optimization"].to_dataset()
    assert opt.sizes["start"] == 2
    assert 0 <= opt.attrs["best_start"] < 2
    assert np.isfinite(opt["objective"]).all()
    pred = f.predict(tiny_cohort.table)
    assert (pred["p_low"] == pred["p_mean"]).all() and (pred["p_high"] == pred["p_mean"]).all()
    assert pred["p_mean"].between(0, 1).all()


def test_map_does_not_collapse_the_gains(tiny_cohort):
    """The default MAP objective keeps gains away from zero (the normalised joint mode does not)."""
    coh = bl.simulate(n_students=60, n_steps=6, seed=11)
    f = bl.LatentSkillEmbedding().fit(coh.table, method="map", starts=2, seed=0, maxiter=1000)
    assert np.linalg.norm(f.draws("gain")[0], axis=-1).mean() > 0.3
    centred = bl.LatentSkillEmbedding().fit(coh.table, method="map", starts=2, seed=0, parametrization="centered",
                                            constrained=True, maxiter=1000)
    assert np.linalg.norm(centred.draws("gain")[0], axis=-1).mean() > 0.05
    collapsed = bl.LatentSkillEmbedding().fit(coh.table, method="map", starts=2, seed=0, normalised=True,
                                              parametrization="centered", constrained=True, maxiter=1000)
    assert np.linalg.norm(collapsed.draws("gain")[0], axis=-1).mean() < 0.05
    assert np.linalg.norm(collapsed.draws("gain")[0], axis=-1).mean() < np.linalg.norm(
        f.draws("gain")[0], axis=-1).mean()


def test_advi_end_to_end(tiny_cohort):
    f = bl.LatentSkillEmbedding().fit(tiny_cohort.table, method="advi", draws=50, max_iterations=3000,
                                      window=200, seed=2)
    opt = f.idata["optimization"].to_dataset()
    assert opt.sizes["iteration"] == opt.attrs["iterations"] > 0
    assert np.isfinite(opt["loss"].values).all()
    assert f.posterior.sizes["draw"] == 50
    pred = f.predict(tiny_cohort.table)
    assert (pred["p_low"] <= pred["p_mean"]).all() and (pred["p_mean"] <= pred["p_high"]).all()


def test_advi_fullrank_runs(tiny_cohort):
    f = bl.LatentSkillEmbedding(n_skills=1).fit(tiny_cohort.table, method="advi", kind="fullrank", draws=20,
                                                max_iterations=1500, window=100, seed=2)
    assert f.fit_config["kind"] == "fullrank"


def test_nuts_end_to_end(tiny_nuts, tiny_cohort):
    f = tiny_nuts
    assert f.posterior.sizes["chain"] == 2 and f.posterior.sizes["draw"] == 60
    stats_ = f.idata["sample_stats"].to_dataset()
    assert "diverging" in stats_
    pred = f.predict(tiny_cohort.table)
    assert len(pred) == int((tiny_cohort.table.module_type == "assessment").sum())
    assert (pred["p_low"] < pred["p_high"]).all()


def test_nuts_pymc_sampler_runs(tiny_cohort):
    f = bl.LatentSkillEmbedding(n_skills=1, prerequisites=False).fit(
        tiny_cohort.table, method="nuts", sampler="pymc", chains=1, draws=20, tune=20, seed=1, cores=1)
    assert f.fit_config["sampler"] == "pymc"


def test_numpyro_without_jax_says_how_to_install(tiny_cohort, monkeypatch):
    """Runs whether or not numpyro is installed: a None in sys.modules makes its import fail
    (CI installs numpyro, so an import-or-skip version of this test always skipped)."""
    import sys

    monkeypatch.setitem(sys.modules, "numpyro", None)
    with pytest.raises(ImportError, match=r"bayes-lse\[jax\]"):
        bl.LatentSkillEmbedding().fit(tiny_cohort.table, method="nuts", sampler="numpyro", chains=1, draws=5)


def test_predict_beyond_history_follows_lessons(tiny_map):
    """A row after the fitted history starts from the last state and takes the table's lessons."""
    f = tiny_map
    last = f.last_states()
    sid = last.index[0]
    T = int(last.loc[sid, "step"])
    lesson = f.lessons[int(np.argmax(np.linalg.norm(f.draws("gain")[0], axis=-1)))]
    a = f.assessments[0]
    rows = pd.DataFrame({
        "student_id": [sid, sid, sid],
        "module_id": [a, lesson, a],
        "module_type": ["assessment", "lesson", "assessment"],
        "outcome": [1, None, 1],
        "timestep": [T, T, T + 1],
    })
    pred = f.predict(rows, update="expected")
    s_last = f.current_state(sid)[0]
    k = list(f.lessons).index(lesson)
    mu = eq.expected_update(s_last, f.draws("gain")[0, k], f.draws("prerequisite")[0, k])
    s_next = eq.truncated_normal_mean(mu, f.model_config["learning_noise"])
    j = list(f.assessments).index(a)
    u = list(f.students).index(sid)
    p_expected = eq.pass_probability(s_next, f.draws("requirement")[0, j], f.draws("student_bias")[0, u],
                                     f.draws("assessment_bias")[0, j])
    assert pred["p_mean"].iloc[1] == pytest.approx(float(p_expected), rel=1e-9)
    assert pred["p_mean"].iloc[1] > pred["p_mean"].iloc[0]  # gains are non-negative: passing gets likelier


def test_forecast_by_mode_has_no_drift_and_mean_ratchets_up(tiny_map):
    """update="mode" moves a state to the transition's mode (no upward drift from the
    truncation at zero); "expected" to its truncated-normal mean; "auto" (default) is the
    mode for a MAP fit."""
    f = tiny_map
    sid = f.last_states().index[0]
    T = int(f.last_states().loc[sid, "step"])
    lesson, a = f.lessons[0], f.assessments[0]
    rows = pd.DataFrame({
        "student_id": [sid] * 4,
        "module_id": [a, lesson, a, a],
        "module_type": ["assessment", "lesson", "assessment", "assessment"],
        "outcome": [1, None, 1, 1],
        "timestep": [T, T, T + 1, T + 30],
    })
    default, mode, mean = (f.predict(rows, **kw)["p_mean"].to_numpy()
                           for kw in ({}, {"update": "mode"}, {"update": "expected"}))
    assert f.method == "map"
    np.testing.assert_array_equal(default, mode)
    k = list(f.lessons).index(lesson)
    s_next = np.maximum(eq.expected_update(f.current_state(sid)[0], f.draws("gain")[0, k],
                                           f.draws("prerequisite")[0, k]), 0.0)
    j, u = list(f.assessments).index(a), list(f.students).index(sid)
    p_next = eq.pass_probability(s_next, f.draws("requirement")[0, j], f.draws("student_bias")[0, u],
                                 f.draws("assessment_bias")[0, j])
    assert mode[1] == pytest.approx(float(p_next), rel=1e-9)
    # 29 steps without lessons: the mode stays put, the mean ratchets upwards
    assert mode[2] == pytest.approx(mode[1], rel=1e-12)
    assert mean[2] > mean[1] + 1e-3
    with pytest.raises(ValueError, match="update must be 'auto' or one of"):
        f.predict(rows, update="median")


def test_predict_unknown_ids_are_clear_errors(tiny_map):
    rows = pd.DataFrame({"student_id": ["nobody"], "module_id": ["A0"], "module_type": ["assessment"],
                         "outcome": [1], "timestep": [0]})
    with pytest.raises(bl.InteractionLogError, match="row 0, column 'student_id': student 'nobody'"):
        tiny_map.predict(rows)
    sid = tiny_map.last_states().index[0]
    rows = pd.DataFrame({"student_id": [sid], "module_id": ["Z9"], "module_type": ["assessment"],
                         "outcome": [1], "timestep": [0]})
    with pytest.raises(bl.InteractionLogError, match="column 'module_id': assessment 'Z9'"):
        tiny_map.predict(rows, new_assessments=False)


def test_predict_a_new_assessment_from_the_population(tiny_map):
    """An assessment added after the fit is predicted as a draw from the fitted
    assessments: flagged, with a band wider than a known one's (a MAP fit's known
    assessment has no band at all), and its mean inside the range of the known ones."""
    sid = tiny_map.last_states().index[0]
    known = list(tiny_map.assessments)
    rows = pd.DataFrame({"student_id": [sid] * (len(known) + 1), "module_id": [*known, "Z9"],
                         "module_type": "assessment", "outcome": 1, "timestep": 0})
    out = tiny_map.predict(rows, seed=1)
    new = out.iloc[-1]
    assert not new["assessment_seen"] and out["assessment_seen"].iloc[:-1].all()
    assert new["p_high"] - new["p_low"] > 0.05
    assert (out["p_high"] - out["p_low"]).iloc[:-1].max() == 0.0
    assert out["p_mean"].iloc[:-1].min() <= new["p_mean"] <= out["p_mean"].iloc[:-1].max()
    # the same seed gives the same draws
    assert tiny_map.predict(rows, seed=1).equals(out)
