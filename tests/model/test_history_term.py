"""The assessment-history term (history=True): earlier successes/failures on the same assessment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayes_lse as bl
from bayes_lse.model import terms as eq
from bayes_lse.evaluate.protocols import _model_from_name, lse_variants
from bayes_lse.evaluate.metrics import auc
from bayes_lse.model.terms import assessment_history_counts
from bayes_lse.model.terms import history_logit


def test_history_counts_match_a_loop():
    rng = np.random.default_rng(0)
    n = 400
    student, assessment = rng.integers(0, 7, n), rng.integers(0, 5, n)
    y, time = rng.integers(0, 2, n), rng.integers(0, 6, n)
    got = assessment_history_counts(student, assessment, y, time)
    want = np.zeros((n, 5))
    for i in range(n):
        for k in range(n):
            earlier = time[k] < time[i] or (time[k] == time[i] and k < i)
            if earlier and student[k] == student[i] and assessment[k] == assessment[i]:
                want[i, 1 - y[k]] += 1
            if earlier and student[k] == student[i]:  # practice: any assessment
                want[i, 4 - y[k]] += 1
        # the lag: the student's answers from its latest earlier answer to this assessment to this one
        seq = sorted((k for k in range(n) if student[k] == student[i]), key=lambda k: (time[k], k))
        pos = seq.index(i)
        prev = [p for p in range(pos) if assessment[seq[p]] == assessment[i]]
        want[i, 2] = pos - prev[-1] if prev else 0
    assert (want[:, 2] > 1).any() and (want[:, 2] == 1).any()
    np.testing.assert_array_equal(got, want)
    # float32 counts (the amortised fit's) are the same numbers
    np.testing.assert_array_equal(assessment_history_counts(student, assessment, y, time, dtype=np.float32), want)
    # without a time, "earlier" is row order alone
    want0 = np.zeros((n, 5))
    for i in range(n):
        for k in range(i):
            if student[k] == student[i] and assessment[k] == assessment[i]:
                want0[i, 1 - y[k]] += 1
            if student[k] == student[i]:
                want0[i, 4 - y[k]] += 1
        prev = [k for k in range(i) if student[k] == student[i] and assessment[k] == assessment[i]]
        want0[i, 2] = sum(student[k] == student[i] for k in range(prev[-1], i)) if prev else 0
    np.testing.assert_array_equal(assessment_history_counts(student, assessment, y), want0)


def _memory_cohort(seed: int = 0) -> pd.DataFrame:
    """Static answers where a repeat copies the student's previous outcome on that item."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(60):
        ability = rng.normal()
        last: dict[int, int] = {}
        for _ in range(30):
            j = int(rng.integers(0, 8))
            if j in last and rng.random() < 0.9:
                y = last[j]
            else:
                y = int(rng.random() < 1 / (1 + np.exp(-(ability - 0.2 * j + 0.7))))
            last[j] = y
            rows.append((f"u{u}", f"A{j}", "assessment", y, 0))
    return pd.DataFrame(rows, columns=["student_id", "module_id", "module_type", "outcome", "timestep"])


def test_history_term_learns_repeat_memory_and_predicts_repeats():
    t = _memory_cohort()
    last = t.groupby("student_id").tail(5).index
    train, test = t.drop(last), t.loc[last]
    test = test[test["module_id"].isin(set(train["module_id"]))]
    plain = bl.LatentSkillEmbedding(n_skills=1, lessons=False, history=False).fit(train, method="map", starts=1, seed=0,
                                                                   progressbar=False)
    mem = bl.LatentSkillEmbedding(n_skills=1, lessons=False, history=True).fit(train, method="map", starts=1,
                                                                               seed=0, progressbar=False)
    assert float(mem.draws("history_success")[0]) > 0.5 > -0.5 > float(mem.draws("history_failure")[0])
    y = test["outcome"].to_numpy()
    a_plain = auc(y, plain.predict(test)["p_mean"].to_numpy())
    a_mem = auc(y, mem.predict(test)["p_mean"].to_numpy())
    assert a_mem > a_plain + 0.05


