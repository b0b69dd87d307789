"""Issue 20: the posterior from pandas and xarray — `FittedLSE.summary()`'s tidy tables and
`states()`, the states with `student` and `step` dims."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from canned import nuts_idata, simulate_truth

from bayes_lse.api import FittedLSE


@pytest.fixture(scope="module")
def fitted(tiny_cohort):
    """A MAP fit by the numpy kernel (no PyTensor compilation)."""
    from bayes_lse import LatentSkillEmbedding

    return LatentSkillEmbedding(n_skills=2).fit(tiny_cohort.table, method="map", starts=1, seed=1, maxiter=200,
                                                engine="kernel", parametrization="centered")


def test_states_have_student_and_step_dims(fitted):
    da = fitted.states()
    assert da.dims == ("chain", "draw", "student", "step", "skill")
    assert list(da["student"].values) == [str(s) for s in fitted.students]
    for sid in ("s00", "s05"):
        own = fitted.student_states(sid)  # (samples, steps, d)
        last = int(da["last_step"].sel(student=sid))
        assert last == own.shape[1] - 1
        got = da.sel(student=sid).isel(step=slice(0, last + 1)).values.reshape(own.shape)
        np.testing.assert_array_equal(got, own)
        assert np.isnan(da.sel(student=sid).isel(step=slice(last + 1, None)).values).all()
    np.testing.assert_array_equal(da.sel(student="s03", step=0).values.reshape(-1, 2),
                                  fitted.student_states("s03")[:, 0])

    two = fitted.states(["s07", "s01"])
    assert list(two["student"].values) == ["s07", "s01"]
    with pytest.raises(KeyError, match="nobody"):
        fitted.states(["nobody"])
    with pytest.raises(ValueError, match="fewer students"):
        fitted.states(max_cells=10)


def test_summary_tables(fitted, tiny_cohort):
    s = fitted.summary(goals=["A0"])
    t = tiny_cohort.table
    answers = t[t.module_type == "assessment"]

    st = s.students
    assert st.index.name == "student_id" and list(st.index) == [str(x) for x in fitted.students]
    assert st["n_answers"].to_dict() == answers.groupby("student_id").size().to_dict()
    assert st["n_lessons"].to_dict() == t[t.module_type == "lesson"].groupby("student_id").size().to_dict()
    now = fitted.current_state("s00")  # MAP: one draw
    assert st.loc["s00", "skill_norm"] == pytest.approx(np.linalg.norm(now[0]))
    assert [st.loc["s00", f"skill_{j}"] for j in range(2)] == pytest.approx(now[0])
    assert "bias" in st
    # the pass probability now is what predict gives at the student's last step
    last = int(st.loc["s00", "last_step"])
    p = fitted.predict(pd.DataFrame({"student_id": ["s00"], "module_id": ["A0"], "module_type": ["assessment"],
                                     "timestep": [last]}))
    assert st.loc["s00", "p_A0"] == pytest.approx(p["p_mean"].iloc[0])

    le = s.lessons
    assert le["n_uses"].to_dict() == t[t.module_type == "lesson"].groupby("module_id").size().to_dict()
    gain = np.linalg.norm(fitted.draws("gain")[0], axis=-1)
    assert le["gain_norm"].to_numpy() == pytest.approx(gain)
    assert {"gain_norm_low", "gain_norm_high", "prerequisite_norm"} <= set(le.columns)

    a = s.assessments
    assert a["n_answers"].to_dict() == answers.groupby("module_id").size().to_dict()
    assert a["pass_rate"].to_dict() == pytest.approx(answers.groupby("module_id")["outcome"].mean().to_dict())
    diff = np.linalg.norm(fitted.draws("requirement")[0], axis=-1) - fitted.draws("assessment_bias")[0]
    assert a["difficulty"].to_numpy() == pytest.approx(diff)
    assert (a["difficulty_low"] <= a["difficulty"]).all() and (a["difficulty"] <= a["difficulty_high"]).all()
    assert s["students"] is s.students and "point estimate" in " ".join(s.notes)


def test_summary_per_skill_columns_come_from_aligned_chains():
    """A chain with its skills swapped: the raw mean mixes the two skills, the summary does not."""
    truth = simulate_truth(seed=4)
    fitted = FittedLSE(nuts_idata(truth, chains=4, draws=50, permuted_chain=1))
    s = fitted.summary()
    last = fitted.last_states().reindex([str(x) for x in fitted.students])["state"].to_numpy()
    want = truth.state[last]
    got = s.students[["skill_0", "skill_1"]].to_numpy()
    raw = fitted.draws("student_state")[:, last].mean(axis=0)
    assert np.abs(got - want).max() < 0.1 < np.abs(raw - want).max()
    lo, mid, hi = (s.students[c] for c in ("skill_norm_low", "skill_norm", "skill_norm_high"))
    assert (lo < mid).all() and (mid < hi).all()
    assert any("aligned" in n for n in s.notes)
