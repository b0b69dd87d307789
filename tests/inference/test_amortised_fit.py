"""Amortised minibatch fitting (issue 16 item 3): tiny, seconds."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("numpyro")

from bayes_lse.core.config import DEFAULT_MODEL_CONFIG  # noqa: E402
from bayes_lse.inference.amortised import ModuleSource  # noqa: E402
from bayes_lse.inference.amortised_fit import Cohort, fit_amortised  # noqa: E402
from bayes_lse.inference.encoder import module_tables  # noqa: E402

PRIORS = DEFAULT_MODEL_CONFIG["priors"]


def _sim(n: int, seed: int = 0):
    r = np.random.default_rng(seed)
    A, L, d = 8, 3, 2
    req = np.abs(r.normal(size=(1, A, d))) * 1.5
    gain = np.abs(r.normal(size=(1, L, d)))
    pre = np.abs(r.normal(size=(1, L, d)))
    ab = r.normal(size=(1, A))
    src = ModuleSource(req, ab, gain, pre, 0.5, PRIORS, True, module_tables(req[0], ab[0], gain[0], pre[0]),
                       max_steps=5, max_answers=3)
    return src.simulate(n, r), A, L, d


def _cohort(sim) -> Cohort:
    return Cohort(sim.student, sim.kind, sim.code, sim.outcome, sim.step, sim.n_students)


def test_student_term_on_a_full_batch_is_the_sum_over_students():
    import jax
    import jax.numpy as jnp

    from bayes_lse.inference.amortised import batch_arrays
    from bayes_lse.inference.amortised_fit import _sizes, student_term
    from bayes_lse.inference.encoder import PARAM_NAMES, layer_shapes, row_features, student_features

    sim, A, L, d = _sim(12)
    c = _cohort(sim)
    src = ModuleSource(np.ones((1, A, d)), None, None, None, 0.5, PRIORS, True,
                       module_tables(np.ones((A, d)), None, np.ones((L, d)), np.ones((L, d))))
    full = c.subset(np.arange(12), d)
    from bayes_lse.inference.amortised import histories_of

    h = histories_of(full)
    x, g = row_features(h, src.tables), student_features(h, src.tables)
    stats = {"x_mean": x.mean(0), "x_std": x.std(0) + 1e-6, "g_mean": g.mean(0), "g_std": g.std(0) + 1e-6,
             "t_mean": np.zeros(d + 1), "t_std": np.ones(d + 1)}
    shapes = layer_shapes(x.shape[1], g.shape[1], 8, d, True)
    r = np.random.default_rng(1)
    enc = {k: jnp.asarray(r.normal(size=shapes[k]) * 0.3) for k in PARAM_NAMES}
    theta = {"requirement": jnp.asarray(np.abs(r.normal(size=(A, d)))), "assessment_bias": jnp.asarray(r.normal(size=A)),
             "gain": jnp.asarray(np.abs(r.normal(size=(L, d)))), "prerequisite": jnp.asarray(np.abs(r.normal(size=(L, d))))}

    def segsum(a, sg, n):
        return jax.ops.segment_sum(a, sg, num_segments=n + 1)[:n]

    def term(idx):
        b = batch_arrays(c.subset(idx, d), src, True, _sizes(c, len(idx)), True)
        b = {k: jnp.asarray(v) for k, v in b.items() if k != "target"}
        # the same sample for every student: the noise is drawn per row, so fix it by
        # evaluating with one key per student below
        return b

    key = jax.random.PRNGKey(0)
    # deterministic comparison: one student at a time vs all, with the reparameterised
    # noise removed (u = 0.5 quantile, bias at its mean) by monkeypatching the sampler
    import bayes_lse.inference.amortised as am

    orig_uniform, orig_normal = jax.random.uniform, jax.random.normal
    try:
        jax.random.uniform = lambda k, shape, minval=0.0, maxval=1.0: jnp.full(shape, 0.5)
        jax.random.normal = lambda k, shape: jnp.zeros(shape)
        whole = float(student_term(enc, stats, term(np.arange(12)), theta, key, d, True, True, PRIORS, 0.5,
                                   jax, jnp, segsum))
        parts = sum(float(student_term(enc, stats, term(np.array([u])), theta, key, d, True, True, PRIORS, 0.5,
                                       jax, jnp, segsum)) for u in range(12))
    finally:
        jax.random.uniform, jax.random.normal = orig_uniform, orig_normal
    assert am is not None
    assert np.isfinite(whole)
    assert whole == pytest.approx(parts, rel=1e-4, abs=1e-3)


def test_fit_predicts_held_out_answers_above_chance():
    from bayes_lse.model import terms as eq

    sim, A, L, d = _sim(600, seed=3)
    c = _cohort(sim)
    res = fit_amortised(c, n_assessments=A, n_lessons=L, n_skills=d, priors=PRIORS, learning_noise=0.5,
                        batch_size=64, steps=300, hidden=16, learning_rate=2e-2)
    assert np.all(np.isfinite(res.losses[-20:]))
    assert res.losses[-50:].mean() < res.losses[:50].mean()
    # held out: new students, their answers predicted from the fitted requirement and
    # the true states (checks the global part) -> above chance
    test, *_ = _sim(300, seed=3)
    ia = np.flatnonzero(test.kind == 0)
    s = test.states[test.student[ia], test.step[ia]]
    p = eq.pass_probability(s, res.mean("requirement")[test.code[ia]], test.bias[test.student[ia]],
                            res.mean("assessment_bias")[test.code[ia]])
    y = test.outcome[ia]
    from bayes_lse.evaluate.metrics import auc

    assert auc(y, p) > 0.6


def test_options_validated():
    sim, A, L, d = _sim(20)
    with pytest.raises(ValueError, match="learning_noise"):
        fit_amortised(_cohort(sim), n_assessments=A, n_lessons=L, n_skills=d, priors=PRIORS, learning_noise="learned")


# ------------------------------------------------------------------ fit(method="advi", amortised=True)
def test_cohort_of_a_log_is_the_models_layout():
    """Answers at their state's timestep and one lesson per transition that has one: the
    cohort's last timestep per student is the log's T_u, and its rows count the log's."""
    import bayes_lse as bl
    from bayes_lse.data.log import read_interactions
    from bayes_lse.inference.amortised_fit import cohort_of
    from bayes_lse.model.graph import IndexArrays

    c = bl.simulate(n_students=12, n_steps=4, n_assessments=5, n_lessons=3, answers_per_step=2, seed=2)
    log = read_interactions(c.table)
    idx = IndexArrays.from_log(log)
    co = cohort_of(log, idx)
    assert np.array_equal(co.last(), log.last_step)
    assert int((co.kind == 0).sum()) == len(idx.outcome)
    assert int((co.kind == 1).sum()) == int((idx.transition_lesson >= 0).sum())
    assert np.all(np.diff(co.student) >= 0)