def test_predict_adds_the_history_term_by_hand():
    t = _memory_cohort(1)
    f = bl.LatentSkillEmbedding(n_skills=2, lessons=False, history=True).fit(t, method="map", starts=1, seed=0,
                                                                             progressbar=False)
    row = t.iloc[[-1]]
    sid, mid = row["student_id"].iloc[0], row["module_id"].iloc[0]
    prev = t[(t.student_id == sid) & (t.module_id == mid)]  # every training answer at timestep 0 counts
    s_cnt, f_cnt = prev["outcome"].sum(), len(prev) - prev["outcome"].sum()
    # the row is the student's latest training answer: lag 1 from itself (rows within the history count)
    mine = t[t.student_id == sid]  # practice: every training answer of the student
    p_s, p_f = mine["outcome"].sum(), len(mine) - mine["outcome"].sum()
    np.testing.assert_array_equal(f.history_of(row), [[s_cnt, f_cnt, 1, p_s, p_f]])
    j, u = list(f.assessments).index(mid), list(f.students).index(sid)
    h = history_logit(np.array([s_cnt, f_cnt, 1, p_s, p_f], dtype=float), [c[0] for c in f.history_draws()])
    p = eq.pass_probability(f.current_state(sid)[0], f.draws("requirement")[0, j], f.draws("student_bias")[0, u],
                            f.draws("assessment_bias")[0, j] + h)
    assert f.predict(row)["p_mean"].iloc[0] == pytest.approx(float(p), rel=1e-9)
    # in-sample probabilities use the training counts kept in constant_data
    cd = f.idata["constant_data"]
    assert cd["obs_history"].shape == (len(t), 5)
    assert f.pass_probability_draws().shape == (1, len(t))


def test_unsupported_paths_say_so(tiny_cohort):
    spec = bl.LatentSkillEmbedding(n_skills=1, history=True)
    with pytest.raises(ValueError, match="minibatch ADVI .* history"):
        spec.fit(tiny_cohort.table, method="advi", batch_size=4)


def test_recommend_adds_the_goals_history_offset(tiny_cohort):
    """Recommending with the history term: a goal the student passed before gets
    γ_s·log(1+S) + γ_f·log(1+F) on its logit, so raising γ_s raises its pass probability."""
    spec = bl.LatentSkillEmbedding(n_skills=1, history=True)
    f = spec.fit(tiny_cohort.table, method="map", starts=1, seed=0, progressbar=False)
    t = tiny_cohort.table
    passed = t[(t["module_type"] == "assessment") & (t["outcome"] == 1)].iloc[0]
    sid, goal = str(passed["student_id"]), str(passed["module_id"])
    before = f.recommend(sid, goals=[goal], max_length=1).table["p_mean"].max()
    f.idata["posterior"]["history_success"] = f.idata["posterior"]["history_success"] + 3.0
    after = f.recommend(sid, goals=[goal], max_length=1).table["p_mean"].max()
    assert 0 < before < after < 1


def test_variant_names_combine():
    specs = lse_variants([2], ["no-lessons+history", "history"])
    assert list(specs) == ["lse-d2-nolessons-history", "lse-d2-history"]
    c = specs["lse-d2-nolessons-history"].config
    assert c["history"] and not c["lessons"]
    again = _model_from_name("lse-d2-nolessons-history")
    assert again.config == c
    with pytest.raises(ValueError, match="unknown LSE variant 'memory'"):
        lse_variants([2], ["no-lessons+memory"])


