"""Minibatch ADVI over students (bayes_lse/minibatch.py).

The estimator checks compile with PyTensor's FAST_COMPILE mode (the same graph,
evaluated by the Python VM): quick to build, and the values do not depend on the mode.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pymc as pm
import pytest

import bayes_lse as bl
from bayes_lse.evaluate.metrics import auc
from bayes_lse.inference.minibatch import MinibatchADVI, StudentLayout, check_batch_size
from bayes_lse.model.graph import IndexArrays

FAST = "FAST_COMPILE"


@pytest.fixture(scope="module")
def ragged_log():
    """Histories of different lengths (1 to 5 states) and steps that pass without a lesson."""
    c = bl.simulate(n_students=15, n_steps=5, n_assessments=6, n_lessons=3, answers_per_step=2, seed=7)
    t = c.table
    rng = np.random.default_rng(1)
    cut = dict(zip(t["student_id"].unique(), rng.integers(0, 5, 15), strict=True))
    t = t[t["timestep"] <= t["student_id"].map(cut)]
    t = t[~((t["module_type"] == "lesson") & (rng.random(len(t)) < 0.3))].reset_index(drop=True)
    log = bl.read_interactions(t)
    assert (log.transitions()["lesson"] == -1).any() and len(set(log.last_step)) > 2
    return log


def _point(model: pm.Model, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0.0, 0.7, np.shape(v)) for k, v in model.initial_point().items()}


def _flat(grads: dict[str, np.ndarray], mb: MinibatchADVI, model: pm.Model) -> np.ndarray:
    """Our per-variable gradient in PyMC's raveled value-variable order."""
    by_key = {f"{v.name}_log__" if v.positive else v.name: grads[v.name] for v in mb.glob + mb.loc}
    return np.concatenate([np.ravel(by_key[v.name]) for v in model.value_vars])


VARIANTS = [
    ("noncentered", {}),
    ("centered", {}),
    ("noncentered", {"biases": False, "learning_noise": "learned"}),
    ("centered", {"prerequisites": False, "learning_noise": "learned"}),
    ("noncentered", {"lessons": False}),
]


