"""The evaluation harness: splits, metrics with standard errors, paired comparisons,
the lessons check, PSIS-LOO, and the `evaluate` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bayes_lse.evaluate import metrics as mt
from bayes_lse import LatentSkillEmbedding, read_interactions, simulate
from bayes_lse.evaluate.protocols import (
    Split,
    delong_auc_difference,
    evaluate,
    lessons_check,
    loo_compare,
    lse_variants,
    make_split,
    metric_table,
    paired_comparison,
    pointwise_log_likelihood,
    read_split,
    small_set_warnings,
)

from conftest import SHARED_DATA  # noqa: E402  (../shared/data beside the repository; tests skip without it)


@pytest.fixture(scope="module")
def cohort_log():
    return read_interactions(simulate(n_students=40, n_steps=4, n_assessments=8, n_lessons=3, seed=11).table)


# --------------------------------------------------------------------- metrics
def test_accuracy_and_ece():
    y = np.array([1, 0, 1, 1])
    p = np.array([0.9, 0.4, 0.3, 0.6])
    assert mt.accuracy(y, p) == 0.75
    # bins: 0.9 -> bin 9 (gap |1-0.9|), 0.4 -> 4 (|0-0.4|), 0.3 -> 3 (|1-0.3|), 0.6 -> 6 (|1-0.6|)
    assert mt.expected_calibration_error(y, p) == pytest.approx((0.1 + 0.4 + 0.7 + 0.4) / 4)
    assert mt.expected_calibration_error(np.array([1, 0]), np.array([0.55, 0.55])) == pytest.approx(0.05)
    assert np.isnan(mt.accuracy([], []))


def test_metric_table_point_values_and_ses():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.3 * y + 0.35 + rng.normal(0, 0.2, 300), 0.01, 0.99)
    p[:20] = 0.5  # ties
    groups = np.repeat(np.arange(60), 5)
    m = metric_table(y, p, groups, n_boot=300, seed=1)
    assert m["auc"] == pytest.approx(mt.auc(y, p))
    assert m["log_loss"] == pytest.approx(mt.log_loss(y, p))
    assert m["brier"] == pytest.approx(mt.brier(y, p))
    assert m["accuracy"] == pytest.approx(mt.accuracy(y, p))
    assert m["ece"] == pytest.approx(mt.expected_calibration_error(y, p))
    for k in ("auc", "log_loss", "brier", "accuracy", "ece"):
        assert 0 < m[f"{k}_se"] < 0.2
    # the AUC SE is about what the Hanley–McNeil formula gives for independent rows
    a, n1, n0 = m["auc"], int(y.sum()), int(len(y) - y.sum())
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    hm = np.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0))
    assert 0.5 * hm < m["auc_se"] < 2 * hm
    assert metric_table(y, p, groups, n_boot=50, seed=1) == metric_table(y, p, groups, n_boot=50, seed=1)


def test_weighted_auc_matches_auc_with_repeated_rows():
    from bayes_lse.evaluate.protocols import _weighted_metrics

    y = np.array([1, 0, 1, 0, 1, 1])
    p = np.array([0.2, 0.2, 0.7, 0.1, 0.9, 0.4])
    w = np.array([[2, 1, 0, 3, 1, 1]], dtype=float)
    rep = np.repeat(np.arange(6), w[0].astype(int))
    got = _weighted_metrics(y, p, w)
    assert got["auc"][0] == pytest.approx(mt.auc(y[rep], p[rep]))
    assert got["log_loss"][0] == pytest.approx(mt.log_loss(y[rep], p[rep]))
    assert got["ece"][0] == pytest.approx(mt.expected_calibration_error(y[rep], p[rep]))


def test_paired_comparison_and_delong():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    good = np.clip(0.5 * y + 0.25 + rng.normal(0, 0.2, 400), 0.01, 0.99)
    bad = np.clip(0.1 * y + 0.45 + rng.normal(0, 0.2, 400), 0.01, 0.99)
    c = paired_comparison(y, good, bad, n_boot=300, seed=0)
    assert c["auc_diff"] == pytest.approx(mt.auc(y, good) - mt.auc(y, bad))
    assert c["auc_diff"] > 0 and c["auc_diff_low"] > 0
    assert c["auc_diff_delong_p"] < 1e-6
    assert 0.5 < c["auc_diff_se"] / c["auc_diff_delong_se"] < 2
    same = paired_comparison(y, good, good, n_boot=50, seed=0)
    assert same["auc_diff"] == 0 and same["auc_diff_se"] == 0
    d = delong_auc_difference(y, good, good)
    assert d["diff"] == 0 and d["se"] == 0


# ----------------------------------------------------------------------- split
def test_split_is_seeded_and_complete(cohort_log):
    a = make_split(cohort_log, folds=3, seed=5)
    b = make_split(cohort_log, folds=3, seed=5)
    c = make_split(cohort_log, folds=3, seed=6)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert not a.table["fold"].equals(c.table["fold"])
    assert a.runs == ["0", "1", "2", "test"]
    assert len(a.table) == cohort_log.n_interactions
    per_student = a.table.groupby("student_id")["fold"].nunique()
    assert (per_student == 1).all()  # a student is in one fold
    n_test = a.table.loc[a.table.fold == "test", "student_id"].nunique()
    assert n_test == round(0.2 * cohort_log.n_students)
    # test students never train in a CV run; everyone else trains in the test run
    fold = a.table["fold"].to_numpy()
    for run in ("0", "1", "2"):
        assert not a.training_mask(run)[fold == "test"].any()
    assert a.training_mask("test")[fold != "test"].all()


def test_split_with_a_given_test_set(cohort_log):
    ids = [str(s) for s in cohort_log.students[:7]]
    sp = make_split(cohort_log, folds=1, protocol="last-fraction", test_ids=ids, test_students=0)
    t = sp.table
    assert set(t.loc[t.fold == "test", "student_id"]) == set(ids)
    assert set(t.loc[t.fold != "test", "fold"]) == {"train"} and (t.loc[t.fold != "test", "role"] == "train").all()
    assert sp.runs == ["test"] and sp.test_students == pytest.approx(7 / cohort_log.n_students)
    # the held-out rows of a test student are the same as with a random test set
    rand = make_split(cohort_log, folds=1, protocol="last-fraction", test_students=0.5, seed=1).table
    both = set(ids) & set(rand.loc[rand.fold == "test", "student_id"])
    assert both
    m = t.student_id.isin(both).to_numpy()
    assert (t.loc[m, "role"].to_numpy() == rand.loc[m, "role"].to_numpy()).all()
    cv = make_split(cohort_log, folds=3, test_ids=ids, seed=2)
    assert set(cv.table.loc[cv.table.fold == "test", "student_id"]) == set(ids) and cv.runs == ["0", "1", "2", "test"]
    with pytest.raises(ValueError, match="not students of the log"):
        make_split(cohort_log, folds=1, test_ids=["nobody"])
    with pytest.raises(ValueError, match="nobody is left"):
        make_split(cohort_log, folds=1, test_ids=[str(s) for s in cohort_log.students])


def test_last_batch_holds_out_the_last_assessment_step(cohort_log):
    sp = make_split(cohort_log, folds=2, seed=0)
    t = cohort_log.table.assign(role=sp.table["role"].to_numpy(), fold=sp.table["fold"].to_numpy())
    for sid, g in t.groupby("student_id"):
        last = g.loc[g.module_type == "assessment", "timestep"].max()
        held = g[g.role != "train"]
        assert set(held.loc[held.module_type == "assessment", "timestep"]) == {last}
        assert (g.loc[g.role == "train", "timestep"] < last).all()
        assert set(g.loc[g.timestep >= last, "role"]) <= {"scored", "unseen", "context"}


def test_last_fraction_holds_out_the_chronologically_last_answers():
    df = pd.DataFrame({
        "student_id": ["a"] * 25 + ["b"] * 3 + ["c"],
        "module_id": [f"q{i % 7}" for i in range(25)] + ["q1", "q2", "q3"] + ["q1"],
        "module_type": "assessment",
        "outcome": np.arange(29) % 2,
    })
    log = read_interactions(df)
    sp = make_split(log, folds=1, test_students=0.99, protocol="last-fraction", fraction=0.1, seed=0)
    t = sp.table
    a = t[t.student_id == "a"]
    assert (a["role"].iloc[-2:] != "train").all() and (a["role"].iloc[:-2] == "train").all()  # 10% of 25 -> 2
    b = t[t.student_id == "b"]
    assert list(b["role"]) == ["train", "train", "scored"]  # at least one
    c = t[t.student_id == "c"]
    assert list(c["role"]) == ["train"]  # one answer: nothing before the cut, stays in training


def test_unseen_assessments_are_not_scored():
    df = pd.DataFrame({
        "student_id": ["a", "a", "b", "b", "c", "c"],
        "module_id": ["q1", "q2", "q1", "rare", "q1", "q2"],
        "module_type": "assessment",
        "outcome": [1, 0, 1, 1, 0, 1],
        "timestep": [0, 1, 0, 1, 0, 1],
    })
    log = read_interactions(df)
    sp = make_split(log, folds=1, test_students=0.99, seed=0)
    roles = dict(zip(zip(sp.table.student_id, sp.table.module_id), sp.table.role, strict=True))
    assert roles[("b", "rare")] == "unseen"
    assert roles[("a", "q2")] == "unseen"  # q2 is held out for both a and c: never trained on
    assert roles[("b", "q1")] == "train"


def test_split_errors(cohort_log):
    with pytest.raises(ValueError, match="protocol"):
        make_split(cohort_log, protocol="random")
    with pytest.raises(ValueError, match="nothing to evaluate"):
        make_split(cohort_log, folds=1, test_students=0)
    with pytest.raises(ValueError, match="folds"):
        make_split(cohort_log, folds=0)
    with pytest.raises(ValueError, match="fraction"):
        make_split(cohort_log, protocol="last-fraction", fraction=1.5)
    with pytest.raises(ValueError, match="cannot be split"):
        make_split(cohort_log, folds=100)


def test_split_round_trip(cohort_log, tmp_path):
    sp = make_split(cohort_log, folds=2, protocol="last-fraction", seed=2)
    sp.write(tmp_path / "split.csv")
    back = read_split(tmp_path / "split.csv")
    assert isinstance(back, Split)
    assert (back.protocol, back.folds, back.seed) == ("last-fraction", 2, 2)
    assert back.runs == sp.runs
    for run in sp.runs:
        np.testing.assert_array_equal(back.training_mask(run), sp.training_mask(run))
    other = read_interactions(simulate(n_students=5, n_steps=2, n_assessments=3, n_lessons=2, seed=0).table)
    with pytest.raises(ValueError, match="other data"):
        evaluate(other, ["irt1pl"], split=tmp_path / "split.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("row,fold\n1,0\n")
    with pytest.raises(ValueError, match="missing column"):
        read_split(bad)


# ------------------------------------------------------------------ evaluate
@pytest.fixture(scope="module")
def small_result(cohort_log):
    # history=False: test_lessons_check_matches_a_hand_push pushes the states without the history term
    return evaluate(cohort_log, {"lse-d1": LatentSkillEmbedding(n_skills=1, history=False), "irt1pl": "irt1pl", "pfa": "pfa"}, folds=2, test_students=0.25, seed=0,
                    fit_options={"starts": 1}, n_boot=50, keep_fits=True)


def test_evaluate_scores_every_model_on_the_same_rows(small_result, cohort_log):
    res = small_result
    assert res.settings["runs"] == ["0", "1", "test"]
    assert set(res.metrics["set"]) == {"fold 0", "fold 1", "cv", "test", "cv first-time", "cv repeat",
                                       "test first-time", "test repeat"}
    assert set(res.metrics["model"]) == {"lse-d1", "irt1pl", "pfa"}
    # first-time + repeat answers are the scored ones, split by an earlier answer to the same assessment
    m = res.metrics.set_index(["model", "set"])
    for g in ("cv", "test"):
        assert m.loc[("pfa", g + " first-time"), "n"] + m.loc[("pfa", g + " repeat"), "n"] == m.loc[("pfa", g), "n"]
    from bayes_lse.evaluate.protocols import repeat_answers

    rep = repeat_answers(cohort_log)
    t = cohort_log.table
    for i in np.flatnonzero(rep)[:20]:  # each repeat has an earlier answer of its student to its assessment
        same = (t["student_id"] == t["student_id"].iloc[i]) & (t["module_id"] == t["module_id"].iloc[i]) \
            & (t["module_type"] == "assessment")
        assert np.flatnonzero(same.to_numpy())[0] < i
    assert "first-time answers" in res.to_text()
    scored = res.predictions[res.predictions["scored"]]
    assert scored[["lse-d1", "irt1pl", "pfa"]].notna().all().all()
    assert ((scored[["lse-d1", "irt1pl", "pfa"]] > 0) & (scored[["lse-d1", "irt1pl", "pfa"]] < 1)).all().all()
    n_cv = int(scored["run"].isin(["0", "1"]).sum())
    cv = res.metrics[(res.metrics["set"] == "cv")]
    assert (cv["n"] == n_cv).all()
    # held-out outcomes are the log's
    np.testing.assert_array_equal(scored["outcome"].to_numpy(),
                                  cohort_log.table["outcome"].to_numpy()[scored["row"].to_numpy()])
    row = cv[cv.model == "irt1pl"].iloc[0]
    y = scored[scored.run.isin(["0", "1"])]
    assert row["auc"] == pytest.approx(mt.auc(y["outcome"], y["irt1pl"]))
    assert row["auc_se"] > 0
    # paired differences against the first LSE model
    c = res.comparisons
    assert set(c["model"]) == {"irt1pl", "pfa"} and set(c["reference"]) == {"lse-d1"}
    assert set(c["set"]) == {"cv", "test"}
    assert len(res.timings) == 3 * 3
    assert set(res.fits) == {"lse-d1", "irt1pl", "pfa"}


def test_evaluate_lessons_check_and_output(small_result):
    lc = small_result.lessons
    assert set(lc["set"]) == {"cv", "test"} and set(lc["model"]) == {"lse-d1"}
    assert (lc["n"] > 0).all()
    assert {"auc_with", "auc_without", "auc_diff", "auc_diff_se"} <= set(lc.columns)
    text = small_result.to_text()
    assert "lse-d1" in text and "AUC" in text and "lessons check" in text
    d = json.loads(small_result.to_json())
    assert {"settings", "metrics", "comparisons", "lessons_check", "timings", "split"} <= set(d)


def test_a_scored_set_too_small_to_rank_is_warned_about(small_result):
    """Issue 20: 31 answers with AUC ± 0.10 were reported like any other comparison."""
    assert any("the test set scores only" in w for w in small_result.settings["warnings"])
    assert "warning: the test set scores only" in small_result.to_text()
    big = pd.DataFrame({"set": ["test", "test"], "model": ["a", "b"], "n": [5000, 5000], "students": [600, 600],
                        "auc_se": [0.009, 0.010]})
    assert small_set_warnings(big) == []
    few = big.assign(n=150, auc_se=0.01)
    assert "only 150 answers" in small_set_warnings(few, protocol="last-batch")[0]
    noisy = big.assign(auc_se=0.06)
    (msg,) = small_set_warnings(noisy, protocol="last-batch")
    assert "±0.060" in msg and "--protocol last-fraction" in msg


def test_evaluate_is_reproducible(cohort_log, small_result):
    again = evaluate(cohort_log, ["irt1pl"], folds=2, test_students=0.25, seed=0, n_boot=50)
    a = small_result.predictions[["row", "irt1pl"]].reset_index(drop=True)
    b = again.predictions[["row", "irt1pl"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_lessons_summary_reports_both_differences():
    from bayes_lse.evaluate.protocols import _lessons_summary

    rng = np.random.default_rng(3)
    n = 60
    y = rng.integers(0, 2, n).astype(float)
    p_with = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.1, n), 0.01, 0.99)
    p_without = np.full(n, 0.5) + rng.normal(0, 0.01, n)
    rows = pd.DataFrame({"student_id": np.repeat([f"s{k}" for k in range(12)], 5), "outcome": y,
                         "p_with": p_with, "p_without": p_without, "n_lessons": 1})
    out = _lessons_summary(rows, n_boot=50, seed=0)
    assert out["auc_diff"] == pytest.approx(mt.auc(y, p_with) - mt.auc(y, p_without))
    assert out["log_loss_diff"] == pytest.approx(mt.log_loss(y, p_with) - mt.log_loss(y, p_without))
    assert out["log_loss_diff"] < 0 < out["auc_diff"]  # the informative prediction wins on both
    assert out["log_loss_diff_se"] > 0 and out["log_loss_diff_low"] < out["log_loss_diff_high"]
    empty = _lessons_summary(rows.iloc[:0], n_boot=50, seed=0)
    assert empty["n"] == 0 and set(out) == set(empty) and np.isnan(empty["log_loss_diff"])


def test_lessons_check_matches_a_hand_push(small_result, cohort_log):
    from bayes_lse.model import terms as eq

    fitted = small_result.fits["lse-d1"]["test"]
    sp = small_result.split
    t = cohort_log.table
    train = t[sp.training_mask("test")]
    held = t[sp.heldout_mask("test", ("scored", "context"))]
    lc = lessons_check(fitted, train, held, update="expected")
    lc_mode = lessons_check(fitted, train, held, update="mode")
    assert lessons_check(fitted, train, held).equals(lc if fitted.method != "map" else lc_mode)  # "auto"
    assert len(lc) > 0
    r = lc.iloc[0]
    sid = r["student_id"]
    h = int(train[(train.student_id == sid) & (train.module_type == "assessment")]["timestep"].max())
    s = fitted.student_states(sid)[:, h]
    les = pd.concat([train, held])
    noise = float(fitted.model_config["learning_noise"])
    gain, prereq = fitted.draws("gain"), fitted.draws("prerequisite")
    lessons = list(fitted.lessons)
    for k in range(h, int(r["timestep"])):
        m = les[(les.student_id == sid) & (les.timestep == k) & (les.module_type == "lesson")]
        j = lessons.index(m["module_id"].iloc[0])
        s_mode = np.maximum(eq.expected_update(s_mode if k > h else s, gain[:, j], prereq[:, j]), 0.0)
        s = eq.expected_next_state(s, gain[:, j], prereq[:, j], noise)
    a = list(fitted.assessments).index(r["module_id"])
    u = list(fitted.ids_of("student")).index(sid)

    def p_of(state):
        return eq.pass_probability(state, fitted.draws("requirement")[:, a], fitted.draws("student_bias")[:, u],
                                   fitted.draws("assessment_bias")[:, a]).mean()

    assert r["p_with"] == pytest.approx(p_of(s))
    assert r["p_with"] != r["p_without"]
    assert lc_mode.iloc[0]["p_with"] == pytest.approx(p_of(s_mode))
    # without lessons the mode stays at the state of step h
    assert lc_mode.iloc[0]["p_without"] == pytest.approx(p_of(fitted.student_states(sid)[:, h]))


def test_evaluate_errors(cohort_log):
    with pytest.raises(ValueError, match="PSIS-LOO needs posterior draws"):
        evaluate(cohort_log, ["lse-d1"], method="map", loo=True)
    with pytest.raises(ValueError, match="reference"):
        evaluate(cohort_log, ["irt1pl"], reference="lse-d2")
    with pytest.raises(ValueError, match="unknown baseline"):
        evaluate(cohort_log, ["dkt"])
    with pytest.raises(ValueError, match="LSE model name"):
        evaluate(cohort_log, ["lse-x9"])


def test_lse_variants_names():
    v = lse_variants([1, 3], ["full", "no-prerequisites", "no-biases", "no-lessons"])
    assert list(v) == ["lse-d1", "lse-d1-noprereq", "lse-d1-nobias", "lse-d1-nolessons",
                       "lse-d3", "lse-d3-noprereq", "lse-d3-nobias", "lse-d3-nolessons"]
    assert v["lse-d3-noprereq"].config["prerequisites"] is False
    assert v["lse-d1-nolessons"].config["lessons"] is False
    # the default leaves lessons to the fit's held-out check; "lessons" keeps them
    assert v["lse-d1"].config["lessons"] == "auto"
    assert lse_variants([1], ["lessons+history"])["lse-d1-lessons-history"].config["lessons"] is True
    with pytest.raises(ValueError, match="variant"):
        lse_variants([2], ["tiny"])


# ----------------------------------------------------------------------- LOO
def test_loo_compare_on_nuts_draws(tiny_nuts):
    tree = pointwise_log_likelihood(tiny_nuts)
    ll = tree["log_likelihood"]["outcome"]
    assert ll.dims == ("chain", "draw", "obs")
    assert ll.shape[2] == tiny_nuts.idata["observed_data"].sizes["obs"]
    assert float(ll.max()) <= 0
    table, elpd = loo_compare({"a": tiny_nuts, "b": tiny_nuts})
    assert set(table.index) == {"a", "b"}
    assert table["elpd_diff"].abs().max() == pytest.approx(0.0)
    assert np.isfinite(table["elpd"]).all() and (table["pareto_k_bad"].between(0, 1)).all()


def test_loo_refuses_map(tiny_map):
    with pytest.raises(ValueError, match="draws"):
        pointwise_log_likelihood(tiny_map)


# ----------------------------------------------------------------------- CLI
def test_cli_evaluate(tmp_path, tiny_cohort):
    from bayes_lse.cli.evaluate import evaluate_command

    data = tmp_path / "data.csv"
    tiny_cohort.table.to_csv(data, index=False)
    r = CliRunner()
    out = r.invoke(evaluate_command, [str(data), "--folds", "1", "--test-students", "0.5", "--variants", "none",
                                      "--baselines", "irt1pl,student-rate", "--format", "json", "-q",
                                      "--split-out", str(tmp_path / "split.csv"),
                                      "--predictions-out", str(tmp_path / "pred.csv")])
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    assert {m["model"] for m in d["metrics"]} == {"irt1pl", "student-rate"}
    # a tiny test set: one warning line on stderr even with -q, and the same words in the JSON
    assert out.stderr.count("bayes-lse: warning: the test set scores only") == 1
    assert any("the test set scores only" in w for w in d["settings"]["warnings"])
    assert (tmp_path / "split.csv").exists() and (tmp_path / "split.csv.json").exists()
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert {"irt1pl", "student-rate", "outcome", "scored"} <= set(pred.columns)
    # the same split again, from disk, gives the same predictions
    out2 = r.invoke(evaluate_command, [str(data), "--split", str(tmp_path / "split.csv"), "--variants", "none",
                                       "--baselines", "irt1pl", "-q", "--predictions-out", str(tmp_path / "p2.csv")])
    assert out2.exit_code == 0, out2.output
    np.testing.assert_allclose(pd.read_csv(tmp_path / "p2.csv")["irt1pl"], pred["irt1pl"])
    # refuses to replace outputs
    out3 = r.invoke(evaluate_command, [str(data), "--variants", "none", "--baselines", "irt1pl",
                                       "--split-out", str(tmp_path / "split.csv")])
    assert out3.exit_code == 2 and "already exists" in out3.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--skills", "two"], "--skills"),
        (["--variants", "tiny"], "--variants"),
        (["--baselines", "dkt"], "--baselines"),
        (["--folds", "1", "--test-students", "0"], "nothing to evaluate"),
        (["--method", "map", "--draws", "10"], "do not apply"),
        (["--items-as-lessons"], "--from"),
    ],
)
def test_cli_evaluate_errors(tmp_path, tiny_cohort, args, message):
    from bayes_lse.cli.evaluate import evaluate_command

    data = tmp_path / "data.csv"
    tiny_cohort.table.to_csv(data, index=False)
    out = CliRunner().invoke(evaluate_command, [str(data), "-q", *args])
    assert out.exit_code == 2
    assert message in out.output and "Traceback" not in out.output
    assert len(out.output.strip().splitlines()) == 1


def test_cli_evaluate_missing_file(tmp_path):
    from bayes_lse.cli.evaluate import evaluate_command

    out = CliRunner().invoke(evaluate_command, [str(tmp_path / "nope.csv")])
    assert out.exit_code == 2 and "no such file" in out.output


# ------------------------------------------------------------------ real data
ASSIST = SHARED_DATA / "assistments2009" / "ckyeungac_problem_id_train.csv"
EDNET = SHARED_DATA / "ednet_kt4_sample"


@pytest.mark.slow
@pytest.mark.skipif(not ASSIST.exists(), reason="shared ASSISTments data not present")
def test_assistments_last_fraction_irt():
    from bayes_lse.data.readers import read_assistments_dkt

    log = read_interactions(read_assistments_dkt(ASSIST))
    res = evaluate(log, ["irt1pl"], protocol="last-fraction", folds=1, seed=0, n_boot=20)
    m = res.metrics.set_index("set").loc["test"]
    assert 0.70 < m["auc"] < 0.85
    assert m["n"] > 3000


@pytest.mark.slow
@pytest.mark.skipif(not EDNET.exists(), reason="shared EdNet data not present")
def test_ednet_sample_evaluates():
    from bayes_lse.data.readers import convert

    log = read_interactions(convert("ednet-kt4", [EDNET]))
    res = evaluate(log, ["lse-d1", "irt1pl"], protocol="last-fraction", folds=1, test_students=0.4, seed=0,
                   fit_options={"starts": 1}, n_boot=20)
    assert (res.metrics["n"] > 0).all()


def test_result_json_round_trip(small_result):
    from bayes_lse.evaluate.protocols import EvaluationResult

    back = EvaluationResult.from_dict(json.loads(small_result.to_json()))
    assert back.to_text().splitlines()[:-1] == small_result.to_text().splitlines()[:-1]


def test_paired_comparison_without_bootstrap_gives_nan_errors_not_a_crash():
    from bayes_lse.evaluate.protocols import paired_comparison

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=40).astype(float)
    p1, p2 = rng.uniform(size=40), rng.uniform(size=40)
    out = paired_comparison(y, p1, p2, n_boot=0)
    assert np.isfinite(out["auc_diff"]) and np.isnan(out["auc_diff_se"]) and np.isnan(out["auc_diff_low"])
    with_boot = paired_comparison(y, p1, p2, n_boot=50)
    assert with_boot["auc_diff"] == out["auc_diff"] and with_boot["auc_diff_se"] > 0