def test_cli_fit_history_flag(tmp_path, tiny_cohort):
    from click.testing import CliRunner

    from bayes_lse.cli.commands import main

    data = tmp_path / "d.csv"
    tiny_cohort.table.to_csv(data, index=False)
    res = CliRunner().invoke(main, ["fit", str(data), "-o", str(tmp_path / "m"), "--method", "map", "--history",
                                    "--starts", "1", "--skills", "1"])
    assert res.exit_code == 0, res.output
    f = bl.load(tmp_path / "m")
    assert f.model_config["history"] and f.has("history_success")


def test_kernel_and_pytensor_engines_agree_with_history(tiny_cohort):
    """Centred MAP with the history term on the compiled kernel reaches the PyMC engine's mode."""
    spec = bl.LatentSkillEmbedding(n_skills=1, history=True, practice=True)  # every coefficient
    fits = {e: spec.fit(tiny_cohort.table, method="map", engine=e, parametrization="centered", starts=2, seed=0,
                        progressbar=False) for e in ("kernel", "pytensor")}
    assert fits["kernel"].idata["optimization"].attrs["engine"] == "kernel"
    obj = {e: float(np.min(f.idata["optimization"]["objective"].values)) for e, f in fits.items()}
    assert obj["kernel"] == pytest.approx(obj["pytensor"], rel=1e-4)
    for name in eq.HISTORY_COEFFICIENTS:
        assert float(fits["kernel"].draws(name)[0]) == pytest.approx(float(fits["pytensor"].draws(name)[0]), abs=0.05)


