"""`OutcomeRefitter`: one compiled nutpie model refit on new outcomes gives run_fit's tree layout."""

from __future__ import annotations

import numpy as np
import pytest

import bayes_lse as bl
from bayes_lse.data.log import read_interactions
from bayes_lse.inference.refit import OutcomeRefitter


@pytest.fixture(scope="module")
def design():
    table = bl.simulate(n_students=4, n_steps=2, n_assessments=2, n_lessons=1, n_skills=1, answers_per_step=1,
                        seed=5).table
    return read_interactions(table[["student_id", "module_id", "module_type", "outcome", "timestep"]])


def test_refuses_what_it_cannot_refit(design):
    with pytest.raises(ValueError, match="nutpie"):
        OutcomeRefitter(bl.LatentSkillEmbedding(n_skills=1), design, sampler="pymc")


def test_history_features_follow_the_new_outcomes(design):
    """With the history term the refit model's features are data too: set to the counts of
    other outcomes, its log-density equals that of a model built from a log with them."""
    import pymc as pm

    from bayes_lse.model.graph import history_feature_data
    from bayes_lse.model.terms import assessment_history_counts

    spec = bl.LatentSkillEmbedding(n_skills=1, history=True, practice=True)
    model, idx = spec.build_model(design, outcome_data=True)
    y = np.random.default_rng(5).integers(0, 2, len(idx.outcome)).astype(np.int8)
    assert not np.array_equal(y, idx.outcome)
    counts = assessment_history_counts(idx.obs_student, idx.obs_assessment, y, idx.obs_state)
    with model:
        pm.set_data({"outcome_data": y, **history_feature_data(counts, spec.config)})
    table = design.table.copy()
    is_a = (table["module_type"] == "assessment").to_numpy()
    column = table["outcome"].to_numpy(dtype=float, copy=True)
    column[is_a] = y
    table["outcome"] = column
    fresh, _ = spec.build_model(bl.read_interactions(table[["student_id", "module_id", "module_type", "outcome",
                                                             "timestep"]]))
    point = model.initial_point()
    point.update({k: np.full_like(v, 0.3) for k, v in point.items() if k.startswith("history")})
    assert float(model.compile_logp()(point)) == pytest.approx(float(fresh.compile_logp()(point)), rel=1e-12)


def test_refits_on_new_outcomes_with_the_run_fit_layout(design):
    spec = bl.LatentSkillEmbedding(n_skills=1)
    refit = OutcomeRefitter(spec, design, draws=40, tune=40, chains=2)
    n = refit.n_answers
    assert n == int((design.table["module_type"] == "assessment").sum())
    ones, zeros = np.ones(n, dtype=int), np.zeros(n, dtype=int)
    a = refit.fit(ones, seed=1)
    b = refit.fit(zeros, seed=1)
    assert a.attrs["method"] == "nuts" and a.attrs["data_fingerprint"] != b.attrs["data_fingerprint"]
    np.testing.assert_array_equal(a["observed_data"]["outcome"].values, ones)
    answers = design.table["module_type"].to_numpy() == "assessment"
    np.testing.assert_array_equal(b["interactions"]["outcome"].values[answers], zeros)
    assert set(a["posterior"].data_vars) == {"student_state", "requirement", "gain", "prerequisite",
                                              "student_bias", "assessment_bias"}
    assert dict(a["posterior"].sizes) == {"chain": 2, "draw": 40, "state": len(design.state_student), "skill": 1,
                                          "student": 4, "assessment": 2, "lesson": 1}
    assert "diverging" in a["sample_stats"] and "depth" in a["sample_stats"]
    # the data reached the sampler: all passes against all failures move the pass logit
    gap = (a["posterior"]["student_bias"].mean() - b["posterior"]["student_bias"].mean()).item()
    assert gap > 0.3
    with pytest.raises(ValueError, match="0 or 1"):
        refit.fit(np.full(n, 2), seed=0)
    with pytest.raises(ValueError, match=str(n)):
        refit.fit(np.ones(n + 1, dtype=int), seed=0)
