"""Issue 17 part 2, "a recommender a teacher or product team can read": taken lessons,
p_best over every sequence searched, grouping by lesson set, what is estimated in words,
evidence and costs, budgets for every model, work estimates. Canned posteriors only."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bayes_lse.api import FittedLSE
from bayes_lse.recommend.sequences import ModuleDraws, recommend_sequences
from canned import nuts_idata, simulate_truth


def random_modules(seed: int, S: int = 200, L: int = 5, G: int = 2, d: int = 2, prereq: bool = True):
    rng = np.random.default_rng(seed)
    mods = ModuleDraws(
        gain=np.abs(rng.normal(0.6, 0.4, (S, L, d))),
        prerequisite=np.abs(rng.normal(0.6, 0.4, (S, L, d))) if prereq else None,
        requirement=np.abs(rng.normal(1.5, 0.4, (S, G, d))),
        lesson_ids=[f"L{k}" for k in range(L)],
        goal_ids=[f"A{g}" for g in range(G)],
        assessment_bias=rng.normal(0, 0.3, (S, G)),
        student_bias=rng.normal(0, 0.3, S),
    )
    return np.abs(rng.normal(0.5, 0.3, (S, d))), mods


def savable(tree):
    """A canned tree with the attributes a model folder checks on load."""
    from bayes_lse.core.config import config_hash
    from bayes_lse.inference.assemble import FORMAT_VERSION

    tree.attrs["data_fingerprint"] = "canned"
    tree.attrs["format_version"] = FORMAT_VERSION
    tree.attrs["config_hash"] = config_hash(json.loads(tree.attrs["model_config"]),
                                            json.loads(tree.attrs["fit_config"]), tree.attrs["method"], "canned")
    return tree


@pytest.fixture(scope="module")
def canned() -> FittedLSE:
    """A canned 6-lesson NUTS-shaped posterior (no fitting; 0.5 s)."""
    truth = simulate_truth(n_students=12, n_assessments=5, n_lessons=6, max_lessons=3, seed=0)
    return FittedLSE(savable(nuts_idata(truth, chains=2, draws=100)))


def taken_by(fitted: FittedLSE, student: str) -> set[str]:
    t = fitted.interactions
    t = t[(t.student_id == student) & (t.module_type == "lesson")]
    return set(t.module_id.astype(str))


# ------------------------------------------------------------------ 1. taken lessons
def test_taken_lessons_are_left_out_unless_allowed():
    state, mods = random_modules(1)
    rec = recommend_sequences(state, mods, max_length=2, search="exhaustive", top=None, taken=["L1", "L3"])
    used = {x for s in rec.table.lessons for x in s}
    assert used == {"L0", "L2", "L4"} and rec.excluded_taken == ("L1", "L3")
    assert "already taken" in rec.to_text() and json.loads(rec.to_json())["excluded_taken"] == ["L1", "L3"]
    again = recommend_sequences(state, mods, max_length=2, search="exhaustive", top=None, taken=["L1", "L3"],
                                allow_taken=True)
    assert {x for s in again.table.lessons for x in s} == {f"L{k}" for k in range(5)}
    assert again.excluded_taken == ()
    with pytest.raises(ValueError, match="every candidate lesson was already taken.*allow_taken"):
        recommend_sequences(state, mods, max_length=2, candidates=["L1"], taken=["L1"])


def test_api_and_cli_leave_out_the_students_logged_lessons(canned, tmp_path):
    done = taken_by(canned, "s001")
    assert done  # the canned student took lessons
    rec = canned.recommend("s001", ["A3", "A4"], max_length=2, top=None)
    assert not done & {x for s in rec.table.lessons for x in s}
    assert set(rec.excluded_taken) == done
    rec = canned.recommend("s001", ["A3", "A4"], max_length=2, top=None, allow_taken=True)
    assert done <= {x for s in rec.table.lessons for x in s}

    from bayes_lse.cli import main

    canned.save(tmp_path / "m")
    r = CliRunner().invoke(main, ["recommend", str(tmp_path / "m"), "--student", "s001", "--goal", "A3",
                                  "--max-length", "1", "--format", "json", "--top", "20"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert not done & {x for s in out["sequences"] for x in s["lessons"]}
    r = CliRunner().invoke(main, ["recommend", str(tmp_path / "m"), "--student", "s001", "--goal", "A3",
                                  "--max-length", "1", "--format", "json", "--top", "20", "--allow-retake"])
    assert r.exit_code == 0, r.output
    assert done <= {x for s in json.loads(r.stdout)["sequences"] for x in s["lessons"]}


# ------------------------------------------------------------------ 2. p_best, grouping
def brute_p_best(p: np.ndarray) -> np.ndarray:
    """Share of draws each of the rows of p (all sequences, S) is the best of all (ties share)."""
    best = p.max(axis=0)
    is_best = p >= best - 1e-12 * np.maximum(1.0, np.abs(best))
    return (is_best / is_best.sum(axis=0)).mean(axis=1)


@pytest.mark.parametrize("search", ["exhaustive", "beam"])
def test_p_best_is_over_every_sequence_searched_and_does_not_depend_on_top(search):
    """Issue 17: p_best of the same sequence was 1.000 with --top 1 and 0.022 with --top 20."""
    state, mods = random_modules(2, L=5)
    full = recommend_sequences(state, mods, max_length=3, search=search, beam_width=8, top=None)
    want = dict(zip(full.table.lessons, brute_p_best(full.p_draws)))
    assert full.table.p_best.sum() == pytest.approx(1.0)
    for top in (1, 3, 20):
        rec = recommend_sequences(state, mods, max_length=3, search=search, beam_width=8, top=top)
        for lessons, pb in zip(rec.table.lessons, rec.table.p_best):
            assert pb == pytest.approx(want[lessons], abs=1e-12), (top, lessons)
        assert "best of all" in rec.to_text() or "beam search evaluated" in rec.to_text()
    one = recommend_sequences(state, mods, max_length=3, search=search, beam_width=8, top=1)
    assert one.table.p_best.iloc[0] < 0.9  # not 1.000 just because the table has one row


def test_the_sequence_best_in_most_draws_is_flagged_or_named():
    state, mods = random_modules(2, L=5)
    full = recommend_sequences(state, mods, max_length=3, search="exhaustive", top=None)
    i = int(np.argmax(full.table.p_best))
    often = full.table.lessons[i]
    assert full.table.loc[full.table.most_often_best, "lessons"].tolist() == [often]
    assert i > 0  # here the sequence best in the most draws is not the best on average
    rec = recommend_sequences(state, mods, max_length=3, search="exhaustive", top=i)
    assert len(rec.table) == i and not rec.table.most_often_best.any()
    mob = rec.most_often_best
    assert tuple(mob["lessons"]) == often and not mob["shown"]
    assert mob["p_best"] == pytest.approx(full.table.p_best[i]) and mob["p_mean"] == pytest.approx(full.table.p_mean[i])
    assert "best in the most draws, but below the rows shown" in rec.to_text()
    assert json.loads(rec.to_json())["most_often_best"]["lessons"] == list(often)


def test_group_by_set_shows_each_set_once_in_its_best_order():
    state, mods = random_modules(3, L=5)
    full = recommend_sequences(state, mods, max_length=3, search="exhaustive", top=None)
    grouped = recommend_sequences(state, mods, max_length=3, search="exhaustive", top=None, group_by_set=True)
    sets = [frozenset(x) for x in grouped.table.lessons]
    assert len(sets) == len(set(sets)) == 1 + 5 + 10 + 10
    # each row is the best order of its set; p_best sums over the set's orders
    by_set: dict = {}
    for lessons, pm, pb in zip(full.table.lessons, full.table.p_mean, full.table.p_best):
        k = frozenset(lessons)
        best_pm, tot, worst, n = by_set.get(k, (None, 0.0, np.inf, 0))
        by_set[k] = (lessons if best_pm is None else best_pm, tot + pb, min(worst, pm), n + 1)
    for r in grouped.table.itertuples():
        best_order, tot, worst, n = by_set[frozenset(r.lessons)]
        assert r.lessons == best_order and r.p_best == pytest.approx(tot, abs=1e-12)
        assert r.orders == n and r.p_mean_worst_order == pytest.approx(worst)
    assert grouped.table.p_best.sum() == pytest.approx(1.0)
    assert "worst order" in grouped.to_text() and "best order of that set" in grouped.to_text()
    top3 = recommend_sequences(state, mods, max_length=3, search="exhaustive", top=3, group_by_set=True)
    assert list(top3.table.lessons[:3]) == list(grouped.table.lessons[:3])


def test_knapsack_p_best_over_the_sets_it_evaluated():
    """Without pruning (top=None) the knapsack's p_best is that of every set, as exhaustive search
    grouped by set gives it; with pruning the text says how far a cut set could reach."""
    state, mods = random_modules(4, L=6, prereq=False)
    full = recommend_sequences(state, mods, max_length=3, search="knapsack", top=None)
    ex = recommend_sequences(state, mods, max_length=3, search="exhaustive", top=None, group_by_set=True)
    want = {frozenset(k): v for k, v in zip(ex.table.lessons, ex.table.p_best)}
    for lessons, pb in zip(full.table.lessons, full.table.p_best):
        assert pb == pytest.approx(want[frozenset(lessons)], abs=1e-12)
    assert full.table.p_best.sum() == pytest.approx(1.0)
    state, mods = random_modules(4, L=12, prereq=False)
    one = recommend_sequences(state, mods, max_length=5, search="knapsack", top=1)
    assert one.n_evaluated < sum(math.comb(12, k) for k in range(6))
    assert "branch and bound evaluated" in one.p_best_scope and "could have been best in up to" in one.p_best_scope


def test_cli_group_by_set_and_p_best_wording(canned, tmp_path):
    from bayes_lse.cli import main

    canned.save(tmp_path / "m")
    args = ["recommend", str(tmp_path / "m"), "--student", "s001", "--goal", "A3", "--max-length", "2"]
    r = CliRunner().invoke(main, [*args, "--group-by-set", "--format", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    sets = [frozenset(s["lessons"]) for s in out["sequences"]]
    assert len(sets) == len(set(sets)) and out["group_by_set"] and "orders" in out["sequences"][0]
    one = json.loads(CliRunner().invoke(main, [*args, "--top", "1", "--format", "json"]).stdout)
    many = json.loads(CliRunner().invoke(main, [*args, "--top", "20", "--format", "json"]).stdout)
    assert one["sequences"][0]["p_best"] == pytest.approx(many["sequences"][0]["p_best"])
    assert "not only of the rows shown" in one["p_best_scope"]


# ------------------------------------------------------------------ 3. words, evidence, costs, a failed fit
def test_output_says_what_is_estimated_with_evidence_and_costs(canned):
    rec = canned.recommend("s001", ["A3", "A4"], max_length=2, fit_verdict={"status": "ok", "line": "diagnostics: OK"})
    text = rec.to_text()
    assert "Estimated: the probability that student s001 passes all of A3 and A4 after the lessons of each row" in text
    t = canned.interactions
    t = t[t.module_type == "lesson"]
    students = t.groupby("module_id").student_id.nunique()
    lt = rec.lesson_table()
    assert set(lt.lesson) == {x for s in rec.table.lessons for x in s}
    for r in lt.itertuples():
        assert r.students == students.get(r.lesson, 0) and r.cost == 1.0
        assert f"{r.students:>4} students" in text
    assert "1 per lesson: the log has no timestamps" in text and "WARNING" not in text
    d = json.loads(rec.to_json())
    assert d["estimate"].startswith("Estimated: the probability") and d["fit_diagnostics"]["status"] == "ok"
    assert set(d["lessons"]) == set(lt.lesson) and all("students" in v and "cost" in v for v in d["lessons"].values())
    # a lesson taken by fewer than THIN_EVIDENCE students is flagged
    assert "few students" in text


def test_a_failed_fit_is_stated_at_the_top(canned, tmp_path):
    failed = {"status": "fail", "line": "diagnostics: FAIL (1 fail); worst: R-hat — chains disagree"}
    rec = canned.recommend("s001", ["A3"], max_length=1, fit_verdict=failed)
    assert rec.to_text().startswith("WARNING: the fit behind this recommendation failed its own diagnostics "
                                    "(diagnostics: FAIL (1 fail); worst: R-hat")
    assert json.loads(rec.to_json())["fit_diagnostics"]["status"] == "fail"
    # the verdict saved with the model is used by default (the API and the CLI)
    from bayes_lse.cli import main
    from bayes_lse.results.posterior import VERDICT_ATTR

    bad = FittedLSE(canned.idata.copy(deep=True))
    bad.idata.attrs[VERDICT_ATTR] = json.dumps({**failed, "fail": 1, "warn": 0, "checks": 5, "worst": "R-hat"})
    assert bad.recommend("s001", ["A3"], max_length=1).fit_failed()
    bad.save(tmp_path / "bad")
    r = CliRunner().invoke(main, ["recommend", str(tmp_path / "bad"), "--student", "s001", "--goal", "A3",
                                  "--max-length", "1"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("WARNING: the fit behind this recommendation failed") and "failed its own" in r.stderr


# ------------------------------------------------------------------ 4. budgets for every model
def brute_ordered(state, mods, costs, budget, max_len):
    """Every ordered sequence without repeats within budget, scored step by step (prerequisites)."""
    import itertools

    from bayes_lse.model import terms as eq

    L = len(mods.lesson_ids)
    rows = []
    for n in range(max_len + 1):
        for seq in itertools.permutations(range(L), n):
            if sum(costs[mods.lesson_ids[k]] for k in seq) > budget + 1e-9:
                continue
            x = state.copy()
            for k in seq:
                x = eq.expected_next_state(x, mods.gain[:, k], mods.prerequisite[:, k], mods.noise)
            p = eq.pass_probability(x[:, None, :], mods.requirement, mods.student_bias[:, None], mods.assessment_bias)
            rows.append((tuple(mods.lesson_ids[k] for k in seq), p.prod(-1).mean()))
    return sorted(rows, key=lambda r: -r[1])


def test_budget_with_prerequisites_searches_ordered_sequences_within_it():
    """Issue 17: the knapsack was refused for models with prerequisites."""
    state, mods = random_modules(5, L=5)
    costs = {"L0": 2.5, "L1": 0.5, "L2": 1.0, "L3": 1.5, "L4": 0.5}
    rec = recommend_sequences(state, mods, costs=costs, budget=3.0, search="knapsack", top=5)
    assert rec.search == "exhaustive" and any("does not apply" in n for n in rec.notes)
    brute = brute_ordered(state, mods, costs, 3.0, 5)
    assert list(rec.table.lessons) == [b[0] for b in brute[:5]]
    np.testing.assert_allclose(rec.table.p_mean, [b[1] for b in brute[:5]], rtol=1e-9)
    assert np.all(rec.table.cost <= 3.0) and any("up to 3 lessons fit in the budget 3" in n for n in rec.notes)


def test_budget_is_never_capped_silently_by_max_length():
    state, mods = random_modules(6, L=5)
    costs = {k: 1.0 for k in mods.lesson_ids}
    # no max_length: the budget decides how long a sequence may be
    rec = recommend_sequences(state, mods, costs=costs, budget=4.0, top=3)
    assert rec.work["sequences"] >= 1 + 5 + 20 + 60 + 120 and max(len(x) for x in rec.table.lessons) == 4
    assert any("up to 4 lessons fit in the budget 4" in n for n in rec.notes)
    # a shorter max_length is obeyed, and said
    rec = recommend_sequences(state, mods, costs=costs, budget=4.0, max_length=2, top=3)
    assert max(len(x) for x in rec.table.lessons) <= 2
    assert any("stops at max_length=2 lessons although up to 4 fit in the budget 4" in w for w in rec.warnings)
    assert "warning: the search stops at max_length=2" in rec.to_text()
    # without prerequisites (knapsack) too
    state, mods = random_modules(6, L=5, prereq=False)
    rec = recommend_sequences(state, mods, costs=costs, budget=4.0, max_length=2, top=3)
    assert rec.search == "knapsack" and rec.warnings


def test_cli_budget_with_prerequisites_and_the_length_warning(canned, tmp_path):
    from bayes_lse.cli import main

    canned.save(tmp_path / "m")
    (tmp_path / "costs.csv").write_text("lesson_id,cost\nL0,1\nL3,2\nL4,1\nL5,1\n")
    args = ["recommend", str(tmp_path / "m"), "--student", "s001", "--goal", "A3", "--costs",
            str(tmp_path / "costs.csv"), "--budget", "3", "--format", "json"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert max(len(s["lessons"]) for s in out["sequences"]) == 3 and all(s["cost"] <= 3 for s in out["sequences"])
    r = CliRunner().invoke(main, [*args, "--max-length", "1"])
    assert r.exit_code == 0, r.output
    assert any("stops at max_length=1" in w for w in json.loads(r.stdout)["warnings"])


# ------------------------------------------------------------------ 6. the work, before it starts
def test_count_with_a_budget_bounds_the_true_count():
    import itertools

    from bayes_lse.recommend.sequences import count_sequences

    rng = np.random.default_rng(0)
    for _ in range(5):
        c = rng.uniform(0.3, 2.0, 6)
        budget = float(rng.uniform(1, 4))
        for rep in (False, True):
            gen = itertools.product if rep else itertools.permutations
            true = sum(1 for n in range(5) for s in (gen(range(6), repeat=n) if rep else gen(range(6), n))
                       if c[list(s)].sum() <= budget + 1e-9)
            est = count_sequences(6, 4, rep, c, budget)
            assert true <= est <= 1.25 * true + 2, (true, est)
    assert count_sequences(6, 3, False, np.ones(6), np.inf) == count_sequences(6, 3) == 1 + 6 + 30 + 120


def test_long_searches_are_estimated_refused_or_beamed_and_report_progress(monkeypatch):
    import bayes_lse.recommend.sequences as seq

    state, mods = random_modules(7, S=200, L=12)
    # --max-length 8 --search exhaustive grew to 5-10 GB: refused before any work, with the estimate
    with pytest.raises(ValueError, match=r"is [\d,]+ sequences × 200 draws \(about .*GB\).*search='beam'"):
        recommend_sequences(state, mods, max_length=8, search="exhaustive")
    # auto switches to beam search and says why
    rec = recommend_sequences(state, mods, max_length=5, top=3)
    assert rec.search == "beam" and any("too much to enumerate" in n and "beam search" in n for n in rec.notes)
    assert rec.work["sequences"] == 1 + 12 + 132 + 1320 + 11880 + 95040
    # progress lines on the callback once a search runs longer than PROGRESS_AFTER_SECONDS
    monkeypatch.setattr(seq, "PROGRESS_AFTER_SECONDS", 0.0)
    lines: list[str] = []
    monkeypatch.setattr(seq._Progress, "__init__", lambda self, fn, every=0.0: (
        setattr(self, "fn", fn), setattr(self, "every", 0.0),
        setattr(self, "t0", 0.0), setattr(self, "last", 0.0)) and None)
    recommend_sequences(state, mods, max_length=3, search="exhaustive", progress=lines.append)
    assert lines[0].startswith("recommend: exhaustive search, 1,465 sequences × 200 draws (about")
    assert any("sequences evaluated" in x for x in lines[1:])


def test_knapsack_stops_at_its_time_limit_and_says_so():
    state, mods = random_modules(8, S=100, L=30, prereq=False)
    rec = recommend_sequences(state, mods, max_length=8, top=3, time_limit=0.0)
    assert rec.search == "knapsack" and len(rec.table) == 3
    assert any("branch and bound stopped after 0 s" in w and "not proven the best" in w for w in rec.warnings)


# ------------------------------------------------------------------ 5. costs predicted from the log
def timed_log(seed: int = 0, n_students: int = 60, minutes=None) -> tuple[pd.DataFrame, dict[str, float]]:
    """A log with clock times: lesson k takes log-normal time around `minutes[k]`, students
    differ by a factor, answers take ~1 minute, and a few long breaks."""
    rng = np.random.default_rng(seed)
    minutes = minutes or {"L0": 5.0, "L1": 20.0, "L2": 60.0}
    rows = []
    for u in range(n_students):
        t = pd.Timestamp("2026-01-05 09:00", tz="UTC") + pd.Timedelta(days=u)
        speed = np.exp(rng.normal(0, 0.3))
        for step in range(4):
            rows.append((f"s{u}", "A0", "assessment", float(rng.random() < 0.5), t))
            t += pd.Timedelta(minutes=float(np.exp(rng.normal(0, 0.2))))
            k = f"L{rng.integers(len(minutes))}"
            rows.append((f"s{u}", k, "lesson", np.nan, t))
            spent = minutes[k] * speed * np.exp(rng.normal(0, 0.25))
            if rng.random() < 0.03:
                spent += 3000.0  # went home
            t += pd.Timedelta(minutes=float(spent))
        rows.append((f"s{u}", "A0", "assessment", 1.0, t))
    table = pd.DataFrame(rows, columns=["student_id", "module_id", "module_type", "outcome", "timestamp"])
    table["timestamp"] = table["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    return table, minutes


def test_lesson_costs_from_timestamps_recover_the_lesson_times():
    from bayes_lse.recommend.costs import lesson_costs_from_log

    table, minutes = timed_log()
    lc = lesson_costs_from_log(table, ["L0", "L1", "L2", "L9"])
    assert lc.predicted and lc.unit == "minutes" and "predicted from the log's timestamps" in lc.source
    # expected time of a typical student: exp(log m + 0.3²/2 + 0.25²/2) ≈ 1.08 m (breaks are capped)
    for k, m in minutes.items():
        assert 0.8 * m < lc.costs[k] < 1.4 * m, (k, lc.costs[k], m)
        lo, hi = lc.bands[k]
        assert lo < lc.costs[k] < hi
    # a lesson never timed: the typical lesson's cost, with the whole spread between lessons as its band
    lo, hi = lc.bands["L9"]
    assert hi / lo > max(hi2 / lo2 for hi2, lo2 in ((lc.bands[k][1], lc.bands[k][0]) for k in minutes))
    # a slow student gets larger costs than a typical one
    slow = table.groupby("student_id").size().index[0]
    assert lesson_costs_from_log(table, ["L1"], student=slow).costs["L1"] != lc.costs["L1"]


def test_no_timestamps_fall_back_to_unit_costs_and_say_so():
    from bayes_lse.recommend.costs import lesson_costs_from_log

    table, _ = timed_log()
    lc = lesson_costs_from_log(table.drop(columns="timestamp"), ["L0", "L1"])
    assert not lc.predicted and lc.costs == {"L0": 1.0, "L1": 1.0}
    assert lc.source.startswith("1 per lesson: the log has no timestamps") and "budget counts lessons" in lc.source


def test_recommend_uses_and_shows_predicted_costs(tmp_path):
    table, minutes = timed_log(n_students=12, minutes={"L0": 5.0, "L1": 20.0, "L2": 60.0, "L3": 10.0, "L4": 30.0,
                                                        "L5": 15.0})
    truth = simulate_truth(n_students=12, n_assessments=5, n_lessons=6, max_lessons=3, seed=0)
    tree = savable(nuts_idata(truth, chains=2, draws=50))
    # give the canned training log clock times: each student's rows, in order, from the timed log
    inter = tree["interactions"].to_dataset().to_dataframe().reset_index(drop=True)
    stamps = pd.to_datetime("2026-01-05T09:00:00") + pd.to_timedelta(
        np.cumsum(np.where(inter.module_type == "lesson",
                           inter.module_id.map(lambda m: minutes.get(m, 1.0)), 1.0)), unit="min")
    inter["timestamp"] = stamps.strftime("%Y-%m-%dT%H:%M:%S")
    import xarray as xr

    tree["interactions"] = xr.DataTree(xr.Dataset({c: ("row", inter[c].to_numpy()) for c in inter.columns}))
    fitted = FittedLSE(tree)
    rec = fitted.recommend("s001", ["A3"], max_length=2, fit_verdict={"status": "ok"}, budget=40.0)
    assert "predicted from the log's timestamps, in minutes" in rec.cost_source
    for lessons, cost in zip(rec.table.lessons, rec.table.cost):
        assert cost <= 40.0 and cost == pytest.approx(sum(rec.lessons[x]["cost"] for x in lessons))
    text = rec.to_text()
    assert "cost: predicted from the log's timestamps" in text and "–" in text
    assert all("cost_low" in v for v in json.loads(rec.to_json())["lessons"].values())
    # unit costs on request; a budget then counts lessons
    unit = fitted.recommend("s001", ["A3"], max_length=2, fit_verdict={"status": "ok"}, costs="unit")
    assert set(unit.table.cost) <= {0.0, 1.0, 2.0} and "unit costs asked for" in unit.cost_source