def _tiny_amortised_fit(table, *, history: bool, max_iterations: int):
    """`fit(method="advi", amortised=True)` with 20 draws, a width-8 encoder, 50-step windows."""
    import warnings

    import bayes_lse as bl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return bl.LatentSkillEmbedding(history=history).fit(table, method="advi", amortised=True, draws=20, seed=0,
                                                             max_iterations=max_iterations, window=50,
                                                             encoder_hidden=8, progressbar=False)


@pytest.mark.slow  # ~40 s: JAX compiles the joint ELBO step (~25 s on a busy 2-core machine)
def test_amortised_advi_fit_is_a_posterior_like_any_other():
    """fit(method="advi", amortised=True) returns the documented DataTree (every student's
    states, the globals, the loss and why it stopped), predicts, and says its batch size."""
    import json

    import bayes_lse as bl
    from bayes_lse.evaluate.metrics import auc

    c = bl.simulate(n_students=60, n_steps=4, n_assessments=6, n_lessons=3, answers_per_step=2, seed=4)
    f = _tiny_amortised_fit(c.table, history=False, max_iterations=400)
    post = f.idata["posterior"]
    assert post["student_state"].shape == (1, 20, int(c.table.groupby("student_id")["timestep"].max().add(1).sum()), 2)
    assert float(post["student_state"].min()) >= 0 and float(post["requirement"].min()) > 0
    for name in ("gain", "prerequisite", "assessment_bias", "student_bias"):
        assert name in post
    opt = f.idata["optimization"]
    assert opt.attrs["amortised"] == 1 and opt.attrs["stopped_by"] in ("stopping rule", "max_iterations")
    assert 0 < opt.attrs["iterations"] <= 400
    assert any("batch_size 256" in n for n in json.loads(f.idata.attrs["choices"]))
    pred = f.predict(c.table)
    assert auc(pred["outcome"].to_numpy(), pred["p_mean"].to_numpy()) > 0.6


