"""The data-sufficiency check (issue 20): thin modules and students are counted and warned about."""

from __future__ import annotations

import pytest
from canned import map_idata, simulate_truth

from bayes_lse.diagnostics import diagnose
from bayes_lse.diagnostics.settings import DEFAULT_THRESHOLDS, resolve_thresholds
from bayes_lse.diagnostics.sufficiency import check_data_sufficiency, data_counts


@pytest.fixture(scope="module")
def plenty():
    return map_idata(simulate_truth(n_students=24, n_assessments=4, n_lessons=2, answers_per_state=3, seed=1))


@pytest.fixture(scope="module")
def thin():
    # 30 assessments and 8 lessons for 10 students with 2 answers per state: most are seen a few times
    return map_idata(simulate_truth(n_students=10, n_assessments=30, n_lessons=8, answers_per_state=2, seed=2))


def test_counts_match_the_index_arrays(thin):
    truth = simulate_truth(n_students=10, n_assessments=30, n_lessons=8, answers_per_state=2, seed=2)
    counts = data_counts(thin)
    assert set(counts) == {"assessment", "lesson", "student"}
    t = truth.table
    answers = t[t.module_type == "assessment"].groupby("module_id").size()
    assert counts["assessment"].reindex(answers.index).tolist() == answers.tolist()
    assert int(counts["assessment"].sum()) == len(truth.outcome)
    assert int(counts["lesson"].sum()) == int((truth.transition_lesson >= 0).sum())
    assert list(counts["student"].index) == truth.student_ids
    assert (counts["assessment"] == 0).any()  # never-answered assessments count as 0, not missing


def test_enough_data_is_ok(plenty):
    res = check_data_sufficiency(plenty, resolve_thresholds({}))
    (v,) = res.verdicts
    assert v["check"] == "Data sufficiency" and v["status"] == "ok", v["message"]
    assert "median" in v["message"]
    assert set(res.tables["data_sufficiency"]["kind"]) == {"assessment", "lesson", "student"}


def test_thin_data_warns_with_counts_and_medians(thin):
    d = diagnose(thin)
    v = d.check("Data sufficiency")
    assert v["status"] == "warn"
    table = d["data_sufficiency"].set_index("kind")
    n_thin = int(table.loc["assessment", "thin"])
    assert n_thin > 0 and f"{n_thin} of 30 assessments" in v["message"]
    assert f"median {table.loc['assessment', 'median']:g} answers per assessment" in v["message"]
    assert "lessons" in v["message"]
    worst = d["thin_entities"]
    assert {"kind", "id", "n", "fewer_than"} <= set(worst.columns)
    assert (worst["n"] < worst["fewer_than"]).all()


def test_thresholds_are_configurable(thin):
    assert "min_module_answers" in DEFAULT_THRESHOLDS and "thin_share_max" in DEFAULT_THRESHOLDS
    lax = check_data_sufficiency(thin, resolve_thresholds({"min_module_answers": 1, "min_student_answers": 1,
                                                           "thin_share_max": 0.5}))
    assert lax.verdicts[0]["status"] == "ok"
    d = diagnose(thin, min_module_answers=1, min_student_answers=1, thin_share_max=0.5)
    assert d.check("Data sufficiency")["status"] == "ok"


def test_the_report_shows_the_check(thin, tmp_path):
    from bayes_lse.report.html import render_report

    html = render_report(thin, diagnostics=diagnose(thin))
    assert "Data sufficiency" in html and "Thinnest modules and students" in html
