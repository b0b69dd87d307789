"""The compiled centred MAP objective is the PyMC model's density, term for term."""

from __future__ import annotations

import numpy as np
import pytest

import bayes_lse as bl
from bayes_lse.inference.map_kernel import CentredObjective
from canned import MODEL_VARIANTS
from bayes_lse import LatentSkillEmbedding
from bayes_lse.model.graph import IndexArrays

VARIANTS = MODEL_VARIANTS


@pytest.fixture(scope="module")
def small_log() -> bl.InteractionLog:
    return bl.read_interactions(bl.simulate(n_students=15, n_steps=4, n_assessments=6, n_lessons=4, seed=3).table)


def _objective(log: bl.InteractionLog, spec: LatentSkillEmbedding, idx: IndexArrays, **kw) -> CentredObjective:
    spec, _ = spec.resolve_history(log)  # history and practice "auto" as a fit (and build_model) decide them
    return CentredObjective(
        idx, spec.config, n_students=log.n_students, n_assessments=log.n_assessments, n_lessons=log.n_lessons, **kw
    )


CASES = [(v, True) for v in VARIANTS] + [({}, False), ({"learning_noise": "learned"}, False)]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize(
    ("variant", "normalised"),
    CASES,
    ids=[(",".join(f"{k}={x}" for k, x in v.items()) or "full") + f"-normalised={n}" for v, n in CASES],
)
def test_matches_pymc_logp_and_gradient(small_log, variant, normalised, backend):
    spec = LatentSkillEmbedding(**variant)
    model, idx = spec.build_model(small_log, parametrization="centered", normalised=normalised, constrained=True)
    obj = _objective(small_log, spec, idx, normalised=normalised, log_space=False, backend=backend)
    rng = np.random.default_rng(1)
    x = np.abs(rng.normal(size=obj.size)) + 0.05
    point = obj.named_point(x)
    values = {v.name: point[v.name] for v in model.value_vars}
    lp_pm = float(model.compile_logp(jacobian=False)(values))
    g_pm = model.compile_dlogp(jacobian=False)(values)
    lp, g = obj.logp_and_grad(x)
    # PyMC's normal_lcdf is an approximation good to ~2e-8 per term; without the normaliser the match is exact
    assert lp == pytest.approx(lp_pm, rel=1e-9, abs=1e-6 if normalised else 1e-9)
    _assert_gradients_match(obj, idx, model, values, g, g_pm, rtol=1e-6, atol=1e-6)


def _assert_gradients_match(obj, idx, model, values, g, g_pm, *, rtol: float, atol: float) -> None:
    """The kernel's gradient `g`, block by block under the model's variable names, equals
    PyMC's `g_pm` (raveled in `model.value_vars` order), every variable accounted for."""
    named = {name: g[b.start : b.stop].reshape(b.shape) for name, b in obj.blocks.items()}
    states = named.pop("state")
    named["initial_state"] = states[idx.initial_state]
    named["later_state"] = states[idx.later_state]
    offset = 0
    for v in model.value_vars:
        n = values[v.name].size
        np.testing.assert_allclose(named[v.name].ravel(), g_pm[offset : offset + n], rtol=rtol, atol=atol)
        offset += n
    assert offset == g_pm.size and set(named) == {v.name for v in model.value_vars}


@pytest.fixture(scope="module")
def tagged_log(small_log) -> bl.InteractionLog:
    """small_log with a modules table: tags shared by some assessments, a group column,
    and one assessment without any (its bias keeps the plain prior)."""
    import pandas as pd

    from bayes_lse.data.modules import read_modules

    ids = [str(a) for a in small_log.assessments]
    tags = ["x;y", "y", "x", "z", "y;z", ""][: len(ids)]
    part = ["1", "1", "2", "2", "1", ""][: len(ids)]
    return small_log.with_modules(read_modules(pd.DataFrame({"module_id": ids, "module_type": "assessment",
                                                             "tags": tags, "part": part})))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("variant", [{}, {"history": True}, {"lessons": False}], ids=["full", "history", "nolessons"])