@pytest.mark.slow  # ~40 s: JAX compiles the joint ELBO step
def test_auto_method_on_a_large_log_is_amortised_and_fits_a_log_without_lessons(monkeypatch):
    """Issue 16: method "auto" from `AMORTISED_MIN_ANSWERS` answers is amortised ADVI, and
    it fits a log with no lessons at all (ASSISTments: the encoder's lesson-gain features
    were 1 column wide instead of d, and the batch could not be stacked)."""
    import json
    import warnings

    import bayes_lse as bl
    from bayes_lse.inference import defaults

    c = bl.simulate(n_students=40, n_steps=4, n_assessments=6, n_lessons=2, answers_per_step=2, seed=3)
    table = c.table[c.table["module_type"] == "assessment"].reset_index(drop=True)
    monkeypatch.setattr(defaults, "NUTS_MAX_ANSWERS", 10)
    monkeypatch.setattr(defaults, "AMORTISED_MIN_ANSWERS", 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        f = bl.LatentSkillEmbedding(history=False).fit(table, draws=20, seed=0, max_iterations=200, window=50,
                                                        encoder_hidden=8, progressbar=False)
    assert f.idata["optimization"].attrs["amortised"] == 1
    assert json.loads(f.idata.attrs["choices"])[0].startswith("method amortised ADVI")
    pred = f.predict(table)
    assert len(pred) == len(table) and pred["p_mean"].between(0, 1).all()


def test_amortised_advi_refuses_what_it_cannot_fit():
    import bayes_lse as bl

    c = bl.simulate(n_students=10, n_steps=3, n_assessments=4, n_lessons=2, answers_per_step=2, seed=1)
    with pytest.raises(ValueError, match="learning_noise"):
        bl.LatentSkillEmbedding(history=False, learning_noise="learned").fit(c.table, method="advi", amortised=True)
    with pytest.raises(ValueError, match="hierarchical"):
        bl.LatentSkillEmbedding(history=False, hierarchical=True).fit(c.table, method="advi", amortised=True)
    with pytest.raises(ValueError, match="amortised"):
        bl.LatentSkillEmbedding(history=False).fit(c.table, method="advi", amortised="yes")


def test_cohort_history_counts_follow_the_batch_answers():
    """`answer_history` gives each batch answer its own (S, F): the counts the history term
    uses for that (student, assessment) pair before the answer."""
    import bayes_lse as bl
    from bayes_lse.data.log import read_interactions
    from bayes_lse.inference.amortised_fit import cohort_of
    from bayes_lse.model.graph import IndexArrays

    c = bl.simulate(n_students=15, n_steps=5, n_assessments=2, n_lessons=2, answers_per_step=2, seed=3)
    log = read_interactions(c.table)
    idx = IndexArrays.from_log(log)
    co = cohort_of(log, idx, history=True)
    pick = np.array([2, 7, 11])
    h = co.answer_history(pick)
    sub = co.subset(pick, 2)
    a = np.flatnonzero(sub.kind == 0)
    assert len(h) == len(a)
    # recount from the batch's own rows: earlier answers of the same student to the same assessment
    for r, i in enumerate(a):
        same = np.flatnonzero((sub.student[:i] == sub.student[i]) & (sub.kind[:i] == 0) & (sub.code[:i] == sub.code[i]))
        assert h[r, 0] == sub.outcome[same].sum() and h[r, 1] == len(same) - sub.outcome[same].sum()


@pytest.mark.slow
def test_amortised_advi_with_the_history_term():
    """history=True: the two coefficients are fitted and saved like any fit's (with the
    per-answer counts in constant_data); the model predicts."""

    import bayes_lse as bl

    c = bl.simulate(n_students=60, n_steps=4, n_assessments=3, n_lessons=2, answers_per_step=3, seed=5)
    f = _tiny_amortised_fit(c.table, history=True, max_iterations=300)
    post = f.idata["posterior"]
    assert post["history_success"].shape == (1, 20) and post["history_failure"].shape == (1, 20)
    assert "obs_history" in f.idata["constant_data"]
    pred = f.predict(c.table)
    assert pred["p_mean"].between(0, 1).all()


@pytest.mark.slow  # ~40 s: two tiny amortised fits (JAX compiles the joint step)
def test_amortised_fit_kept_as_parameters_predicts_like_its_draws():
    """The same amortised fit stored as draws and as the encoder's parameters (drawn on
    demand): the same training (seeded), so the same predictions up to Monte Carlo error of
    the draws; the parameters' tree has no state draws and says why in its choices when
    auto picks it."""
    import warnings

    import bayes_lse as bl

    c = bl.simulate(n_students=60, n_steps=4, n_assessments=6, n_lessons=3, answers_per_step=2, seed=4)
    fits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for mode in ("draws", "parameters"):
            fits[mode] = bl.LatentSkillEmbedding(history=False).fit(
                c.table, method="advi", amortised=True, draws=400, seed=0, max_iterations=300, window=50,
                encoder_hidden=8, progressbar=False, student_posterior=mode)
    assert "student_state" in fits["draws"].idata["posterior"]
    assert "student_state" not in fits["parameters"].idata["posterior"]
    assert "student_posterior" in fits["parameters"].idata.children
    a, b = (fits[m].predict(c.table)["p_mean"].to_numpy() for m in ("draws", "parameters"))
    assert np.abs(a - b).mean() < 0.01 and np.abs(a - b).max() < 0.05


def test_markov_guide_follows_the_learning_update():
    """`amortised.markov_states`: with zero offsets and a tiny scale each state is the
    model's expected update of the one before (the lesson's gain where there is one, the
    state itself where there is none); offsets shift a state and everything after it; a
    very negative location stays finite (MIN_STANDARDISED_LOC)."""
    pytest.importorskip("jax")
    from bayes_lse.inference.amortised import import_jax, markov_states
    from bayes_lse.model import terms as eq

    jax, jnp, _ = import_jax()
    st_t = jnp.array([0, 1, 2, 0, 1, -1])  # two students (3 and 2 states) and a padding row
    loc = jnp.array([[1.0, 1.0], [0, 0], [0, 0], [2.0, 0.5], [0, 0], [0, 0]])
    scale = jnp.full((6, 2), 1e-4)
    u = jnp.full((6, 2), 0.5)
    gain = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [9.0, 9.0]])
    pre = np.array([[0.2, 0.1], [0.3, 0.3], [1.0, 1.0], [1.0, 1.0]])
    b = {"tr_mask": jnp.array([1.0, 1.0, 0.0, 0.0]), "tr_to": jnp.array([1, 2, 4, 0]),
         "tr_gain": jnp.asarray(gain), "tr_pre": jnp.asarray(pre), "st_t": st_t,
         "st_student": jnp.array([0, 0, 0, 1, 1, 0])}
    s, m = (np.asarray(x, dtype=float) for x in markov_states(loc, scale, u, b, 2, True, jax, jnp))
    s1 = eq.expected_update(np.array([1.0, 1.0]), gain[0], pre[0])
    s2 = eq.expected_update(s1, gain[1], pre[1])
    assert np.allclose(s[1], s1, atol=1e-3) and np.allclose(s[2], s2, atol=1e-3)
    assert np.allclose(s[4], s[3], atol=1e-3)  # transition without a lesson (mask 0): the state stays
    assert np.allclose(m[:5], s[:5], atol=1e-3)
    shifted = loc.at[1].set(jnp.array([0.5, 0.0]))
    s_b = np.asarray(markov_states(shifted, scale, u, b, 2, True, jax, jnp)[0], dtype=float)
    assert s_b[1, 0] > s[1, 0] + 0.4 and s_b[2, 0] > s[2, 0]  # the shift carries forward
    far = np.asarray(markov_states(loc.at[3].set(jnp.array([-50.0, -50.0])), scale, u, b, 2, True, jax, jnp)[0])
    assert np.isfinite(far).all() and far.min() >= 0