def _forgetting_cohort(seed: int = 0, n_students: int = 80, n_answers: int = 40) -> pd.DataFrame:
    """Static answers to 10 items where a repeat is likelier to pass the more recently the
    item was last answered: logit = ability − difficulty + 3·lag^(−1/2) on a repeat."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_students):
        ability = rng.normal()
        last: dict[int, int] = {}
        for q in range(n_answers):
            j = int(rng.integers(0, 10))
            logit = ability - 0.3 * (j - 5) - 1.0 + (3.0 / np.sqrt(q - last[j]) if j in last else 0.0)
            rows.append((f"u{u}", f"A{j}", "assessment", int(rng.random() < 1 / (1 + np.exp(-logit))), 0))
            last[j] = q
    return pd.DataFrame(rows, columns=["student_id", "module_id", "module_type", "outcome", "timestep"])


def test_recency_feature_is_learned_and_counted_for_rows_to_predict():
    """The history term's third feature: its coefficient comes out positive where repeats
    are remembered better the more recent they are, and for rows beyond the fitted history
    the lag counts the training answers after the last one to the item plus the rows to
    predict before it (their outcomes unknown) — the same numbers as a loop over the rows."""
    t = _forgetting_cohort()
    last = t.groupby("student_id").tail(6).index
    train, test = t.drop(last), t.loc[last].reset_index(drop=True)
    f = bl.LatentSkillEmbedding(n_skills=1, lessons=False, history=True).fit(train, method="map", starts=1,
                                                                             seed=0, progressbar=False)
    assert float(f.draws("history_recency")[0]) > 1.0
    h = f.history_of(test)
    want = np.zeros(len(test))
    for u, rows in test.groupby("student_id", sort=False).groups.items():
        seq = list(train.loc[train["student_id"] == u, "module_id"])
        n = len(seq)
        for k, i in enumerate(rows):
            mid = test.at[i, "module_id"]
            prev = [p for p in range(n) if seq[p] == mid]
            want[i] = n + k - prev[-1] if prev else 0
    np.testing.assert_array_equal(h[:, 2], want)
    # each row is its own what-if (evaluate.paths): no rows to predict in between
    solo = f.history_of(test, sequential=False)
    np.testing.assert_array_equal(solo[:, :2], h[:, :2])
    k = test.groupby("student_id", sort=False).cumcount().to_numpy()
    np.testing.assert_array_equal(solo[:, 2], np.where(want > 0, want - k, 0))


def test_new_student_rows_get_the_recency_lag(monkeypatch):
    """`FittedLSE.predict` for students not in the fit (placed from their answered rows): the
    lag of a row to predict counts answered rows and rows to predict since the last
    answered row on that item; a student with nothing answered gets 0 (no earlier answer)."""
    t = _forgetting_cohort(n_students=30, n_answers=20)
    f = bl.LatentSkillEmbedding(n_skills=1, lessons=False, history=True).fit(t, method="map", starts=1, seed=0,
                                                                             progressbar=False)
    rows = pd.DataFrame({"student_id": ["new"] * 5 + ["blank"] * 2,
                         "module_id": ["A1", "A2", "A1", "A3", "A2", "A1", "A1"],
                         "module_type": "assessment",
                         "outcome": [1.0, 0.0, np.nan, np.nan, np.nan, np.nan, np.nan], "timestep": 0})
    seen = []
    real = eq.history_logit

    def spy(counts, coefficients, xp=np):
        seen.append(np.asarray(counts)[0].copy())
        return real(counts, coefficients, xp)

    monkeypatch.setattr(eq, "history_logit", spy)
    out = f.predict(rows, placement="exact", seed=0)
    # calls: placing "new" from its 2 answers (lags 0, 0), then one call per timestep of rows to
    # predict — "new": A1 answered at 0, A2 at 1; to predict A1 (answer 2: lag 2), A3 (none),
    # A2 (answer 4: lag 3); "blank": nothing answered, so neither A1 row has an earlier answer
    assert [c[:, 2].tolist() for c in seen] == [[0.0, 0.0], [2.0, 0.0, 3.0], [0.0, 0.0]]
    assert seen[1][:, :2].tolist() == [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]
    # practice: "new" passed its first answer and failed its second; rows to predict count
    # the answered rows only; "blank" has practised nothing
    assert seen[0][:, 3:].tolist() == [[0.0, 0.0], [1.0, 0.0]]
    assert seen[1][:, 3:].tolist() == [[1.0, 1.0]] * 3 and seen[2][:, 3:].tolist() == [[0.0, 0.0]] * 2
    assert out["p_mean"].notna().all()


def test_a_model_saved_before_the_recency_feature_keeps_its_two_feature_term(tmp_path):
    """A history model saved with two coefficients and two count columns (before
    `history_recency`) loads and predicts with the term it was fitted with: the recency
    feature is left out, not read as a zero-coefficient column or an error."""
    t = _forgetting_cohort(n_students=30, n_answers=20)
    f = bl.LatentSkillEmbedding(n_skills=1, lessons=False, history=True).fit(t, method="map", starts=1, seed=0,
                                                                             progressbar=False)
    f.save(tmp_path / "m")
    old = bl.load(tmp_path / "m")
    old.idata["posterior"] = old.idata["posterior"].to_dataset().drop_vars(
        ["history_recency", "history_practice_success", "history_practice_failure"])
    cd = old.idata["constant_data"].to_dataset()
    old.idata["constant_data"] = cd.isel(history_kind=[0, 1])
    assert old.history_draws() is not None and len(old.history_draws()) == 2
    row = t.iloc[[-1]]
    sid, mid = row["student_id"].iloc[0], row["module_id"].iloc[0]
    j, u = list(old.assessments).index(mid), list(old.students).index(sid)
    s_cnt, f_cnt = old.history_of(row)[0, :2]
    h = old.draws("history_success")[0] * np.log1p(s_cnt) + old.draws("history_failure")[0] * np.log1p(f_cnt)
    p = eq.pass_probability(old.current_state(sid)[0], old.draws("requirement")[0, j], old.draws("student_bias")[0, u],
                            old.draws("assessment_bias")[0, j] + h)
    assert old.predict(row)["p_mean"].iloc[0] == pytest.approx(float(p), rel=1e-9)
    assert old.pass_probability_draws().shape == (1, len(t))
    # and the new fit's own prediction differs by its recency term
    assert f.predict(row)["p_mean"].iloc[0] != pytest.approx(float(p), rel=1e-6)
