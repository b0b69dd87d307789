"""n_skills="auto": the held-out choice of d (`results.selection`, issue 15)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_lse.data.log import read_interactions
from bayes_lse.results import selection


@pytest.fixture(scope="module")
def log(tiny_cohort):
    return read_interactions(tiny_cohort.table)


def test_holdout_split_holds_out_each_students_last_answers(log):
    train, test = selection.holdout_split(log, n_students=8, share=0.25, seed=0)
    assert train["student_id"].nunique() == 8
    assert set(test["student_id"]) <= set(train["student_id"])
    assert (test["module_type"] == "assessment").all()
    t = log.table
    for sid, own in t.groupby("student_id", observed=True):
        if sid not in set(train["student_id"]):
            continue
        answers = int((own["module_type"] == "assessment").sum())
        held = test[test["student_id"] == sid]
        assert len(held) == max(1, int(np.floor(0.25 * answers)))
        # the held-out answers come after every training row of the student
        assert held["timestep"].min() >= train.loc[train["student_id"] == sid, "timestep"].max()
        assert len(held) + int((train["student_id"] == sid).sum()) <= len(own)
    again = selection.holdout_split(log, n_students=8, share=0.25, seed=0)
    pd.testing.assert_frame_equal(again[1], test)
    other = selection.holdout_split(log, n_students=8, share=0.25, seed=1)
    assert set(other[0]["student_id"]) != set(train["student_id"])


class _Fake:
    """A candidate fit that predicts a constant pass probability per d."""

    def __init__(self, p: float) -> None:
        self.p = p

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"p_mean": np.full(len(table), self.p)})


def test_the_candidate_with_the_lower_held_out_log_loss_is_kept(log, tiny_cohort, monkeypatch):
    from bayes_lse import LatentSkillEmbedding

    monkeypatch.setattr(selection, "MIN_HELDOUT", 2)
    rate = float(tiny_cohort.table["outcome"].mean())
    seen: list[tuple[int, dict]] = []

    def fit(spec, table, options):
        seen.append((spec.n_skills, dict(options)))
        # d = 2 predicts the pass rate, d = 1 a bad constant: d = 2 must win
        return _Fake(rate if spec.n_skills == 2 else 0.05)

    spec, why = selection.choose_skills(LatentSkillEmbedding(), log, "map", fit, {"seed": 3})
    assert spec.config["n_skills"] == 2
    assert [d for d, _ in seen] == [1, 2]
    # a large log's settings whatever this log's size: the centred kernel, one start
    assert all(o["seed"] == 3 and o["starts"] == 1 and o["parametrization"] == "centered" for _, o in seen)
    from bayes_lse.inference.defaults import CHECK_MAXITER

    assert all(o["maxiter"] == CHECK_MAXITER for _, o in seen)  # a ranking: a short budget unless the user set one
    selection.choose_skills(LatentSkillEmbedding(), log, "map", fit, {"maxiter": 77})
    assert seen[-1][1]["maxiter"] == 77
    assert "n_skills 2: held-out log-loss d = 1" in why

    def fit_flipped(spec, table, options):
        return _Fake(0.05 if spec.n_skills == 2 else rate)

    spec, why = selection.choose_skills(LatentSkillEmbedding(), log, "map", fit_flipped)
    assert spec.config["n_skills"] == 1 and why.startswith("n_skills 1:")


def test_default_d_where_no_check_runs(log):
    from bayes_lse import LatentSkillEmbedding

    def fit(*args):  # pragma: no cover - must not be called
        raise AssertionError("no candidate fit expected")

    spec, why = selection.choose_skills(LatentSkillEmbedding(), log, "map", fit)
    assert spec.config["n_skills"] == 2 and "held-out answers < 1000: too few" in why
    spec, why = selection.choose_skills(LatentSkillEmbedding(), log, "nuts", fit)
    assert spec.config["n_skills"] == 2 and "MAP fits only" in why
    spec, why = selection.choose_skills(LatentSkillEmbedding(n_skills=3), log, "map", fit)
    assert spec.config["n_skills"] == 3 and why == ""


def test_fit_with_auto_skills_runs_the_check_and_records_it(tiny_cohort, monkeypatch):
    """End to end through `LatentSkillEmbedding.fit`: real candidate fits, the choice in
    ``fitted.choices`` and an integer d in the saved config."""
    from bayes_lse import LatentSkillEmbedding

    monkeypatch.setattr(selection, "MIN_HELDOUT", 2)
    fitted = LatentSkillEmbedding(history=False).fit(tiny_cohort.table, method="map", seed=1, maxiter=100,
                                                     engine="kernel", parametrization="centered")
    d = fitted.model_config["n_skills"]
    assert d in (1, 2)
    assert any(c.startswith(f"n_skills {d}: held-out log-loss") for c in fitted.choices)


def test_n_skills_auto_is_a_valid_config_and_other_words_are_not():
    from bayes_lse import LatentSkillEmbedding

    assert LatentSkillEmbedding().config["n_skills"] == "auto"
    assert LatentSkillEmbedding().n_skills == 2  # the default d until a fit decides
    assert LatentSkillEmbedding(n_skills=np.int64(3)).config["n_skills"] == 3
    for bad in ("two", 0, 1.5, True):
        with pytest.raises(ValueError, match="n_skills must be an integer >= 1 or 'auto'"):
            LatentSkillEmbedding(n_skills=bad)
    for key in ("history", "practice"):  # the same words for the other data-chosen settings
        with pytest.raises(ValueError, match=f"{key} must be true, false or 'auto', got 'yes'"):
            LatentSkillEmbedding(**{key: "yes"})