def test_markov_states_match_the_row_by_row_recursion():
    """The scan over timesteps (one draw per student per step) is the recursion written
    row by row: s_r = TN⁻¹(u_r; max(mix·E[update](s_{r−1}) + loc_r, c·scale_r), scale_r)
    for a row after its student's first, at loc_r for a first row; padding rows (t = −1)
    keep the draw at their own location.  Random lengths, gains, scales; under jit."""
    pytest.importorskip("jax")
    from scipy.stats import norm

    from bayes_lse.inference.amortised import MIN_STANDARDISED_LOC, import_jax, markov_states
    from bayes_lse.model import terms as eq

    jax, jnp, _ = import_jax()
    rng = np.random.default_rng(5)
    lengths = [1, 4, 2, 6, 3]
    st_t = np.concatenate([np.arange(n) for n in lengths] + [[-1, -1]])
    st_student = np.concatenate([np.full(n, i) for i, n in enumerate(lengths)] + [[0, 0]])
    S, d = len(st_t), 2
    loc = rng.normal(0.3, 0.8, (S, d))
    scale = rng.uniform(0.2, 1.0, (S, d))
    u = rng.uniform(0.01, 0.99, (S, d))
    to = np.flatnonzero(st_t > 0)
    gain = rng.uniform(0, 1, (len(to), d))
    pre = rng.uniform(0.2, 1.5, (len(to), d))
    mask = (rng.random(len(to)) < 0.7).astype(float)
    b = {"tr_mask": jnp.asarray(mask), "tr_to": jnp.asarray(to), "tr_gain": jnp.asarray(gain),
         "tr_pre": jnp.asarray(pre), "st_t": jnp.asarray(st_t), "st_student": jnp.asarray(st_student)}
    mix = np.array([0.7, 0.4])
    run = jax.jit(lambda lo, sc, uu, bb: markov_states(lo, sc, uu, bb, max(lengths) - 1, True, jax, jnp, mix,
                                                       n_students=len(lengths)))
    s, m = (np.asarray(x, dtype=float) for x in run(jnp.asarray(loc), jnp.asarray(scale), jnp.asarray(u), b))

    g_at, p_at = np.zeros((S, d)), np.ones((S, d))
    g_at[to] = mask[:, None] * gain
    p_at[to] = mask[:, None] * (pre - 1.0) + 1.0
    ref = np.zeros((S, d))
    for r in range(S):
        mu = loc[r].copy()
        if st_t[r] > 0:
            mu = mix * eq.expected_update(ref[r - 1], g_at[r], p_at[r]) + loc[r]
        mu = np.maximum(mu, MIN_STANDARDISED_LOC * scale[r])
        ref[r] = np.maximum(mu - scale[r] * norm.ppf(u[r] * norm.cdf(mu / scale[r])), 1e-8)
    assert np.allclose(s, ref, rtol=1e-4, atol=1e-5)
    grad = jax.grad(lambda lo: run(lo, jnp.asarray(scale), jnp.asarray(u), b)[0].sum())(jnp.asarray(loc))
    assert np.isfinite(np.asarray(grad)).all()