def test_tag_effects_match_pymc_logp_and_gradient(tagged_log, variant, backend):
    """The assessment biases centred on their tags' effects (model config "tags"): kernel
    and PyMC graph agree on the density and on every gradient, the tag effects' included."""
    spec = LatentSkillEmbedding(**variant)
    model, idx = spec.build_model(tagged_log, parametrization="centered", normalised=False, constrained=True,
                                  tag_scale=1.0)
    assert "tag_bias" in {v.name for v in model.value_vars} and idx.tag_matrix.shape == (6, 5)  # x, y, z, part=1, part=2
    obj = _objective(tagged_log, spec, idx, normalised=False, log_space=False, backend=backend)
    rng = np.random.default_rng(6)
    x = np.abs(rng.normal(size=obj.size)) + 0.05
    x[obj.blocks["tag_bias"].start:obj.blocks["tag_bias"].stop] = rng.normal(size=obj.blocks["tag_bias"].size)
    point = obj.named_point(x)
    values = {v.name: point[v.name] for v in model.value_vars}
    assert float(model.compile_logp(jacobian=False)(values)) == pytest.approx(obj.logp_and_grad(x)[0], rel=1e-10)
    g_pm = model.compile_dlogp(jacobian=False)(values)
    _, g = obj.logp_and_grad(x)
    _assert_gradients_match(obj, idx, model, values, g, g_pm, rtol=1e-8, atol=1e-9)
    # without the table the same config has no tag effects (nothing changes without one)
    plain = _objective(tagged_log.with_modules(None), spec, IndexArrays.from_log(tagged_log.with_modules(None)))
    assert "tag_bias" not in plain.blocks


@pytest.mark.parametrize("jacobian", [False, True])
def test_log_space_gradient_is_the_derivative(small_log, jacobian):
    spec = LatentSkillEmbedding(learning_noise="learned")
    idx = IndexArrays.from_log(small_log)
    obj = _objective(small_log, spec, idx, normalised=True, log_space=True, jacobian=jacobian)
    rng = np.random.default_rng(2)
    x = obj.initial_point() + rng.uniform(-0.5, 0.5, size=obj.size)
    _, g = obj.logp_and_grad(x)
    for i in rng.choice(obj.size, size=25, replace=False):
        e = np.zeros(obj.size)
        e[i] = 1e-6
        fd = (obj.logp_and_grad(x + e)[0] - obj.logp_and_grad(x - e)[0]) / 2e-6
        assert g[i] == pytest.approx(fd, rel=1e-4, abs=1e-5)


def test_jacobian_adds_the_log_values_of_positive_blocks(small_log):
    spec = LatentSkillEmbedding()
    idx = IndexArrays.from_log(small_log)
    plain = _objective(small_log, spec, idx, log_space=True, jacobian=False)
    jac = _objective(small_log, spec, idx, log_space=True, jacobian=True)
    x = plain.initial_point() + 0.3
    assert jac.logp_and_grad(x)[0] - plain.logp_and_grad(x)[0] == pytest.approx(x[plain.positive].sum())


@pytest.mark.parametrize("variant", VARIANTS, ids=[",".join(f"{k}={x}" for k, x in v.items()) or "full" for v in VARIANTS])
def test_numpy_and_numba_backends_agree(small_log, variant, monkeypatch):
    """Same density and gradient to rounding, also far from the prior (tails of the normaliser);
    the numpy backend in blocks of 7 rows, so that its block loop is exercised."""
    import bayes_lse.inference.map_kernel as mk

    monkeypatch.setattr(mk, "_CHUNK", 7)
    spec = LatentSkillEmbedding(**variant)
    idx = IndexArrays.from_log(small_log)
    objs = [_objective(small_log, spec, idx, normalised=True, backend=b) for b in ("numpy", "numba")]
    rng = np.random.default_rng(4)
    for scale in (0.5, 6.0):
        x = objs[0].initial_point() + rng.uniform(-scale, scale, size=objs[0].size)
        (f1, g1), (f2, g2) = (o(x) for o in objs)
        assert f1 == pytest.approx(f2, rel=1e-12)
        np.testing.assert_allclose(g1, g2, rtol=1e-9, atol=1e-9 * np.abs(g2).max())


