"""n_skills="auto": the held-out choice of d (`results.selection`, issue 15)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_lse.data.log import read_interactions
from bayes_lse.model.graph import ModelSpec
from bayes_lse.results import selection


@pytest.fixture(scope="module")
def log(tiny_cohort):
    return read_interactions(tiny_cohort.table)


def test_holdout_split_holds_out_each_students_last_answers(log):
    train, rows = selection.holdout_split(log, n_students=8, share=0.25, seed=0)
    assert train["student_id"].nunique() == 8
    assert set(rows["student_id"]) <= set(train["student_id"])
    test = rows[rows["module_type"] == "assessment"]
    # the lessons among the held-out answers come with them (a model with lessons is pushed through them)
    assert not (rows["module_type"] == "lesson").any()  # here every student's last quarter is in its last step
    half = selection.holdout_split(log, n_students=8, share=0.5, seed=0)[1]
    assert (half["module_type"] == "lesson").any()
    t = log.table
    for sid, own in t.groupby("student_id", observed=True):
        if sid not in set(train["student_id"]):
            continue
        answers = int((own["module_type"] == "assessment").sum())
        held = test[test["student_id"] == sid]
        assert len(held) == max(1, int(np.floor(0.25 * answers)))
        # the held-out answers come after every training row of the student; its held-out rows
        # are what follows its first held-out answer
        assert held["timestep"].min() >= train.loc[train["student_id"] == sid, "timestep"].max()
        assert len(rows[rows["student_id"] == sid]) + int((train["student_id"] == sid).sum()) == len(own)
        assert (rows.loc[rows["student_id"] == sid, "timestep"] >= held["timestep"].min()).all()
    again = selection.holdout_split(log, n_students=8, share=0.25, seed=0)
    pd.testing.assert_frame_equal(again[1], test)
    other = selection.holdout_split(log, n_students=8, share=0.25, seed=1)
    assert set(other[0]["student_id"]) != set(train["student_id"])


class _Fake:
    """A candidate fit that predicts a constant pass probability; it records what it was asked
    to predict."""

    def __init__(self, p: float, asked: list | None = None) -> None:
        self.p = p
        self.asked = asked if asked is not None else []

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        self.asked.append(table)
        n = int((table["module_type"] == "assessment").sum())
        return pd.DataFrame({"p_mean": np.full(n, self.p)})


def test_the_candidate_with_the_lower_held_out_log_loss_is_kept(log, tiny_cohort, monkeypatch):
    from bayes_lse import LatentSkillEmbedding

    monkeypatch.setattr(selection, "MIN_HELDOUT", 2)
    rate = float(tiny_cohort.table["outcome"].mean())
    seen: list[tuple[int, dict]] = []

    def fit(spec, table, options):
        seen.append((spec.n_skills, dict(options)))
        # d = 2 predicts the pass rate, d = 1 a bad constant: d = 2 must win
        return _Fake(rate if spec.n_skills == 2 else 0.05)

    spec, why = selection.choose_structure(LatentSkillEmbedding(lessons=True), log, "map", fit, {"seed": 3})
    assert spec.config["n_skills"] == 2
    assert [d for d, _ in seen] == [1, 2]
    # a large log's settings whatever this log's size: the centred kernel, one start
    assert all(o["seed"] == 3 and o["starts"] == 1 and o["parametrization"] == "centered" for _, o in seen)
    from bayes_lse.inference.defaults import CHECK_MAXITER

    assert all(o["maxiter"] == CHECK_MAXITER for _, o in seen)  # a ranking: a short budget unless the user set one
    selection.choose_structure(LatentSkillEmbedding(lessons=True), log, "map", fit, {"maxiter": 77})
    assert seen[-1][1]["maxiter"] == 77
    assert why[0].startswith("n_skills 2: held-out log-loss d = 1")
    # the spec comes back with the history term decided for the full log, its reason last
    assert not spec.history_unresolved and why[-1].startswith("history term")

    def fit_flipped(spec, table, options):
        return _Fake(0.05 if spec.n_skills == 2 else rate)

    spec, why = selection.choose_structure(LatentSkillEmbedding(lessons=True), log, "map", fit_flipped)
    assert spec.config["n_skills"] == 1 and why[0].startswith("n_skills 1:")


def test_lessons_are_dropped_only_when_the_model_without_them_is_clearly_better(log, tiny_cohort, monkeypatch):
    from bayes_lse import LatentSkillEmbedding

    monkeypatch.setattr(selection, "MIN_HELDOUT", 2)
    monkeypatch.setattr(selection, "HOLDOUT", 0.5)  # the tiny cohort's last 10 % has no lesson among it
    rate = float(tiny_cohort.table["outcome"].mean())
    calls: list[tuple[ModelSpec, list]] = []

    def fit_by(p_with: float, p_without: float):
        def fit(spec, table, options):
            asked: list = []
            calls.append((spec, asked))
            return _Fake(p_with if spec.config["lessons"] else p_without, asked)
        return fit

    # without lessons the candidate predicts the pass rate, with them a bad constant: dropped
    spec, why = selection.choose_structure(LatentSkillEmbedding(n_skills=2), log, "map", fit_by(0.05, rate))
    assert spec.config["lessons"] is False and spec.config["n_skills"] == 2
    assert why[0].startswith("lessons off: held-out log-loss") and "--lessons keeps them" in why[0]
    (with_spec, with_asked), (without_spec, without_asked) = calls
    assert with_spec.config["lessons"] is True and without_spec.config["lessons"] is False
    # the model with lessons is pushed through the held-out lessons; the one without is asked for answers only
    assert (with_asked[0]["module_type"] == "lesson").any()
    assert (without_asked[0]["module_type"] == "assessment").all()
    # a model without lessons gets the practice counts whenever it has the history term
    assert without_spec.config["practice"] == without_spec.config["history"]
    assert spec.config["practice"] == spec.config["history"]
    # a tie (or a lead within the margin) keeps them
    calls.clear()
    spec, why = selection.choose_structure(LatentSkillEmbedding(n_skills=2), log, "map", fit_by(rate, rate))
    assert spec.config["lessons"] is True and why[0].startswith("lessons on:")
    # with d also "auto": both d with lessons, the better one without; where the lessons stay,
    # that is all (three fits), where they go the other d is fitted without them and d chosen there
    calls.clear()
    p_of = {(1, True): 0.3, (2, True): 0.05, (1, False): 0.3}
    spec, why = selection.choose_structure(LatentSkillEmbedding(), log, "map",
                                           lambda spec, table, options: _Fake(p_of[(spec.n_skills, spec.config["lessons"])]))
    assert (spec.config["lessons"], spec.n_skills) == (True, 1)
    calls.clear()

    def fit_d2_without(spec, table, options):
        calls.append((spec, []))
        p = {(1, False): (rate + 0.05) / 2, (2, False): rate}.get((spec.n_skills, spec.config["lessons"]), 0.05)
        return _Fake(p)

    spec, why = selection.choose_structure(LatentSkillEmbedding(), log, "map", fit_d2_without)
    assert [(c.n_skills, c.config["lessons"]) for c, _ in calls] == [(1, True), (2, True), (1, False), (2, False)]
    assert (spec.config["lessons"], spec.n_skills) == (False, 2)
    assert [w.split(":")[0] for w in why[:2]] == ["n_skills 2", "lessons off"]
    assert "without lessons" in why[0] and "with d = 1 " in why[1]


def test_lessons_verdict_needs_both_the_margin_and_the_standard_errors():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 1.0, 400)
    keep, diff, se = selection.lessons_verdict(base, base - 0.05)  # clearly better without: dropped
    assert not keep and diff == pytest.approx(-0.05) and se == pytest.approx(0.0, abs=1e-12)
    keep, _, _ = selection.lessons_verdict(base, base - 0.005)  # below the margin: kept
    assert keep
    noisy = base - 0.05 + rng.normal(0, 3.0, 400)  # past the margin but within 2 SE: kept
    keep, diff, se = selection.lessons_verdict(base, noisy)
    assert keep and abs(diff) < 2 * se


def test_default_d_where_no_check_runs(log):
    from bayes_lse import LatentSkillEmbedding

    def fit(*args):  # pragma: no cover - must not be called
        raise AssertionError("no candidate fit expected")

    spec, why = selection.choose_structure(LatentSkillEmbedding(), log, "map", fit)
    assert spec.config["n_skills"] == 2 and spec.config["lessons"] is True
    assert "held-out answers < 1000: too few to choose d and lessons" in why[0]
    assert why[1].startswith("lessons on: the default")
    spec, why = selection.choose_structure(LatentSkillEmbedding(), log, "nuts", fit)
    assert spec.config["n_skills"] == 2 and "MAP fits only" in why[0] and len(why) == 2
    spec, why = selection.choose_structure(LatentSkillEmbedding(n_skills=3, lessons=True), log, "map", fit)
    assert spec.config["n_skills"] == 3 and why == []
    # a log without lesson rows has no lessons to choose: the same model either way, no line
    no_lessons = read_interactions(log.table.loc[log.table["module_type"] == "assessment",
                                                 ["student_id", "module_id", "module_type", "outcome", "timestep"]])
    spec, why = selection.choose_structure(LatentSkillEmbedding(n_skills=3), no_lessons, "map", fit)
    assert spec.config["lessons"] is True and why == []


def test_fit_with_auto_skills_runs_the_check_and_records_it(tiny_cohort, monkeypatch):
    """End to end through `LatentSkillEmbedding.fit`: real candidate fits, the choice in
    ``fitted.choices`` and an integer d and a boolean lessons in the saved config."""
    from bayes_lse import LatentSkillEmbedding

    monkeypatch.setattr(selection, "MIN_HELDOUT", 2)
    fitted = LatentSkillEmbedding(history=False).fit(tiny_cohort.table, method="map", seed=1, maxiter=100,
                                                     engine="kernel", parametrization="centered")
    d = fitted.model_config["n_skills"]
    assert d in (1, 2) and isinstance(fitted.model_config["lessons"], bool)
    assert any(c.startswith(f"n_skills {d}: held-out log-loss") for c in fitted.choices)
    assert any(c.startswith(("lessons on: held-out log-loss", "lessons off: held-out log-loss"))
               for c in fitted.choices)


def test_n_skills_auto_is_a_valid_config_and_other_words_are_not():
    from bayes_lse import LatentSkillEmbedding

    assert LatentSkillEmbedding().config["n_skills"] == "auto"
    assert LatentSkillEmbedding().n_skills == 2  # the default d until a fit decides
    assert LatentSkillEmbedding(n_skills=np.int64(3)).config["n_skills"] == 3
    for bad in ("two", 0, 1.5, True):
        with pytest.raises(ValueError, match="n_skills must be an integer >= 1 or 'auto'"):
            LatentSkillEmbedding(n_skills=bad)
    assert LatentSkillEmbedding().config["lessons"] == "auto"
    for key in ("lessons", "history", "practice"):  # the same words for the other data-chosen settings
        with pytest.raises(ValueError, match=f"{key} must be true, false or 'auto', got 'yes'"):
            LatentSkillEmbedding(**{key: "yes"})