@pytest.mark.parametrize(("parametrization", "variant"), VARIANTS)
def test_full_batch_density_is_pymcs(ragged_log, parametrization, variant):
    """With every student in the batch, the hand-built batch density and its gradient are
    the PyMC model's log p (unconstrained, with Jacobian) term for term."""
    spec = bl.LatentSkillEmbedding(**{"history": False, **variant})  # minibatch ADVI has no history term
    model, idx = spec.build_model(ragged_log, parametrization=parametrization)
    point = _point(model, 0)
    full = model.compile_logp(jacobian=True, mode=FAST)(point)
    dfull = model.compile_dlogp(jacobian=True, mode=FAST)(point)
    mb = MinibatchADVI(spec, ragged_log, idx, parametrization=parametrization, mode=FAST)
    est, grads = mb.logp_estimate(point, mb.layout.batch(np.arange(ragged_log.n_students)))
    assert est == pytest.approx(float(full), rel=1e-12, abs=1e-9)
    np.testing.assert_allclose(_flat(grads, mb, model), dfull, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("parametrization", ["noncentered", "centered"])
def test_minibatch_estimate_is_unbiased(ragged_log, parametrization):
    """log p(G) + (N/B)·Σ_batch log p_u: over one epoch's partition the mean is exactly the
    full log p (value and gradient); over random batches of 4 it is unbiased."""
    spec = bl.LatentSkillEmbedding(history=False)
    model, idx = spec.build_model(ragged_log, parametrization=parametrization)
    point = _point(model, 3)
    full = float(model.compile_logp(jacobian=True, mode=FAST)(point))
    dfull = model.compile_dlogp(jacobian=True, mode=FAST)(point)
    mb = MinibatchADVI(spec, ragged_log, idx, parametrization=parametrization, mode=FAST)
    U = ragged_log.n_students
    rng = np.random.default_rng(0)
    perm = rng.permutation(U)
    parts = [mb.logp_estimate(point, mb.layout.batch(perm[i : i + 5])) for i in range(0, U, 5)]
    assert np.mean([e for e, _ in parts]) == pytest.approx(full, rel=1e-12)
    np.testing.assert_allclose(np.mean([_flat(g, mb, model) for _, g in parts], axis=0), dfull, rtol=1e-9, atol=1e-9)
    # a single batch is not the full density, a student outside it gets no gradient
    est0, g0 = parts[0]
    assert abs(est0 - full) > 1.0
    outside = np.setdiff1d(np.arange(U), perm[:5])
    assert np.all(g0["initial_state"][outside] == 0) and np.any(g0["initial_state"][perm[:5]] != 0)
    # random batches of 4 (sizes 4 and the remainder 3, each scaled by N/|S|)
    ests = [e for _ in range(80) for e, _ in (mb.logp_estimate(point, b) for b in _one_epoch(mb.layout, 4, rng))]
    se = np.std(ests) / np.sqrt(len(ests))
    assert abs(np.mean(ests) - full) < 4 * se
    assert np.std(ests) > 1.0  # the check has power: batches do differ


def _one_epoch(layout: StudentLayout, size: int, rng: np.random.Generator):
    perm = rng.permutation(layout.n_students)
    return [layout.batch(perm[i : i + size]) for i in range(0, layout.n_students, size)]


def test_batch_layout(ragged_log):
    """Students longest-first, states step-major, every observation and transition of the
    batch's students present once, and nobody else's."""
    idx = IndexArrays.from_log(ragged_log)
    lay = StudentLayout.from_index(idx)
    students = np.array([3, 0, 11, 7])
    b = lay.batch(students)
    T = lay.last_step[b.students]
    assert sorted(b.students) == sorted(students) and np.all(np.diff(T) <= 0)
    assert b.counts[0] == 4 and np.all(np.diff(b.counts) <= 0)
    assert b.scale == pytest.approx(ragged_log.n_students / 4)
    in_batch = np.isin(idx.obs_student, students)
    assert len(b.obs_pos) == in_batch.sum()
    np.testing.assert_array_equal(np.sort(b.outcome), np.sort(idx.outcome[in_batch].astype(float)))
    assert len(b.tr_rows) == T.sum() == np.isin(idx.state_student[idx.transition_from], students).sum()
    np.testing.assert_array_equal(np.sort(b.tr_rows), np.flatnonzero(np.isin(idx.state_student[idx.transition_from], students)))
    # a transition goes from (rank, k) to (rank, k+1): positions differ by n_k
    assert np.all(b.tr_to - b.tr_from == b.counts[idx.state_step[idx.transition_from[b.tr_rows]]])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10", "more than the students"])
def test_bad_batch_size_errors_clearly(tiny_cohort, bad):
    if bad == "more than the students":
        bad = tiny_cohort.table["student_id"].nunique() + 1
    with pytest.raises(ValueError, match="batch_size"):
        bl.LatentSkillEmbedding().fit(tiny_cohort.table, method="advi", batch_size=bad)


def test_batch_size_needs_meanfield(tiny_cohort):
    with pytest.raises(ValueError, match="meanfield"):
        bl.LatentSkillEmbedding().fit(tiny_cohort.table, method="advi", batch_size=4, kind="fullrank")


def test_check_batch_size():
    assert check_batch_size(np.int64(5), 10) == 5
    assert check_batch_size(10, 10) == 10


def test_minibatch_fit_behaves_like_an_advi_fit(tiny_cohort, tmp_path):
    """predict, diagnostics with the loss history, save and load."""
    import pytensor

    with pytensor.config.change_flags(mode=FAST), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 450 iterations do not meet the stopping rule
        f = bl.LatentSkillEmbedding().fit(
            tiny_cohort.table, method="advi", batch_size=4, draws=40, max_iterations=450, window=60, seed=2
        )
    opt = f.idata["optimization"].to_dataset()
    assert f.method == "advi" and f.fit_config["batch_size"] == 4
    assert opt.attrs["batches_per_epoch"] == 3 and opt.sizes["iteration"] == opt.attrs["iterations"]
    assert opt.attrs["learning_rate_decay_at"] > 0  # the budget's last third runs at the lower rate
    loss = opt["loss"].values
    assert np.isfinite(loss).all() and loss[-60:].mean() < loss[:30].mean()
    post = f.posterior
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == 40
    assert post["student_state"].shape[2] == len(post["state_student"]) and (post["student_state"] >= 0).all()
    assert post["requirement"].std("draw").min() > 0  # draws, not a point
    pred = f.predict(tiny_cohort.table)
    assert (pred["p_low"] <= pred["p_mean"]).all() and (pred["p_mean"] <= pred["p_high"]).all()
    assert auc(pred["outcome"], pred["p_mean"]) > 0.6
    diag = f.diagnostics(loo=False)
    assert "loss_history" in diag.tables and len(diag.tables["loss_history"]) == len(loss)
    back = bl.load(f.save(tmp_path / "mb"))
    np.testing.assert_allclose(back.predict(tiny_cohort.table)["p_mean"], pred["p_mean"])
    assert back.idata["optimization"].attrs["batch_size"] == 4


def _holdout(table: pd.DataFrame, frac: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    students = table["student_id"].unique()
    held = rng.choice(students, int(frac * len(students)), replace=False)
    mask = table["student_id"].isin(held) & (table["timestep"] == table["timestep"].max())
    mask &= table["module_type"] == "assessment"
    return table[~mask].reset_index(drop=True), table[mask].reset_index(drop=True)


@pytest.mark.slow
def test_minibatch_predicts_like_full_batch():
    """On a small cohort, minibatch ADVI (batches of 10% of the students) predicts the
    held-out last-step answers about as well as full-batch ADVI."""
    c = bl.simulate(n_students=120, n_steps=4, n_assessments=10, n_lessons=4, answers_per_step=3, seed=5)
    train, test = _holdout(c.table, 0.3, 0)
    spec = bl.LatentSkillEmbedding(history=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        full = spec.fit(train, method="advi", draws=100, seed=1, max_iterations=4000, window=300)
        mini = spec.fit(train, method="advi", draws=100, seed=1, batch_size=12, max_iterations=8000, window=300)
    a_full = auc(test["outcome"], full.predict(test)["p_mean"])
    a_mini = auc(test["outcome"], mini.predict(test)["p_mean"])
    a_true = auc(test["outcome"], test["p_true"])
    assert a_full > 0.7 and a_mini > a_full - 0.04, (a_full, a_mini, a_true)
    # the loss estimates the same −ELBO: the converged levels agree to ~1%
    lf = full.idata["optimization"]["loss"].values[-300:].mean()
    lm = mini.idata["optimization"]["loss"].values[-300:].mean()
    assert abs(lm - lf) / abs(lf) < 0.02, (lf, lm)
