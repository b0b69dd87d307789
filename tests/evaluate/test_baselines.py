"""Baseline models of the evaluation harness: PyMC models fit by MAP, predictions, PFA counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_lse import read_interactions
from bayes_lse.evaluate.baselines import (
    BASELINES,
    IRT1PL,
    IRT2PL,
    MIRT,
    PerformanceFactors,
    pfa_history_counts,
    make_baseline,
)


def _irt_log(n_students=80, n_items=15, seed=0):
    """Answers drawn from a 1PL model; returns (log, true abilities, true easiness)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 1, n_students)
    b = rng.normal(0, 1, n_items)
    rows = []
    for u in range(n_students):
        for j in rng.choice(n_items, size=10, replace=False):
            p = 1 / (1 + np.exp(-(theta[u] + b[j])))
            rows.append((f"u{u}", f"i{j}", "assessment", float(rng.random() < p)))
    df = pd.DataFrame(rows, columns=["student_id", "module_id", "module_type", "outcome"])
    return read_interactions(df), theta, b


@pytest.fixture(scope="module")
def irt_data():
    return _irt_log()


@pytest.mark.parametrize("name", [b for b in BASELINES])
def test_every_baseline_fits_and_predicts(name, tiny_cohort):
    log = read_interactions(tiny_cohort.table)
    fb = make_baseline(name).fit(log, seed=1)
    rows = log.table[log.table.module_type == "assessment"]
    p = fb.predict(rows)
    assert p.shape == (len(rows),)
    assert np.all((p > 0) & (p < 1))
    assert fb.info["success"] or "ABNORMAL" not in fb.info["message"]
    # reproducible
    p2 = make_baseline(name).fit(log, seed=1).predict(rows)
    np.testing.assert_allclose(p, p2)


def test_irt1pl_recovers_abilities(irt_data):
    log, theta, b = irt_data
    fb = IRT1PL().fit(log)
    est = fb.params["student_ability"]
    order = np.array([int(s[1:]) for s in log.students])
    assert np.corrcoef(est, theta[order])[0, 1] > 0.7
    est_b = fb.params["assessment_effect"]
    order_b = np.array([int(s[1:]) for s in log.assessments])
    assert np.corrcoef(est_b, b[order_b])[0, 1] > 0.8


def test_unknown_student_and_item_get_the_prior_mean(irt_data):
    log, _, _ = irt_data
    fb = IRT1PL().fit(log)
    mu = float(fb.params["intercept"])
    j = list(log.assessments).index("i3")
    b3 = fb.params["assessment_effect"][j]
    p = fb.predict(pd.DataFrame({"student_id": ["new", "new"], "module_id": ["i3", "never-seen"]}))
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-np.array([mu + b3, mu]))))


def test_2pl_has_a_discrimination_per_item(irt_data):
    log, _, _ = irt_data
    fb = IRT2PL().fit(log)
    disc = np.exp(fb.params["log_discrimination"])
    assert disc.shape == (log.n_assessments,)
    assert disc.std() > 0.01  # really per item, not one shared value


def test_mirt_has_d_skills(irt_data):
    log, _, _ = irt_data
    m = MIRT(3)
    assert m.name == "mirt-d3"
    fb = m.fit(log)
    assert fb.params["student_ability"].shape == (log.n_students, 3)
    assert fb.params["loading"].shape == (log.n_assessments, 3)
    assert make_baseline("mirt-d2").n_skills == 2


def test_build_model_is_pymc(irt_data):
    import pymc as pm

    log, _, _ = irt_data
    model = IRT2PL().build_model(log)
    assert isinstance(model, pm.Model)
    assert {v.name for v in model.free_RVs} == {"intercept", "student_ability", "assessment_effect", "log_discrimination"}


def test_unknown_baseline_name():
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("bkt")


def test_history_counts_by_hand():
    frame = pd.DataFrame({
        "student_id": ["a", "a", "b", "a", "a"],
        "module_id": ["x", "y", "x", "x", "x"],
        "outcome": [1.0, 0.0, 1.0, 0.0, 1.0],
        "timestep": [0, 0, 0, 1, 2],
    })
    c = pfa_history_counts(frame)
    expected = np.array([
        [0, 0, 0, 0],  # a's first answer
        [1, 0, 0, 0],  # a on y: one success before, none on y
        [0, 0, 0, 0],  # b's first answer
        [1, 1, 1, 0],  # a on x again: x succeeded once before
        [1, 2, 1, 1],  # a on x a third time
    ])
    np.testing.assert_array_equal(c, expected)


def test_history_counts_follow_timesteps_not_row_order():
    frame = pd.DataFrame({"student_id": ["a", "a"], "module_id": ["x", "y"], "outcome": [1.0, 0.0],
                          "timestep": [1, 0]})
    np.testing.assert_array_equal(pfa_history_counts(frame), [[0, 1, 0, 0], [0, 0, 0, 0]])


def test_pfa_frozen_and_online_counts():
    train = pd.DataFrame({
        "student_id": ["a", "a", "a", "b"], "module_id": ["x", "y", "x", "x"], "module_type": "assessment",
        "outcome": [1.0, 0.0, 1.0, 0.0], "timestep": [0, 1, 2, 0],
    })
    log = read_interactions(train)
    held = pd.DataFrame({"student_id": ["a", "a"], "module_id": ["y", "y"], "outcome": [0.0, 1.0],
                         "timestep": [3, 4]})
    frozen = PerformanceFactors().fit(log)
    online = PerformanceFactors(online=True).fit(log)
    assert frozen.name == "pfa" and online.name == "pfa-online"
    xf = frozen.baseline._predict_features(frozen, held)
    xo = online.baseline._predict_features(online, held)
    # a: 2 successes, 1 failure overall; on y: 0 successes, 1 failure
    np.testing.assert_allclose(np.expm1(xf), [[2, 1, 0, 1], [2, 1, 0, 1]])
    # online: the second held-out row also sees the first (a failure on y)
    np.testing.assert_allclose(np.expm1(xo), [[2, 1, 0, 1], [2, 2, 0, 2]])
    with pytest.raises(ValueError, match="outcome"):
        online.predict(held.drop(columns="outcome"))


def test_baseline_needs_assessments():
    df = pd.DataFrame({"student_id": ["a"], "module_id": ["L"], "module_type": ["lesson"], "outcome": [np.nan]})
    with pytest.raises(ValueError, match="no assessment rows"):
        IRT1PL().fit(read_interactions(df))