@pytest.mark.parametrize("variant", VARIANTS, ids=[",".join(f"{k}={x}" for k, x in v.items()) or "full" for v in VARIANTS])
def test_threaded_answer_loop_agrees_with_the_serial_one(small_log, variant, monkeypatch):
    """The numba backend's answer loop in blocks on several threads (forced on this tiny
    log) gives the serial loop's density and gradient to rounding, and the same bits on
    two threads as on all of them."""
    import numba

    import bayes_lse.inference.map_kernel_numba as mkn

    spec = LatentSkillEmbedding(**variant)
    idx = IndexArrays.from_log(small_log)
    obj = _objective(small_log, spec, idx, normalised=True, backend="numba")
    x = obj.initial_point() + np.random.default_rng(5).uniform(-1.0, 1.0, size=obj.size)
    f_serial, g_serial = obj(x)
    threads = numba.get_num_threads()  # before the patch below
    loop = mkn.AnswerLoop()  # on this machine's threads: one on a one-core machine, still the blocked loop
    monkeypatch.setattr(mkn, "shared_answer_loop", lambda: loop)
    monkeypatch.setattr(mkn, "PARALLEL_MIN_ANSWERS", 0)
    monkeypatch.setattr(mkn.numba, "get_num_threads", lambda: 2)  # the blocked loop even on a one-core machine
    f_par, g_par = obj(x)
    g_par = g_par.copy()
    assert f_par == pytest.approx(f_serial, rel=1e-12)
    np.testing.assert_allclose(g_par, g_serial, rtol=1e-9, atol=1e-12 * np.abs(g_serial).max())
    # the blocks' sums do not depend on how many threads share them out
    rng = np.random.default_rng(0)
    S, A, GU, GJ = rng.random((40, 2)), rng.random((7, 2)), rng.normal(size=9), rng.normal(size=7)
    rows = 500
    args = (S, A, GU, GJ, np.sort(rng.integers(0, 40, rows)), rng.integers(0, 9, rows), rng.integers(0, 7, rows),
            (rng.random(rows) < 0.6).astype(float), True, rng.normal(size=rows))

    def blocked() -> list[np.ndarray]:
        out = [np.zeros(rows), np.zeros_like(S), np.zeros_like(A), np.zeros(9), np.zeros(7)]
        total = mkn._answers_parallel(*args, *out, mkn.ANSWER_BLOCKS)
        return [np.asarray(total), *out]

    try:
        numba.set_num_threads(1)
        one = blocked()
    finally:
        numba.set_num_threads(threads)
    for a, b in zip(one, blocked(), strict=True):
        np.testing.assert_array_equal(a, b)


def _answer_args(rows: int = 500) -> tuple:
    rng = np.random.default_rng(0)
    S, A, GU, GJ = rng.random((40, 2)), rng.random((7, 2)), rng.normal(size=9), rng.normal(size=7)
    return (S, A, GU, GJ, np.sort(rng.integers(0, 40, rows)), rng.integers(0, 9, rows), rng.integers(0, 7, rows),
            (rng.random(rows) < 0.6).astype(float), True, rng.normal(size=rows),
            np.zeros(rows), np.zeros_like(S), np.zeros_like(A), np.zeros(9), np.zeros(7))


class _FakeSpeed:
    """An `AnswerLoop` whose evaluations take `seconds[threads]` (the loop itself still runs)."""

    def __init__(self, seconds: dict[int, float]) -> None:
        self.seconds, self.used = seconds, []

    def __call__(self, threads: int, args: tuple) -> tuple[float, float]:
        import bayes_lse.inference.map_kernel_numba as mkn

        self.used.append(threads)
        return mkn._answers_parallel(*args, mkn.ANSWER_BLOCKS), self.seconds[threads]


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_answer_loop_keeps_the_faster_thread_count(busy, monkeypatch):
    """The chooser races one thread against all, keeps the faster, holds it longer while it
    keeps winning, and ends a race at the first all-threads evaluation that is 3x slower
    (on a busy machine one cost 400 one-thread ones)."""
    import numba

    import bayes_lse.inference.map_kernel_numba as mkn

    if numba.get_num_threads() < 2:
        pytest.skip("numba has one thread here")
    many = numba.get_num_threads()
    speed = _FakeSpeed({1: 1.0, many: 50.0 if busy else 0.5})
    loop = mkn.AnswerLoop(race=4, hold=10, max_hold=20)
    monkeypatch.setattr(loop, "_timed", speed)
    args = _answer_args()
    first = [loop(args) for _ in range(4 + (1 if busy else 4))]
    assert loop.races == 1 and loop.choice == (1 if busy else many)
    assert speed.used == [1] * 4 + [many] * (1 if busy else 4)
    assert len(set(first)) == 1  # the same sum whichever thread count ran it
    speed.used.clear()
    for _ in range(10):
        loop(args)
    assert speed.used == [loop.choice] * 10  # the hold: no race
    for _ in range(4 + (1 if busy else 4)):
        loop(args)
    assert loop.races == 2 and loop._left == 20  # the same winner: the hold doubled
    speed.seconds = {1: 1.0, many: 0.5} if busy else {1: 1.0, many: 50.0}  # the load changed
    for _ in range(20 + 4 + (4 if busy else 1)):
        loop(args)
    assert loop.races == 3 and loop.choice == (many if busy else 1) and loop._left == 10


def test_kernel_map_fit_is_used_for_centred_map_and_predicts(small_log):
    fit = LatentSkillEmbedding().fit(small_log, method="map", parametrization="centered", starts=2, seed=0)
    opt = fit.idata["optimization"]
    assert opt.attrs["engine"] == "kernel"
    assert opt["objective"].shape == (2,)
    pred = fit.predict(small_log.table[small_log.table["module_type"] == "assessment"].head(20))
    assert pred["p_mean"].between(0, 1).all()
    # near the optimum: the gradient is small relative to where the optimiser started (~1e2).
    # 0.014 after the 1,000 iterations since the history term's practice counts (they grow
    # with the timestep as the trajectory does: a shallow valley for the optimiser)
    assert float(opt["grad_norm"].min()) < 5e-2


def test_kernel_backend_fit_option_reaches_the_same_mode(small_log):
    """`kernel_backend="numba"` is passed through to the objective and finds the numpy backend's mode."""
    # a converged mode: the default 1,000 iterations stop both backends short of it, at
    # points that differ in the last digits
    fits = {b: LatentSkillEmbedding().fit(small_log, method="map", parametrization="centered", starts=1, seed=0,
                                          maxiter=5000, kernel_backend=b) for b in ("numpy", "numba")}
    assert {f.fit_config["kernel_backend"] for f in fits.values()} == {"numpy", "numba"}
    objs = [float(f.idata["optimization"]["objective"].min()) for f in fits.values()]
    assert objs[0] == pytest.approx(objs[1], rel=1e-6)
    with pytest.raises(ValueError, match="backend must be"):
        LatentSkillEmbedding().fit(small_log, method="map", parametrization="centered", starts=1, kernel_backend="c")


def test_kernel_and_pytensor_engines_agree_on_the_objective_at_the_kernel_optimum(small_log):
    spec = LatentSkillEmbedding(history=False)
    fit = spec.fit(small_log, method="map", parametrization="centered", starts=1, seed=0)
    model, idx = spec.build_model(small_log, parametrization="centered", normalised=False)
    post = fit.posterior
    point = {
        "initial_state": post["student_state"].values[0, 0][idx.initial_state],
        "later_state": post["student_state"].values[0, 0][idx.later_state],
        **{k: post[k].values[0, 0] for k in ("requirement", "gain", "prerequisite", "student_bias", "assessment_bias")},
    }
    # PyMC's value variables are log-values of the positive ones
    values = {}
    for v in model.value_vars:
        base = v.name.removesuffix("_log__")
        values[v.name] = np.log(point[base]) if v.name.endswith("_log__") else point[base]
    lp = float(model.compile_logp(jacobian=False)(values))
    assert -lp == pytest.approx(float(fit.idata["optimization"]["objective"].min()), rel=1e-9)


def test_engine_kernel_refuses_the_noncentred_form(small_log):
    with pytest.raises(ValueError, match="centred trajectory only"):
        LatentSkillEmbedding().fit(small_log, method="map", engine="kernel", parametrization="noncentered")
    with pytest.raises(ValueError, match="engine must be"):
        LatentSkillEmbedding().fit(small_log, method="map", engine="gpu")


def test_engine_kernel_with_auto_parametrization_runs_the_kernel(small_log):
    """Issue 20: asking for the kernel chooses its (centred) form instead of refusing because
    'auto' would have picked the non-centred graph on a small log."""
    fit = LatentSkillEmbedding().fit(small_log, method="map", engine="kernel", starts=1, maxiter=50)
    assert fit.idata["optimization"].attrs["engine"] == "kernel"


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_learned_noise_at_zero_is_a_rejected_step_not_a_crash(small_log, backend):
    """L-BFGS-B may put a learned σ_L on its bound 0 (a MoFaCTS fold did, and the fit died
    with ZeroDivisionError); the density there is −inf, which the optimiser rejects."""
    spec = LatentSkillEmbedding(learning_noise="learned")
    idx = IndexArrays.from_log(small_log)
    obj = _objective(small_log, spec, idx, normalised=True, log_space=False, backend=backend)
    x = np.abs(np.random.default_rng(0).normal(size=obj.size)) + 0.05
    x[obj.blocks["learning_noise"].start] = 0.0
    lp, g = obj.logp_and_grad(x)
    assert lp == -np.inf and np.all(np.isfinite(g))
    f, _ = obj(x)
    assert f == np.inf
